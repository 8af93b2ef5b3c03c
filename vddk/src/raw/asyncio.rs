//! ReadAsync / WriteAsync with buffers the request owns.
//!
//! Each request has an [`AsyncSlot`] shared (through `Arc`) by the
//! submitter and the completion callback. The slot owns the buffer, so the
//! memory VDDK reads or writes lives until the callback has run, whatever
//! the caller does meanwhile. An atomic state decides who completes the
//! request: the callback (the normal case, possibly before the submit call
//! returns), or the submitter when the submit call itself fails.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use vddk_sys::VixError;

use super::RawDisk;

/// Called once per accepted request with the buffer and VDDK's result;
/// never for a [`Rejected`] one.
pub(crate) type Completion = Box<dyn FnOnce(Vec<u8>, VixError) + Send>;

const PENDING: u8 = 0;
const COMPLETED: u8 = 1;
const CLAIMED: u8 = 2;

pub(crate) struct AsyncSlot {
    state: AtomicU8,
    /// For a read, the bytes a successful completion has filled: the
    /// buffer is allocated but not initialised (zeroing it first would cost
    /// as much as a fast copy), and gets this length only once VDDK has
    /// written it. Zero for writes.
    fill: usize,
    // Locked only to take the contents out, never across a VDDK call.
    inner: Mutex<Option<(Vec<u8>, Completion)>>,
}

impl AsyncSlot {
    fn take(&self) -> Option<(Vec<u8>, Completion)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The buffer as the completion sees it: a read's data on success,
    /// empty after a failed read, a write's buffer unchanged.
    fn finish(&self, mut buf: Vec<u8>, result: VixError) -> Vec<u8> {
        if self.fill > 0 && vddk_sys::error_code(result) == u64::from(vddk_sys::VIX_OK) {
            debug_assert!(buf.capacity() >= self.fill);
            // SAFETY: the buffer was allocated with capacity `fill` and
            // handed to ReadAsync for exactly `fill` bytes; a successful
            // completion means VDDK wrote all of them.
            unsafe { buf.set_len(self.fill) };
        }
        buf
    }
}

extern "C" fn on_complete(data: *mut c_void, result: VixError) {
    // SAFETY: `data` is the `Arc::into_raw` reference made for this request
    // in `submit`, and VDDK calls each request's callback at most once.
    let slot = unsafe { Arc::from_raw(data.cast_const().cast::<AsyncSlot>()) };
    let won = slot
        .state
        .compare_exchange(PENDING, COMPLETED, Ordering::AcqRel, Ordering::Acquire);
    if won.is_ok() {
        if let Some((buf, done)) = slot.take() {
            let buf = slot.finish(buf, result);
            // Nothing may unwind into VDDK.
            let _ = catch_unwind(AssertUnwindSafe(|| done(buf, result)));
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// A request the library refused at submission: nothing was started and
/// its completion will not run; the caller gets the buffer back (to retry
/// or fail the request).
pub(crate) struct Rejected {
    pub buf: Vec<u8>,
    pub err: VixError,
}

impl RawDisk {
    /// Submits ReadAsync of `len / 512` sectors at `start` into a new
    /// buffer; `done` receives the filled buffer (empty if the read failed)
    /// and the result, unless the submission itself is refused.
    pub(crate) fn submit_read(
        &self,
        start: u64,
        len: usize,
        done: Completion,
    ) -> Result<(), Rejected> {
        let len = len / 512 * 512;
        self.submit(Direction::Read, start, Vec::with_capacity(len), len, done)
    }

    /// Submits WriteAsync of `buf` at `start`; `done` gets the buffer back.
    pub(crate) fn submit_write(
        &self,
        start: u64,
        buf: Vec<u8>,
        done: Completion,
    ) -> Result<(), Rejected> {
        let len = buf.len() / 512 * 512;
        self.submit(Direction::Write, start, buf, len, done)
    }

    /// Submits `len` bytes (whole sectors, within `buf`'s capacity).
    fn submit(
        &self,
        dir: Direction,
        start: u64,
        mut buf: Vec<u8>,
        len: usize,
        done: Completion,
    ) -> Result<(), Rejected> {
        debug_assert!(buf.capacity() >= len && len % 512 == 0);
        let sectors = (len / 512) as u64;
        let data = buf.as_mut_ptr();
        let slot = Arc::new(AsyncSlot {
            state: AtomicU8::new(PENDING),
            fill: match dir {
                Direction::Read => len,
                Direction::Write => 0,
            },
            inner: Mutex::new(None),
        });
        // The Vec moves into the slot; its heap block (where `data` points)
        // does not move.
        *slot.inner.lock().unwrap_or_else(|e| e.into_inner()) = Some((buf, done));
        let cb_ref = Arc::into_raw(Arc::clone(&slot)).cast_mut().cast::<c_void>();
        self.used_async.set(true);
        let core = self.lib().core();
        let (name, bytes) = match dir {
            Direction::Read => ("VixDiskLib_ReadAsync", sectors * 512),
            Direction::Write => ("VixDiskLib_WriteAsync", sectors * 512),
        };
        // SAFETY: `data` points to `sectors` whole sectors within the
        // capacity of a buffer owned by the slot (a read's bytes are not
        // initialised, which is fine for memory the library only writes),
        // which the callback's reference keeps alive until it has run;
        // `cb_ref` is that reference; `&self` guarantees no other call on
        // the handle overlaps this one. No lock is held here that
        // `on_complete` takes (the slot's mutex is released above).
        let err = self.lib().timed(name, bytes, || unsafe {
            match dir {
                Direction::Read => core.VixDiskLib_ReadAsync(
                    self.handle(),
                    start,
                    sectors,
                    data,
                    Some(on_complete),
                    cb_ref,
                ),
                Direction::Write => core.VixDiskLib_WriteAsync(
                    self.handle(),
                    start,
                    sectors,
                    data,
                    Some(on_complete),
                    cb_ref,
                ),
            }
        });
        if vddk_sys::error_code(err) == u64::from(vddk_sys::VIX_ASYNC) {
            return Ok(());
        }
        // The submit failed, or finished synchronously without a callback.
        // If the callback has not run yet, VDDK's contract is that it never
        // will: the request is ours again. The callback's reference to the
        // (now empty) slot is deliberately leaked, so a library breaking
        // that contract would find a live slot, not freed memory.
        if slot
            .state
            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(());
        }
        let Some((buf, done)) = slot.take() else {
            return Ok(());
        };
        if vddk_sys::error_code(err) == u64::from(vddk_sys::VIX_OK) {
            let buf = slot.finish(buf, err);
            let _ = catch_unwind(AssertUnwindSafe(|| done(buf, err)));
            return Ok(());
        }
        Err(Rejected { buf, err })
    }
}
