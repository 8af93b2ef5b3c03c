//! Putting `libdir/lib64` on `LD_LIBRARY_PATH` before the process starts.
//!
//! VDDK loads the libraries it bundles (its OpenSSL, libcurl, glib, ...)
//! by bare name, so their directory must be on the dynamic linker's path
//! when the process starts: setting the variable later has no effect on
//! the running process. A program therefore re-executes itself once,
//! early (before it reads any secret or starts a thread), with the
//! directory prepended, and remembers the user's original value so that
//! the programs it starts see their own environment again:
//!
//! ```no_run
//! use vddk::{library_path, InitOptions, Vddk};
//!
//! let libdir = std::path::Path::new("/opt/vmware-vix-disklib-distrib");
//! // Returns only when no re-exec was needed (or with the failed exec's error).
//! library_path::reexec_if_needed(libdir)?;
//! let vddk = Vddk::init(InitOptions::new().libdir(libdir))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The alternative is to start the program with the variable set, e.g.
//! `LD_LIBRARY_PATH=/opt/vmware-vix-disklib-distrib/lib64 ./my-copy`, as
//! a systemd unit or container image can.
//!
//! [`exec`] is also the way to start the program afresh with other
//! arguments (to take a secret off its command line, say).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set (to `1`) in the re-executed process.
pub const REEXEC_MARKER: &str = "VDDK_REEXECED";
/// The user's `LD_LIBRARY_PATH` before the re-exec; absent if it was unset.
pub const ORIGINAL_LD_LIBRARY_PATH: &str = "VDDK_ORIGINAL_LD_LIBRARY_PATH";

/// Where this module logs: not under `vddk::library`, so that a filter
/// on VDDK's own messages leaves these out.
const LOG_TARGET: &str = "vddk::reexec";

/// The dynamic linker's search path variable.
pub const LD_LIBRARY_PATH: &str = "LD_LIBRARY_PATH";

/// The directory that must lead `LD_LIBRARY_PATH` for `libdir`, if any.
pub fn wanted_dir(libdir: &Path) -> Option<PathBuf> {
    let lib64 = libdir.join("lib64");
    lib64.is_dir().then_some(lib64)
}

/// Whether `dir` is already the first entry of the path list `current`.
pub fn is_first(current: Option<&OsStr>, dir: &Path) -> bool {
    let Some(current) = current else { return false };
    let first = current
        .as_bytes()
        .split(|b| *b == b':')
        .next()
        .unwrap_or_default();
    !first.is_empty() && Path::new(OsStr::from_bytes(first)) == dir
}

/// The new value: `dir` prepended to `current`.
pub fn prepended(current: Option<&OsStr>, dir: &Path) -> OsString {
    let mut v = OsString::from(dir.as_os_str());
    if let Some(cur) = current.filter(|c| !c.is_empty()) {
        v.push(":");
        v.push(cur);
    }
    v
}

