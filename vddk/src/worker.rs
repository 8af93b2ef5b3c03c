//! [`DiskWorker`]: one thread per disk handle issuing pipelined async I/O.
//!
//! # The model
//!
//! VDDK forbids overlapping calls on one handle, and its completion
//! callbacks may run on a library thread or inside the submit call itself.
//! So a worker owns its [`Disk`] on a thread of its own, the only thread
//! that calls VDDK for that handle. Requests reach it over a channel; it
//! issues reads and writes with ReadAsync/WriteAsync, up to
//! [`WorkerOptions::max_in_flight`] at once, each with a buffer the request
//! owns. The VDDK callback does nothing but send "request N finished" back
//! over the same channel: it takes no lock the submitter holds, so it is
//! safe even when it runs inside ReadAsync.
//!
//! Requests are issued in submission order. One that overlaps an earlier,
//! still in-flight write (or, for a write, any earlier in-flight request)
//! waits for it, so overlapping requests take effect in the order they were
//! submitted; non-overlapping ones proceed in parallel. Flush and
//! allocated-blocks queries first wait (VDDK Wait) for all in-flight I/O.
//!
//! Callers' `done` closures run on a separate completion thread, never on
//! the VDDK thread and never under a lock of ours; a panic in one is caught
//! and logged. They may submit further requests. A caller whose closures
//! are short and never block can ask for them to run on the worker thread
//! instead ([`WorkerOptions::inline_completions`]), which saves a thread
//! switch per request.
//!
//! [`DiskWorker::close`], or dropping the last clone, drains the queue,
//! flushes if anything was written, and closes the handle. Dropping the
//! last clone blocks until that is done and every pending `done` has run
//! (except when it happens inside a `done` closure, which cannot wait for
//! itself), so the library can exit in order afterwards.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use vddk_sys::VixError;

use crate::blocks::Extent;
use crate::disk::{check_len, Disk, DiskInfo};
use crate::error::{Error, Result};
use crate::raw::Rejected;
use crate::SECTOR_SIZE;

type ReadDone = Box<dyn FnOnce(Result<Vec<u8>>) + Send>;
type WriteDone = Box<dyn FnOnce(Result<()>) + Send>;
type BlocksDone = Box<dyn FnOnce(Result<Vec<Extent>>) + Send>;
type Job = Box<dyn FnOnce() + Send>;

/// How a [`DiskWorker`] runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    max_in_flight: usize,
    max_request_sectors: u64,
    inline_completions: bool,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            max_in_flight: 16,
            max_request_sectors: 64 << 20 >> 9,
            inline_completions: false,
        }
    }
}

impl WorkerOptions {
    /// Defaults: up to 16 requests in flight.
    pub fn new() -> WorkerOptions {
        WorkerOptions::default()
    }

    /// The most async requests outstanding at once (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The largest read or write accepted, in bytes (default 64 MiB);
    /// larger ones fail with [`Error::InvalidArgument`] rather than
    /// allocating without bound. Rounded down to whole sectors, at least one.
    pub fn max_request_bytes(mut self, bytes: u64) -> Self {
        self.max_request_sectors = (bytes / SECTOR_SIZE).max(1);
        self
    }

    /// Runs `done` closures on the worker thread, as soon as their request
    /// completes, instead of handing them to a completion thread (default
    /// `false`). Each request then costs one thread switch less, which
    /// matters at thousands of requests a second on a local disk.
    ///
    /// Only for closures that return quickly and never block: while one
    /// runs, no request on this disk is issued or completed. They may still
    /// submit further requests, but [`DiskWorker::close`] called from one
    /// fails with [`Error::InvalidArgument`] instead of waiting for itself.
    ///
    /// ```
    /// let opts = vddk::WorkerOptions::new().inline_completions(true);
    /// # let _ = opts;
    /// ```
    pub fn inline_completions(mut self, inline: bool) -> Self {
        self.inline_completions = inline;
        self
    }
}

