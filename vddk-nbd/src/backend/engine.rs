//! How an export issues its VDDK calls: pipelined on the handle's own
//! thread, or directly from the thread that serves the request.
//!
//! A remote disk answers each request in milliseconds, so throughput comes
//! from keeping many requests in flight: a [`vddk::DiskWorker`] issues
//! ReadAsync/WriteAsync from one thread per handle. A local file answers
//! in microseconds, where handing each request to that thread and back
//! costs more than the I/O itself; there the calling thread makes the
//! synchronous call under a lock, which is VDDK's rule (one call at a time
//! per handle) enforced without a thread switch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use vddk::{Disk, DiskInfo, DiskWorker, Extent};

/// A synchronous handle shared by the server's threads, one call at a time.
pub(crate) struct Direct {
    /// `None` once closed.
    disk: Mutex<Option<Disk>>,
    info: DiskInfo,
    written: AtomicBool,
}

impl Direct {
    pub(crate) fn new(disk: Disk) -> vddk::Result<Direct> {
        let info = disk.info()?;
        Ok(Direct {
            disk: Mutex::new(Some(disk)),
            info,
            written: AtomicBool::new(false),
        })
    }

    fn with<T>(&self, call: impl FnOnce(&Disk) -> vddk::Result<T>) -> vddk::Result<T> {
        // A panic cannot leave the handle half-used: VDDK calls return
        // before the guard is dropped, so a poisoned lock is still sound.
        let disk = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        match disk.as_ref() {
            Some(d) => call(d),
            None => Err(vddk::Error::Closed),
        }
    }

    fn close(&self) -> vddk::Result<()> {
        let Some(disk) = self
            .disk
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
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

impl Drop for Direct {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing the disk: {e}");
        }
    }
}

/// The two ways of driving a handle, behind one completion-style interface.
pub(crate) enum Engine {
    /// Async requests pipelined by a worker thread.
    Pipelined(DiskWorker),
    /// Synchronous calls from the caller's thread; completions run before
    /// the call returns.
    Direct(Direct),
}

impl Engine {
    pub(crate) fn info(&self) -> &DiskInfo {
        match self {
            Engine::Pipelined(w) => w.info(),
            Engine::Direct(d) => &d.info,
        }
    }

    /// Whether completions always run inside the call that submits them.
    pub(crate) fn inline(&self) -> bool {
        matches!(self, Engine::Direct(_))
    }

    pub(crate) fn read(
        &self,
        start: u64,
        count: u64,
        done: impl FnOnce(vddk::Result<Vec<u8>>) + Send + 'static,
    ) {
        match self {
            Engine::Pipelined(w) => w.read(start, count, done),
            Engine::Direct(d) => done(d.with(|disk| disk.read_vec(start, count))),
        }
    }

    pub(crate) fn write(
        &self,
        start: u64,
        data: Vec<u8>,
        done: impl FnOnce(vddk::Result<()>) + Send + 'static,
    ) {
        match self {
            Engine::Pipelined(w) => w.write(start, data, done),
            Engine::Direct(d) => {
                let r = d.with(|disk| {
                    // Set before the call: a write that fails halfway may
                    // still have changed the disk, and close must flush it.
                    d.written.store(true, Ordering::Release);
                    disk.write(start, &data)
                });
                super::payload::give(data);
                done(r);
            }
        }
    }

    pub(crate) fn flush(&self, done: impl FnOnce(vddk::Result<()>) + Send + 'static) {
        match self {
            Engine::Pipelined(w) => w.flush(done),
            Engine::Direct(d) => done(d.with(Disk::flush)),
        }
    }

    pub(crate) fn allocated_blocks(
        &self,
        start: u64,
        count: u64,
        chunk: u64,
        done: impl FnOnce(vddk::Result<Vec<Extent>>) + Send + 'static,
    ) {
        match self {
            Engine::Pipelined(w) => w.allocated_blocks(start, count, chunk, done),
            Engine::Direct(d) => done(d.with(|disk| disk.allocated_blocks(start, count, chunk))),
        }
    }

    pub(crate) fn close(&self) -> vddk::Result<()> {
        match self {
            Engine::Pipelined(w) => w.close(),
            Engine::Direct(d) => d.close(),
        }
    }
}
