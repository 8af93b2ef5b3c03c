//! The export over a VMware disk: the bottom layer, a [`vddk::DiskDriver`]
//! that serves local files with synchronous calls on the serving threads
//! and remote disks with async requests pipelined by a thread of its own.
//! Completions pass straight through to the driver, which hands them this
//! crate's [`Error`] type, so a request is not re-wrapped on its way.
//!
//! Allocation comes from QueryAllocatedBlocks in 32 GiB windows, kept (see
//! [`super::allocation`]); reads then know which of their bytes are holes.
//!
//! A read-only remote disk may be opened more than once
//! (`nfc-connections=N`): each handle is an NFC connection with a
//! bandwidth of its own, and reads go to the handle with the fewest of
//! them outstanding, so one that is slow, or reconnecting, gets fewer.
//! Everything else (allocation queries, flushes) goes to the first. The
//! handles beyond the first are opened by a thread of their own while the
//! first serves: an Open over vCenter takes seconds, and VDDK opens one
//! handle at a time in a process, so a server that waited for all of them
//! would start that much later.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;

use vddk::{DiskDriver, MIN_CHUNK, SECTOR_SIZE};

use super::allocation::{self, Allocation, WINDOW};
use crate::backend::{
    Backend, BlockSizes, Caps, Done, Error, Extent, Features, Known, ZeroFlags, MAX_PAYLOAD,
};

/// How much a WRITE_ZEROES writes per request: one buffer of zeroes is
/// reused from one request to the next, so a multi-gigabyte request never
/// holds more than this.
const ZERO_CHUNK: u64 = 4 << 20;

/// An export over a VMware disk opened with VDDK.
pub struct VddkDisk {
    driver: DiskDriver<Error>,
    /// With several handles: all of them, the first included. Empty while
    /// the first is the only one.
    readers: RwLock<Vec<Reader>>,
    /// Set by close: a handle opened after it is closed at once.
    closed: AtomicBool,
    /// The thread opening more handles, joined by close.
    opening: Mutex<Option<JoinHandle<()>>>,
    /// Where the search for the least loaded reader starts, turning, so
    /// that equally loaded readers take turns.
    turn: AtomicUsize,
    read_only: bool,
    allocation: Arc<Mutex<Allocation>>,
    log_extents: bool,
}

/// One handle of a disk opened several times, with its reads outstanding.
#[derive(Clone)]
struct Reader {
    driver: DiskDriver<Error>,
    outstanding: Arc<AtomicUsize>,
    /// Reads sent to it, for the log at close.
    reads: Arc<AtomicUsize>,
}

impl Reader {
    fn new(driver: DiskDriver<Error>) -> Reader {
        Reader {
            driver,
            outstanding: Arc::default(),
            reads: Arc::default(),
        }
    }
}

/// Opens one more handle on the disk, or says why the host refused it.
pub type OpenMore = Box<dyn FnMut() -> Result<DiskDriver<Error>, String> + Send>;

impl VddkDisk {
    /// Exports the disk `driver` drives. `read_only` refuses writes (open
    /// the disk read-only too, so VDDK enforces it as well).
    pub fn new(driver: DiskDriver<Error>, read_only: bool) -> VddkDisk {
        VddkDisk {
            driver,
            readers: RwLock::default(),
            closed: AtomicBool::new(false),
            opening: Mutex::default(),
            turn: AtomicUsize::new(0),
            read_only,
            allocation: Arc::default(),
            log_extents: false,
        }
    }

    /// Logs every allocation query and its answer (`-D vddk.extents=1`).
    pub fn log_extents(mut self, on: bool) -> VddkDisk {
        self.log_extents = on;
        self
    }