enum Op {
    Read {
        start: u64,
        sectors: u64,
        done: ReadDone,
    },
    Write {
        start: u64,
        data: Vec<u8>,
        done: WriteDone,
    },
    Flush {
        done: WriteDone,
    },
    Blocks {
        start: u64,
        count: u64,
        chunk: u64,
        done: BlocksDone,
    },
    Close {
        reply: Option<Sender<Result<()>>>,
    },
}

impl Op {
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Op::Read { start, sectors, .. } => Some((*start, start + sectors)),
            Op::Write { start, data, .. } => {
                Some((*start, start + (data.len() as u64) / SECTOR_SIZE))
            }
            _ => None,
        }
    }

    fn is_write(&self) -> bool {
        matches!(self, Op::Write { .. })
    }
}

enum Msg {
    Submit(Op),
    Completed {
        id: u64,
        buf: Vec<u8>,
        err: VixError,
    },
    Shutdown,
}

struct InFlight {
    start: u64,
    end: u64,
    write: bool,
    done: Pending,
}

enum Pending {
    Read(ReadDone),
    Write(WriteDone),
}

/// A disk driven by its own thread: see the [module docs](self) for the model.
///
/// Clone it freely (it is `Send + Sync`); all clones talk to one thread.
#[derive(Clone)]
pub struct DiskWorker {
    shared: Arc<Shared>,
}

struct Shared {
    tx: Sender<Msg>,
    info: DiskInfo,
    closed: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<()>>>,
    worker_id: ThreadId,
    /// `None` when completions run inline on the worker thread.
    completion_id: Option<ThreadId>,
}

impl DiskWorker {
    /// Moves `disk` to a new worker thread. Reads its info first.
    ///
    /// # Errors
    /// [`Error::Vix`] from GetInfo; [`Error::Io`] when a thread cannot be started.
    pub fn spawn(disk: Disk, opts: WorkerOptions) -> Result<DiskWorker> {
        let info = disk.info()?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let (jobs, completion) = if opts.inline_completions {
            (None, None)
        } else {
            let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
            let completion = thread::Builder::new()
                .name("vddk-completion".into())
                .spawn(move || run_completions(jobs_rx))?;
            (Some(jobs_tx), Some(completion))
        };
        let completion_id = completion.as_ref().map(|c| c.thread().id());
        let closed = Arc::new(AtomicBool::new(false));
        let state = Worker {
            disk: Some(disk),
            rx,
            self_tx: tx.clone(),
            jobs,
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            written: false,
            waited: false,
            need_wait: false,
            busy_hold: false,
            busy_retries: 0,
            max: opts.max_in_flight.max(1),
            max_request: opts.max_request_sectors,
            capacity: info.capacity_sectors,
            closed: Arc::clone(&closed),
            shutting_down: false,
        };
        let worker = thread::Builder::new()
            .name("vddk-disk".into())
            .spawn(move || {
                state.run();
                // Every job is queued by now; let the completion thread finish them.
                if let Some(c) = completion {
                    let _ = c.join();
                }
            })?;
        let worker_id = worker.thread().id();
        Ok(DiskWorker {
            shared: Arc::new(Shared {
                tx,
                info,
                closed,
                worker: Mutex::new(Some(worker)),
                worker_id,
                completion_id,
            }),
        })
    }

    /// The disk's info, read when the worker started.
    pub fn info(&self) -> &DiskInfo {
        &self.shared.info
    }

    /// Reads `sectors` sectors at `start_sector`; `done` gets the data.
    pub fn read(
        &self,
        start_sector: u64,
        sectors: u64,
        done: impl FnOnce(Result<Vec<u8>>) + Send + 'static,
    ) {
        self.submit(Op::Read {
            start: start_sector,
            sectors,
            done: Box::new(done),
        });
    }

    /// Writes `data` (whole sectors) at `start_sector`.
    pub fn write(
        &self,
        start_sector: u64,
        data: Vec<u8>,
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        self.submit(Op::Write {
            start: start_sector,
            data,
            done: Box::new(done),
        });
    }

