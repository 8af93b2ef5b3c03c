//! Several disks from one server, chosen by the client's export name.
//!
//! An [`ExportRegistry`] holds named exports, each with its own backend
//! (for VDDK: its own handle and worker thread, so clients of different
//! exports run in parallel), opened either up front or on first use. With
//! a [`Wildcard`], names that are not registered are taken as disk paths
//! and opened when they match it, as `nbdkit vddk export=` does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::backend::{self, Backend};

pub use self::wildcard::{check_path, BadPath, BadPattern, Wildcard};

mod wildcard;

/// Opens the backend of a registered export, on first use.
pub type Opener = Box<dyn Fn() -> Result<Arc<dyn Backend>, backend::Error> + Send + Sync>;

/// Opens the disk at a path a client asked for through the wildcard.
pub type PathOpener = Box<dyn Fn(&str) -> Result<Arc<dyn Backend>, backend::Error> + Send + Sync>;

/// Why a name selects no export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The server has no export by that name, and no wildcard.
    #[error("{}", unknown(.0))]
    Unknown(Vec<String>),
    /// The empty name with only a wildcard.
    #[error("there is no default export: ask for a disk path matching {0}")]
    NoDefault(String),
    /// A name the wildcard does not match.
    #[error("not a path matching the exported paths {0}")]
    NotMatching(String),
    /// A name the wildcard matches that is no plain disk path.
    #[error(transparent)]
    BadPath(#[from] BadPath),
    /// A name that is no file of the served directory.
    #[error("no file named {0:?} in {1}: ask for one of the files there (see NBD_OPT_LIST)")]
    NotInDirectory(String, String),
    /// The wildcard has opened as many disks as it may.
    #[error(
        "already serving {MAX_WILDCARD_EXPORTS} disks through the wildcard: start another \
         server for more"
    )]
    TooMany,
    /// The export could not be opened.
    #[error(transparent)]
    Open(#[from] backend::Error),
}

fn unknown(names: &[String]) -> String {
    if names.is_empty() {
        return "this server has no exports".into();
    }
    format!("no such export; this server exports: {}", names.join(", "))
}

/// The exports that failed to close, each with its error.
#[derive(Debug)]
pub struct CloseError(pub Vec<(String, backend::Error)>);

impl std::fmt::Display for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "closing {name}: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CloseError {}

/// Most disks a wildcard may have open at once: each holds a VDDK handle
/// and a thread, and a client should not be able to exhaust either.
pub const MAX_WILDCARD_EXPORTS: usize = 64;

/// An export's backend, opened at most once.
#[derive(Default)]
struct Slot {
    // Held while opening, so two clients asking at once open the disk once;
    // other exports have their own slot and are not held up.
    backend: Mutex<Option<Arc<dyn Backend>>>,
}

impl Slot {
    fn ready(backend: Arc<dyn Backend>) -> Slot {
        Slot {
            backend: Mutex::new(Some(backend)),
        }
    }

    fn get_or_open(
        &self,
        open: impl FnOnce() -> Result<Arc<dyn Backend>, backend::Error>,
    ) -> Result<Arc<dyn Backend>, backend::Error> {
        let mut b = self.backend.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = &*b {
            return Ok(Arc::clone(b));
        }
        let opened = open()?;
        *b = Some(Arc::clone(&opened));
        Ok(opened)
    }

