//! [`DiskDriver`]: the one way to drive a disk from many threads.
//!
//! # The model
//!
//! VDDK forbids overlapping calls on one handle, and a remote disk answers
//! each request in milliseconds, so throughput there comes from keeping
//! many async requests in flight. A local file answers in microseconds,
//! where a hand-off to another thread costs more than the I/O. A driver
//! therefore works in one of two [`Mode`]s, chosen by the transport the
//! disk was opened with:
//!
//! - [`Mode::Direct`] (the `file` transport): each call makes the
//!   synchronous VDDK call on the caller's thread, under a lock, and
//!   completes before it returns.
//! - [`Mode::Pipelined`] (every network transport): a thread of the
//!   driver's own issues ReadAsync/WriteAsync, up to
//!   [`DriverOptions::max_in_flight`] at once, and completions run on the
//!   VDDK thread that reports them.
//!
//! Either way a request completes by calling its `done` exactly once, on
//! whichever thread learned the outcome: the caller's (direct mode, and
//! requests refused before they start), a VDDK thread (pipelined reads and
//! writes), or the driver's thread (flushes, allocation queries, and
//! failures in pipelined mode). A `done` must therefore be short and must
//! not block; it may submit further requests. A panic in one is caught.
//!
//! Offsets and lengths are in bytes, at any alignment: a read is widened
//! to whole sectors and trimmed, and a write that starts or ends inside a
//! sector reads that sector first (read-modify-write, done with nothing
//! else in flight). Requests that overlap take effect in submission order;
//! others may complete in any order. A flush covers every write completed
//! before it was submitted.
//!
//! [`DiskDriver::close`], or dropping the last clone, finishes what was
//! submitted, flushes if anything was written, and closes the handle.
//! Dropping the last clone waits for that (except inside a `done`, which
//! cannot wait for itself), so the library can exit in order afterwards.
//!
//! ```no_run
//! use std::sync::mpsc;
//! use vddk::{Connection, ConnectParams, DiskDriver, DriverOptions, InitOptions, OpenFlags, Vddk};
//!
//! let vddk = Vddk::init(InitOptions::new())?;
//! let conn = Connection::connect(&vddk, &ConnectParams::local())?;
//! let disk = conn.open("/vms/web.vmdk", OpenFlags::READ_ONLY)?;
//! let driver: DiskDriver = DiskDriver::new(disk, DriverOptions::new())?;
//! let (tx, rx) = mpsc::channel();
//! for i in 0..4u64 {
//!     let tx = tx.clone();
//!     driver.read(i << 20, 1 << 20, Vec::new(), Box::new(move |r| {
//!         let _ = tx.send((i, r));
//!     }));
//! }
//! drop(tx);
//! for (i, r) in rx {
//!     println!("MiB {i}: {} bytes", r?.len());
//! }
//! driver.close()?;
//! # Ok::<(), vddk::Error>(())
//! ```

mod align;
mod direct;
mod options;
mod pipeline;
mod reconnect;
mod schedule;

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, ThreadId};

use crate::blocks::{Extent, MIN_CHUNK};
use crate::disk::{check_range, Disk};
use crate::disk_info::DiskInfo;
use crate::error::{Error, Result};

use direct::Direct;
pub use options::{DriverOptions, Mode, Opener};
use pipeline::{Msg, Op, Status, Worker};
pub use reconnect::Reconnect;

/// A completion: called exactly once with the outcome of its request.
///
/// `E` is the error type the caller wants (anything built from
/// [`Error`]), so that a program can pass its own completions through
/// without wrapping them.
///
/// # Examples
///
/// A completion that hands the outcome to whoever waits for it:
///
/// ```
/// use std::sync::mpsc;
/// use vddk::driver::Done;
///
/// fn reply<T: Send + 'static>(tx: mpsc::Sender<vddk::Result<T>>) -> Done<T> {
///     Box::new(move |r| {
///         let _ = tx.send(r);
///     })
/// }
///
/// let (tx, rx) = mpsc::channel();
/// let done: Done<Vec<u8>> = reply(tx);
/// // `driver.read(0, 4096, Vec::new(), done)` would call it once; so does this:
/// done(Ok(vec![0; 4096]));
/// assert_eq!(rx.recv()?.map(|buf| buf.len())?, 4096);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Done<T, E = Error> = Box<dyn FnOnce(std::result::Result<T, E>) + Send + 'static>;

fn cannot_reopen() -> Error {
    Error::InvalidArgument(
        "this driver cannot reopen its disk: give it DriverOptions::reopen_with".into(),
    )
}

