//! Direct mode: synchronous calls from the caller's thread, one at a time.
//!
//! A local file answers in microseconds, where handing each request to
//! another thread and back would cost more than the I/O itself. A lock
//! keeps VDDK's rule (no two calls on one handle at once) and makes a
//! read-modify-write one step.
//!
//! A disk on a server may be driven this way too (`Mode::Direct` chosen
//! for it): with a [`Reconnect`] policy, a call that fails because the
//! connection is lost reopens the disk through a new connection, under the
//! lock, and is made again; what is safe to make again is as in pipelined
//! mode (see [`super::reconnect`]). Other callers wait meanwhile; close
//! ends the waits between tries, so it never waits longer than one try.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::reconnect::{give_up_message, refused_login, Reconnect, CLOSED_WHILE_RECONNECTING};
use super::{align, cannot_reopen, reopen_disk, Opener};
use crate::blocks::Extent;
use crate::disk::Disk;
use crate::error::{Error, Result};

pub(crate) struct Direct {
    /// `None` once closed, or once reconnecting gave up.
    disk: Mutex<Option<Disk>>,
    /// Why the disk is gone, when reconnecting gave up.
    lost: Mutex<Option<String>>,
    /// Set before a write is issued: a write that fails halfway may still
    /// have changed the disk, and close must flush it.
    written: AtomicBool,
    opener: Option<Opener>,
    policy: Option<Reconnect>,
    pub(crate) reconnections: AtomicU64,
    /// Set by close, so that a reconnection waiting between tries stops.
    closing: Mutex<bool>,
    closing_changed: Condvar,
}

impl Direct {
    pub(crate) fn new(disk: Disk, opener: Option<Opener>, policy: Option<Reconnect>) -> Direct {
        Direct {
            disk: Mutex::new(Some(disk)),
            lost: Mutex::new(None),
            written: AtomicBool::new(false),
            opener,
            policy,
            reconnections: AtomicU64::new(0),
            closing: Mutex::new(false),
            closing_changed: Condvar::new(),
        }
    }

    /// Closes the disk and opens it again, under the lock, so no call
    /// overlaps.
    pub(crate) fn reopen(&self) -> Result<()> {
        let opener = self.opener.as_ref().ok_or_else(cannot_reopen)?;
        let mut disk = self.lock();
        let written = self.written.swap(false, Ordering::AcqRel);
        *disk = Some(reopen_disk(disk.take(), written, opener)?);
        *self.lost.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.closing.lock().unwrap_or_else(PoisonError::into_inner) = false;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Disk>> {
        // A panic cannot leave the handle half-used: every VDDK call
        // returns before the guard is dropped, so a poisoned lock is sound.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `call` on the disk; with a policy, again after reconnecting
    /// when the connection was lost.
    fn with<T>(&self, mut call: impl FnMut(&Disk) -> Result<T>) -> Result<T> {
        let mut disk = self.lock();
        let mut tries = 0;
        loop {
            let Some(d) = disk.as_ref() else {
                return Err(self.gone());
            };
            match call(d) {
                Err(e) if self.policy.is_some() && e.is_connection_lost() => {
                    log::warn!(
                        target: "vddk::driver",
                        "the connection to the host was lost ({e}); reconnecting"
                    );
                    self.reconnect(&mut disk, &mut tries)?;
                }
                r => return r,
            }
        }
    }

    /// Why a call finds no disk: closed, or lost for good.
    fn gone(&self) -> Error {
        match &*self.lost.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(msg) => Error::Disconnected(msg.clone()),
            None => Error::Closed,
        }
    }

    /// Opens the disk again through the opener, waiting before each try as
    /// the policy says (`tries` counts them across one call's losses);
    /// after the last, the disk is gone for this call and every later one.
    fn reconnect(&self, disk: &mut Option<Disk>, tries: &mut u32) -> Result<()> {
        let (Some(policy), Some(opener)) = (self.policy, self.opener.as_ref()) else {
            return Err(cannot_reopen());
        };
        // The old handle is dead: nothing to flush through it.
        let mut old = disk.take();
        loop {
            *tries += 1;
            let n = *tries;
            if !self.pause(policy.wait_before(n)) {
                drop(old.take());
                let msg = CLOSED_WHILE_RECONNECTING.to_string();
                log::warn!(target: "vddk::driver", "{msg}");
                // Later calls find the disk closed, and are told that.
                return Err(Error::Disconnected(msg));
            }
            match reopen_disk(old.take(), false, opener) {
                Ok(d) => {
                    log::info!(target: "vddk::driver", "reconnected (try {n})");
                    *disk = Some(d);
                    self.reconnections.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if n >= policy.max_tries() || refused_login(&e) => {
                    let msg = give_up_message(&e, n);
                    log::error!(target: "vddk::driver", "{msg}");
                    *self.lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(msg.clone());
                    return Err(Error::Disconnected(msg));
                }
                Err(e) => log::warn!(
                    target: "vddk::driver",
                    "reconnecting, try {n} of {}: {e}",
                    policy.max_tries()
                ),
            }
        }
    }

    /// Waits `wait`, or less if close is called: false then.
    fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut closing = self.closing.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *closing {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            closing = self
                .closing_changed
                .wait_timeout(closing, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub(crate) fn read(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        self.with(|d| align::read(d, offset, len, &mut buf))?;
        Ok(buf)
    }

    pub(crate) fn write(&self, offset: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.with(|d| {
            self.written.store(true, Ordering::Release);
            align::write(d, offset, &data)
        })?;
        Ok(data)
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
        *self.closing.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.closing_changed.notify_all();
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