    /// Flushes after every earlier request has completed.
    pub fn flush(&self, done: impl FnOnce(Result<()>) + Send + 'static) {
        self.submit(Op::Flush {
            done: Box::new(done),
        });
    }

    /// Allocated extents (see [`Disk::allocated_blocks`]), after every
    /// earlier request has completed.
    pub fn allocated_blocks(
        &self,
        start_sector: u64,
        count: u64,
        chunk: u64,
        done: impl FnOnce(Result<Vec<Extent>>) + Send + 'static,
    ) {
        self.submit(Op::Blocks {
            start: start_sector,
            count,
            chunk,
            done: Box::new(done),
        });
    }

    /// Drains every submitted request, flushes if anything was written,
    /// and closes the handle. Later submissions fail with [`Error::Closed`].
    /// Calling it again returns `Ok`.
    ///
    /// # Errors
    /// The flush's or Close's error; [`Error::InvalidArgument`] when called
    /// from a `done` closure running inline on the worker thread.
    pub fn close(&self) -> Result<()> {
        if thread::current().id() == self.shared.worker_id {
            return Err(Error::InvalidArgument(
                "DiskWorker::close was called from a completion running on the worker thread \
                 (WorkerOptions::inline_completions), which would wait for itself; drop the \
                 worker there instead, or close it from another thread"
                    .into(),
            ));
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        if self
            .shared
            .tx
            .send(Msg::Submit(Op::Close {
                reply: Some(reply_tx),
            }))
            .is_err()
        {
            return Ok(());
        }
        reply_rx.recv().unwrap_or(Ok(()))
    }

    /// Whether [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    fn submit(&self, op: Op) {
        if let Err(mpsc::SendError(Msg::Submit(op))) = self.shared.tx.send(Msg::Submit(op)) {
            // The worker thread is gone (it only stops on shutdown): fail here.
            fail_op(op, || Error::Closed);
        }
    }
}

impl std::fmt::Debug for DiskWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskWorker")
            .field("capacity_sectors", &self.shared.info.capacity_sectors)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        // Wait for the handle to be closed so that, when the last worker
        // goes, the library can Exit in order. Not from the worker's own
        // threads, which would wait for themselves.
        let me = thread::current().id();
        if me != self.worker_id && Some(me) != self.completion_id {
            let handle = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
    }
}

fn run_completions(jobs: Receiver<Job>) {
    for job in jobs {
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!(target: "vddk::worker", "a completion callback panicked; the worker carries on");
        }
    }
}

/// Fails an op that will never run.
fn fail_op(op: Op, err: impl Fn() -> Error) {
    let r = catch_unwind(AssertUnwindSafe(|| match op {
        Op::Read { done, .. } => done(Err(err())),
        Op::Write { done, .. } | Op::Flush { done } => done(Err(err())),
        Op::Blocks { done, .. } => done(Err(err())),
        Op::Close { reply } => {
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
        }
    }));
    if r.is_err() {
        log::error!(target: "vddk::worker", "a completion callback panicked");
    }
}

/// Whether a request on `[start, end)` must wait for one of `in_flight`
/// (`(start, end, is_write)`): reads wait for overlapping writes, writes for
/// anything overlapping.
fn must_wait(
    start: u64,
    end: u64,
    write: bool,
    mut in_flight: impl Iterator<Item = (u64, u64, bool)>,
) -> bool {
    in_flight.any(|(s, e, w)| (write || w) && start < e && s < end)
}

/// How often a request refused as busy is retried before the refusal is
/// reported to the caller.
const MAX_BUSY_RETRIES: u32 = 16;

/// How long to wait for a completion before suspecting the library only
/// completes requests from inside Wait (a safety net: VDDK and the fake
/// complete requests on threads of their own).
const COMPLETION_NUDGE: Duration = Duration::from_secs(2);

