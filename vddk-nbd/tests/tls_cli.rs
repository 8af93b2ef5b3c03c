//! The `vddk-nbd` binary on the fake VDDK with nbdkit's TLS flags: a disk
//! copied out over `nbds://` by nbdcopy, `-s` upgraded by nbdsh, start-up
//! errors that name the certificate file at fault, and the warning about
//! listening on every interface without `--tls=require`.

mod nbd_common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use nbd_common::BIN;
use vddk_tests::certs;
use vddk_tests::cmd::{command, output, run_cmd, stdout};
use vddk_tests::images::{make_vmdk, qemu_raw};

fn certs() -> &'static certs::Certs {
    static CERTS: OnceLock<certs::Certs> = OnceLock::new();
    CERTS.get_or_init(|| certs::make(&vddk_tests::scratch_dir("tls-cli-certs")))
}

/// A 16 MiB sparse VMDK with data at 1 MiB and 9 MiB.
fn disk(dir: &Path) -> PathBuf {
    make_vmdk(
        &dir.join("disk.vmdk"),
        "monolithicSparse",
        16 << 20,
        &[(1 << 20, 64 << 10, 0x5a), (9 << 20, 1 << 20, 0xc3)],
    )
}

/// Runs `vddk-nbd FLAGS vddk libdir=... DISK` to completion.
fn vddk_nbd(disk: &Path, flags: &[&str]) -> Output {
    output(
        nbd_common::vddk_nbd()
            .args(flags)
            .arg("vddk")
            .arg(vddk_tests::libdir_param())
            .arg(disk)
            .stdin(Stdio::null()),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn disk_copied_out_over_nbds() {
    let dir = vddk_tests::scratch_dir("tls-cli-copy");
    let disk = disk(&dir);
    let out = dir.join("out.raw");
    let client = certs().anonymous.display().to_string();
    let script = format!(
        r#"set -e
test "$tls" = 2
case "$uri" in nbds://127.0.0.1:*) ;; *) echo "bad uri $uri"; exit 3;; esac
nbdcopy "nbds://localhost:$port/?tls-certificates={client}" {out}
if nbdinfo --size "nbd://localhost:$port" 2>/dev/null; then echo "plain client served"; exit 4; fi
"#,
        out = out.display()
    );
    let server = certs().server.display().to_string();
    let o = vddk_nbd(
        &disk,
        &[
            "--tls=require",
            "--tls-certificates",
            &server,
            "-p",
            "0",
            "-i",
            "127.0.0.1",
            "--run",
            &script,
        ],
    );
    assert!(o.status.success(), "{o:?}\nstderr: {}", text(&o.stderr));
    let copied = std::fs::read(&out).expect("read the copy");
    assert!(
        copied == qemu_raw(&disk),
        "the copy over TLS differs from the disk"
    );
}

#[test]
fn certificate_problems_stop_the_server_naming_the_file() {
    let dir = vddk_tests::scratch_dir("tls-cli-errors");
    let disk = disk(&dir);
    let empty = dir.join("no-certs");
    std::fs::create_dir_all(&empty).expect("make an empty directory");
    let broken = dir.join("broken-key");
    std::fs::create_dir_all(&broken).expect("make a directory");
    for f in ["server-cert.pem", "ca-cert.pem"] {
        std::fs::copy(certs().server.join(f), broken.join(f)).expect("copy a certificate");
    }
    std::fs::write(broken.join("server-key.pem"), "not a key\n").expect("write a bad key");
    let no_ca = dir.join("no-ca");
    std::fs::create_dir_all(&no_ca).expect("make a directory");
    for f in ["server-cert.pem", "server-key.pem"] {
        std::fs::copy(certs().server.join(f), no_ca.join(f)).expect("copy");
    }

    let cases: [(&Path, &[&str], &str); 3] = [
        (&empty, &["--tls=on"], "server-cert.pem"),
        (&broken, &["--tls=require"], "server-key.pem"),
        (&no_ca, &["--tls-verify-peer"], "ca-cert.pem"),
    ];
    for (certs_dir, flags, file) in cases {
        let d = certs_dir.display().to_string();
        let mut all = flags.to_vec();
        // --run ends a server that wrongly starts, so the test fails
        // rather than waits.
        all.extend([
            "--tls-certificates",
            &d,
            "-p",
            "0",
            "-i",
            "127.0.0.1",
            "--run",
            "true",
        ]);
        let o = vddk_nbd(&disk, &all);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{flags:?}: {err}");
        assert!(
            err.contains(&format!("{d}/{file}")),
            "{flags:?}: the error names {file}: {err}"
        );
        assert!(
            err.contains("README"),
            "the error says how to make one: {err}"
        );
    }
}

/// The server's warnings when it starts with `flags`, listening on a
/// port of the system's choosing, and stopping at once.
fn warnings(disk: &Path, flags: &[&str]) -> String {
    let mut all = vec!["-p", "0", "--run", "true"];
    all.extend_from_slice(flags);
    let o = vddk_nbd(disk, &all);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{flags:?}: {err}");
    err
}

#[test]
fn warns_once_when_listening_everywhere_without_required_tls() {
    let dir = vddk_tests::scratch_dir("tls-cli-warning");
    let disk = disk(&dir);
    let server = certs().server.display().to_string();
    let warning = "listening on all network interfaces";
    for flags in [
        &[][..],
        &["-i", "0.0.0.0"],
        &["--tls=on", "--tls-certificates", &server],
    ] {
        let err = warnings(&disk, flags);
        assert_eq!(
            err.matches(warning).count(),
            1,
            "{flags:?}: one warning expected in {err}"
        );
        assert!(
            err.contains("-i 127.0.0.1") && err.contains("--tls=require"),
            "{flags:?}: the warning says how to restrict: {err}"
        );
    }
    for flags in [
        &["-i", "127.0.0.1"][..],
        &["--tls=require", "--tls-certificates", &server],
    ] {
        let err = warnings(&disk, flags);
        assert!(
            !err.contains(warning),
            "{flags:?}: no warning expected: {err}"
        );
    }
}

#[test]
fn single_connection_on_stdio_upgrades_to_tls() {
    let dir = vddk_tests::scratch_dir("tls-cli-stdio");
    let disk = disk(&dir);
    let script = format!(
        r#"
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_certificates({client:?})
h.connect_command([{bin:?}, "-s", "--tls=require", "--tls-certificates", {server:?},
                   "vddk", "libdir={libdir}", {disk:?}])
assert h.get_tls_negotiated()
assert h.pread(65536, 1 << 20) == b"\x5a" * 65536
h.shutdown()
print("ok")
"#,
        client = certs().anonymous.display().to_string(),
        bin = BIN,
        server = certs().server.display().to_string(),
        libdir = vddk_tests::fake_libdir().display(),
        disk = disk.display().to_string(),
    );
    let out = stdout(&run_cmd(
        command("nbdsh")
            .env_remove("LD_LIBRARY_PATH")
            .arg("-c")
            .arg(script),
    ));
    assert_eq!(out.trim(), "ok");
}
