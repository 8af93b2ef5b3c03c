//! Going to the background without fork: we start a copy of ourselves in
//! its own process group, hand it the secrets through inherited pipes
//! (`password=-N`, never its command line), and exit 0
//! only once it says it is listening (or 1 with its start-up error), so
//! `vddk-nbd ... && nbdinfo nbd://localhost` works.
//!
//! The copy is told what it is by [`DAEMON_CHILD`]; it reports on its
//! stdout, a pipe to us: `READY` or `ERROR <message>`, one line.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use vddk::library_path as reexec;
use vddk_nbd::params::Secrets;

use super::secrets::moved_off_argv;

/// Set (to `1`) in the background copy.
pub const DAEMON_CHILD: &str = "VDDK_NBD_DAEMON_CHILD";

const READY: &str = "READY";
const ERROR: &str = "ERROR ";

/// Whether this process is the background copy.
pub fn is_daemon_child() -> bool {
    std::env::var_os(DAEMON_CHILD).is_some_and(|v| v == "1")
}

/// How the serving process tells whoever started it how start-up went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Nobody is waiting (foreground).
    Foreground,
    /// The parent reads our stdout.
    DaemonChild,
}

impl Readiness {
    /// For this process.
    pub fn current() -> Readiness {
        if is_daemon_child() {
            Readiness::DaemonChild
        } else {
            Readiness::Foreground
        }
    }

    /// Listening: the parent may exit 0.
    pub fn ready(self) {
        if self == Readiness::DaemonChild {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{READY}");
            let _ = out.flush();
        }
    }

    /// Start-up failed with `msg`; the parent prints it.
    pub fn failed(self, msg: &str) {
        if self == Readiness::DaemonChild {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{ERROR}{}", msg.replace('\n', " "));
            let _ = out.flush();
        }
    }
}

/// Starts the background copy and waits for its report; returns the
/// exit status for this (parent) process.
pub fn start(secrets: &Secrets, verbose: bool) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{}: error: cannot find our own executable to start the server in the background: {e} (use -f)", super::program());
            return 1;
        }
    };
    let mut argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    // What was asked for on the terminal, which the copy will not have.
    argv.extend(super::ask_user::child_arg());
    // Open until the copy has started (it inherits them), closed after.
    let (args, _handovers) = match moved_off_argv(&argv, secrets) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{}: error: cannot start the background server: {e} (use -f)",
                super::program()
            );
            return 1;
        }
    };
    let mut cmd = Command::new(&exe);
    // The name it was started as (a link named nbdkit, say) stays its name.
    if let Some(argv0) = std::env::args_os().next() {
        cmd.arg0(argv0);
    }
    cmd.args(args)
        .env(DAEMON_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if verbose {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{}: error: cannot start the background server: {e} (use -f)",
                super::program()
            );
            return 1;
        }
    };
    drop(_handovers);
    let Some(stdout) = child.stdout.take() else {
        eprintln!(
            "{}: error: no pipe to the background server",
            super::program()
        );
        return 1;
    };
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let line = line.trim_end();
    if line == READY {
        log::debug!("background server {} is ready", child.id());
        return 0;
    }
    if let Some(msg) = line.strip_prefix(ERROR) {
        eprintln!("{}: error: {msg}", super::program());
        let _ = child.wait();
        return 1;
    }
    match child.wait() {
        Ok(status) => eprintln!(
            "vddk-nbd: error: the background server exited during start-up ({status}); \
             run with -f -v to see why"
        ),
        Err(e) => eprintln!(
            "{}: error: lost the background server: {e}",
            super::program()
        ),
    }
    1
}

/// For processes the copy starts: not a daemon child themselves.
pub fn scrub_env(cmd: &mut Command) {
    cmd.env_remove(DAEMON_CHILD);
    reexec::restore_user_env(cmd);
}