/// Closes `old` (flushing it first if it was `written`; failures are
/// logged, as the connection may be gone) and opens the disk again.
pub(crate) fn reopen_disk(old: Option<Disk>, written: bool, opener: &Opener) -> Result<Disk> {
    if let Some(disk) = old {
        if written {
            if let Err(e) = disk.flush() {
                log::warn!(target: "vddk::driver", "flushing before reopening: {e}");
            }
        }
        if let Err(e) = disk.close() {
            log::warn!(target: "vddk::driver", "closing before reopening: {e}");
        }
    }
    opener()
}

thread_local! {
    /// Set while this thread runs a completion.
    static IN_COMPLETION: Cell<bool> = const { Cell::new(false) };
}

/// Runs a completion: marks the thread as completing (so that a close or
/// drop from inside it does not wait for itself) and catches a panic so
/// that it cannot take the driver, or a VDDK thread, down.
pub(crate) fn completing(f: impl FnOnce()) {
    let outer = IN_COMPLETION.with(|c| c.replace(true));
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error!(target: "vddk::driver", "a completion panicked; the disk carries on");
    }
    IN_COMPLETION.with(|c| c.set(outer));
}

fn in_completion() -> bool {
    IN_COMPLETION.with(Cell::get)
}

/// A disk driven from many threads: see the [module docs](self).
///
/// Clone it freely (it is `Send + Sync`); clones share the disk.
///
/// # Examples
///
/// A write from another thread, at no sector boundary, waited for on
/// this one (the [module docs](self) read with several requests in
/// flight):
///
/// ```no_run
/// # fn demo(conn: &vddk::Connection) -> vddk::Result<()> {
/// use std::sync::mpsc;
/// use vddk::{DiskDriver, DriverOptions, OpenFlags};
///
/// let disk = conn.open("/vms/data.vmdk", OpenFlags::empty())?;
/// let driver: DiskDriver = DiskDriver::new(disk, DriverOptions::new())?;
/// let (tx, rx) = mpsc::channel();
/// let writer = driver.clone();
/// std::thread::spawn(move || {
///     writer.write(1000, b"abc".to_vec(), Box::new(move |r| {
///         let _ = tx.send(r.map(drop));
///     }));
/// });
/// rx.recv().unwrap_or(Err(vddk::Error::Closed))?;
/// driver.close()?; // flushes, as something was written
/// # Ok(())
/// # }
/// ```
pub struct DiskDriver<E = Error> {
    inner: Arc<Inner<E>>,
}

