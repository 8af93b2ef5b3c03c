//! A server that holds a password writes no core dump when it crashes:
//! it marks itself non-dumpable. The same crash of a server without a
//! secret does dump core, which shows that this machine writes core
//! files and that the difference is the server's doing.

#[path = "support/esx.rs"]
mod esx;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vddk_tests::{fake_libdir, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vddk-nbd");
const THUMBPRINT: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";

/// Starts the server in `dir` with core files allowed (and kept small),
/// waits until it listens, aborts it, and returns how it ended and
/// whether a core file appeared.
fn abort_server(dir: &Path, args: &[String], inv: &Path) -> (ExitStatus, bool) {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let mut child = Command::new("sh")
        .current_dir(dir)
        .env_remove("LD_LIBRARY_PATH")
        .env("FAKE_VDDK_INVENTORY", inv)
        .arg("-c")
        .arg(format!(
            "ulimit -c unlimited && echo 0 > /proc/self/coredump_filter && \
             exec '{BIN}' -f -U '{}/sock' libdir='{}' {}",
            dir.display(),
            fake_libdir().display(),
            quoted.join(" ")
        ))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !dir.join("sock").exists() {
        let gone = child.try_wait().unwrap().is_some();
        if gone || t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start listening");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-ABRT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
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
    let web = dir.join("ds1/web");
    std::fs::create_dir_all(&web).unwrap();
    let disk = web.join("web.vmdk");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "vmdk"])
        .arg(&disk)
        .arg("1M")
        .status()
        .unwrap();
    assert!(made.success());
    let inv = esx::one_vm_inventory(&dir, THUMBPRINT, "pw");

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
            "[ds1] web/web.vmdk".into(),
        ];
        let (status, core) = abort_server(&run, &args, &inv);
        assert_eq!(status.signal(), Some(6), "{name}: {status:?}");
        assert!(!status.core_dumped(), "{name}: the server dumped core");
        assert!(!core, "{name}: a core file is in {}", run.display());
    }
    std::fs::remove_dir_all(&dir).ok();
}
