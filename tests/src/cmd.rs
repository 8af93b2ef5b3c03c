//! Running external tools and failing the test loudly when they fail.
//!
//! Tools run by name ([`run`], [`status`], [`command`]) find the system's
//! own first: /usr/bin leads PATH, so nbdsh and friends get Debian's python3
//! with its nbd module rather than another python3 earlier on PATH.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// PATH with /usr/bin first.
pub fn system_path() -> String {
    format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default())
}

/// A command for `program` with [`system_path`] as its PATH.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", system_path());
    cmd
}

/// Runs `program` with `args`, asserts success, returns its stdout.
pub fn run<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    stdout(&run_cmd(command(program).args(args)))
}

/// Runs `cmd`, asserts success, returns its output.
pub fn run_cmd(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Runs `cmd`, asserts it exits with `code`, returns its output.
pub fn run_fails(cmd: &mut Command, code: i32) -> Output {
    let out = output(cmd);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}: expected exit status {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Runs `cmd` whatever the outcome; panics only when it cannot start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `program` with `args` whatever the outcome: its exit code (-1 when
/// killed by a signal) and its stdout followed by its stderr.
pub fn status<I, S>(program: &str, args: I) -> (i32, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = output(command(program).args(args));
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// A program's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A program's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd` with its stdout a pipe whose reading end is closed before
/// the program writes (as in `cmd | true`), stderr captured.
pub fn output_into_closed_pipe(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}
