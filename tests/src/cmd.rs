//! Running external tools and failing the test loudly when they fail.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs `program` with `args`, asserts success, returns its stdout.
pub fn run<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run_cmd(Command::new(program).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, asserts success, returns its output.
pub fn run_cmd(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `program` with `args` whatever the outcome: its exit code (-1 when
/// killed by a signal) and its stdout followed by its stderr.
pub fn status<I, S>(program: &str, args: I) -> (i32, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
