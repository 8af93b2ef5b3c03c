//! The four ways nbdkit takes a password: `PASSWORD`, `-` (prompt),
//! `+FILE` and `-FD`. `cookie=` takes the same forms here.
//!
//! Only the form is recorded at parse time; the secret is read later by
//! [`Password::resolve`], in the process that needs it. Whatever is read
//! goes straight into zeroizing memory ([`vddk::Secret`]): no growing
//! `String`, no buffered reader and no error message ever holds a copy.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use vddk::Secret;
use zeroize::Zeroizing;

use super::VddkParams;

/// Longer secrets are refused: no password or vSphere cookie comes near,
/// and the bound keeps every read in one fixed, zeroized buffer.
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// How `password=` (or `cookie=`) was written.
#[derive(Clone)]
pub enum Password {
    /// `password=SECRET`.
    Literal(Secret),
    /// `password=-`: ask on the terminal.
    Prompt,
    /// `password=+FILE`.
    File(PathBuf),
    /// `password=-FD`: read an inherited file descriptor to its end.
    Fd(u32),
}

impl PartialEq for Password {
    fn eq(&self, other: &Password) -> bool {
        match (self, other) {
            (Password::Literal(a), Password::Literal(b)) => a.expose() == b.expose(),
            (Password::Prompt, Password::Prompt) => true,
            (Password::File(a), Password::File(b)) => a == b,
            (Password::Fd(a), Password::Fd(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Password {}

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
            Password::Literal(Secret::from(v))
        }
    }

    /// Whether the secret itself was written on the command line.
    pub fn is_literal(&self) -> bool {
        matches!(self, Password::Literal(_))
    }

    /// Reads the secret; `key` (`password` or `cookie`) names it in
    /// errors. One trailing newline is dropped from files and descriptors,
    /// since `echo secret > file` is how most people write one. A
    /// descriptor above 2 is closed once read, as nbdkit does, so that
    /// programs we start do not inherit it.
    pub fn resolve(&self, key: &str) -> Result<Secret, String> {
        match self {
            Password::Literal(s) => Ok(s.clone()),
            Password::File(path) => {
                let what = format!("{key}=+{}", path.display());
                let mut f = File::open(path)
                    .map_err(|e| format!("{what}: cannot read the {key} file: {e}"))?;
                read_secret(&mut f, &what)
            }
            Password::Fd(fd) => {
                let what = format!("{key}=-{fd}");
                // /proc/self/fd/N reopens the inherited descriptor without
                // taking ownership of the raw number.
                let mut f = File::open(format!("/proc/self/fd/{fd}")).map_err(|e| {
                    format!(
                        "{what}: cannot read file descriptor {fd}: {e} \
                         (is the descriptor open and inherited by vddk-nbd?)"
                    )
                })?;
                let secret = read_secret(&mut f, &what);
                if *fd > 2 {
                    close_inherited(*fd);
                }
                secret
            }
            Password::Prompt => prompt(key),
        }
    }
}

/// The secrets a connection needs (`password=` and `cookie=`), read once.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The password, or the session key with `cookie=`.
    pub password: Option<Secret>,
    /// The vSphere session cookie.
    pub cookie: Option<Secret>,
}

impl Secrets {
    /// Reads the secrets `p` names (prompting, or reading files and
    /// descriptors, as needed).
    pub fn resolve(p: &VddkParams) -> Result<Secrets, String> {
        Ok(Secrets {
            password: p
                .password
                .as_ref()
                .map(|pw| pw.resolve("password"))
                .transpose()?,
            cookie: p.cookie.as_ref().map(|c| c.resolve("cookie")).transpose()?,
        })
    }

    /// The secrets with the parameter each is for.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, &Secret)> {
        [("password", &self.password), ("cookie", &self.cookie)]
            .into_iter()
            .filter_map(|(k, s)| s.as_ref().map(|s| (k, s)))
    }
}

/// Closes an inherited descriptor the user (or our parent) gave us to read.
fn close_inherited(fd: u32) {
    let Ok(raw) = std::os::fd::RawFd::try_from(fd) else {
        return;
    };
    // Nothing in this process wraps `raw`: it was named on the command
    // line as a descriptor to read, and we read it through a reopened
    // /proc path, so closing the number cannot pull it from an owner.
    if let Err(e) = nix::unistd::close(raw) {
        log::debug!("closing file descriptor {fd} after reading it: {e}");
    }
}

