//! What the tests of the manuals' examples share: vddk-nbd installed as
//! `nbdkit` (see `callers_common`), so that each example's command line
//! runs through `sh -c` as printed, with the fake's libdir where the
//! manual names VDDK's and scratch paths for its paths; disks whose bytes
//! qemu-img vouches for; and servers left in the background or the
//! foreground, stopped when the test ends even if it fails.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crate::callers_common::AsNbdkit;
use vddk_tests::cmd::{stderr, stdout};
use vddk_tests::images::{make_vmdk, qemu_raw};
use vddk_tests::process::{signal, wait_timeout, wait_until};

/// A scratch directory with `nbdkit` (vddk-nbd) first on PATH.
pub struct Manual {
    pub n: AsNbdkit,
    pub dir: PathBuf,
}

impl Manual {
    pub fn new(name: &str) -> Manual {
        let n = AsNbdkit::install(name);
        let dir = n.dir.clone();
        Manual { n, dir }
    }

    /// `libdir=FAKE`, where the manuals write
    /// `libdir=/opt/vmware-vix-disklib-distrib`.
    pub fn libdir(&self) -> String {
        vddk_tests::libdir_param()
    }

    /// A monolithicSparse VMDK at `dir/rel` of `size` bytes with `writes`
    /// (offset, length, byte) made by qemu: its path and qemu's view of it.
    pub fn disk(&self, rel: &str, size: u64, writes: &[(u64, u64, u8)]) -> (PathBuf, Vec<u8>) {
        let path = make_vmdk(&self.dir.join(rel), "monolithicSparse", size, writes);
        let bytes = qemu_raw(&path);
        (path, bytes)
    }

    /// `sh -c line` in the scratch directory with `env` added, run to its
    /// end with stdin closed.
    pub fn sh(&self, env: &[(&str, &str)], line: &str) -> Output {
        self.n
            .command("sh")
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .args(["-c", line])
            .output()
            .expect("run sh")
    }

    /// [`Manual::sh`], which must exit 0: its stdout and stderr.
    pub fn ok(&self, env: &[(&str, &str)], line: &str) -> (String, String) {
        let o = self.sh(env, line);
        assert!(
            o.status.success(),
            "{line}\nexited with {}\nstdout:\n{}\nstderr:\n{}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        (stdout(&o), stderr(&o))
    }

    /// [`Manual::sh`], which must exit with `code`: its stdout and stderr.
    pub fn fails(&self, env: &[(&str, &str)], line: &str, code: i32) -> (String, String) {
        let o = self.sh(env, line);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{line}\nstdout:\n{}\nstderr:\n{}",
            stdout(&o),
            stderr(&o)
        );
        (stdout(&o), stderr(&o))
    }

    /// Starts `line` (a server run with `-f`) with `exec`, its stderr in
    /// `dir/NAME.log`, and waits until something accepts on 127.0.0.1:`port`.
    pub fn foreground(&self, env: &[(&str, &str)], line: &str, port: u16) -> Foreground {
        let log = self.dir.join(format!("foreground-{port}.log"));
        let child = self
            .n
            .command("sh")
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .args(["-c", &format!("exec {line}")])
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the server log"))
            .spawn()
            .expect("start the server");
        let mut f = Foreground { child, log };
        wait_until("the server's port", Duration::from_secs(20), || {
            if let Ok(Some(status)) = f.child.try_wait() {
                panic!("the server exited with {status}:\n{}", f.log());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        f
    }
}

/// A server running in the foreground of a child process.
pub struct Foreground {
    child: Child,
    log: PathBuf,
}

impl Foreground {
    /// What it has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; it must exit 0 within 30 s. Returns the whole log.
    pub fn stop(mut self) -> String {
        signal(self.child.id(), "TERM");
        let status = wait_timeout(&mut self.child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the server ignored SIGTERM:\n{}", self.log()));
        let log = self.log();
        assert!(status.success(), "the server exited with {status}:\n{log}");
        log
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that went to the background, known by its pid file; killed
/// when dropped.
pub struct Daemon {
    pid: u32,
}

impl Daemon {
    /// The server whose pid `pidfile` holds (it must be there: the
    /// foreground process returns once the server is ready).
    pub fn from_pidfile(pidfile: &Path) -> Daemon {
        let pid = std::fs::read_to_string(pidfile)
            .unwrap_or_else(|e| panic!("pid file {}: {e}", pidfile.display()))
            .trim()
            .parse()
            .expect("a pid");
        Daemon { pid }
    }

    /// SIGTERM, then waits for the process to go.
    pub fn stop(self) {
        signal(self.pid, "TERM");
        let proc = PathBuf::from(format!("/proc/{}", self.pid));
        wait_until("the server to exit", Duration::from_secs(20), || {
            !proc.exists()
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if Path::new(&format!("/proc/{}", self.pid)).exists() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// The lines of `log` that contain `part`.
pub fn lines<'a>(log: &'a str, part: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(part)).collect()
}
