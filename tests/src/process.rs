//! Programs the tests start and stop: a server process with its stderr
//! kept in a file, signals, waiting with a deadline, and this process's
//! own resource use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A server running as a separate process until stopped or dropped
/// (then killed), with its stderr in a file.
pub struct ServerProcess {
    pub child: Child,
    /// The Unix socket it listens on.
    pub socket: PathBuf,
    /// The file holding its stderr.
    pub stderr: PathBuf,
}

impl ServerProcess {
    /// Starts `cmd` with its stderr in `stderr` and waits (up to 20 s) for
    /// `socket` to appear; panics with the log if it exits first.
    pub fn spawn(cmd: &mut Command, socket: PathBuf, stderr: PathBuf) -> ServerProcess {
        let child = cmd
            .stderr(Stdio::from(
                File::create(&stderr).expect("create the stderr file"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut s = ServerProcess {
            child,
            socket,
            stderr,
        };
        let t = Instant::now();
        while !s.socket.exists() {
            if let Some(status) = s.child.try_wait().expect("wait") {
                panic!("the server exited early with {status}: {}", s.log());
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

    /// The NBD URI of the socket.
    pub fn uri(&self) -> String {
        crate::nbd::unix_uri(&self.socket)
    }

    /// Everything the server has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to the server.
    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Waits for the server to exit; kills it and panics with the log
    /// after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match wait_timeout(&mut self.child, timeout) {
            Some(status) => status,
            None => panic!("the server did not exit within {timeout:?}: {}", self.log()),
        }
    }

    /// SIGTERM, then checks it exited successfully; returns the log.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(20));
        let log = self.log();
        assert!(status.success(), "the server exited with {status}: {log}");
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

/// Sends signal `sig` (`TERM`, `KILL`, ...) to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    crate::cmd::run("kill", [format!("-{sig}"), pid.to_string()]);
}

/// Waits up to `timeout` for `child` to exit; kills it and returns `None`
/// when it does not.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit; kills it and panics after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    wait_timeout(child, timeout)
        .unwrap_or_else(|| panic!("the process did not exit within {timeout:?}"))
}

/// Waits until `cond` holds, up to `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (up to 20 s) for `path` to exist while `child` runs; kills the
/// child and panics if it exits first or the time runs out.
pub fn wait_for_path(path: &Path, child: &mut Child) {
    let t = Instant::now();
    while !path.exists() {
        let gone = child.try_wait().expect("wait").is_some();
        if gone || t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} never appeared", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many lines of `log` contain every one of `parts`.
pub fn lines_with(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Threads, open descriptors and resident memory (KiB) of this process.
pub fn process_usage() -> (usize, usize, u64) {
    let count = |dir: &str| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (count("/proc/self/task"), count("/proc/self/fd"), rss)
}

/// Resident memory of process `pid` in KiB: now (VmRSS) and at its peak
/// (VmHWM). Zeroes once the process is gone.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
