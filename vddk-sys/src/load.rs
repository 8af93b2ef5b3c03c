//! Finding and opening `libvixDiskLib.so`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::optional::OptionalFunctions;
use crate::{Library, VixDiskLibCore, REQUIRED_FUNCTIONS};

/// The directory searched when neither an explicit libdir nor
/// `$VDDK_LIBDIR` is given. Packagers override it at build time with the
/// `VDDK_DEFAULT_LIBDIR` environment variable.
pub const DEFAULT_LIBDIR: &str = match option_env!("VDDK_DEFAULT_LIBDIR") {
    Some(dir) => dir,
    None => "/usr/lib64/vmware-vix-disklib",
};

/// Soname major versions tried, newest first.
pub const SONAME_MAJORS: &[u32] = &[9, 8, 7, 6, 5];

/// The environment variable naming a libdir when none is passed explicitly.
const LIBDIR_ENV: &str = "VDDK_LIBDIR";

/// Where the directory searched for the library came from.
///
/// # Examples
///
/// ```
/// use vddk_sys::{LibrarySource, LoadOptions};
///
/// let (_, source) = LoadOptions::default().libdir("/opt/vddk").resolve_dir();
/// assert_eq!(source, LibrarySource::Explicit);
/// let (_, source) = LoadOptions::default().env_libdir(None::<&str>).resolve_dir();
/// assert_eq!(source, LibrarySource::Default);
/// assert_eq!(source.to_string(), "compiled-in default libdir");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySource {
    /// Passed by the program ([`LoadOptions::libdir`], `libdir=` on a command line).
    Explicit,
    /// Read from the `VDDK_LIBDIR` environment variable.
    Environment,
    /// The compiled-in [`DEFAULT_LIBDIR`].
    Default,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::Explicit => "libdir given explicitly",
            LibrarySource::Environment => "libdir from $VDDK_LIBDIR",
            LibrarySource::Default => "compiled-in default libdir",
        })
    }
}

/// How the loaded file was found.
///
/// # Examples
///
/// What a program might say about [`Library::found_by`] after loading:
///
/// ```
/// use vddk_sys::{FoundBy, LibrarySource};
///
/// fn note(found: &FoundBy) -> Option<String> {
///     match found {
///         FoundBy::Libdir(LibrarySource::Explicit) => None,
///         other => Some(format!("libvixDiskLib.so was found {other}")),
///     }
/// }
/// assert_eq!(note(&FoundBy::Libdir(LibrarySource::Explicit)), None);
/// assert_eq!(
///     note(&FoundBy::Libdir(LibrarySource::Environment)).unwrap(),
///     "libvixDiskLib.so was found in the libdir from $VDDK_LIBDIR"
/// );
/// assert!(note(&FoundBy::DynamicLinker).unwrap().contains("$LD_LIBRARY_PATH"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundBy {
    /// In the libdir searched, which came from this source.
    Libdir(LibrarySource),
    /// Not in the libdir: the dynamic linker found it by its soname
    /// (`$LD_LIBRARY_PATH`, then the system's library cache), as VDDK's
    /// documentation allows when no libdir holds it.
    DynamicLinker,
}

impl fmt::Display for FoundBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoundBy::Libdir(source) => write!(f, "in the {source}"),
            FoundBy::DynamicLinker => f.write_str(
                "by the dynamic linker's search path ($LD_LIBRARY_PATH or the system's \
                 library cache), not in the libdir",
            ),
        }
    }
}

/// How to find the library.
///
/// Only the first configured source is searched: an explicit libdir, else
/// `$VDDK_LIBDIR`, else [`DEFAULT_LIBDIR`]; another installation is never
/// looked for in its place. When that directory does not hold the library,
/// the dynamic linker is asked for it by soname, as nbdkit does, so that
/// `LD_LIBRARY_PATH` alone works ([`FoundBy::DynamicLinker`] says so).
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use vddk_sys::{LibrarySource, LoadOptions};
///
/// // This directory's library or none: no fallback to the dynamic linker.
/// let opts = LoadOptions::default()
///     .libdir("/opt/vmware-vix-disklib-distrib")
///     .dynamic_linker(false);
/// let (dir, source) = opts.resolve_dir();
/// assert_eq!(dir, Path::new("/opt/vmware-vix-disklib-distrib"));
/// assert_eq!(source, LibrarySource::Explicit);
/// // The files `Library::load(&opts)` tries, in order:
/// let (first, major) = &opts.candidates()[0];
/// assert_eq!(first, Path::new("/opt/vmware-vix-disklib-distrib/lib64/libvixDiskLib.so.9"));
/// assert_eq!(*major, 9);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    libdir: Option<PathBuf>,
    env_libdir: Option<Option<OsString>>,
    /// `Some(false)`: the libdir only.
    dynamic_linker: Option<bool>,
}