    /// Opens up to `more` handles of the same disk besides the first, one
    /// after another on a thread of its own, each read-only through its
    /// own NFC connection; reads go to each as soon as it is open. The
    /// first refusal (the host's limit on NFC connections) ends the
    /// opening: the disk is served by the handles it has. A read-write
    /// disk keeps its one handle (writes stay on the first), as does a
    /// disk closed meanwhile.
    pub fn open_more_in_background(self: &Arc<Self>, more: usize, mut open: OpenMore) {
        if more == 0 || !self.read_only {
            return;
        }
        let disk: Weak<VddkDisk> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("vddk-nfc-open".into())
            .spawn(move || {
                for n in 2..=more + 1 {
                    match disk.upgrade() {
                        Some(d) if !d.closed.load(Ordering::Acquire) => {}
                        _ => return,
                    }
                    match open() {
                        Ok(driver) => match disk.upgrade() {
                            Some(d) => d.add_reader(driver),
                            None => close_unused(driver),
                        },
                        Err(e) => {
                            log::warn!(
                                "nfc-connections={}: the host refused NFC connection {n} \
                                 ({e}); reading through {}",
                                more + 1,
                                n - 1
                            );
                            return;
                        }
                    }
                }
                if let Some(d) = disk.upgrade() {
                    log::debug!("reads spread over {} NFC connections", d.handles());
                }
            });
        match spawned {
            Ok(thread) => {
                *self.opening.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread)
            }
            Err(e) => log::warn!("no thread to open more NFC connections ({e}): reading through 1"),
        }
    }

    /// Adds an opened handle to those reads go to, unless the disk has
    /// been closed meanwhile (the handle is closed then).
    fn add_reader(&self, driver: DiskDriver<Error>) {
        let mut readers = self.readers.write().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock close takes to read the list, so a handle
        // is either in the list close sees or closed here.
        if self.closed.load(Ordering::Acquire) {
            drop(readers);
            return close_unused(driver);
        }
        if readers.is_empty() {
            readers.push(Reader::new(self.driver.clone()));
        }
        readers.push(Reader::new(driver));
    }

    /// The driver underneath (the first, with several handles).
    pub fn driver(&self) -> &DiskDriver<Error> {
        &self.driver
    }

    /// How many handles serve reads.
    pub fn handles(&self) -> usize {
        self.readers().len().max(1)
    }

    /// Reconnections made by all the handles together.
    pub fn reconnections(&self) -> u64 {
        self.drivers().iter().map(|d| d.reconnections()).sum()
    }

    fn readers(&self) -> std::sync::RwLockReadGuard<'_, Vec<Reader>> {
        // The list is only ever pushed to: sound when poisoned.
        self.readers.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader with the fewest reads outstanding, if there are several.
    fn least_loaded(&self) -> Option<Reader> {
        let readers = self.readers();
        let n = readers.len();
        if n == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = &readers[start];
        for i in 1..n {
            let r = &readers[(start + i) % n];
            if r.outstanding.load(Ordering::Relaxed) < best.outstanding.load(Ordering::Relaxed) {
                best = r;
            }
        }
        Some(best.clone())
    }

    /// Every handle, the first one first.
    fn drivers(&self) -> Vec<DiskDriver<Error>> {
        let readers = self.readers();
        let more = readers.iter().skip(1).map(|r| r.driver.clone());
        std::iter::once(self.driver.clone()).chain(more).collect()
    }

    fn allocation(&self) -> MutexGuard<'_, Allocation> {
        // Updates cannot stop halfway: sound when poisoned.
        self.allocation.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes a handle opened for a disk that no longer wants it.
fn close_unused(driver: DiskDriver<Error>) {
    if let Err(e) = driver.close() {
        log::warn!("closing an NFC connection opened as the disk closed: {e}");
    }
}

impl Backend for VddkDisk {
    fn caps(&self) -> Caps {
        let info = self.driver.info();
        let physical = info.physical_sector_size.unwrap_or(0);
        Caps {
            size: self.driver.capacity(),
            features: if self.read_only {
                Features::WRITABLE.read_only()
            } else {
                Features::WRITABLE
            },
            extents: true,
            // Any alignment is served (the driver reads and writes around
            // partial sectors), so libnbd clients such as nbdfuse may send
            // what a filesystem asks; whole sectors are what is preferred.
            block_sizes: BlockSizes {
                minimum: 1,
                preferred: physical.clamp(4096, 1 << 20),
                maximum: MAX_PAYLOAD,
            },
            inline: self.driver.mode() == vddk::Mode::Direct,
        }
    }

