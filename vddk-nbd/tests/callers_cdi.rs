//! KubeVirt CDI's use of nbdkit (`pkg/image/nbdkit.go`,
//! `pkg/importer/vddk-datasource_amd64.go`), replayed against vddk-nbd
//! installed as `nbdkit`: the `--dump-plugin` validation, the exact argv
//! (server options after the plugin's keys), the 15 s pid file wait, the
//! log lines CDI scrapes for the VDDK version and the ESXi host, and the
//! copy loop (block status with REQ_ONE over 2 GiB windows, holes skipped,
//! data read in 23 MiB pieces from a host or 2 MiB from a vCenter), for a
//! cold import and a warm one from a snapshot.

mod callers_common;

use std::time::Duration;

use callers_common::{args, libdir, read, AsNbdkit, World, ESX_TP, PASSWORD, VC_TP, VC_USER};
use vddk_tests::images::{assert_same, qemu_raw, qemu_write, vmdk_child};
use vddk_tests::inventory::{ESX, VCENTER};
use vddk_tests::nbd::unix_uri;

/// CDI's startupTimeoutSeconds.
const CDI_PATIENCE: Duration = Duration::from_secs(15);
/// MaxPreadLengthESX and MaxPreadLengthVC.
const PREAD_ESX: u64 = 23 << 20;
const PREAD_VC: u64 = 2 << 20;

#[test]
fn the_plugin_validates_as_cdi_checks_it() {
    let n = AsNbdkit::install("cdi-validate");
    // validatePlugin: the option before the plugin name; only the exit
    // status counts.
    let out = n
        .command("nbdkit")
        .args(["--dump-plugin", "vddk"])
        .arg(libdir())
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vddk_dll="), "{text}");
}

/// What CDI's copy loop saw: block status calls, bytes skipped as zero,
/// and the largest and number of reads.
struct Copied {
    status_calls: u64,
    zero_bytes: u64,
    largest_read: u64,
    reads: u64,
}

/// CDI's TransferFile over libnbd (here nbdsh): connect with
/// base:allocation, walk the disk in 2 GiB windows asking for one extent
/// at a time (REQ_ONE, which must answer exactly one extent starting where
/// asked), skip what reads as zero, and pread the rest in pieces of
/// `max_read` into `out`.
fn cdi_copy(uri: &str, out: &std::path::Path, max_read: u64) -> Copied {
    let script = format!(
        r#"
import os
h.add_meta_context("base:allocation")
h.connect_uri({uri:?})
size = h.get_size()
fd = os.open({out:?}, os.O_WRONLY | os.O_CREAT)
os.ftruncate(fd, size)
calls = 0
zero = 0
reads = []
def status(off, length):
    global calls
    exts = []
    pos = off
    while pos < off + length:
        got = []
        def cb(meta, o, entries, err):
            if meta == "base:allocation":
                got.extend(entries)
            return 0
        h.block_status(off + length - pos, pos, cb, nbd.CMD_FLAG_REQ_ONE)
        calls += 1
        assert len(got) == 2, ("REQ_ONE answered", got)
        n = min(got[0], off + length - pos)
        assert n > 0, ("no progress at", pos)
        if exts and exts[-1][2] == got[1]:
            exts[-1] = (exts[-1][0], exts[-1][1] + n, got[1])
        else:
            exts.append((pos, n, got[1]))
        pos += n
    return exts
win = 0
while win < size:
    length = min(2 << 30, size - win)
    exts = [(win, length, 0)] if length < (1 << 20) else status(win, length)
    for (o, n, flags) in exts:
        if flags & nbd.STATE_ZERO:
            zero += n
            continue
        p = o
        while p < o + n:
            k = min({max_read}, o + n - p)
            os.pwrite(fd, h.pread(k, p), p)
            reads.append(k)
            p += k
    win += length
os.close(fd)
h.shutdown()
print(calls, zero, max(reads), len(reads))
"#,
        out = out.display().to_string(),
    );
    let printed = vddk_tests::cmd::run("nbdsh", ["-c", &script]);
    let f: Vec<u64> = printed
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect();
    Copied {
        status_calls: f[0],
        zero_bytes: f[1],
        largest_read: f[2],
        reads: f[3],
    }
}

