//! virt-v2v's use of nbdkit, replayed against vddk-nbd installed as
//! `nbdkit`: the probes of `lib/nbdkit.ml` and `input/input_vddk.ml`, the
//! input command lines of virt-v2v 2.0 to today (one instance per disk, then
//! one for the whole VM with an `export=` wildcard, under the cow, blocksize,
//! multi-conn, count and retry filters) and the output side's file plugin,
//! with nbdcopy, qemu-img and nbdsh moving the data as virt-v2v's pipeline
//! does.

mod callers_common;

use std::path::Path;
use std::time::Duration;

use callers_common::{args, libdir, read, AsNbdkit, World, ESX_TP, VC_TP, VC_USER};
use vddk_tests::cmd::{run, stdout};
use vddk_tests::images::assert_same;
use vddk_tests::inventory::{ESX, VCENTER};
use vddk_tests::nbd::{export_uri, nbdsh};

/// virt-v2v gives nbdkit 30 s to write its pid file.
const V2V_PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn the_probes_pass_as_virt_v2v_runs_them() {
    let n = AsNbdkit::install("v2v-probes");
    // Nbdkit.is_installed, probe_plugin, probe_filter (each filter the
    // VDDK input may add), with their exact redirections.
    assert!(n.probe("nbdkit --version >/dev/null 2>&1"));
    for plugin in ["vddk", "file", "null"] {
        assert!(
            n.probe(&format!("nbdkit {plugin} --version >/dev/null 2>&1")),
            "{plugin}"
        );
    }
    for filter in [
        "cow",
        "retry",
        "blocksize",
        "multi-conn",
        "count",
        "rate",
        "cacheextents",
        "noextents",
    ] {
        assert!(
            n.probe(&format!(
                "nbdkit null --filter={filter} --version >/dev/null 2>&1"
            )),
            "{filter}"
        );
    }
    // probe_filter_parameter for cow, with Filename.quote's quoting.
    assert!(n.probe("nbdkit null --filter=cow --help | grep -sq 'cow-block-size'"));
    assert!(n.probe("nbdkit null --filter=cow --help | grep -sq 'cow-on-read=.*/PATH'"));
    // The single-instance input needs the plugin's export= parameter.
    assert!(n.probe("nbdkit vddk --help | grep -sq 'export='"));
    // error_unless_nbdkit_vddk_working: no libdir=, and no VDDK in the
    // default one, must still exit 0.
    assert!(n.probe("nbdkit vddk --dump-plugin >/dev/null"));

    // Nbdkit.config and Nbdkit.version: key=value lines, a version that
    // the regex ^(\d+)\.(\d+)\.(\d+) takes, at least the 1.46 that
    // virt-v2v 2.10 requires.
    let config = stdout(
        &n.command("nbdkit")
            .arg("--dump-config")
            .output()
            .expect("run"),
    );
    let version = config
        .lines()
        .find_map(|l| l.strip_prefix("version="))
        .unwrap_or_else(|| panic!("no version= in:\n{config}"));
    let parts: Vec<u32> = version
        .split('.')
        .take(3)
        .map(|p| p.parse().expect("a number"))
        .collect();
    assert!(parts >= vec![1, 46, 0], "{version}");
    // virt-v2v 1.x's checks: SELinux support is declared either way.
    assert!(
        config.lines().any(|l| l.starts_with("selinux=")),
        "{config}"
    );
    let help = stdout(&n.command("nbdkit").arg("--help").output().expect("run"));
    assert!(help.contains("exit-with-parent") && help.contains("selinux-label"));

    // probe_server_parameter: what is listed must be what works. --name
    // is not implemented, so it must not be listed (virt-v2v then leaves
    // it out).
    assert!(n.probe("nbdkit --short-options | grep -sq '^-r$'"));
    assert!(n.probe("nbdkit --long-options | grep -sq '^--exit-with-parent$'"));
    assert!(!n.probe("nbdkit --long-options | grep -sq '^--name$'"));
}

/// What `Nbdkit.run_unix` puts first on every command line: exit with
/// virt-v2v, stay in the foreground, the pid file and socket it waits for,
/// 16 threads.
fn run_unix(pidfile: &Path, socket: &Path) -> Vec<String> {
    let mut a = args(&["--exit-with-parent", "--foreground", "--pidfile"]);
    a.push(pidfile.display().to_string());
    a.push("--unix".into());
    a.push(socket.display().to_string());
    a.extend(args(&["--threads", "16"]));
    a
}