struct Worker {
    disk: Option<Disk>,
    rx: Receiver<Msg>,
    self_tx: Sender<Msg>,
    /// The completion thread's queue; `None` runs completions inline.
    jobs: Option<Sender<Job>>,
    queue: VecDeque<Op>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    written: bool,
    /// Wait was called for the barrier at the head of the queue.
    waited: bool,
    /// Async requests were submitted since the last Wait.
    need_wait: bool,
    /// The library refused a submission as busy; hold further I/O until a
    /// request completes.
    busy_hold: bool,
    /// Busy refusals since the last successful completion.
    busy_retries: u32,
    max: usize,
    /// The largest request, in sectors.
    max_request: u64,
    capacity: u64,
    closed: Arc<AtomicBool>,
    shutting_down: bool,
}

impl Worker {
    fn run(mut self) {
        loop {
            self.pump();
            if self.shutting_down && self.disk.is_none() && self.in_flight.is_empty() {
                // Answer anything submitted meanwhile, then stop.
                while let Ok(msg) = self.rx.try_recv() {
                    if let Msg::Submit(op) = msg {
                        self.reject(op);
                    }
                }
                return;
            }
            let blocked_on_io = !self.in_flight.is_empty() && !self.queue.is_empty();
            if blocked_on_io && self.head_is_barrier() && !self.waited {
                self.waited = true;
                self.settle();
            }
            let msg = if self.in_flight.is_empty() {
                self.rx.recv().ok()
            } else {
                match self.rx.recv_timeout(COMPLETION_NUDGE) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => {
                        // Some libraries deliver completions only from Wait.
                        self.need_wait = true;
                        self.settle();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            };
            match msg {
                Some(Msg::Submit(op)) => self.queue.push_back(op),
                Some(Msg::Completed { id, buf, err }) => self.complete(id, buf, err),
                Some(Msg::Shutdown) | None => {
                    self.shutting_down = true;
                    self.queue.push_back(Op::Close { reply: None });
                }
            }
        }
    }

    fn head_is_barrier(&self) -> bool {
        matches!(
            self.queue.front(),
            Some(Op::Flush { .. } | Op::Blocks { .. } | Op::Close { .. })
        )
    }

    fn deliver(&self, job: Job) {
        let job = match &self.jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return,
                // The completion thread died (it cannot: it catches
                // panics); run the callback here rather than lose it.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!(target: "vddk::worker", "a completion callback panicked; the worker carries on");
        }
    }

    fn reject(&self, op: Op) {
        let job: Job = match op {
            Op::Read { done, .. } => Box::new(move || done(Err(Error::Closed))),
            Op::Write { done, .. } | Op::Flush { done } => {
                Box::new(move || done(Err(Error::Closed)))
            }
            Op::Blocks { done, .. } => Box::new(move || done(Err(Error::Closed))),
            Op::Close { reply } => {
                if let Some(r) = reply {
                    let _ = r.send(Ok(()));
                }
                return;
            }
        };
        self.deliver(job);
    }

    fn conflicts(&self, op: &Op) -> bool {
        let Some((s, e)) = op.range() else {
            return false;
        };
        must_wait(
            s,
            e,
            op.is_write(),
            self.in_flight.values().map(|f| (f.start, f.end, f.write)),
        )
    }

    /// Wait, if async I/O was submitted since the last one: synchronous
    /// calls must not overlap async requests on the handle.
    fn settle(&mut self) {
        if !self.need_wait {
            return;
        }
        self.need_wait = false;
        if let Some(disk) = &self.disk {
            if let Err(e) = disk.wait() {
                log::warn!(target: "vddk::worker", "{e}");
            }
        }
    }

