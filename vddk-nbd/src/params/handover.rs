//! Handing a secret to a program we become (exec) or start (spawn)
//! without putting it on its command line or in its environment: the
//! secret goes into a pipe whose read end the new program inherits, and
//! its command line says `password=-N` (or `cookie=-N`).
//!
//! The pipe is filled and its write end closed before the new program
//! starts, so the reader sees the secret then end-of-file; the read end
//! is the only descriptor made inheritable, and [`Password::resolve`]
//! closes it once read.
//!
//! [`Password::resolve`]: super::Password::resolve

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use vddk::Secret;

/// Why a secret could not be put in a pipe for the next program; the
/// message names the parameter, and for a secret too large says how else
/// to give it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The pipe could not be made or set up.
    #[error("cannot pass the {key} to the new process through a pipe: {source}")]
    Pipe {
        /// The parameter (`password` or `cookie`).
        key: &'static str,
        /// The system call's error.
        source: nix::Error,
    },
    /// The secret is more than the pipe holds, and nobody reads it yet.
    #[error(
        "cannot pass the {key} to the new process through a pipe: the {key} does not fit \
         in a pipe; give it with {key}=+FILE"
    )]
    TooLarge {
        /// The parameter (`password` or `cookie`).
        key: &'static str,
    },
    /// Writing the secret into the pipe failed.
    #[error("cannot pass the {key} to the new process through a pipe: {source}")]
    Write {
        /// The parameter (`password` or `cookie`).
        key: &'static str,
        /// The write's error.
        source: io::Error,
    },
}

/// A secret waiting in a pipe for the next program to read it.
#[derive(Debug)]
pub struct Handover {
    key: &'static str,
    read: OwnedFd,
}

impl Handover {
    /// Puts `secret` in a new pipe for the parameter `key` (`password`
    /// or `cookie`). The reader strips one trailing newline, so one is
    /// added: a secret that itself ends in a newline arrives intact.
    ///
    /// # Errors
    /// [`HandoverError`]: no pipe could be made, or the secret does not
    /// fit in one.
    pub fn new(key: &'static str, secret: &Secret) -> Result<Handover, HandoverError> {
        let pipe = |source| HandoverError::Pipe { key, source };
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(pipe)?;
        // Nobody reads until the new program runs, so a secret larger than
        // the pipe must fail here rather than block forever.
        fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(pipe)?;
        let mut w = File::from(write);
        w.write_all(secret.expose().as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|source| {
                if source.kind() == io::ErrorKind::WouldBlock {
                    HandoverError::TooLarge { key }
                } else {
                    HandoverError::Write { key, source }
                }
            })?;
        drop(w);
        fcntl(&read, FcntlArg::F_SETFD(FdFlag::empty())).map_err(pipe)?;
        Ok(Handover { key, read })
    }

    /// The command-line word that tells the new program where to read:
    /// `password=-N`.
    pub fn arg(&self) -> String {
        format!("{}=-{}", self.key, self.read.as_raw_fd())
    }

    /// The parameter this secret is for.
    pub fn key(&self) -> &'static str {
        self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Password;

    #[test]
    fn the_reader_gets_the_secret_exactly() {
        for s in ["pa ss", "ends in newline\n", ""] {
            let h = Handover::new("password", &Secret::from(s)).unwrap();
            let word = h.arg();
            let (key, value) = word.split_once('=').unwrap();
            assert_eq!(key, "password");
            let p = Password::parse(value);
            assert!(matches!(p, Password::Fd(_)), "{word}");
            // Reading closes the descriptor the Handover owns: forget the
            // owner so it does not close the number a second time.
            let fd = h.read.as_raw_fd();
            std::mem::forget(h);
            assert_eq!(p.resolve("password").unwrap().expose(), s);
            assert!(!std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists());
        }
    }

    #[test]
    fn only_the_read_end_is_inheritable() {
        let h = Handover::new("cookie", &Secret::from("c")).unwrap();
        let flags = fcntl(&h.read, FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
        assert!(h.arg().starts_with("cookie=-"));
    }

    #[test]
    fn a_secret_larger_than_the_pipe_says_how_else_to_give_it() {
        let big = Secret::new("x".repeat(4 << 20));
        let e = Handover::new("cookie", &big).unwrap_err();
        assert!(
            matches!(e, HandoverError::TooLarge { key: "cookie" }),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "cannot pass the cookie to the new process through a pipe: the cookie does not \
             fit in a pipe; give it with cookie=+FILE"
        );
    }
}
