//! ReadAsync / WriteAsync over a fixed table of request slots.
//!
//! A disk that runs async I/O owns an [`AsyncTable`]: one slot per request
//! that may be in flight. A slot holds the request's buffer (the memory
//! VDDK reads or writes) and a caller's value `P` until VDDK's callback has
//! run, and the callback's `data` is the slot's address, so no request
//! allocates. The callback hands buffer, value and result to the table's
//! [`Finished`] sink.
//!
//! An atomic state per slot decides who finishes a request: the callback
//! (the normal case, possibly before the submit call returns), or the
//! submitter when the submit call itself fails.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vddk_sys::VixError;

use super::RawDisk;
use crate::vix::VixCode;

/// Receives each accepted request's outcome.
pub(crate) trait Finished<P>: Send + Sync + 'static {
    /// Called once per accepted request, on a VDDK thread or inside the
    /// submit call itself: it must not block, nor take a lock that the
    /// submitting thread holds while it submits. `buf` holds a read's bytes
    /// when `err` is VIX_OK (and is empty after a failed read); a write's
    /// buffer comes back unchanged.
    fn finished(&self, slot: usize, buf: Vec<u8>, value: P, err: VixError);
}

const IDLE: u8 = 0;
const PENDING: u8 = 1;

/// The request slots of one disk handle.
pub(crate) struct AsyncTable<P> {
    slots: Box<[Slot<P>]>,
}

struct Slot<P> {
    index: usize,
    state: AtomicU8,
    // Locked only to move the contents in or out, never across a VDDK call.
    inner: Mutex<Option<Entry<P>>>,
    sink: Arc<dyn Finished<P>>,
}

struct Entry<P> {
    buf: Vec<u8>,
    /// For a read, the bytes a successful completion has filled: the
    /// buffer's spare capacity is handed to VDDK without being initialised,
    /// and gets this length only once VDDK has written it. Zero for writes.
    fill: usize,
    value: P,
}

impl<P> Slot<P> {
    fn entry(&self) -> MutexGuard<'_, Option<Entry<P>>> {
        // Moving a value in or out cannot panic halfway: a poisoned slot is sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry's buffer as the sink sees it.
    fn take(&self, result: VixError) -> Option<(Vec<u8>, P)> {
        let Entry {
            mut buf,
            fill,
            value,
        } = self.entry().take()?;
        if fill > 0 && VixCode::from_raw(result).is_ok() {
            debug_assert!(buf.capacity() >= fill);
            // SAFETY: the buffer was empty with capacity of at least `fill`
            // and handed to ReadAsync for exactly `fill` bytes; a successful
            // completion means VDDK wrote all of them.
            unsafe { buf.set_len(fill) };
        }
        Some((buf, value))
    }
}

impl<P: Send + 'static> AsyncTable<P> {
    /// A table of `n` slots (at least one) reporting to `sink`.
    pub(crate) fn new(n: usize, sink: Arc<dyn Finished<P>>) -> Arc<AsyncTable<P>> {
        let slots = (0..n.max(1))
            .map(|index| Slot {
                index,
                state: AtomicU8::new(IDLE),
                inner: Mutex::new(None),
                sink: Arc::clone(&sink),
            })
            .collect();
        Arc::new(AsyncTable { slots })
    }

    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether a request is still waiting for its callback.
    pub(crate) fn any_pending(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.state.load(Ordering::Acquire) == PENDING)
    }
}

extern "C" fn on_complete<P: Send + 'static>(data: *mut c_void, result: VixError) {
    // SAFETY: `data` is the address of a slot of a table that its owner
    // keeps alive until every accepted request has called back (it Waits
    // before letting the table go, and leaks it if any is still pending),
    // and VDDK calls each request's callback once.
    let slot = unsafe { &*data.cast_const().cast::<Slot<P>>() };
    if slot
        .state
        .compare_exchange(PENDING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    if let Some((buf, value)) = slot.take(result) {
        // Nothing may unwind into VDDK.
        let sink = &slot.sink;
        let _ = catch_unwind(AssertUnwindSafe(|| {
            sink.finished(slot.index, buf, value, result)
        }));
    }
}

/// Which way a request moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// A request the library refused at submission: nothing was started and
/// the sink will not hear of it; the caller gets buffer and value back.
pub(crate) struct Rejected<P> {
    pub buf: Vec<u8>,
    pub value: P,
    pub err: VixError,
}