    /// Issues queued ops in order while the head can go.
    fn pump(&mut self) {
        while let Some(head) = self.queue.front() {
            if self.disk.is_none() {
                let Some(op) = self.queue.pop_front() else {
                    break;
                };
                self.reject(op);
                continue;
            }
            match head {
                Op::Read { .. } | Op::Write { .. } => {
                    if self.in_flight.len() >= self.max || self.conflicts(head) {
                        return;
                    }
                    if self.busy_hold {
                        // The library refused a submission as busy: wait for
                        // one of ours to finish, or for all of them.
                        if !self.in_flight.is_empty() {
                            return;
                        }
                        self.need_wait = true;
                        self.settle();
                        self.busy_hold = false;
                    }
                }
                _ => {
                    if !self.in_flight.is_empty() {
                        return;
                    }
                }
            }
            let Some(op) = self.queue.pop_front() else {
                break;
            };
            self.waited = false;
            if !matches!(op, Op::Read { .. } | Op::Write { .. }) {
                self.settle();
            }
            self.issue(op);
        }
    }

    fn issue(&mut self, op: Op) {
        if self.disk.is_none() {
            return self.reject(op);
        }
        match op {
            Op::Read {
                start,
                sectors,
                done,
            } => {
                if let Err(e) = self.check_range(start, sectors) {
                    return self.deliver(Box::new(move || done(Err(e))));
                }
                if sectors == 0 {
                    return self.deliver(Box::new(move || done(Ok(Vec::new()))));
                }
                let id = self.track(start, sectors, false, Pending::Read(done));
                self.need_wait = true;
                let tx = self.self_tx.clone();
                let Some(disk) = self.disk.as_ref() else {
                    return;
                };
                let submitted = disk.raw().submit_read(
                    start,
                    (sectors * SECTOR_SIZE) as usize,
                    Box::new(move |buf, err| {
                        let _ = tx.send(Msg::Completed { id, buf, err });
                    }),
                );
                if let Err(rejected) = submitted {
                    self.refused(id, rejected);
                }
            }
            Op::Write { start, data, done } => {
                let sectors = (data.len() as u64) / SECTOR_SIZE;
                if let Err(e) =
                    check_len(data.len()).and_then(|()| self.check_range(start, sectors))
                {
                    return self.deliver(Box::new(move || done(Err(e))));
                }
                if sectors == 0 {
                    return self.deliver(Box::new(move || done(Ok(()))));
                }
                let id = self.track(start, sectors, true, Pending::Write(done));
                self.need_wait = true;
                let tx = self.self_tx.clone();
                let Some(disk) = self.disk.as_ref() else {
                    return;
                };
                let submitted = disk.raw().submit_write(
                    start,
                    data,
                    Box::new(move |buf, err| {
                        let _ = tx.send(Msg::Completed { id, buf, err });
                    }),
                );
                if let Err(rejected) = submitted {
                    self.refused(id, rejected);
                }
            }
            Op::Flush { done } => {
                let r = self.disk.as_ref().map_or(Err(Error::Closed), Disk::flush);
                if r.is_ok() {
                    self.written = false;
                }
                self.deliver(Box::new(move || done(r)));
            }
            Op::Blocks {
                start,
                count,
                chunk,
                done,
            } => {
                let r = self.disk.as_ref().map_or(Err(Error::Closed), |d| {
                    d.allocated_blocks(start, count, chunk)
                });
                self.deliver(Box::new(move || done(r)));
            }
            Op::Close { reply } => {
                let r = self.close_disk();
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                } else if let Err(e) = r {
                    log::warn!(target: "vddk::worker", "closing the disk: {e}");
                }
            }
        }
    }

    fn check_range(&self, start: u64, sectors: u64) -> Result<()> {
        if sectors > self.max_request {
            return Err(Error::InvalidArgument(format!(
                "a request of {sectors} sectors is larger than this worker's limit of {} \
                 (WorkerOptions::max_request_bytes): split it",
                self.max_request
            )));
        }
        match start.checked_add(sectors) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "sectors {start}+{sectors} go past the end of the disk ({} sectors)",
                self.capacity
            ))),
        }
    }

    fn track(&mut self, start: u64, sectors: u64, write: bool, done: Pending) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(
            id,
            InFlight {
                start,
                end: start + sectors,
                write,
                done,
            },
        );
        id
    }

    /// A submission the library refused outright. "Busy" (too many
    /// requests in flight for the library) goes back to the head of the
    /// queue to be retried once a request completes; anything else fails.
    fn refused(&mut self, id: u64, rejected: Rejected) {
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        let busy = vddk_sys::error_code(rejected.err) == u64::from(vddk_sys::VIX_E_OBJECT_IS_BUSY);
        if busy && self.busy_retries < MAX_BUSY_RETRIES {
            self.busy_retries += 1;
            self.busy_hold = true;
            // The library holds fewer requests than we were told: stay
            // below its bound from now on instead of being refused (and
            // logged at) over and over.
            let held = self.in_flight.len();
            if held > 0 && held < self.max {
                log::debug!(
                    target: "vddk::worker",
                    "the library refused a request with {held} in flight; \
                     keeping at most {held} in flight on this disk"
                );
                self.max = held;
            }
            let op = match f.done {
                Pending::Read(done) => Op::Read {
                    start: f.start,
                    sectors: f.end - f.start,
                    done,
                },
                Pending::Write(done) => Op::Write {
                    start: f.start,
                    data: rejected.buf,
                    done,
                },
            };
            self.queue.push_front(op);
            return;
        }
        self.in_flight.insert(id, f);
        self.complete(id, Vec::new(), rejected.err);
    }

    fn complete(&mut self, id: u64, buf: Vec<u8>, err: VixError) {
        let Some(f) = self.in_flight.remove(&id) else {
            log::error!(target: "vddk::worker", "completion for unknown request {id}");
            return;
        };
        let ok = vddk_sys::error_code(err) == u64::from(vddk_sys::VIX_OK);
        self.busy_hold = false;
        if ok {
            self.busy_retries = 0;
        }
        let fail = |call| match &self.disk {
            Some(d) => d.raw().check(call, err).err().unwrap_or(Error::Closed),
            None => Error::Closed,
        };
        let job: Job = match f.done {
            Pending::Read(done) => {
                let r = if ok {
                    Ok(buf)
                } else {
                    Err(fail("VixDiskLib_ReadAsync"))
                };
                Box::new(move || done(r))
            }
            Pending::Write(done) => {
                let r = if ok {
                    Ok(())
                } else {
                    Err(fail("VixDiskLib_WriteAsync"))
                };
                if ok {
                    self.written = true;
                }
                Box::new(move || done(r))
            }
        };
        self.deliver(job);
    }

    fn close_disk(&mut self) -> Result<()> {
        let Some(disk) = self.disk.take() else {
            return Ok(());
        };
        let flushed = if self.written { disk.flush() } else { Ok(()) };
        self.written = false;
        let closed = disk.close();
        self.closed.store(true, Ordering::Release);
        flushed.and(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn worker_handle_is_send_and_sync() {
        assert_send_sync::<DiskWorker>();
    }

    #[test]
    fn overlapping_requests_wait_only_where_order_matters() {
        let flight = [(0u64, 8u64, true), (100, 108, false)];
        let it = || flight.iter().copied();
        // A read over an in-flight write waits; over an in-flight read it does not.
        assert!(must_wait(4, 12, false, it()));
        assert!(!must_wait(100, 104, false, it()));
        // A write waits for any overlap.
        assert!(must_wait(104, 110, true, it()));
        assert!(must_wait(7, 8, true, it()));
        // Adjacent ranges do not overlap.
        assert!(!must_wait(8, 100, true, it()));
        assert!(!must_wait(108, 200, true, it()));
        assert!(!must_wait(0, 8, false, std::iter::empty()));
    }

    #[test]
    fn options_clamp_to_one() {
        assert_eq!(WorkerOptions::new().max_in_flight(0).max_in_flight, 1);
        assert_eq!(WorkerOptions::new().max_in_flight, 16);
        assert_eq!(WorkerOptions::new().max_request_sectors, 131072);
        assert_eq!(
            WorkerOptions::new()
                .max_request_bytes(100)
                .max_request_sectors,
            1
        );
    }
}