/// Where CDI logs in: the server, its thumbprint, the user and the VM.
struct Login {
    server: &'static str,
    thumbprint: &'static str,
    user: &'static str,
    moref: &'static str,
    password: Password,
}

/// How the password reaches nbdkit: CDI's `writePasswordFile` gives a file
/// (`+FILE`); other revisions pass an open descriptor (`-3`).
#[derive(Clone, Copy)]
enum Password {
    File,
    Fd3,
}

impl Password {
    fn param(self, world: &World) -> String {
        match self {
            Password::File => world.password_param.clone(),
            Password::Fd3 => "password=-3".into(),
        }
    }
}

const THROUGH_VCENTER: Login = Login {
    server: VCENTER,
    thumbprint: VC_TP,
    user: VC_USER,
    moref: "vm-42",
    password: Password::Fd3,
};

const ON_THE_HOST: Login = Login {
    server: ESX,
    thumbprint: ESX_TP,
    user: "root",
    moref: "42",
    password: Password::File,
};

/// CDI's argv (`NewNbdkitVddk` then `StartNbdkit`), in its order; `warm`
/// names the snapshot of a warm import.
fn cdi_argv(
    dir: &std::path::Path,
    world: &World,
    login: &Login,
    file: &str,
    warm: Option<&str>,
) -> Vec<String> {
    let mut a = args(&["--foreground", "--readonly", "--exit-with-parent", "-U"]);
    a.push(dir.join("nbd.sock").display().to_string());
    a.push("--pidfile".into());
    a.push(dir.join("nbd.pid").display().to_string());
    a.extend(args(&["--filter=retry", "--filter=cacheextents", "vddk"]));
    a.push(libdir());
    a.push(format!("server={}", login.server));
    a.push(format!("user={}", login.user));
    a.push(login.password.param(world));
    a.push(format!("thumbprint={}", login.thumbprint));
    a.push(format!("vm=moref={}", login.moref));
    if let Some(snapshot) = warm {
        a.push(format!("snapshot={snapshot}"));
        a.push("transports=file:nbdssl:nbd".into());
    }
    a.extend(args(&[
        "--verbose",
        "-D",
        "nbdkit.backend.datapath=0",
        "-D",
        "vddk.datapath=0",
        "-D",
        "vddk.stats=1",
    ]));
    a.push(format!("file={file}"));
    a
}

/// One import as CDI runs it: nbdkit started with [`cdi_argv`] and
/// waited for, the disk copied by [`cdi_copy`] into `dir/disk.img`, then
/// SIGINT. What was imported, the copy's figures and the whole log.
fn import(
    n: &AsNbdkit,
    world: &World,
    login: &Login,
    file: &str,
    warm: Option<&str>,
    max_read: u64,
) -> (Vec<u8>, Copied, String) {
    let a = cdi_argv(&n.dir, world, login, file, warm);
    let n = &match login.password {
        Password::File => n.clone(),
        Password::Fd3 => n.clone().with_fd3(&world.dir.join("password")),
    };
    let sock = n.dir.join("nbd.sock");
    let pid = n.dir.join("nbd.pid");
    let server = n.start(&a, &world.env(), &pid, &sock, CDI_PATIENCE);
    let out = n.dir.join("disk.img");
    let copied = cdi_copy(&unix_uri(&sock), &out, max_read);
    // KillNbdkit: SIGINT.
    let log = server.stop_clean("INT");
    (read(&out), copied, log)
}