impl<E> Clone for DiskDriver<E> {
    fn clone(&self) -> Self {
        DiskDriver {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<E> {
    info: DiskInfo,
    transport: String,
    max_request: u64,
    engine: Engine<E>,
}

enum Engine<E> {
    Direct(Direct),
    Pipelined(Pipeline<E>),
}

struct Pipeline<E> {
    tx: Sender<Msg<E>>,
    status: Arc<Status>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl<E: From<Error> + Send + 'static> DiskDriver<E> {
    /// Takes over `disk`; reads its info and transport first.
    ///
    /// # Errors
    /// [`Error::Vix`] from GetInfo; [`Error::Io`] when the driver's
    /// thread cannot be started; [`Error::InvalidArgument`] for a
    /// [`Reconnect`] policy without an opener.
    pub fn new(disk: Disk, opts: DriverOptions) -> Result<DiskDriver<E>> {
        if opts.reconnect.is_some() && opts.opener.is_none() {
            return Err(Error::InvalidArgument(
                "DriverOptions::reconnect needs DriverOptions::reopen_with, to open the disk \
                 again"
                    .into(),
            ));
        }
        let info = disk.info()?;
        let transport = disk.transport_mode();
        let mode = opts.mode.unwrap_or_else(|| Mode::for_transport(&transport));
        let engine = match mode {
            Mode::Direct => Engine::Direct(Direct::new(disk, opts.opener.clone(), opts.reconnect)),
            Mode::Pipelined => {
                let (tx, rx) = mpsc::channel();
                let status = Arc::new(Status::default());
                let worker = Worker::new(
                    disk,
                    opts.max_in_flight,
                    tx.clone(),
                    rx,
                    Arc::clone(&status),
                    opts.opener.clone(),
                    opts.reconnect,
                );
                let thread = thread::Builder::new()
                    .name("vddk-disk".into())
                    .spawn(move || worker.run())?;
                Engine::Pipelined(Pipeline {
                    tx,
                    status,
                    thread_id: thread.thread().id(),
                    thread: Mutex::new(Some(thread)),
                })
            }
        };
        Ok(DiskDriver {
            inner: Arc::new(Inner {
                info,
                transport,
                max_request: opts.max_request_bytes,
                engine,
            }),
        })
    }

    /// The disk's info, read when the driver started.
    pub fn info(&self) -> &DiskInfo {
        &self.inner.info
    }

    /// The disk's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.info.capacity
    }

    /// The transport the disk was opened with (`file`, `nbdssl`, ...).
    pub fn transport(&self) -> &str {
        &self.inner.transport
    }

    /// How many times the driver made its connection again after losing
    /// it ([`DriverOptions::reconnect`]).
    pub fn reconnections(&self) -> u64 {
        match &self.inner.engine {
            Engine::Direct(d) => d.reconnections.load(Ordering::Relaxed),
            Engine::Pipelined(p) => p.status.reconnections.load(Ordering::Relaxed),
        }
    }

    /// How this driver issues its calls.
    pub fn mode(&self) -> Mode {
        match self.inner.engine {
            Engine::Direct(_) => Mode::Direct,
            Engine::Pipelined(_) => Mode::Pipelined,
        }
    }

    /// Reads `len` bytes at `offset` into `buf` (cleared first; its
    /// capacity is reused) and passes it to `done`.
    pub fn read(&self, offset: u64, len: usize, buf: Vec<u8>, done: Done<Vec<u8>, E>) {
        if let Err(e) = self.check(offset, len as u64) {
            return completing(|| done(Err(e.into())));
        }
        if len == 0 {
            let mut buf = buf;
            buf.clear();
            return completing(|| done(Ok(buf)));
        }
        match &self.inner.engine {
            Engine::Direct(d) => {
                let r = d.read(offset, len, buf);
                completing(|| done(r.map_err(E::from)));
            }
            Engine::Pipelined(p) => p.submit(Op::Read {
                offset,
                len,
                buf,
                done,
            }),
        }
    }

    /// Writes `data` at `offset`; `done` gets the buffer back, to reuse.
    pub fn write(&self, offset: u64, data: Vec<u8>, done: Done<Vec<u8>, E>) {
        if let Err(e) = self.check(offset, data.len() as u64) {
            return completing(|| done(Err(e.into())));
        }
        if data.is_empty() {
            return completing(|| done(Ok(data)));
        }
        match &self.inner.engine {
            Engine::Direct(d) => {
                let r = d.write(offset, data);
                completing(|| done(r.map_err(E::from)));
            }
            Engine::Pipelined(p) => p.submit(Op::Write { offset, data, done }),
        }
    }

    /// Makes every write completed before this call durable.
    pub fn flush(&self, done: Done<(), E>) {
        match &self.inner.engine {
            Engine::Direct(d) => {
                let r = d.flush();
                completing(|| done(r.map_err(E::from)));
            }
            Engine::Pipelined(p) => p.submit(Op::Flush { done }),
        }
    }

    /// The allocated extents in `[offset, offset + length)`, in bytes (see
    /// [`Disk::allocated_blocks`]; queried in 64 KiB chunks), after every
    /// earlier request has completed.
    pub fn allocated(&self, offset: u64, length: u64, done: Done<Vec<Extent>, E>) {
        if let Err(e) = crate::disk::check_aligned(offset, length)
            .and_then(|()| check_range(offset, length, self.capacity()))
        {
            return completing(|| done(Err(e.into())));
        }
        match &self.inner.engine {
            Engine::Direct(d) => {
                let r = d.allocated(offset, length, MIN_CHUNK);
                completing(|| done(r.map_err(E::from)));
            }
            Engine::Pipelined(p) => p.submit(Op::Allocated {
                offset,
                length,
                done,
            }),
        }
    }

    /// Finishes every submitted request, flushes if anything was written,
    /// and closes the handle. Later requests fail with [`Error::Closed`].
    /// Calling it again returns `Ok`.
    ///
    /// # Errors
    /// The flush's or Close's error; [`Error::InvalidArgument`] when called
    /// from inside a completion, which would wait for itself.
    pub fn close(&self) -> Result<()> {
        match &self.inner.engine {
            Engine::Direct(d) => d.close(),
            Engine::Pipelined(p) => {
                if in_completion() || thread::current().id() == p.thread_id {
                    return Err(Error::InvalidArgument(
                        "DiskDriver::close was called from inside a completion, which would \
                         wait for itself: close the driver from another thread, or drop it"
                            .into(),
                    ));
                }
                let (reply_tx, reply_rx) = mpsc::channel();
                if p.tx
                    .send(Msg::Submit(Op::Close {
                        reply: Some(reply_tx),
                    }))
                    .is_err()
                {
                    return Ok(());
                }
                reply_rx.recv().unwrap_or(Ok(()))
            }
        }
    }

    /// Finishes every request submitted so far, closes the disk and opens
    /// it again with the [`Opener`] given to
    /// [`DriverOptions::reopen_with`] (a new connection, typically), for
    /// when the connection to the host is lost. Later requests go to the
    /// new handle. Writes acknowledged before are flushed first if the old
    /// handle still can; a flush that fails is logged.
    ///
    /// # Errors
    /// The opener's error (the driver then has no disk, and a later
    /// `reopen` may try again); [`Error::InvalidArgument`] without an
    /// opener or from inside a completion.
    pub fn reopen(&self) -> Result<()> {
        match &self.inner.engine {
            Engine::Direct(d) => d.reopen(),
            Engine::Pipelined(p) => {
                if in_completion() || thread::current().id() == p.thread_id {
                    return Err(Error::InvalidArgument(
                        "DiskDriver::reopen was called from inside a completion, which would \
                         wait for itself"
                            .into(),
                    ));
                }
                let (reply_tx, reply_rx) = mpsc::channel();
                if p.tx
                    .send(Msg::Submit(Op::Reopen { reply: reply_tx }))
                    .is_err()
                {
                    return Err(Error::Closed);
                }
                reply_rx.recv().unwrap_or(Err(Error::Closed))
            }
        }
    }

    /// Whether [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        match &self.inner.engine {
            Engine::Direct(d) => d.is_closed(),
            Engine::Pipelined(p) => p.status.closed.load(Ordering::Acquire),
        }
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        if len > self.inner.max_request {
            return Err(Error::InvalidArgument(format!(
                "a request of {len} bytes is larger than this driver's limit of {} bytes \
                 (DriverOptions::max_request_bytes): split it",
                self.inner.max_request
            )));
        }
        check_range(offset, len, self.capacity())
    }
}