/// Where virt-v2v's VDDK input logs in (`-ic`, `-ip`, `-io vddk-*`).
struct V2vLogin {
    server: &'static str,
    moref: &'static str,
    user: &'static str,
    thumbprint: &'static str,
}

const THROUGH_VCENTER: V2vLogin = V2vLogin {
    server: VCENTER,
    moref: "vm-42",
    user: VC_USER,
    thumbprint: VC_TP,
};

/// The VDDK input's command line as `input_vddk.ml` builds it (2.2 and
/// later), all but the disk (`file=` or `export=`): the debug flags, the
/// filters (outermost first), the plugin's keys, then the filters' keys.
fn vddk_input(
    pidfile: &Path,
    socket: &Path,
    verbose: bool,
    filters: &[&str],
    login: &V2vLogin,
    world: &World,
    convert: &Path,
) -> Vec<String> {
    let mut a = run_unix(pidfile, socket);
    a.extend(args(&[
        "-D",
        "nbdkit.backend.datapath=0",
        "-D",
        "vddk.stats=1",
        "-D",
        "vddk.datapath=0",
    ]));
    if verbose {
        a.push("--verbose".into());
    }
    for f in filters {
        a.extend(args(&["--filter", f]));
    }
    a.push("vddk".into());
    a.push(format!("server={}", login.server));
    a.push(format!("vm=moref={}", login.moref));
    a.push(format!("user={}", login.user));
    a.push(world.password_param.clone());
    a.push(libdir());
    a.push(format!("thumbprint={}", login.thumbprint));
    a.extend(args(&[
        "minblock=512",
        "maxdata=2M",
        "multi-conn-mode=disable",
        "cow-block-size=4096",
    ]));
    a.push(format!("cow-on-read={}", convert.display()));
    a
}

/// The disk at qemu's NBD `uri`, as the libguestfs appliance reads it
/// (through qemu's NBD client), converted to raw at `raw`.
fn qemu_reads(uri: &str, raw: &Path) -> Vec<u8> {
    run(
        "qemu-img",
        ["convert", "-O", "raw", uri, &raw.display().to_string()],
    );
    read(raw)
}

/// The longest common prefix of the disks' names, escaped for a wildcard,
/// then `*.vmdk`: how virt-v2v 2.8 and later compute `export=`.
fn v2v_wildcard(names: &[&str]) -> String {
    let first = names[0];
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(
            first
                .bytes()
                .zip(n.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let mut w = String::new();
    for c in first[..len].chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            w.push('\\');
        }
        w.push(c);
    }
    w + "*.vmdk"
}

/// The shape of a conversion's disks: written to by the guest's tools
/// during conversion (kept by cow), then copied out.
/// `multi_conn`: what the stack must advertise (cow alone keeps its
/// overlay consistent across connections, as nbdkit's does;
/// `multi-conn-mode=disable` turns it off).
fn write_through_cow(socket: &Path, name: &str, multi_conn: bool) {
    let can = if multi_conn { "True" } else { "False" };
    let out = nbdsh(
        socket,
        &format!(
            "h.set_export_name({name:?})\n\
             h.connect_unix(sock)\n\
             assert h.can_multi_conn() == {can}\n\
             h.pwrite(b'\\xaa' * 4096, 0)\n\
             h.flush()\n\
             print(h.pread(4096, 0) == b'\\xaa' * 4096)\n\
             h.shutdown()\n"
        ),
    );
    assert_eq!(out.trim(), "True", "the overlay lost a write");
}