/// watchNbdLog: the VDDK version and build, and the ESXi host, as CDI's
/// regular expressions take them from the combined log.
fn scrape(log: &str) -> (String, String, Option<String>) {
    let banner = log
        .lines()
        .find(|l| l.starts_with("nbdkit: debug: VMware VixDiskLib"))
        .unwrap_or_else(|| panic!("no VDDK banner:\n{log}"));
    // \((?P<version>.*)\).*build-(?P<build>.*)
    let open = banner.find('(').expect("(");
    let close = banner.rfind(')').expect(")");
    let version = banner[open + 1..close].to_string();
    let build = banner[banner.rfind("build-").expect("build-") + 6..].to_string();
    // Opened '.*@(?P<host>.*):.*' \(0x
    let host = log
        .lines()
        .filter_map(|l| l.strip_prefix("nbdkit: vddk[1]: debug: DISKLIB-LINK  : Opened '"))
        .find_map(|rest| {
            let quoted = &rest[..rest.rfind("' (0x")?];
            let (_, after_at) = quoted.rsplit_once('@')?;
            Some(after_at.rsplit_once(':')?.0.to_string())
        });
    (version, build, host)
}

#[test]
fn a_cold_import_through_the_vcenter() {
    let n = AsNbdkit::install("cdi-cold-vc");
    let world = World::new(&n.dir, &["web/web.vmdk"], 12);
    let disk = &world.disks[0];
    let (got, c, log) = import(&n, &world, &THROUGH_VCENTER, &disk.name, None, PREAD_VC);
    assert_same("imported", &got, &disk.bytes);
    assert!(c.largest_read <= PREAD_VC, "a read of {}", c.largest_read);
    // 12 MiB with 3.5 MiB of data: the holes were skipped, not read.
    assert!(
        c.zero_bytes >= 8 << 20,
        "only {} bytes skipped",
        c.zero_bytes
    );
    assert!(c.status_calls >= 5, "{} block status calls", c.status_calls);
    assert!(c.reads >= 3, "{} reads", c.reads);
    let (version, build, host) = scrape(&log);
    assert!(version.starts_with(char::is_numeric), "{version}");
    assert!(
        build.chars().all(|c| c.is_ascii_digit()) && !build.is_empty(),
        "{build}"
    );
    assert_eq!(host.as_deref(), Some(ESX), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

#[test]
fn a_cold_import_from_the_host_reads_23_mib_at_a_time() {
    let n = AsNbdkit::install("cdi-cold-esx");
    let world = World::with_layout(
        &n.dir,
        &["big/big.vmdk"],
        40 << 20,
        &[(0, 25 << 20), (32 << 20, 1 << 20)],
        &[],
    );
    let disk = &world.disks[0];
    let (got, c, log) = import(&n, &world, &ON_THE_HOST, &disk.name, None, PREAD_ESX);
    assert_same("imported", &got, &disk.bytes);
    assert_eq!(c.largest_read, PREAD_ESX);
    assert!(
        c.zero_bytes >= 10 << 20,
        "only {} bytes skipped",
        c.zero_bytes
    );
    assert_eq!(scrape(&log).2.as_deref(), Some(ESX), "{log}");
}

#[test]
fn a_warm_import_reads_the_snapshot_disk() {
    let n = AsNbdkit::install("cdi-warm");
    let snapshot = "snapshot-7 [ds-1] web/web.vmdk -> [ds-1] web/web-000001.vmdk";
    let world = World::with_layout(
        &n.dir,
        &["web/web.vmdk"],
        12 << 20,
        &[(1 << 20, 2 << 20)],
        &[("snapshot", snapshot)],
    );
    // The snapshot's own delta disk (what CDI names in file=) holds the
    // changes since the base: read through it, the disk is the base with
    // those changes.
    let child = world.store().join("web/web-000001.vmdk");
    vmdk_child("web.vmdk", &child);
    qemu_write(
        &child,
        &[(2 << 20, 1 << 20, 0x77), (6 << 20, 1 << 20, 0x78)],
    );
    let want = qemu_raw(&child);
    assert_ne!(want, world.disks[0].bytes);

    let (got, _, _) = import(
        &n,
        &world,
        &THROUGH_VCENTER,
        "[ds-1] web/web-000001.vmdk",
        Some("snapshot-7"),
        PREAD_VC,
    );
    assert_same("snapshot disk", &got, &want);
}