/// Reads `r` to its end into one fixed zeroized buffer, drops one
/// trailing newline, and checks that VDDK can take the result (UTF-8, no
/// NUL byte).
fn read_secret(r: &mut impl Read, what: &str) -> Result<Secret, String> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_SECRET_LEN + 1]);
    let mut len = 0;
    loop {
        match r.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len > MAX_SECRET_LEN {
                    return Err(format!(
                        "{what}: the secret is longer than {MAX_SECRET_LEN} bytes"
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{what}: cannot read the secret: {e}")),
        }
    }
    checked(&buf[..len], what)
}

/// The bytes without one trailing newline (`\n` or `\r\n`), as a secret.
fn checked(bytes: &[u8], what: &str) -> Result<Secret, String> {
    let bytes = bytes
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .unwrap_or(bytes);
    if bytes.contains(&0) {
        return Err(format!(
            "{what}: the secret contains a NUL byte, which VDDK cannot take"
        ));
    }
    let s =
        std::str::from_utf8(bytes).map_err(|_| format!("{what}: the secret is not valid UTF-8"))?;
    // One allocation of the exact size, owned by the zeroizing Secret.
    Ok(Secret::new(String::from(s)))
}

/// Terminal echo turned off for as long as this lives.
struct EchoOff {
    saved: Termios,
}

impl EchoOff {
    fn new() -> Option<EchoOff> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSAFLUSH, &quiet).ok()?;
        Some(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// `password=-`: on a terminal, turns echo off before the prompt appears
/// (so nothing typed early is shown) and reads one line; otherwise reads
/// one line as it comes. Stdin is read directly, a byte at a time, so no
/// buffered reader keeps a copy and nothing past the line is consumed.
fn prompt(key: &str) -> Result<Secret, String> {
    let what = format!("{key}=-");
    let stdin = io::stdin();
    let tty = stdin.is_terminal();
    let mut input = stdin
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| format!("{what}: cannot use stdin: {e}"))?;
    let echo = if tty {
        let echo = EchoOff::new();
        if echo.is_none() {
            return Err(format!(
                "{what}: cannot turn off echo on the terminal, so the {key} would be shown; \
                 give it with {key}=+FILE or {key}=-FD instead"
            ));
        }
        let mut err = io::stderr();
        let _ = write!(err, "{key}: ");
        let _ = err.flush();
        echo
    } else {
        None
    };
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_SECRET_LEN + 1));
    let mut byte = Zeroizing::new([0u8; 1]);
    let got_any = loop {
        match input.read(&mut byte[..]) {
            Ok(0) => break !line.is_empty(),
            Ok(_) => {
                if byte[0] == b'\n' {
                    break true;
                }
                if line.len() >= MAX_SECRET_LEN {
                    return Err(format!(
                        "{what}: the {key} is longer than {MAX_SECRET_LEN} bytes"
                    ));
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{what}: cannot read the {key}: {e}")),
        }
    };
    drop(echo);
    if tty {
        let _ = writeln!(io::stderr());
    }
    if !got_any {
        return Err(format!("{what}: no {key} given (end of input)"));
    }
    checked(&line, &what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn forms() {
        assert_eq!(
            Password::parse("s3cret"),
            Password::Literal(Secret::from("s3cret"))
        );
        assert!(Password::parse("s3cret").is_literal());
        assert_eq!(Password::parse("-"), Password::Prompt);
        assert_eq!(
            Password::parse("+/run/pw"),
            Password::File("/run/pw".into())
        );
        assert_eq!(Password::parse("-5"), Password::Fd(5));
        assert!(!Password::parse("-5").is_literal());
        assert_eq!(
            Password::parse("-x5"),
            Password::Literal(Secret::from("-x5"))
        );
        assert_eq!(Password::parse(""), Password::Literal(Secret::from("")));
    }

    #[test]
    fn debug_hides_literal() {
        let s = format!("{:?}", Password::parse("topsecret"));
        assert!(!s.contains("topsecret"), "{s}");
        let s = format!("{:?}", Password::parse("topsecret").resolve("password"));
        assert!(!s.contains("topsecret"), "{s}");
    }

    #[test]
    fn file_and_fd_read_and_strip_one_newline() {
        let dir = std::env::temp_dir().join(format!("vddk-nbd-pw-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        let read = |p: Password| p.resolve("password").map(|s| s.expose().to_string());
        fs::write(&f, "line one\n").unwrap();
        assert_eq!(read(Password::File(f.clone())).unwrap(), "line one");
        fs::write(&f, "keep\n\n").unwrap();
        assert_eq!(read(Password::File(f.clone())).unwrap(), "keep\n");
        fs::write(&f, "crlf\r\n").unwrap();
        assert_eq!(read(Password::File(f.clone())).unwrap(), "crlf");
        // An open file of ours is an inherited descriptor like any other;
        // it is closed once read.
        fs::write(&f, "from-fd\n").unwrap();
        let file = fs::File::open(&f).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file) as u32;
        assert_eq!(read(Password::Fd(fd)).unwrap(), "from-fd");
        assert!(!std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists());
        assert!(read(Password::File(dir.join("missing")))
            .unwrap_err()
            .contains("cannot read the password file"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_secrets_are_refused_without_being_shown() {
        let e = checked(b"abc\0def\n", "password=+f").unwrap_err();
        assert!(e.contains("NUL") && !e.contains("abc"), "{e}");
        let e = checked(b"abc\xffdef", "password=+f").unwrap_err();
        assert!(e.contains("UTF-8") && !e.contains("abc"), "{e}");
        let long = vec![b'x'; MAX_SECRET_LEN + 10];
        let e = read_secret(&mut &long[..], "cookie=+f").unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        let ok = vec![b'y'; MAX_SECRET_LEN];
        assert_eq!(
            read_secret(&mut &ok[..], "cookie=+f")
                .unwrap()
                .expose()
                .len(),
            MAX_SECRET_LEN
        );
    }
}