impl RawDisk {
    /// Submits ReadAsync (into the spare capacity of `buf`, which is
    /// cleared) or WriteAsync (from `buf`) of `sectors` sectors at `start`,
    /// in `slot` of `table`, which must be idle (the caller tracks which
    /// slots are in use).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit<P: Send + 'static>(
        &self,
        table: &Arc<AsyncTable<P>>,
        slot: usize,
        dir: Direction,
        start: u64,
        sectors: u64,
        mut buf: Vec<u8>,
        value: P,
    ) -> Result<(), Rejected<P>> {
        let Some(s) = table.slots.get(slot) else {
            return Err(Rejected {
                buf,
                value,
                err: u64::from(vddk_sys::VIX_E_INVALID_ARG),
            });
        };
        let len = (sectors * 512) as usize;
        let fill = match dir {
            Direction::Read => {
                buf.clear();
                buf.reserve(len);
                len
            }
            Direction::Write => {
                debug_assert!(buf.len() >= len);
                0
            }
        };
        let data = buf.as_mut_ptr();
        if s.state
            .compare_exchange(IDLE, PENDING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // The caller's bookkeeping is wrong; refuse rather than let two
            // requests share a slot.
            return Err(Rejected {
                buf,
                value,
                err: u64::from(vddk_sys::VIX_E_OBJECT_IS_BUSY),
            });
        }
        // The Vec moves into the slot; its heap block (where `data` points)
        // does not move.
        *s.entry() = Some(Entry { buf, fill, value });
        self.used_async.set(true);
        let cb_data = (s as *const Slot<P>).cast_mut().cast::<c_void>();
        let core = self.lib().core();
        // ReadAsync and WriteAsync differ only in the constness of the
        // buffer pointer, which `data` coerces to: one expansion serves
        // both, and times each under its own name.
        macro_rules! submit_async {
            ($f:ident) => {
                // SAFETY: `data` points to `sectors` whole sectors within the
                // capacity of a buffer owned by the slot (a read's bytes are
                // not initialised, which is fine for memory the library only
                // writes), which stays there until the callback has taken it;
                // `cb_data` is the slot, kept alive by its table's owner until
                // every callback ran; `&self` guarantees no other call on the
                // handle overlaps this one. No lock is held here that
                // `on_complete` takes.
                self.lib().timed(stringify!($f), sectors * 512, || unsafe {
                    core.$f(
                        self.handle(),
                        start,
                        sectors,
                        data,
                        Some(on_complete::<P>),
                        cb_data,
                    )
                })
            };
        }
        let err = match dir {
            Direction::Read => submit_async!(VixDiskLib_ReadAsync),
            Direction::Write => submit_async!(VixDiskLib_WriteAsync),
        };
        if VixCode::from_raw(err) == VixCode::ASYNC {
            return Ok(());
        }
        // The submit failed, or finished synchronously. If the callback has
        // not run, VDDK's contract is that it never will: the request is
        // ours again.
        if s.state
            .compare_exchange(PENDING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(());
        }
        let Some((buf, value)) = s.take(err) else {
            return Ok(());
        };
        if VixCode::from_raw(err).is_ok() {
            let sink = &s.sink;
            let _ = catch_unwind(AssertUnwindSafe(|| sink.finished(slot, buf, value, err)));
            return Ok(());
        }
        Err(Rejected { buf, value, err })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Finished<u32> for Nothing {
        fn finished(&self, _: usize, _: Vec<u8>, _: u32, _: VixError) {}
    }

    #[test]
    fn a_table_has_at_least_one_slot_and_starts_idle() {
        let t = AsyncTable::new(0, Arc::new(Nothing));
        assert_eq!(t.len(), 1);
        assert!(!t.any_pending());
        let t = AsyncTable::new(16, Arc::new(Nothing));
        assert_eq!(t.len(), 16);
    }

    #[test]
    fn a_completion_is_taken_once_with_a_read_filled_only_on_success() {
        let t = AsyncTable::new(1, Arc::new(Nothing));
        let s = &t.slots[0];
        // Initialised memory, as VDDK would leave it after a read.
        let mut buf = vec![1u8; 1024];
        buf.clear();
        *s.entry() = Some(Entry {
            buf,
            fill: 1024,
            value: 7u32,
        });
        let (buf, v) = s.take(0).unwrap();
        assert_eq!((buf.len(), v), (1024, 7));
        assert!(s.take(0).is_none(), "taken once");
        let mut buf = vec![1u8; 512];
        buf.clear();
        *s.entry() = Some(Entry {
            buf,
            fill: 512,
            value: 8u32,
        });
        let (buf, _) = s.take(u64::from(vddk_sys::VIX_E_FAIL)).unwrap();
        assert!(buf.is_empty(), "a failed read hands back no bytes");
    }
}
