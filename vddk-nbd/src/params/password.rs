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

/// Where a secret was to be read from, as the parameter gave it. Never
/// the secret itself, so errors can carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretInput {
    /// `KEY=+FILE`.
    File(PathBuf),
    /// `KEY=-FD`.
    Fd(u32),
    /// `KEY=-`: the terminal, or stdin.
    Prompt,
}

/// Why a secret could not be read. The message starts with the parameter
/// as written (`password=+/run/pw`) and never holds any of the secret.
#[derive(Debug)]
pub struct SecretError {
    /// The parameter (`password` or `cookie`).
    pub key: String,
    /// Where it was to be read from.
    pub input: SecretInput,
    /// What went wrong.
    pub kind: SecretErrorKind,
}

/// What went wrong reading a secret: see [`SecretError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretErrorKind {
    /// The file, descriptor or stdin could not be opened.
    Open(io::Error),
    /// Echo could not be turned off on the terminal, so nothing was asked.
    EchoOff,
    /// Reading failed.
    Read(io::Error),
    /// More than [`MAX_SECRET_LEN`] bytes.
    TooLong,
    /// The prompt met the end of input before anything was typed.
    NoInput,
    /// A NUL byte, which VDDK's C strings cannot hold.
    Nul,
    /// Not UTF-8, which VDDK needs.
    NotUtf8,
}

impl SecretError {
    fn new(key: &str, input: SecretInput, kind: SecretErrorKind) -> SecretError {
        SecretError {
            key: key.to_string(),
            input,
            kind,
        }
    }
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = &self.key;
        match &self.input {
            SecretInput::File(path) => write!(f, "{key}=+{}: ", path.display())?,
            SecretInput::Fd(fd) => write!(f, "{key}=-{fd}: ")?,
            SecretInput::Prompt => write!(f, "{key}=-: ")?,
        }
        // An answer typed at the prompt is named by its parameter; what a
        // file or descriptor holds is "the secret".
        let noun = match self.input {
            SecretInput::Prompt => key.as_str(),
            _ => "secret",
        };
        match (&self.kind, &self.input) {
            (SecretErrorKind::Open(e), SecretInput::File(_)) => {
                write!(f, "cannot read the {key} file: {e}")
            }
            (SecretErrorKind::Open(e), SecretInput::Fd(fd)) => write!(
                f,
                "cannot read file descriptor {fd}: {e} \
                 (is the descriptor open and inherited by vddk-nbd?)"
            ),
            (SecretErrorKind::Open(e), SecretInput::Prompt) => {
                write!(f, "cannot use stdin: {e}")
            }
            (SecretErrorKind::EchoOff, _) => write!(
                f,
                "cannot turn off echo on the terminal, so the {key} would be shown; \
                 give it with {key}=+FILE or {key}=-FD instead"
            ),
            (SecretErrorKind::Read(e), _) => write!(f, "cannot read the {noun}: {e}"),
            (SecretErrorKind::TooLong, _) => {
                write!(f, "the {noun} is longer than {MAX_SECRET_LEN} bytes")
            }
            (SecretErrorKind::NoInput, _) => write!(f, "no {key} given (end of input)"),
            (SecretErrorKind::Nul, _) => {
                write!(f, "the secret contains a NUL byte, which VDDK cannot take")
            }
            (SecretErrorKind::NotUtf8, _) => write!(f, "the secret is not valid UTF-8"),
        }
    }
}

impl std::error::Error for SecretError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            SecretErrorKind::Open(e) | SecretErrorKind::Read(e) => Some(e),
            _ => None,
        }
    }
}

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
    ///
    /// # Errors
    /// [`SecretError`]: the file, descriptor or terminal cannot be read,
    /// or the secret is too long, holds a NUL byte or is not UTF-8.
    pub fn resolve(&self, key: &str) -> Result<Secret, SecretError> {
        match self {
            Password::Literal(s) => Ok(s.clone()),
            Password::File(path) => {
                let input = SecretInput::File(path.clone());
                let secret = File::open(path)
                    .map_err(SecretErrorKind::Open)
                    .and_then(|mut f| read_secret(&mut f));
                secret.map_err(|kind| SecretError::new(key, input, kind))
            }
            Password::Fd(fd) => {
                // /proc/self/fd/N reopens the inherited descriptor without
                // taking ownership of the raw number.
                let secret = File::open(format!("/proc/self/fd/{fd}"))
                    .map_err(SecretErrorKind::Open)
                    .and_then(|mut f| {
                        let secret = read_secret(&mut f);
                        if *fd > 2 {
                            close_inherited(*fd);
                        }
                        secret
                    });
                secret.map_err(|kind| SecretError::new(key, SecretInput::Fd(*fd), kind))
            }
            Password::Prompt => {
                prompt(key).map_err(|kind| SecretError::new(key, SecretInput::Prompt, kind))
            }
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
    ///
    /// # Errors
    /// The [`SecretError`] of the first that cannot be read.
    pub fn resolve(p: &VddkParams) -> Result<Secrets, SecretError> {
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
fn read_secret(r: &mut impl Read) -> Result<Secret, SecretErrorKind> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_SECRET_LEN + 1]);
    let mut len = 0;
    loop {
        match r.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len > MAX_SECRET_LEN {
                    return Err(SecretErrorKind::TooLong);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SecretErrorKind::Read(e)),
        }
    }
    checked(&buf[..len])
}