#[test]
fn one_instance_for_the_whole_vm_then_the_file_output() {
    let n = AsNbdkit::install("v2v-single");
    let names = ["web/web.vmdk", "web/web_1.vmdk"];
    let world = World::new(&n.dir, &names, 12);
    let tmp = n.dir.join("v2v.tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    let disk_names: Vec<&str> = world.disks.iter().map(|d| d.name.as_str()).collect();
    let wildcard = v2v_wildcard(&disk_names);
    assert_eq!(wildcard, r"\[ds-1\] web/web*.vmdk");

    // As logged by virt-v2v 2.8+ (`running nbdkit:`), in this order.
    let input_sock = tmp.join("in0");
    let input_pid = n.dir.join("nbdkit1.pid");
    let login = THROUGH_VCENTER;
    let filters = ["multi-conn", "cow", "blocksize", "count", "retry"];
    let convert = tmp.join("convert");
    let mut input = vddk_input(
        &input_pid,
        &input_sock,
        true,
        &filters,
        &login,
        &world,
        &convert,
    );
    input.push(format!("export={wildcard}"));
    let server = n.start(&input, &world.env(), &input_pid, &input_sock, V2V_PATIENCE);

    // The output: one file plugin instance for every disk, each chosen by
    // export name (virt-v2v names them GUEST-sdX and makes them first).
    let out_dir = n.dir.join("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    for (i, d) in world.disks.iter().enumerate() {
        let f = out_dir.join(format!("guest-sd{}", (b'a' + i as u8) as char));
        std::fs::File::create(&f)
            .and_then(|f| f.set_len(d.bytes.len() as u64))
            .expect("make the output disk");
    }
    let output_sock = tmp.join("out0");
    let output_pid = n.dir.join("nbdkit2.pid");
    let mut output = run_unix(&output_pid, &output_sock);
    output.extend(args(&[
        "-D",
        "nbdkit.backend.datapath=0",
        "--filter",
        "count",
        "file",
    ]));
    output.push(format!("dir={}", out_dir.display()));
    let out_server = n.start(&output, &[], &output_pid, &output_sock, V2V_PATIENCE);

    // The guest is inspected and converted (writes land in the overlay),
    // then every disk is copied to its output.
    write_through_cow(&input_sock, &world.disks[0].name, false);
    for (i, d) in world.disks.iter().enumerate() {
        let target = format!("guest-sd{}", (b'a' + i as u8) as char);
        run(
            "nbdcopy",
            [
                export_uri(&input_sock, &d.name),
                export_uri(&output_sock, &target),
            ],
        );
        let mut want = d.bytes.clone();
        if i == 0 {
            want[..4096].fill(0xaa);
        }
        assert_same(&d.name, &read(&out_dir.join(&target)), &want);
    }

    let log = server.stop_clean("TERM");
    out_server.stop_clean("TERM");
    // The source disks were opened read-only under cow: untouched.
    for d in &world.disks {
        assert_same(&d.name, &vddk_tests::images::qemu_raw(&d.file), &d.bytes);
    }
    // -D vddk.stats=1 prints VDDK's call table at exit; the password
    // never appears.
    assert!(log.contains("VDDK function stats"), "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("nbdkit: debug:   Open ")),
        "{log}"
    );
    assert!(!log.contains(callers_common::PASSWORD), "{log}");
    assert!(log.contains(&format!("@{ESX}:902")), "{log}");
}

#[test]
fn one_instance_per_disk_as_virt_v2v_2_0_to_2_7() {
    let n = AsNbdkit::install("v2v-per-disk");
    let world = World::new(&n.dir, &["db/db.vmdk"], 10);
    let disk = &world.disks[0];
    let convert = n.dir.join("convert");

    // 2.2-2.7 (per disk, against the host): multi-conn, cow, blocksize,
    // retry.
    let sock = n.dir.join("in0");
    let pid = n.dir.join("nbdkit1.pid");
    let login = V2vLogin {
        server: ESX,
        moref: "42",
        user: "root",
        thumbprint: ESX_TP,
    };
    let filters = ["multi-conn", "cow", "blocksize", "retry"];
    let mut a = vddk_input(&pid, &sock, false, &filters, &login, &world, &convert);
    a.push(format!("file={}", disk.name));
    let server = n.start(&a, &world.env(), &pid, &sock, V2V_PATIENCE);
    let got = qemu_reads(
        &format!("nbd:unix:{}", sock.display()),
        &n.dir.join("db.raw"),
    );
    assert_same("2.x per disk", &got, &disk.bytes);
    server.stop_clean("TERM");

    // 2.0: cow over cacheextents over retry, the export named "/", the
    // password last and cow-block-size=1M.
    let sock = n.dir.join("in1");
    let pid = n.dir.join("nbdkit2.pid");
    let mut a = run_unix(&pid, &sock);
    a.extend(args(&[
        "--exportname",
        "/",
        "-D",
        "nbdkit.backend.datapath=0",
        "--filter",
        "cow",
        "--filter",
        "cacheextents",
        "--filter",
        "retry",
        "vddk",
    ]));
    a.push(format!("server={ESX}"));
    a.push("user=root".into());
    a.push("vm=moref=42".into());
    a.push(format!("file={}", disk.name));
    a.push(libdir());
    a.push(format!("thumbprint={ESX_TP}"));
    a.push("cow-block-size=1M".into());
    a.push(format!("cow-on-read={}", convert.display()));
    a.push(world.password_param.clone());
    let server = n.start(&a, &world.env(), &pid, &sock, V2V_PATIENCE);
    let uri = format!("nbd:unix:{}:exportname=/", sock.display());
    let got = qemu_reads(&uri, &n.dir.join("db2.raw"));
    assert_same("2.0 per disk", &got, &disk.bytes);
    server.stop_clean("TERM");
}

#[test]
fn local_files_as_virt_v2v_serves_them() {
    let n = AsNbdkit::install("v2v-file");
    let src = n.dir.join("guest.img");
    let bytes = vddk_tests::images::noise(6 << 20, 7);
    std::fs::write(&src, &bytes).expect("write the guest disk");

    // -i disk: the guest's raw disk under cow, never written.
    let sock = n.dir.join("in0");
    let pid = n.dir.join("in.pid");
    let mut a = run_unix(&pid, &sock);
    a.extend(args(&["--filter", "cow", "file"]));
    a.push(format!("file={}", src.display()));
    a.extend(args(&["fadvise=sequential", "cache=none"]));
    let input = n.start(&a, &[], &pid, &sock, V2V_PATIENCE);
    write_through_cow(&sock, "", true);

    // The output of older releases: one file= per disk, cache=none.
    let dst = n.dir.join("guest-sda");
    std::fs::File::create(&dst)
        .and_then(|f| f.set_len(bytes.len() as u64))
        .expect("make the output disk");
    let out_sock = n.dir.join("out0");
    let out_pid = n.dir.join("out.pid");
    let mut a = run_unix(&out_pid, &out_sock);
    a.extend(args(&["file"]));
    a.push(format!("file={}", dst.display()));
    a.extend(args(&["cache=none", "fadvise=sequential"]));
    let output = n.start(&a, &[], &out_pid, &out_sock, V2V_PATIENCE);
    run(
        "nbdcopy",
        [export_uri(&sock, ""), export_uri(&out_sock, "")],
    );
    let mut want = bytes.clone();
    want[..4096].fill(0xaa);
    assert_same("copied", &read(&dst), &want);
    assert_same("source", &read(&src), &bytes);
    for s in [input, output] {
        s.stop_clean("TERM");
    }
}

/// Forklift's `RunRemoteV2vInspection` (pkg/virt-v2v/conversion) runs
/// `virt-v2v-inspector -io vddk-file=DISK ...`, one `-io vddk-file=` per
/// disk, which starts virt-v2v's VDDK input as above; the inspection
/// appliance then reads every disk by export name through qemu.
#[test]
fn forklift_inspection_reads_every_disk_through_qemu() {
    let n = AsNbdkit::install("forklift-inspect");
    let world = World::new(&n.dir, &["db/db.vmdk", "logs/db_1.vmdk"], 10);
    let names: Vec<&str> = world.disks.iter().map(|d| d.name.as_str()).collect();
    // Disks in two folders: the prefix ends before them, and `*` crosses
    // `/` (nbdkit 1.46) to reach both.
    let wildcard = v2v_wildcard(&names);
    assert_eq!(wildcard, r"\[ds-1\] *.vmdk");
    let sock = n.dir.join("in0");
    let pid = n.dir.join("nbdkit1.pid");
    let login = THROUGH_VCENTER;
    let filters = ["multi-conn", "cow", "blocksize", "count", "retry"];
    let convert = n.dir.join("convert");
    let mut a = vddk_input(&pid, &sock, true, &filters, &login, &world, &convert);
    a.push(format!("export={wildcard}"));
    let server = n.start(&a, &world.env(), &pid, &sock, V2V_PATIENCE);
    for (i, d) in world.disks.iter().enumerate() {
        let got = qemu_reads(
            &export_uri(&sock, &d.name),
            &n.dir.join(format!("d{i}.raw")),
        );
        assert_same(&d.name, &got, &d.bytes);
    }
    server.stop_clean("TERM");
}
