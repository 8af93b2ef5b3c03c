//! Direct mode: synchronous calls from the caller's thread, one at a time.
//!
//! A local file answers in microseconds, where handing each request to
//! another thread and back would cost more than the I/O itself. A lock
//! keeps VDDK's rule (no two calls on one handle at once) and makes a
//! read-modify-write one step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{align, cannot_reopen, reopen_disk, Opener};
use crate::blocks::Extent;
use crate::disk::Disk;
use crate::error::{Error, Result};

pub(crate) struct Direct {
    /// `None` once closed.
    disk: Mutex<Option<Disk>>,
    /// Set before a write is issued: a write that fails halfway may still
    /// have changed the disk, and close must flush it.
    written: AtomicBool,
    opener: Option<Opener>,
}

impl Direct {
    pub(crate) fn new(disk: Disk, opener: Option<Opener>) -> Direct {
        Direct {
            disk: Mutex::new(Some(disk)),
            written: AtomicBool::new(false),
            opener,
        }
    }

    /// Closes the disk and opens it again, under the lock, so no call
    /// overlaps.
    pub(crate) fn reopen(&self) -> Result<()> {
        let opener = self.opener.as_ref().ok_or_else(cannot_reopen)?;
        let mut disk = self.lock();
        let written = self.written.swap(false, Ordering::AcqRel);
        *disk = Some(reopen_disk(disk.take(), written, opener)?);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Disk>> {
        // A panic cannot leave the handle half-used: every VDDK call
        // returns before the guard is dropped, so a poisoned lock is sound.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(&self, call: impl FnOnce(&Disk) -> Result<T>) -> Result<T> {
        match self.lock().as_ref() {
            Some(d) => call(d),
            None => Err(Error::Closed),
        }
    }

    pub(crate) fn read(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.with(|d| align::read(d, offset, len, buf))
    }

    pub(crate) fn write(&self, offset: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.with(|d| {
            self.written.store(true, Ordering::Release);
            align::write(d, offset, data)
        })
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.with(|d| {
            let r = d.flush();
            if r.is_ok() {
                self.written.store(false, Ordering::Release);
            }
            r
        })
    }

    pub(crate) fn allocated(&self, offset: u64, length: u64, chunk: u64) -> Result<Vec<Extent>> {
        self.with(|d| d.allocated_blocks(offset, length, chunk))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().is_none()
    }

    /// Flushes if anything was written, then closes; again: `Ok`.
    pub(crate) fn close(&self) -> Result<()> {
        let Some(disk) = self.lock().take() else {
            return Ok(());
        };
        let flushed = if self.written.swap(false, Ordering::AcqRel) {
            disk.flush()
        } else {
            Ok(())
        };
        flushed.and(disk.close())
    }
}