/// The directory to put first on `LD_LIBRARY_PATH` by re-executing, or
/// `None` when it already leads (or a re-exec has already been tried).
pub fn library_path_change(libdir: &Path) -> Option<PathBuf> {
    let Some(dir) = wanted_dir(libdir) else {
        log::debug!(
            target: LOG_TARGET,
            "{} has no lib64 directory; not adjusting {LD_LIBRARY_PATH}",
            libdir.display()
        );
        return None;
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    if is_first(std::env::var_os(LD_LIBRARY_PATH).as_deref(), &dir) {
        return None;
    }
    if std::env::var_os(REEXEC_MARKER).is_some() {
        log::warn!(
            target: LOG_TARGET,
            "{LD_LIBRARY_PATH} still does not start with {} after re-executing; continuing",
            dir.display()
        );
        return None;
    }
    Some(dir)
}

/// Why this program could not be executed again.
///
/// # Examples
///
/// ```no_run
/// use std::ffi::OsString;
/// use vddk::library_path::{exec, ExecError};
///
/// // The program again, with one more argument; `exec` returns only if it failed.
/// let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
/// args.push("--restarted".into());
/// let err: ExecError = exec(args, None);
/// match &err {
///     ExecError::CurrentExe(e) => eprintln!("cannot find this program's file: {e}"),
///     ExecError::Exec { exe, .. } => eprintln!("{} did not start: {err}", exe.display()),
///     _ => eprintln!("{err}"),
/// }
/// std::process::exit(1);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The path of the running executable is unknown.
    #[error("cannot find our own executable to re-execute it: {0}")]
    CurrentExe(#[source] io::Error),
    /// The exec itself failed.
    #[error("cannot re-execute {}: {source}", exe.display())]
    Exec {
        /// The executable.
        exe: PathBuf,
        /// The exec's error.
        source: io::Error,
    },
}

/// The library directory could not be put on `LD_LIBRARY_PATH`, because
/// the re-exec that would do it failed; the message says how to set it by
/// hand.
///
/// # Examples
///
/// ```no_run
/// use std::path::Path;
/// use vddk::library_path::{reexec_if_needed, LibraryPathError};
///
/// let libdir = Path::new("/opt/vmware-vix-disklib-distrib");
/// if let Err(e) = reexec_if_needed(libdir) {
///     let LibraryPathError { dir, .. } = &e;
///     // "...; set LD_LIBRARY_PATH=/opt/vmware-vix-disklib-distrib/lib64 yourself"
///     eprintln!("{e}");
///     assert!(dir.ends_with("lib64"));
///     std::process::exit(1);
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{source}; set {LD_LIBRARY_PATH}={} yourself", dir.display())]
pub struct LibraryPathError {
    /// The directory that should lead `LD_LIBRARY_PATH`.
    pub dir: PathBuf,
    /// Why the re-exec failed.
    pub source: ExecError,
}

/// Replaces this process with a fresh run of the program with `args`
/// (the arguments after the program name) and, when `lib_dir` is given,
/// that directory first on `LD_LIBRARY_PATH`. The pid stays the same.
/// Returns only if the exec failed, with the reason.
pub fn exec(args: Vec<OsString>, lib_dir: Option<&Path>) -> ExecError {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return ExecError::CurrentExe(e),
    };
    let mut cmd = Command::new(&exe);
    // The name it was started as (a link named nbdkit, say) stays its name.
    if let Some(argv0) = std::env::args_os().next() {
        cmd.arg0(argv0);
    }
    cmd.args(args);
    if let Some(dir) = lib_dir {
        log::debug!(
            target: LOG_TARGET,
            "re-executing {} with {} first on {LD_LIBRARY_PATH}",
            exe.display(),
            dir.display()
        );
        let current = std::env::var_os(LD_LIBRARY_PATH);
        cmd.env(LD_LIBRARY_PATH, prepended(current.as_deref(), dir))
            .env(REEXEC_MARKER, "1");
        match &current {
            Some(v) => cmd.env(ORIGINAL_LD_LIBRARY_PATH, v),
            None => cmd.env_remove(ORIGINAL_LD_LIBRARY_PATH),
        };
    } else {
        log::debug!(target: LOG_TARGET, "re-executing {}", exe.display());
    }
    let source = cmd.exec();
    ExecError::Exec { exe, source }
}

/// Re-executes the program with `libdir/lib64` leading `LD_LIBRARY_PATH`,
/// unless it already does (or has been tried). Returns only when no
/// re-exec was needed, or with the error of a failed exec.
///
/// # Errors
/// [`LibraryPathError`] when the re-exec failed.
pub fn reexec_if_needed(libdir: &Path) -> Result<(), LibraryPathError> {
    let Some(dir) = library_path_change(libdir) else {
        return Ok(());
    };
    let source = exec(std::env::args_os().skip(1).collect(), Some(&dir));
    Err(LibraryPathError { dir, source })
}

/// Gives a child the user's environment back: the original
/// `LD_LIBRARY_PATH` (or none) and none of our bookkeeping variables.
pub fn restore_user_env(cmd: &mut Command) {
    if std::env::var_os(REEXEC_MARKER).is_some() {
        match std::env::var_os(ORIGINAL_LD_LIBRARY_PATH) {
            Some(v) => cmd.env(LD_LIBRARY_PATH, v),
            None => cmd.env_remove(LD_LIBRARY_PATH),
        };
    }
    cmd.env_remove(REEXEC_MARKER)
        .env_remove(ORIGINAL_LD_LIBRARY_PATH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_entry() {
        let d = Path::new("/opt/vddk/lib64");
        assert!(is_first(Some(OsStr::new("/opt/vddk/lib64")), d));
        assert!(is_first(Some(OsStr::new("/opt/vddk/lib64:/usr/lib")), d));
        assert!(!is_first(Some(OsStr::new("/usr/lib:/opt/vddk/lib64")), d));
        assert!(!is_first(Some(OsStr::new("")), d));
        assert!(!is_first(None, d));
    }

    #[test]
    fn prepend() {
        let d = Path::new("/v/lib64");
        assert_eq!(prepended(None, d), "/v/lib64");
        assert_eq!(prepended(Some(OsStr::new("")), d), "/v/lib64");
        assert_eq!(prepended(Some(OsStr::new("/a:/b")), d), "/v/lib64:/a:/b");
    }

    #[test]
    fn a_failed_reexec_says_how_to_set_the_path_by_hand() {
        let e = LibraryPathError {
            dir: PathBuf::from("/opt/vddk/lib64"),
            source: ExecError::Exec {
                exe: PathBuf::from("/usr/bin/vddk-nbd"),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
        };
        let enoent = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            format!(
                "cannot re-execute /usr/bin/vddk-nbd: {enoent}; \
                 set LD_LIBRARY_PATH=/opt/vddk/lib64 yourself"
            )
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
