//! Asynchronous reads and writes: a few background threads complete
//! requests when their simulated latency has passed, so requests submitted
//! together complete together (a caller that pipelines gains, as with the
//! real library). Reads wholly inside flat extents copy their data without
//! holding the disk, so they overlap like a real library's transfers do;
//! everything else takes the disk's lock in turn. Like VDDK, the fake does
//! not order overlapping requests: that is the caller's job.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::ffi::*;
use crate::handles::Disk;
use crate::link::Transfer;
use crate::{errors, log};

/// A raw pointer the caller guarantees stays valid until the completion
/// callback; it only travels to the worker thread.
#[derive(Clone, Copy)]
pub struct SendPtr(pub *mut c_void);

// SAFETY: the pointer is only dereferenced by the worker while the caller's
// contract (buffer and callback data live until the callback) holds; the
// fake itself never shares it between threads at the same time.
unsafe impl Send for SendPtr {}

/// One submitted request.
pub struct Request {
    pub disk: Arc<Disk>,
    pub write: bool,
    pub sector: u64,
    pub sectors: u64,
    pub buf: SendPtr,
    pub callback: CompletionCb,
    pub data: SendPtr,
    /// An injected failure to deliver instead of doing the I/O.
    pub fail: Option<VixError>,
    /// With the link model: the request's booked transfer. If the
    /// connection is lost before it ends, the request fails instead of
    /// doing its I/O.
    pub transfer: Option<Transfer>,
}

struct Queued {
    due: Instant,
    seq: u64,
    req: Request,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed, so the max-heap pops the earliest due request first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Queued>,
    seq: u64,
    running: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    heap: BinaryHeap::new(),
    seq: 0,
    running: false,
});
static WAKE: Condvar = Condvar::new();
static WORKERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Completion threads: enough for reads to overlap on a small machine.
const THREADS: usize = 4;

/// Starts the completion threads (InitEx).
pub fn start() {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner()).running = true;
    let mut workers = WORKERS.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..THREADS {
        let spawned = std::thread::Builder::new()
            .name("fake-vddk-aio".into())
            .spawn(worker);
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => log::warn(&format!("cannot start an async completion thread: {e}")),
        }
    }
    if workers.is_empty() {
        drop(workers);
        log::warn("no async completion thread: async I/O will complete inline");
        QUEUE.lock().unwrap_or_else(|e| e.into_inner()).running = false;
    }
}

/// Completes every queued request, then stops the threads (Exit).
pub fn stop() {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner()).running = false;
    WAKE.notify_all();
    let handles = std::mem::take(&mut *WORKERS.lock().unwrap_or_else(|e| e.into_inner()));
    for h in handles {
        let _ = h.join();
    }
}

/// Queues `req` to complete at `due`.
pub fn submit(req: Request, due: Instant) {
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    if !q.running {
        drop(q);
        complete(req);
        return;
    }
    q.seq += 1;
    let seq = q.seq;
    q.heap.push(Queued { due, seq, req });
    drop(q);
    // One thread is enough: any of them takes any request, and waking all
    // of them for each one costs more than the copy.
    WAKE.notify_one();
}

fn worker() {
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        match q.heap.peek().map(|top| top.due) {
            Some(due) if due <= now || !q.running => {
                if let Some(item) = q.heap.pop() {
                    drop(q);
                    complete(item.req);
                    q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
                }
            }
            Some(due) => {
                q = WAKE
                    .wait_timeout(q, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None if !q.running => return,
            None => q = WAKE.wait(q).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// Does the I/O of one request, runs its callback, and marks it done.
/// Never called with a queue lock held: the callback may submit more.
fn complete(req: Request) {
    let result = match (req.fail, &req.disk.link, req.transfer) {
        (Some(code), _, _) => code,
        (None, Some(link), Some(transfer)) if link.fails(transfer) => {
            let function = if req.write {
                "VixDiskLib_WriteAsync"
            } else {
                "VixDiskLib_ReadAsync"
            };
            link.conn
                .fail(function, &req.disk.path.display().to_string())
        }
        _ => run_io(&req),
    };
    req.disk.release_slot();
    if let Some(cb) = req.callback {
        let data = req.data.0;
        // SAFETY: the caller passed `cb` and `data` to ReadAsync/WriteAsync
        // for exactly this call; the ABI says the callback receives them.
        // A panic cannot come back from a C function pointer.
        unsafe { cb(data, result) };
    }
    req.disk.complete_one();
}

fn run_io(req: &Request) -> VixError {
    let len = (req.sectors * SECTOR) as usize;
    if !req.write {
        let plan = req.disk.engine().flat_plan(req.sector, req.sectors);
        if let Some(plan) = plan {
            // SAFETY: as below, for a writable buffer the caller owns until
            // the callback; the disk's lock is not needed for flat data.
            let buf = unsafe { std::slice::from_raw_parts_mut(req.buf.0 as *mut u8, len) };
            return read_flat(&plan, buf);
        }
    }
    let mut engine = req.disk.engine();
    let outcome = if req.write {
        // SAFETY: WriteAsync checked the buffer is non-NULL; the caller
        // keeps `len` bytes valid until the completion callback.
        let buf = unsafe { std::slice::from_raw_parts(req.buf.0 as *const u8, len) };
        engine.write(req.sector, buf)
    } else {
        // SAFETY: as above, for a writable buffer owned by the caller until
        // the callback; no one else touches it meanwhile.
        let buf = unsafe { std::slice::from_raw_parts_mut(req.buf.0 as *mut u8, len) };
        engine.read(req.sector, buf)
    };
    match outcome {
        Ok(()) => VIX_OK,
        Err(e) => {
            let code = errors::from_vmdk(&e);
            log::warn(&format!(
                "VixDiskLib: async {} of {} sectors at {} failed: {}",
                if req.write { "write" } else { "read" },
                req.sectors,
                req.sector,
                errors::describe(&e)
            ));
            code
        }
    }
}

/// Reads `buf` from the pieces of a flat plan, in order.
fn read_flat(plan: &[crate::vmdk::FlatPiece], buf: &mut [u8]) -> VixError {
    let mut at = 0;
    for piece in plan {
        let Some(dst) = buf.get_mut(at..at + piece.len) else {
            return VIX_E_FAIL;
        };
        if let Err(e) = crate::vmdk::read_full(&piece.file, piece.pos, dst) {
            let code = errors::from_vmdk(&e);
            log::warn(&format!(
                "VixDiskLib: async read of {} bytes at byte {} of a flat extent failed: {}",
                piece.len,
                piece.pos,
                errors::describe(&e)
            ));
            return code;
        }
        at += piece.len;
    }
    VIX_OK
}