impl LoadOptions {
    /// Searches `dir` (a VDDK distribution directory, or a directory
    /// holding the library itself).
    pub fn libdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.libdir = Some(dir.into());
        self
    }

    /// Uses `value` in place of the process's `$VDDK_LIBDIR` (`None`: unset).
    /// Tests use it to stay independent of the environment.
    pub fn env_libdir(mut self, value: Option<impl Into<OsString>>) -> Self {
        self.env_libdir = Some(value.map(Into::into));
        self
    }

    /// Whether to ask the dynamic linker for the library by soname when
    /// the libdir does not hold it (the default). Turn it off to accept
    /// the libdir's library or none.
    pub fn dynamic_linker(mut self, on: bool) -> Self {
        self.dynamic_linker = Some(on);
        self
    }

    /// The directory that will be searched and why.
    pub fn resolve_dir(&self) -> (PathBuf, LibrarySource) {
        if let Some(dir) = &self.libdir {
            return (dir.clone(), LibrarySource::Explicit);
        }
        let env = match &self.env_libdir {
            Some(v) => v.clone(),
            None => std::env::var_os(LIBDIR_ENV),
        };
        match env {
            Some(dir) if !dir.is_empty() => (PathBuf::from(dir), LibrarySource::Environment),
            _ => (PathBuf::from(DEFAULT_LIBDIR), LibrarySource::Default),
        }
    }

    /// Every file tried, in order, with the major version each would be.
    pub fn candidates(&self) -> Vec<(PathBuf, u32)> {
        let (dir, _) = self.resolve_dir();
        candidates_in(&dir)
    }
}

fn candidates_in(dir: &Path) -> Vec<(PathBuf, u32)> {
    let lib64 = dir.join("lib64");
    let mut out = Vec::with_capacity(SONAME_MAJORS.len() * 2);
    for base in [&lib64, &dir.to_path_buf()] {
        for &major in SONAME_MAJORS {
            out.push((base.join(format!("libvixDiskLib.so.{major}")), major));
        }
    }
    out
}

/// One file the loader tried, and why it was not used.
///
/// # Examples
///
/// ```
/// use vddk_sys::{Library, LoadError, LoadOptions};
///
/// let opts = LoadOptions::default().libdir("/nonexistent/vddk").dynamic_linker(false);
/// match Library::load(&opts) {
///     Err(LoadError::NotFound { tried, .. }) => {
///         for attempt in &tried {
///             eprintln!("{}: {}", attempt.path.display(), attempt.reason);
///         }
///         assert_eq!(tried.len(), opts.candidates().len());
///         assert!(tried[0].path.ends_with("lib64/libvixDiskLib.so.9"));
///     }
///     other => panic!("expected NotFound, got {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The file.
    pub path: PathBuf,
    /// The system's reason (from `dlopen`), e.g. "No such file or directory".
    pub reason: String,
}

