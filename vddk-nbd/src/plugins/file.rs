//! The `file` plugin: a local file or block device, read and written in
//! place, as nbdkit's file plugin serves it (virt-v2v's output side runs
//! `nbdkit file file=F cache=none fadvise=sequential`).
//!
//! Holes are found with `SEEK_DATA`/`SEEK_HOLE`; zeroing uses
//! `fallocate` (punching a hole when the client allows it) and falls back
//! to writing zeroes; trim punches a hole. `cache=none` writes each
//! request back and drops it from the page cache at once
//! (`posix_fadvise(DONTNEED)`), so a large copy does not push everything
//! else out of memory; `fadvise=` passes the access pattern on to the
//! kernel.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use nix::fcntl::{fallocate, posix_fadvise, FallocateFlags, PosixFadviseAdvice};
use nix::unistd::{lseek, Whence};

use crate::backend::{Backend, BlockSizes, Caps, Done, Error, Extent, Features, ZeroFlags};

/// `cache=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cache {
    /// The page cache as usual.
    #[default]
    Default,
    /// Written back and dropped after each write.
    None,
}

/// `fadvise=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fadvise {
    /// No hint.
    #[default]
    Normal,
    /// Random access.
    Random,
    /// Sequential access.
    Sequential,
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileOptions {
    /// Refuse writes.
    pub read_only: bool,
    /// `cache=`.
    pub cache: Cache,
    /// `fadvise=`.
    pub fadvise: Fadvise,
}

/// An export over a local file.
#[derive(Debug)]
pub struct FileBackend {
    path: PathBuf,
    file: RwLock<File>,
    size: u64,
    opts: FileOptions,
}

fn open(path: &Path, opts: &FileOptions) -> Result<(File, u64), Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(!opts.read_only)
        .open(path)
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot open {}: {e}", path.display()),
            ))
        })?;
    // A block device's length is where its end is, not its metadata's.
    let size = lseek(&file, 0, Whence::SeekEnd).map_err(nix_error)? as u64;
    let advice = match opts.fadvise {
        Fadvise::Normal => PosixFadviseAdvice::POSIX_FADV_NORMAL,
        Fadvise::Random => PosixFadviseAdvice::POSIX_FADV_RANDOM,
        Fadvise::Sequential => PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    };
    if let Err(e) = posix_fadvise(&file, 0, 0, advice) {
        log::debug!("file: fadvise on {}: {e}", path.display());
    }
    Ok((file, size))
}

fn nix_error(e: nix::Error) -> Error {
    Error::Io(std::io::Error::from(e))
}

impl FileBackend {
    /// Opens `path`.
    ///
    /// # Errors
    /// The file cannot be opened (as asked: read-write unless read-only).
    pub fn open(path: &Path, opts: FileOptions) -> Result<FileBackend, Error> {
        let (file, size) = open(path, &opts)?;
        Ok(FileBackend {
            path: path.to_path_buf(),
            file: RwLock::new(file),
            size,
            opts,
        })
    }

    fn file(&self) -> RwLockReadGuard<'_, File> {
        self.file.read().unwrap_or_else(|e| e.into_inner())
    }

    fn writable(&self) -> Result<(), Error> {
        if self.opts.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), Error> {
        self.writable()?;
        let f = self.file();
        f.write_all_at(data, offset)?;
        if fua {
            f.sync_data()?;
        }
        if self.opts.cache == Cache::None {
            let _ = posix_fadvise(
                &*f,
                offset as i64,
                data.len() as i64,
                PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
        }
        Ok(())
    }

    fn zero_range(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<(), Error> {
        self.writable()?;
        let mode = if flags.may_trim {
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE
        } else {
            FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE
        };
        let done = fallocate(&*self.file(), mode, offset as i64, len as i64).is_ok();
        if !done {
            if flags.fast {
                return Err(Error::Unsupported("fast zeroing"));
            }
            let zeroes = vec![0u8; len.min(1 << 20) as usize];
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(zeroes.len() as u64);
                self.file().write_all_at(&zeroes[..n as usize], at)?;
                at += n;
            }
        }
        if flags.fua {
            self.file().sync_data()?;
        }
        Ok(())
    }

    /// Data and holes from `offset` for `len` bytes.
    fn find_extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>, Error> {
        let f = self.file();
        let end = offset + len;
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |n: u64, hole: bool| match out.last_mut() {
            Some(l) if l.hole == hole => l.length += n,
            _ => out.push(Extent { length: n, hole }),
        };
        let mut at = offset;
        while at < end {
            let data = match lseek(&*f, at as i64, Whence::SeekData) {
                Ok(d) => (d as u64).min(end),
                // ENXIO: no data from here to the end of the file.
                Err(nix::Error::ENXIO) => end,
                // No SEEK_DATA on this file system: all of it is data.
                Err(_) => {
                    push(end - at, false);
                    break;
                }
            };
            if data > at {
                push(data - at, true);
                at = data;
                continue;
            }
            let hole = match lseek(&*f, at as i64, Whence::SeekHole) {
                Ok(h) => (h as u64).min(end),
                Err(_) => end,
            };
            push(hole.max(at + 1) - at, false);
            at = hole.max(at + 1);
        }
        Ok(out)
    }
}