    fn read(&self, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        let Some(r) = self.least_loaded() else {
            return self.driver.read(offset, len as usize, buf, done);
        };
        r.reads.fetch_add(1, Ordering::Relaxed);
        let outstanding = r.outstanding;
        outstanding.fetch_add(1, Ordering::Relaxed);
        r.driver.read(
            offset,
            len as usize,
            buf,
            Box::new(move |result| {
                outstanding.fetch_sub(1, Ordering::Relaxed);
                done(result)
            }),
        );
    }

    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        if self.read_only {
            return done(Err(Error::ReadOnly));
        }
        let end = offset + data.len() as u64;
        self.allocation().mark_allocated(offset, end);
        if !fua {
            return self.driver.write(offset, data, done);
        }
        // The flush is submitted once the write has completed, so it covers it.
        let driver = self.driver.clone();
        self.driver.write(
            offset,
            data,
            Box::new(move |r| match r {
                Ok(buf) => driver.flush(Box::new(move |f| done(f.map(|()| buf)))),
                Err(e) => done(Err(e)),
            }),
        );
    }

    fn zero(&self, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        if self.read_only {
            return done(Err(Error::ReadOnly));
        }
        if flags.fast {
            // VDDK has no way to zero but writing zeroes.
            return done(Err(Error::Unsupported("fast zeroing")));
        }
        self.allocation().mark_allocated(offset, offset + len);
        let zeroes = vec![0u8; ZERO_CHUNK.min(len) as usize];
        let chain = ZeroChain {
            driver: self.driver.clone(),
            at: offset,
            end: offset + len,
            fua: flags.fua,
            done,
        };
        if self.driver.mode() == vddk::Mode::Direct {
            chain.run_inline(zeroes);
        } else {
            chain.next(zeroes);
        }
    }

    fn flush(&self, done: Done<()>) {
        self.driver.flush(done);
    }

    fn extents(&self, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        let end = offset + len;
        let missing = {
            let a = self.allocation();
            if let Some(runs) = a.runs_within(offset, end) {
                drop(a);
                return done(Ok(allocation::extents(offset, len, &runs)));
            }
            a.missing(offset, end)
        };
        // Query the missing windows one after another; the last answer
        // completes the request from all of them.
        let capacity = self.driver.capacity();
        let query = Query {
            log: self.log_extents,
            driver: self.driver.clone(),
            allocation: Arc::clone(&self.allocation),
            windows: missing,
            found: Vec::new(),
            offset,
            len,
            capacity,
            done,
        };
        query.next();
    }

    fn known(&self, offset: u64, len: u64) -> Known {
        self.allocation().known(offset, len)
    }

    fn reopen(&self) -> Result<(), Error> {
        log::debug!("reopening the disk");
        self.drivers()
            .iter()
            .try_for_each(|d| d.reopen().map_err(Error::from))
    }

    fn close(&self) -> Result<(), Error> {
        self.closed.store(true, Ordering::Release);
        // An Open under way finishes (VDDK cannot stop one), and its
        // handle is closed by the thread that opened it.
        let opening = self
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = opening {
            if thread.join().is_err() {
                log::warn!("the thread opening more NFC connections panicked");
            }
        }
        let readers = self.readers().clone();
        if !readers.is_empty() {
            let counts: Vec<String> = readers
                .iter()
                .map(|r| r.reads.load(Ordering::Relaxed).to_string())
                .collect();
            log::debug!("reads per NFC connection: {}", counts.join(", "));
        }
        // Every handle is closed, even after one fails to.
        let mut first = Ok(());
        for d in self.drivers() {
            if let Err(e) = d.close() {
                first = first.and(Err(Error::from(e)));
            }
        }
        first
    }
}

/// A WRITE_ZEROES as a chain of writes, each submitted when the one
/// before has completed, with the same buffer.
struct ZeroChain {
    driver: DiskDriver<Error>,
    at: u64,
    end: u64,
    fua: bool,
    done: Done<()>,
}