/// Why the library could not be loaded.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use vddk_sys::{Library, LoadError, LoadOptions};
///
/// let opts = LoadOptions::default().libdir("/nonexistent/vddk").dynamic_linker(false);
/// let err = Library::load(&opts).unwrap_err();
/// match &err {
///     LoadError::NotFound { dir, .. } => assert_eq!(dir, Path::new("/nonexistent/vddk")),
///     LoadError::MissingSymbols { path, missing } => {
///         panic!("{} lacks {missing:?}", path.display())
///     }
///     _ => unreachable!("a new kind of failure"),
/// }
/// // The message lists every file tried and what to set.
/// assert!(err.to_string().contains("/nonexistent/vddk/lib64/libvixDiskLib.so.9"));
/// assert!(err.to_string().contains("Set libdir="));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LoadError {
    /// No candidate could be opened.
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// Where that directory came from.
        source: LibrarySource,
        /// Every file tried, in order.
        tried: Vec<Attempt>,
    },
    /// A library was opened but lacks core functions.
    MissingSymbols {
        /// The file that was opened.
        path: PathBuf,
        /// The core functions it lacks.
        missing: Vec<&'static str>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound { dir, source, tried } => {
                writeln!(
                    f,
                    "cannot load the VDDK library (libvixDiskLib.so) from {} ({source}); tried:",
                    dir.display()
                )?;
                for a in tried {
                    writeln!(f, "  {}: {}", a.path.display(), a.reason)?;
                }
                write!(
                    f,
                    "Set libdir= (or the {LIBDIR_ENV} environment variable) to the directory where \
                     the VDDK tarball was unpacked (vmware-vix-disklib-distrib), the one holding \
                     lib64/libvixDiskLib.so.N"
                )
            }
            LoadError::MissingSymbols { path, missing } => write!(
                f,
                "{} is not a usable VDDK library: it lacks {} (VDDK 6.7 or later is required; \
                 point libdir= at a newer VDDK)",
                path.display(),
                missing.join(", ")
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Turns libloading's message ("<path>: <reason>") into the bare reason.
fn reason_of(err: &libloading::Error, path: &Path) -> String {
    let text = err.to_string();
    let prefix = format!("{}: ", path.display());
    match text.find(&prefix) {
        Some(i) => text[i + prefix.len()..].to_string(),
        None => text,
    }
}

pub(crate) fn load(opts: &LoadOptions) -> Result<Library, LoadError> {
    let (dir, source) = opts.resolve_dir();
    let mut tried = Vec::new();
    let in_dir = candidates_in(&dir)
        .into_iter()
        .map(|(path, major)| (path, major, FoundBy::Libdir(source.clone())));
    // Bare sonames: dlopen then searches as the dynamic linker does.
    let linker_majors = if opts.dynamic_linker.unwrap_or(true) {
        SONAME_MAJORS
    } else {
        &[]
    };
    let by_linker = linker_majors.iter().map(|&major| {
        let name = PathBuf::from(format!("libvixDiskLib.so.{major}"));
        (name, major, FoundBy::DynamicLinker)
    });
    for (path, major, found_by) in in_dir.chain(by_linker) {
        match open_one(&path, major, found_by) {
            Ok(lib) => return Ok(lib),
            Err(Opened::Failed(attempt)) => tried.push(attempt),
            Err(Opened::Unusable(e)) => return Err(e),
        }
    }
    Err(LoadError::NotFound { dir, source, tried })
}

/// Why one candidate was not used: it did not open (try the next), or it
/// opened and is not a usable VDDK (stop: the user should hear of it).
enum Opened {
    Failed(Attempt),
    Unusable(LoadError),
}

fn open_one(path: &Path, major: u32, found_by: FoundBy) -> Result<Library, Opened> {
    // RTLD_NOW surfaces unresolved dependencies here rather than at the
    // first call; RTLD_LOCAL keeps VDDK's bundled OpenSSL and C++ runtime
    // from overriding the program's own.
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: opening a shared object runs its initialisers. Loading VDDK
    // is this function's purpose and its initialisers are the vendor's;
    // the candidate is a path the caller pointed us at or VDDK's soname.
    let opened = unsafe { libloading::os::unix::Library::open(Some(path), flags) };
    let raw = match opened {
        Ok(lib) => libloading::Library::from(lib),
        Err(e) => {
            return Err(Opened::Failed(Attempt {
                reason: reason_of(&e, path),
                path: path.to_path_buf(),
            }))
        }
    };
    let path = match found_by {
        FoundBy::DynamicLinker => linker_path(path),
        FoundBy::Libdir(_) => path.to_path_buf(),
    };
    let missing: Vec<&'static str> = REQUIRED_FUNCTIONS
        .iter()
        .copied()
        .filter(|name| {
            let sym = format!("{name}\0");
            // SAFETY: the symbol is only looked up, never called, through
            // this untyped pointer.
            unsafe { raw.get::<*const ()>(sym.as_bytes()) }.is_err()
        })
        .collect();
    if !missing.is_empty() {
        return Err(Opened::Unusable(LoadError::MissingSymbols {
            path,
            missing,
        }));
    }
    // SAFETY: each optional symbol is read with the function type our
    // header gives it; VDDK exports them with those C signatures.
    let optional = unsafe { OptionalFunctions::resolve(&raw) };
    // SAFETY: as above for the core table; every symbol was just checked
    // to exist, so this cannot fail on a missing name.
    let core = match unsafe { VixDiskLibCore::from_library(raw) } {
        Ok(core) => core,
        Err(e) => {
            return Err(Opened::Failed(Attempt {
                reason: e.to_string(),
                path,
            }))
        }
    };
    let (major, version) = version_of(&path, major);
    Ok(Library::from_parts(
        core, optional, path, major, version, found_by,
    ))
}

/// Where the dynamic linker most likely found the soname `name`: the first
/// `$LD_LIBRARY_PATH` directory holding it (searched first, as ld.so
/// does), else the bare name (it came from the system's cache).
fn linker_path(name: &Path) -> PathBuf {
    let dirs = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| name.to_path_buf())
}

