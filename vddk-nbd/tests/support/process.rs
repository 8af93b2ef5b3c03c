//! The `vddk-nbd` binary run on the fake VDDK as a separate process, with
//! its stderr kept in a file, and disks made with qemu-img.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_vddk-nbd");

/// PATH with /usr/bin first, so nbdsh finds the system Python's nbd module.
pub fn path_env() -> String {
    format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default())
}

/// Runs a command and returns stdout, panicking with everything on failure.
pub fn check(cmd: &mut Command) -> String {
    let o = cmd
        .env("PATH", path_env())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A VMDK made by qemu-img: `subformat` is `monolithicSparse` or
/// `monolithicFlat`.
pub fn make_vmdk(dir: &Path, name: &str, size: u64, subformat: &str) -> PathBuf {
    let disk = dir.join(name);
    check(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk", "-o"])
            .arg(format!("subformat={subformat}"))
            .arg(&disk)
            .arg(size.to_string()),
    );
    disk
}

/// The disk converted to a raw file by qemu-img (sparse where it is zero).
pub fn to_raw(disk: &Path) -> PathBuf {
    let raw = disk.with_extension("check.raw");
    check(
        Command::new("qemu-img")
            .args(["convert", "-f", "vmdk", "-O", "raw"])
            .arg(disk)
            .arg(&raw),
    );
    raw
}

/// The disk's contents as raw bytes, read by qemu-img.
pub fn raw_contents(disk: &Path) -> Vec<u8> {
    let raw = to_raw(disk);
    let data = std::fs::read(&raw).expect("read the converted disk");
    let _ = std::fs::remove_file(&raw);
    data
}

/// A running `vddk-nbd -f -v -U socket` serving `disk`.
pub struct ServerProcess {
    pub child: Child,
    pub socket: PathBuf,
    pub stderr: PathBuf,
}

impl ServerProcess {
    /// Starts the server with extra environment (fault knobs) and waits
    /// for its socket.
    pub fn start(dir: &Path, disk: &Path, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start_with(dir, disk, env, &[])
    }

    /// [`ServerProcess::start`] with extra disk parameters (`io=direct`).
    pub fn start_with(
        dir: &Path,
        disk: &Path,
        env: &[(&str, &str)],
        params: &[&str],
    ) -> ServerProcess {
        let socket = dir.join("nbd.sock");
        let stderr = dir.join("server.stderr");
        let mut cmd = ServerProcess::command(dir, disk, env);
        cmd.args(params);
        let child = cmd
            .stderr(Stdio::from(
                File::create(&stderr).expect("create the stderr file"),
            ))
            .spawn()
            .expect("start vddk-nbd");
        let mut s = ServerProcess {
            child,
            socket,
            stderr,
        };
        let t = Instant::now();
        while !s.socket.exists() {
            if let Some(status) = s.child.try_wait().expect("wait") {
                panic!("vddk-nbd exited early with {status}: {}", s.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no socket: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    /// The command line, for tests that run it to completion themselves.
    pub fn command(dir: &Path, disk: &Path, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("PATH", path_env())
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("FAKE_VDDK_INVENTORY")
            .env_remove("FAKE_VDDK_FAIL")
            .env_remove("FAKE_VDDK_FAIL_PROB")
            .envs(env.iter().copied())
            .args(["-f", "-v", "-U"])
            .arg(dir.join("nbd.sock"))
            .arg("vddk")
            .arg(format!("libdir={}", vddk_tests::fake_libdir().display()))
            .arg(disk)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// The NBD URI of the socket.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    /// Everything the server has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: &str) {
        check(
            Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(self.child.id().to_string()),
        );
    }

    /// Waits for the server to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            if t.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("vddk-nbd did not exit within {timeout:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then checks it exited successfully.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(20));
        let log = self.log();
        assert!(status.success(), "vddk-nbd exited with {status}: {log}");
        log
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How many lines of `log` contain every one of `parts`.
pub fn lines_with(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}
