//! A server that holds a password writes no core dump when it crashes:
//! it marks itself non-dumpable. The same crash of a server without a
//! secret does dump core, which shows that this machine writes core
//! files and that the difference is the server's doing.

mod nbd_common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use nbd_common::through_sh;
use vddk_tests::images::make_vmdk;
use vddk_tests::inventory::{one_vm, ONE_VM_DISK};
use vddk_tests::process::{signal, wait_for_path};
use vddk_tests::{libdir_param, scratch_dir};

const THUMBPRINT: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";

/// Starts the server in `dir` with core files allowed (and kept small),
/// waits until it listens, aborts it, and returns how it ended and
/// whether a core file appeared.
fn abort_server(dir: &Path, args: &[String], inv: &Path) -> (ExitStatus, bool) {
    let mut all = vec![
        "-f".to_string(),
        "-U".into(),
        format!("{}/sock", dir.display()),
        libdir_param(),
    ];
    all.extend_from_slice(args);
    let prefix = "ulimit -c unlimited && echo 0 > /proc/self/coredump_filter && exec";
    let mut child = through_sh(prefix, &all)
        .current_dir(dir)
        .env("FAKE_VDDK_INVENTORY", inv)
        .spawn()
        .unwrap();
    wait_for_path(&dir.join("sock"), &mut child);
    signal(child.id(), "ABRT");
    let status = child.wait().unwrap();
    let core = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("core"));
    (status, core)
}

#[test]
fn a_server_holding_a_password_dumps_no_core() {
    let dir = scratch_dir("secrets-core");
    let inv = one_vm(
        &dir,
        "esx1",
        &[("thumbprint", THUMBPRINT), ("user", "root:pw")],
    );
    let disk = make_vmdk(
        &dir.join("ds1/web/web.vmdk"),
        "monolithicSparse",
        1 << 20,
        &[],
    );

    // Without a secret: a core file, as for any program on this machine.
    let run = dir.join("plain");
    std::fs::create_dir_all(&run).unwrap();
    let (status, core) = abort_server(&run, &[disk.display().to_string()], &inv);
    assert_eq!(status.signal(), Some(6), "{status:?}");
    if !status.core_dumped() {
        eprintln!(
            "note: this machine writes no core files (core_pattern {:?}), \
             so non-dumpability cannot be observed here",
            std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default()
        );
        return;
    }
    assert!(core, "core dumped but no file in {}", run.display());

    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, "pw\n").unwrap();
    for (name, password) in [
        ("file", format!("password=+{}", pwfile.display())),
        ("literal", "password=pw".to_string()),
    ] {
        let run = dir.join(name);
        std::fs::create_dir_all(&run).unwrap();
        let args = [
            "server=esx1".to_string(),
            "user=root".into(),
            password,
            format!("thumbprint={THUMBPRINT}"),
            "vm=moref=42".into(),
            ONE_VM_DISK.into(),
        ];
        let (status, core) = abort_server(&run, &args, &inv);
        assert_eq!(status.signal(), Some(6), "{name}: {status:?}");
        assert!(!status.core_dumped(), "{name}: the server dumped core");
        assert!(!core, "{name}: a core file is in {}", run.display());
    }
    std::fs::remove_dir_all(&dir).ok();
}