impl Backend for FileBackend {
    fn caps(&self) -> Caps {
        let features = Features {
            trim: true,
            ..Features::WRITABLE
        };
        Caps {
            size: self.size,
            features: if self.opts.read_only {
                features.read_only()
            } else {
                features
            },
            extents: true,
            block_sizes: BlockSizes::paged(1),
            inline: true,
        }
    }

    fn read(&self, offset: u64, len: u32, mut buf: Vec<u8>, done: Done<Vec<u8>>) {
        buf.clear();
        buf.resize(len as usize, 0);
        let r = self.file().read_exact_at(&mut buf, offset).map(|()| buf);
        done(r.map_err(Error::from))
    }

    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        done(self.write_at(offset, &data, fua).map(|()| data))
    }

    fn zero(&self, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        done(self.zero_range(offset, len, flags))
    }

    fn trim(&self, offset: u64, len: u64, fua: bool, done: Done<()>) {
        let flags = ZeroFlags {
            fua,
            fast: false,
            may_trim: true,
        };
        done(self.zero_range(offset, len, flags))
    }

    fn flush(&self, done: Done<()>) {
        let r = if self.opts.read_only {
            Ok(())
        } else {
            self.file().sync_data().map_err(Error::from)
        };
        done(r)
    }

    fn extents(&self, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        done(self.find_extents(offset, len))
    }

    fn reopen(&self) -> Result<(), Error> {
        let (file, _) = open(&self.path, &self.opts)?;
        *self.file.write().unwrap_or_else(|e| e.into_inner()) = file;
        Ok(())
    }

    fn close(&self) -> Result<(), Error> {
        if self.opts.read_only {
            return Ok(());
        }
        self.file().sync_all().map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn wait<T: Send + 'static>(f: impl FnOnce(Done<T>)) -> Result<T, Error> {
        let (tx, rx) = mpsc::channel();
        f(Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap()
    }

    #[test]
    fn reads_writes_holes_and_zeroes() {
        let dir = std::env::temp_dir().join(format!("file-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.raw");
        let f = File::create(&path).unwrap();
        f.set_len(4 << 20).unwrap();
        f.write_all_at(&[7u8; 65536], 1 << 20).unwrap();
        drop(f);
        let b = FileBackend::open(&path, FileOptions::default()).unwrap();
        assert_eq!(b.caps().size, 4 << 20);
        let e = wait(|d| b.extents(0, 4 << 20, d)).unwrap();
        let data: u64 = e.iter().filter(|x| !x.hole).map(|x| x.length).sum();
        let total: u64 = e.iter().map(|x| x.length).sum();
        assert_eq!(total, 4 << 20);
        assert!(data >= 65536, "{e:?}");
        assert!(
            e.first().is_some_and(|x| x.hole),
            "starts with a hole: {e:?}"
        );
        wait(|d| b.write(10, vec![1, 2, 3], true, d)).unwrap();
        assert_eq!(
            wait(|d| b.read(9, 5, Vec::new(), d)).unwrap(),
            [0, 1, 2, 3, 0]
        );
        let zero = ZeroFlags {
            fua: false,
            fast: false,
            may_trim: true,
        };
        wait(|d| b.zero((1 << 20) + 100, 1000, zero, d)).unwrap();
        let back = wait(|d| b.read((1 << 20) + 99, 1002, Vec::new(), d)).unwrap();
        assert_eq!(back[0], 7);
        assert!(back[1..1001].iter().all(|&x| x == 0));
        assert_eq!(back[1001], 7);
        b.reopen().unwrap();
        assert_eq!(wait(|d| b.read(10, 3, Vec::new(), d)).unwrap(), [1, 2, 3]);
        let ro = FileBackend::open(
            &path,
            FileOptions {
                read_only: true,
                ..FileOptions::default()
            },
        )
        .unwrap();
        assert!(matches!(
            wait(|d| ro.write(0, vec![1], false, d)),
            Err(Error::ReadOnly)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