/// The bytes without one trailing newline (`\n` or `\r\n`), as a secret.
fn checked(bytes: &[u8]) -> Result<Secret, SecretErrorKind> {
    let bytes = bytes
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .unwrap_or(bytes);
    if bytes.contains(&0) {
        return Err(SecretErrorKind::Nul);
    }
    let s = std::str::from_utf8(bytes).map_err(|_| SecretErrorKind::NotUtf8)?;
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
fn prompt(key: &str) -> Result<Secret, SecretErrorKind> {
    let stdin = io::stdin();
    let tty = stdin.is_terminal();
    let mut input = stdin
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(SecretErrorKind::Open)?;
    let echo = if tty {
        let echo = EchoOff::new();
        if echo.is_none() {
            return Err(SecretErrorKind::EchoOff);
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
                    return Err(SecretErrorKind::TooLong);
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SecretErrorKind::Read(e)),
        }
    };
    drop(echo);
    if tty {
        let _ = writeln!(io::stderr());
    }
    if !got_any {
        return Err(SecretErrorKind::NoInput);
    }
    checked(&line)
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
        let e = read(Password::File(dir.join("missing"))).unwrap_err();
        assert!(matches!(e.kind, SecretErrorKind::Open(_)), "{e}");
        assert!(
            e.to_string().contains("cannot read the password file"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_secrets_are_refused_without_being_shown() {
        let shown = |key: &str, path: &str, kind| {
            SecretError::new(key, SecretInput::File(path.into()), kind).to_string()
        };
        let e = shown("password", "f", checked(b"abc\0def\n").unwrap_err());
        assert!(e.contains("NUL") && !e.contains("abc"), "{e}");
        let e = shown("password", "f", checked(b"abc\xffdef").unwrap_err());
        assert!(e.contains("UTF-8") && !e.contains("abc"), "{e}");
        let long = vec![b'x'; MAX_SECRET_LEN + 10];
        let e = shown("cookie", "f", read_secret(&mut &long[..]).unwrap_err());
        assert!(e.contains("longer than"), "{e}");
        assert_eq!(
            e,
            format!("cookie=+f: the secret is longer than {MAX_SECRET_LEN} bytes")
        );
        let ok = vec![b'y'; MAX_SECRET_LEN];
        assert_eq!(
            read_secret(&mut &ok[..]).unwrap().expose().len(),
            MAX_SECRET_LEN
        );
    }

    #[test]
    fn messages_name_the_parameter_as_written() {
        let e = |input, kind| SecretError::new("cookie", input, kind).to_string();
        let gone = || io::Error::from_raw_os_error(libc::EBADF);
        assert_eq!(
            e(SecretInput::Fd(7), SecretErrorKind::Open(gone())),
            format!(
                "cookie=-7: cannot read file descriptor 7: {} \
                 (is the descriptor open and inherited by vddk-nbd?)",
                gone()
            )
        );
        assert_eq!(
            e(SecretInput::Prompt, SecretErrorKind::TooLong),
            format!("cookie=-: the cookie is longer than {MAX_SECRET_LEN} bytes")
        );
        assert_eq!(
            e(SecretInput::Prompt, SecretErrorKind::NoInput),
            "cookie=-: no cookie given (end of input)"
        );
        assert_eq!(
            e(SecretInput::Prompt, SecretErrorKind::Nul),
            "cookie=-: the secret contains a NUL byte, which VDDK cannot take"
        );
    }
}