/// The version a loaded file really is. VDDK ships
/// `libvixDiskLib.so.N -> libvixDiskLib.so.N.x.y`, and installations often
/// add compatibility links with other majors, so the name the link resolves
/// to is better evidence than the name that was tried.
fn version_of(path: &Path, tried_major: u32) -> (u32, Option<String>) {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
    parse_soname_version(name).unwrap_or((tried_major, None))
}

/// `libvixDiskLib.so.8.0.2` -> (8, Some("8.0.2")); `libvixDiskLib.so.8` -> (8, None).
fn parse_soname_version(name: &str) -> Option<(u32, Option<String>)> {
    let rest = name.strip_prefix("libvixDiskLib.so.")?;
    let major = rest.split('.').next()?.parse().ok()?;
    let full = rest.contains('.') && rest.split('.').all(|p| p.parse::<u32>().is_ok());
    Some((major, full.then(|| rest.to_string())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn soname_versions_parse() {
        assert_eq!(parse_soname_version("libvixDiskLib.so.8"), Some((8, None)));
        assert_eq!(
            parse_soname_version("libvixDiskLib.so.8.0.2"),
            Some((8, Some("8.0.2".to_string())))
        );
        assert_eq!(parse_soname_version("libvixDiskLib.so"), None);
        assert_eq!(parse_soname_version("libfoo.so.8"), None);
        assert_eq!(parse_soname_version("libvixDiskLib.so.x"), None);
    }

    use super::*;

    #[test]
    fn explicit_libdir_wins_over_environment() {
        let opts = LoadOptions::default().libdir("/a").env_libdir(Some("/b"));
        assert_eq!(
            opts.resolve_dir(),
            (PathBuf::from("/a"), LibrarySource::Explicit)
        );
    }

    #[test]
    fn environment_wins_over_default_and_empty_is_unset() {
        let opts = LoadOptions::default().env_libdir(Some("/b"));
        assert_eq!(
            opts.resolve_dir(),
            (PathBuf::from("/b"), LibrarySource::Environment)
        );
        let opts = LoadOptions::default().env_libdir(Some(""));
        assert_eq!(opts.resolve_dir().1, LibrarySource::Default);
        let opts = LoadOptions::default().env_libdir(None::<&str>);
        assert_eq!(
            opts.resolve_dir(),
            (PathBuf::from(DEFAULT_LIBDIR), LibrarySource::Default)
        );
    }

    #[test]
    fn candidates_are_lib64_first_newest_first() {
        let c = LoadOptions::default().libdir("/v").candidates();
        let names: Vec<String> = c.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(names[0], "/v/lib64/libvixDiskLib.so.9");
        assert_eq!(names[4], "/v/lib64/libvixDiskLib.so.5");
        assert_eq!(names[5], "/v/libvixDiskLib.so.9");
        assert_eq!(names[9], "/v/libvixDiskLib.so.5");
        assert_eq!(c[1].1, 8);
        assert_eq!(c.len(), 10);
    }
}
