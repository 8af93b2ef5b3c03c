//! The four ways nbdkit takes a password: `PASSWORD`, `-` (prompt),
//! `+FILE` and `-FD`.
//!
//! Only the form is recorded at parse time; the secret is read later by
//! [`Password::resolve`], in the process that needs it, so it never has
//! to travel through argv or the environment across a re-exec.

use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// How `password=` was written.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// `password=SECRET`.
    Literal(String),
    /// `password=-`: ask on the terminal.
    Prompt,
    /// `password=+FILE`.
    File(PathBuf),
    /// `password=-FD`: read an inherited file descriptor to its end.
    Fd(u32),
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Password::Literal(_) => f.write_str("Literal(<redacted>)"),
            Password::Prompt => f.write_str("Prompt"),
            Password::File(p) => f.debug_tuple("File").field(p).finish(),
            Password::Fd(n) => f.debug_tuple("Fd").field(n).finish(),
        }
    }
}

impl Password {
    /// Classifies a `password=` value.
    pub fn parse(v: &str) -> Password {
        if v == "-" {
            Password::Prompt
        } else if let Some(path) = v.strip_prefix('+') {
            Password::File(PathBuf::from(path))
        } else if let Some(fd) = v
            .strip_prefix('-')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
        {
            Password::Fd(fd)
        } else {
            Password::Literal(v.to_string())
        }
    }

    /// Reads the secret. One trailing newline is dropped from files and
    /// descriptors, since `echo secret > file` is how most people write one.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Password::Literal(s) => Ok(s.clone()),
            Password::File(path) => fs::read_to_string(path).map(strip_newline).map_err(|e| {
                format!(
                    "password=+{}: cannot read the password file: {e}",
                    path.display()
                )
            }),
            Password::Fd(fd) => {
                // /proc/self/fd/N reopens the inherited descriptor without
                // taking ownership of the raw number (no unsafe needed).
                let path = format!("/proc/self/fd/{fd}");
                fs::read_to_string(&path).map(strip_newline).map_err(|e| {
                    format!(
                        "password=-{fd}: cannot read the password from file descriptor {fd}: {e} \
                         (is the descriptor open and inherited by vddk-nbd?)"
                    )
                })
            }
            Password::Prompt => prompt(),
        }
    }
}

fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// Turns terminal echo on or off by running `stty` on our stdin.
fn set_echo(on: bool) -> bool {
    Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn prompt() -> Result<String, String> {
    let stdin = io::stdin();
    let tty = stdin.is_terminal();
    let mut stderr = io::stderr();
    if tty {
        let _ = write!(stderr, "password: ");
        let _ = stderr.flush();
    }
    let echo_off = tty && set_echo(false);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off {
        set_echo(true);
    }
    if tty {
        let _ = writeln!(stderr);
    }
    match read {
        Ok(0) => Err("password=-: no password given (end of input)".into()),
        Ok(_) => Ok(strip_newline(line)),
        Err(e) => Err(format!("password=-: cannot read the password: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            Password::parse("s3cret"),
            Password::Literal("s3cret".into())
        );
        assert_eq!(Password::parse("-"), Password::Prompt);
        assert_eq!(
            Password::parse("+/run/pw"),
            Password::File("/run/pw".into())
        );
        assert_eq!(Password::parse("-5"), Password::Fd(5));
        assert_eq!(Password::parse("-x5"), Password::Literal("-x5".into()));
        assert_eq!(Password::parse(""), Password::Literal(String::new()));
    }

    #[test]
    fn debug_hides_literal() {
        let s = format!("{:?}", Password::parse("topsecret"));
        assert!(!s.contains("topsecret"), "{s}");
    }

    #[test]
    fn file_and_fd_read_and_strip_one_newline() {
        let dir = std::env::temp_dir().join(format!("vddk-nbd-pw-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        fs::write(&f, "line one\n").unwrap();
        assert_eq!(Password::File(f.clone()).resolve().unwrap(), "line one");
        fs::write(&f, "keep\n\n").unwrap();
        assert_eq!(Password::File(f.clone()).resolve().unwrap(), "keep\n");
        // An open file of ours is an inherited descriptor like any other.
        fs::write(&f, "from-fd\n").unwrap();
        let file = fs::File::open(&f).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file) as u32;
        assert_eq!(Password::Fd(fd).resolve().unwrap(), "from-fd");
        drop(file);
        assert!(Password::File(dir.join("missing"))
            .resolve()
            .unwrap_err()
            .contains("cannot read"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