    /// Open, or being opened by another client right now. Never waits, so
    /// a slow open does not hold up whoever asks.
    fn in_use(&self) -> bool {
        match self.backend.try_lock() {
            Ok(b) => b.is_some(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().is_some(),
            Err(std::sync::TryLockError::WouldBlock) => true,
        }
    }

    fn opened(&self) -> Option<Arc<dyn Backend>> {
        self.backend
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Named {
    name: String,
    description: Option<String>,
    open: Option<Opener>,
    slot: Arc<Slot>,
}

impl Named {
    fn get(&self) -> Result<Arc<dyn Backend>, backend::Error> {
        self.slot.get_or_open(|| match &self.open {
            Some(open) => open(),
            None => Err(backend::Error::Failed(format!(
                "export {} has no backend",
                self.name
            ))),
        })
    }
}

/// A resolved export: its name, description and backend.
#[derive(Clone)]
pub struct Resolved {
    /// The export's name (for a wildcard match, the path the client gave).
    pub name: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// The open backend.
    pub backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Exports that are not registered by name but opened when asked for.
enum Dynamic {
    /// Disk paths matching a pattern (`export=`).
    Wildcard(Wildcard, PathOpener),
    /// The files of a directory, by file name (the file plugin's `dir=`).
    Directory(PathBuf, PathOpener),
}

/// The exports of one server. The first registered export is the default
/// (the empty name).
#[derive(Default)]
pub struct ExportRegistry {
    named: Vec<Named>,
    catch_all: bool,
    dynamic: Option<Dynamic>,
    by_path: Mutex<Vec<Named>>,
}

impl ExportRegistry {
    /// No exports yet.
    pub fn new() -> ExportRegistry {
        ExportRegistry::default()
    }

    /// One export that answers to every name, as nbdkit serves a plugin.
    pub fn single(
        name: impl Into<String>,
        description: Option<String>,
        backend: Arc<dyn Backend>,
    ) -> ExportRegistry {
        let mut r = ExportRegistry::new();
        r.add(name, description, backend);
        r.catch_all = true;
        r
    }

    /// Adds an export whose backend is already open.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        description: Option<String>,
        backend: Arc<dyn Backend>,
    ) {
        self.named.push(Named {
            name: name.into(),
            description,
            open: None,
            slot: Arc::new(Slot::ready(backend)),
        });
    }

    /// Adds an export opened by `open` when a client first asks for it.
    pub fn add_lazy(&mut self, name: impl Into<String>, description: Option<String>, open: Opener) {
        self.named.push(Named {
            name: name.into(),
            description,
            open: Some(open),
            slot: Arc::default(),
        });
    }

    /// Serves any name that matches `pattern` as a disk path, opened by
    /// `open` on first use.
    pub fn set_wildcard(&mut self, pattern: Wildcard, open: PathOpener) {
        self.dynamic = Some(Dynamic::Wildcard(pattern, open));
    }

    /// Serves the files of `dir`, each under its file name, opened by
    /// `open` (given the file's path) on first use.
    ///
    /// # Errors
    /// When `dir` is not a directory.
    pub fn set_directory(&mut self, dir: PathBuf, open: PathOpener) -> std::io::Result<()> {
        if !std::fs::metadata(&dir)?.is_dir() {
            return Err(std::io::Error::other(format!(
                "dir={}: not a directory",
                dir.display()
            )));
        }
        self.dynamic = Some(Dynamic::Directory(dir, open));
        Ok(())
    }

    /// The files of the served directory, sorted.
    fn directory_files(&self) -> Vec<String> {
        let Some(Dynamic::Directory(dir, _)) = &self.dynamic else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Names and descriptions for NBD_OPT_LIST: the registered exports in
    /// order, then the disks opened through the wildcard.
    pub fn list(&self) -> Vec<(String, Option<String>)> {
        let mut v: Vec<_> = self
            .named
            .iter()
            .map(|n| (n.name.clone(), n.description.clone()))
            .collect();
        if matches!(self.dynamic, Some(Dynamic::Directory(..))) {
            v.extend(self.directory_files().into_iter().map(|n| (n, None)));
            return v;
        }
        let by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        v.extend(
            by_path
                .iter()
                .map(|n| (n.name.clone(), n.description.clone())),
        );
        v
    }

    /// The export `name` selects, opening it if needed.
    pub fn resolve(&self, name: &str) -> Result<Resolved, ExportError> {
        let found = if name.is_empty() {
            self.named.first()
        } else {
            self.named.iter().find(|n| n.name == name)
        };
        let found = found.or_else(|| self.named.first().filter(|_| self.catch_all));
        if let Some(n) = found {
            return Ok(Resolved {
                name: n.name.clone(),
                description: n.description.clone(),
                backend: n.get()?,
            });
        }
        let (path, open) = match &self.dynamic {
            None => {
                let names = self.named.iter().map(|n| n.name.clone()).collect();
                return Err(ExportError::Unknown(names));
            }
            Some(Dynamic::Wildcard(pattern, open)) => {
                if name.is_empty() {
                    return Err(ExportError::NoDefault(pattern.as_str().into()));
                }
                if !pattern.matches(name) {
                    return Err(ExportError::NotMatching(pattern.as_str().into()));
                }
                check_path(name)?;
                (name.to_string(), open)
            }
            Some(Dynamic::Directory(dir, open)) => {
                let plain = !name.is_empty()
                    && name != "."
                    && name != ".."
                    && !name.contains('/')
                    && !name.chars().any(char::is_control);
                let path = dir.join(name);
                if !plain || !path.is_file() {
                    return Err(ExportError::NotInDirectory(
                        name.into(),
                        dir.display().to_string(),
                    ));
                }
                (path.to_string_lossy().into_owned(), open)
            }
        };
        let slot = {
            let mut by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
            match by_path.iter().find(|n| n.name == name) {
                Some(n) => Arc::clone(&n.slot),
                None => {
                    if by_path.len() >= MAX_WILDCARD_EXPORTS {
                        return Err(ExportError::TooMany);
                    }
                    let slot: Arc<Slot> = Arc::default();
                    by_path.push(Named {
                        name: name.to_string(),
                        description: None,
                        open: None,
                        slot: Arc::clone(&slot),
                    });
                    slot
                }
            }
        };
        let backend = slot
            .get_or_open(|| open(&path))
            .inspect_err(|_| self.forget(name))?;
        Ok(Resolved {
            name: name.to_string(),
            description: None,
            backend,
        })
    }

    fn forget(&self, name: &str) {
        let mut by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        by_path.retain(|n| n.name != name || n.slot.in_use());
    }

    /// Every backend opened so far, registered ones first.
    pub fn opened(&self) -> Vec<(String, Arc<dyn Backend>)> {
        let mut v: Vec<_> = self
            .named
            .iter()
            .filter_map(|n| n.slot.opened().map(|b| (n.name.clone(), b)))
            .collect();
        let by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        v.extend(
            by_path
                .iter()
                .filter_map(|n| n.slot.opened().map(|b| (n.name.clone(), b))),
        );
        v
    }

    /// Flushes and closes every opened backend; reports every failure.
    pub fn close_all(&self) -> Result<(), CloseError> {
        let errors: Vec<_> = self
            .opened()
            .into_iter()
            .filter_map(|(name, b)| b.close().err().map(|e| (name, e)))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CloseError(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::MemoryBackend;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn mem(size: u64) -> Arc<dyn Backend> {
        Arc::new(MemoryBackend::new(size))
    }

    #[test]
    fn single_answers_every_name_named_does_not() {
        let r = ExportRegistry::single("disk", None, mem(512));
        for name in ["", "disk", "anything"] {
            assert_eq!(r.resolve(name).unwrap().name, "disk");
        }
        let mut r = ExportRegistry::new();
        r.add("x", None, mem(512));
        r.add("y", Some("why".into()), mem(1024));
        assert_eq!(r.resolve("").unwrap().name, "x");
        let y = r.resolve("y").unwrap();
        assert_eq!(
            (y.backend.caps().size, y.description.as_deref()),
            (1024, Some("why"))
        );
        assert_eq!(
            r.resolve("z").unwrap_err().to_string(),
            "no such export; this server exports: x, y"
        );
        assert!(ExportRegistry::new().resolve("").is_err());
    }

    #[test]
    fn wildcard_opens_each_path_once_and_forgets_failures() {
        let opens = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&opens);
        let mut r = ExportRegistry::new();
        r.set_wildcard(
            Wildcard::new("/d/*.vmdk").unwrap(),
            Box::new(move |path: &str| {
                counted.fetch_add(1, Ordering::SeqCst);
                if path.contains("bad") {
                    Err(backend::Error::Failed(format!("cannot open {path}")))
                } else {
                    Ok(mem(512))
                }
            }),
        );
        let a1 = r.resolve("/d/a.vmdk").unwrap();
        let a2 = r.resolve("/d/a.vmdk").unwrap();
        assert!(Arc::ptr_eq(&a1.backend, &a2.backend));
        assert_eq!(opens.load(Ordering::SeqCst), 1);
        assert_eq!(
            r.resolve("/d/bad.vmdk").unwrap_err().to_string(),
            "cannot open /d/bad.vmdk"
        );
        assert!(r
            .resolve("/e/a.vmdk")
            .unwrap_err()
            .to_string()
            .contains("/d/*.vmdk"));
        assert!(matches!(r.resolve(""), Err(ExportError::NoDefault(_))));
        let listed: Vec<String> = r.list().into_iter().map(|(n, _)| n).collect();
        assert_eq!(listed, ["/d/a.vmdk"], "failed opens are not listed");
        for i in 1..MAX_WILDCARD_EXPORTS {
            r.resolve(&format!("/d/{i}.vmdk")).unwrap();
        }
        let e = r.resolve("/d/one-too-many.vmdk").unwrap_err();
        assert!(e.to_string().contains("start another server"), "{e}");
        assert!(r.close_all().is_ok());
    }
}