impl<E> Pipeline<E> {
    fn submit(&self, op: Op<E>)
    where
        E: From<Error>,
    {
        if let Err(mpsc::SendError(Msg::Submit(op))) = self.tx.send(Msg::Submit(op)) {
            // The driver thread is gone (it only stops on shutdown).
            pipeline::reject(op);
        }
    }
}

impl<E> fmt::Debug for DiskDriver<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskDriver")
            .field("capacity", &self.inner.info.capacity)
            .field("transport", &self.inner.transport)
            .finish_non_exhaustive()
    }
}

impl<E> Drop for Inner<E> {
    fn drop(&mut self) {
        match &self.engine {
            Engine::Direct(d) => {
                if let Err(e) = d.close() {
                    log::error!(target: "vddk::driver", "closing the disk: {e}");
                }
            }
            Engine::Pipelined(p) => {
                let _ = p.tx.send(Msg::Shutdown);
                // Wait for the handle to be closed so that the library can
                // exit in order afterwards; not from the driver's own
                // thread or a completion, which would wait for themselves.
                if in_completion() || thread::current().id() == p.thread_id {
                    return;
                }
                let handle = p.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(h) = handle {
                    let _ = h.join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn drivers_are_send_and_sync() {
        assert_send_sync::<DiskDriver>();
        assert_send_sync::<DiskDriver<std::io::Error>>();
    }

    #[test]
    fn options_clamp_and_modes_follow_the_transport() {
        assert_eq!(DriverOptions::new().max_in_flight(0).max_in_flight, 1);
        assert_eq!(DriverOptions::new().max_in_flight, 16);
        assert_eq!(DriverOptions::new().max_request_bytes, 64 << 20);
        assert_eq!(
            DriverOptions::new()
                .max_request_bytes(100)
                .max_request_bytes,
            512
        );
        assert_eq!(Mode::for_transport("file"), Mode::Direct);
        assert_eq!(Mode::for_transport("nbdssl"), Mode::Pipelined);
        assert_eq!(Mode::for_transport("hotadd"), Mode::Pipelined);
    }

    #[test]
    fn completing_marks_the_thread_and_catches_panics() {
        assert!(!in_completion());
        let mut seen = false;
        completing(|| seen = in_completion());
        assert!(seen);
        completing(|| panic!("a completion that panics"));
        assert!(!in_completion());
    }
}