impl ZeroChain {
    /// Direct mode: each write completes before the call returns, so the
    /// chain is a loop (a completion that started the next write would
    /// nest one stack frame per chunk).
    fn run_inline(self, mut zeroes: Vec<u8>) {
        let mut at = self.at;
        while at < self.end {
            let next = ((at / ZERO_CHUNK + 1) * ZERO_CHUNK).min(self.end);
            zeroes.resize((next - at) as usize, 0);
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.driver.write(
                at,
                zeroes,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            zeroes = match rx.recv() {
                Ok(Ok(buf)) => buf,
                Ok(Err(e)) => return (self.done)(Err(e)),
                Err(_) => {
                    let e = Error::Failed("a write of zeroes was dropped".into());
                    return (self.done)(Err(e));
                }
            };
            at = next;
        }
        if self.fua {
            self.driver.flush(self.done)
        } else {
            (self.done)(Ok(()))
        }
    }

    /// Pipelined mode: each write is submitted from the completion of the
    /// one before (a submission only queues, so nothing nests).
    fn next(mut self, mut zeroes: Vec<u8>) {
        if self.at >= self.end {
            let done = self.done;
            return if self.fua {
                self.driver.flush(done)
            } else {
                done(Ok(()))
            };
        }
        let next = ((self.at / ZERO_CHUNK + 1) * ZERO_CHUNK).min(self.end);
        zeroes.resize((next - self.at) as usize, 0);
        let at = std::mem::replace(&mut self.at, next);
        let driver = self.driver.clone();
        driver.write(
            at,
            zeroes,
            Box::new(move |r| match r {
                Ok(buf) => self.next(buf),
                Err(e) => (self.done)(Err(e)),
            }),
        );
    }
}

/// An allocation query over the windows not known yet.
struct Query {
    log: bool,
    driver: DiskDriver<Error>,
    allocation: Arc<Mutex<Allocation>>,
    windows: Vec<u64>,
    found: Vec<(u64, u64)>,
    offset: u64,
    len: u64,
    capacity: u64,
    done: Done<Vec<Extent>>,
}

impl Query {
    fn next(mut self) {
        // The window to query, and the allocation's generation as it began.
        let (w, generation) = loop {
            let Some(w) = self.windows.pop() else {
                let runs = allocation::merge(std::mem::take(&mut self.found));
                let extents = allocation::extents(self.offset, self.len, &runs);
                return (self.done)(Ok(extents));
            };
            // The guard borrows this clone, not `self`, so that `self` can
            // be handed to a waiter while it is held.
            let allocation = Arc::clone(&self.allocation);
            let mut a = allocation.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(runs) = a.window(w) {
                // Answered meanwhile, for another request.
                self.found.extend_from_slice(runs);
                continue;
            }
            if a.querying(w) {
                // Asked already: this request goes on from that answer.
                self.windows.push(w);
                a.wait_for(w, Box::new(move || self.next()));
                return;
            }
            a.begin_query(w);
            break (w, a.generation());
        };
        let (start, end) = (w * WINDOW, ((w + 1) * WINDOW).min(self.capacity));
        // VDDK answers whole chunks only: the unaligned tail of the disk
        // is queried as far as whole sectors go, and the driver reports
        // the rest as data.
        let length = (end - start) / SECTOR_SIZE * SECTOR_SIZE;
        if self.log {
            log::debug!(
                "extents: querying allocated blocks of [{start}...{}]",
                start + length
            );
        }
        let driver = self.driver.clone();
        driver.allocated(
            start,
            length,
            Box::new(move |r| {
                let (result, waiters) = {
                    let mut a = self.allocation.lock().unwrap_or_else(|e| e.into_inner());
                    let result = r.map(|extents| {
                        let runs: Vec<(u64, u64)> =
                            extents.iter().map(|e| (e.offset, e.length)).collect();
                        a.keep(w, generation, &runs);
                        runs
                    });
                    (result, a.end_query(w))
                };
                // Those waiting ask again: answered if it was kept, else
                // (a write came between, or the query failed) one of them
                // queries.
                for waiter in waiters {
                    waiter();
                }
                match result {
                    Ok(runs) => {
                        if self.log {
                            for &(a, n) in &runs {
                                log::debug!(
                                    "adding extent type allocated data at [{a}...{}] (length {n})",
                                    a + n
                                );
                            }
                        }
                        self.found.extend(runs);
                        self.next()
                    }
                    Err(e) => (self.done)(Err(e)),
                }
            }),
        );
    }
}

// The chunk the driver queries with is VDDK's smallest: one QueryAllocatedBlocks
// call then covers exactly one window.
const _: () = assert!(WINDOW == MIN_CHUNK * vddk::MAX_CHUNKS_PER_CALL);
