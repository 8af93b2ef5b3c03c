//! Pipelined mode: one thread per handle issues every VDDK call for it,
//! keeping many async requests in flight.
//!
//! Requests reach the thread over a channel and wait in a
//! [`Schedule`]; the thread issues ReadAsync/WriteAsync in a slot of the
//! disk's [`AsyncTable`]. When VDDK calls back with success, the callback
//! itself completes the request (the caller's `done` runs on that VDDK
//! thread) and tells this thread the slot is free. A failure goes back to
//! this thread, which turns the code into an [`Error`] and decides what
//! to do (retry a busy refusal, or fail the request). Requests that must
//! run alone (flush, allocation queries, unaligned writes, close) run here
//! synchronously once nothing is in flight, after a VDDK Wait, since
//! synchronous calls may not overlap async ones on a handle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use vddk_sys::VixError;

use super::schedule::{Kind, Next, Schedule, Span};
use super::{align, completing, reopen_disk, Done, Opener};
use crate::blocks::{Extent, MIN_CHUNK};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::raw::{AsyncTable, Direction, Finished, Rejected};
use crate::vix::VixCode;

/// A request, as it travels to the driver thread.
pub(crate) enum Op<E> {
    Read {
        offset: u64,
        len: usize,
        buf: Vec<u8>,
        done: Done<Vec<u8>, E>,
    },
    Write {
        offset: u64,
        data: Vec<u8>,
        done: Done<Vec<u8>, E>,
    },
    Flush {
        done: Done<(), E>,
    },
    Allocated {
        offset: u64,
        length: u64,
        done: Done<Vec<Extent>, E>,
    },
    Close {
        reply: Option<Sender<Result<()>>>,
    },
    Reopen {
        reply: Sender<Result<()>>,
    },
}

pub(crate) enum Msg<E> {
    Submit(Op<E>),
    /// A request completed successfully; its slot is free.
    Freed(usize),
    /// A request failed; the driver thread reports it.
    Failed {
        slot: usize,
        pending: Pending<E>,
        err: VixError,
    },
    /// The last handle is gone: close and stop.
    Shutdown,
}

/// What a slot holds besides the buffer while VDDK works on it.
pub(crate) struct Pending<E> {
    done: Done<Vec<u8>, E>,
    dir: Direction,
    offset: u64,
    len: usize,
}

/// VDDK's callbacks land here.
pub(crate) struct Sink<E> {
    tx: Sender<Msg<E>>,
}

impl<E: From<Error> + Send + 'static> Finished<Pending<E>> for Sink<E> {
    fn finished(&self, slot: usize, mut buf: Vec<u8>, p: Pending<E>, err: VixError) {
        if !VixCode::from_raw(err).is_ok() {
            let _ = self.tx.send(Msg::Failed {
                slot,
                pending: p,
                err,
            });
            return;
        }
        if p.dir == Direction::Read {
            align::trim_read(&mut buf, align::skip(p.offset), p.len);
        }
        let done = p.done;
        completing(|| done(Ok(buf)));
        // The driver thread is gone only after every slot was freed.
        let _ = self.tx.send(Msg::Freed(slot));
    }
}

/// How often a request refused as busy is retried before the refusal is
/// reported to the caller.
const MAX_BUSY_RETRIES: u32 = 16;

/// How long to wait for a completion before suspecting the library only
/// completes requests from inside Wait (a safety net: VDDK and the fake
/// complete requests on threads of their own).
const COMPLETION_NUDGE: Duration = Duration::from_secs(2);

pub(crate) struct Worker<E> {
    disk: Option<Disk>,
    table: Arc<AsyncTable<Pending<E>>>,
    rx: Receiver<Msg<E>>,
    schedule: Schedule<Op<E>>,
    closed: Arc<AtomicBool>,
    written: bool,
    /// Async requests were submitted since the last Wait.
    need_wait: bool,
    /// Busy refusals since the last successful completion.
    busy_retries: u32,
    shutting_down: bool,
    opener: Option<Opener>,
}

impl<E: From<Error> + Send + 'static> Worker<E> {
    /// A worker for `disk` with `slots` requests in flight at most; the
    /// caller keeps the sender, the table reports to it too.
    pub(crate) fn new(
        disk: Disk,
        slots: usize,
        tx: Sender<Msg<E>>,
        rx: Receiver<Msg<E>>,
        closed: Arc<AtomicBool>,
        opener: Option<Opener>,
    ) -> Worker<E> {
        let table = AsyncTable::new(slots, Arc::new(Sink { tx }));
        Worker {
            disk: Some(disk),
            schedule: Schedule::new(table.len()),
            table,
            rx,
            closed,
            written: false,
            need_wait: false,
            busy_retries: 0,
            shutting_down: false,
            opener,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            self.pump();
            if self.shutting_down && self.disk.is_none() && self.schedule.is_idle() {
                self.retire();
                return;
            }
            if self.schedule.head_waits_for_drain() {
                // Let the library finish what it has; completions still
                // arrive as messages.
                self.settle();
            }
            let msg = if self.schedule.in_flight() == 0 {
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
                Some(Msg::Submit(op)) => self.queue(op),
                Some(Msg::Freed(slot)) => {
                    self.busy_retries = 0;
                    self.schedule.finish(slot);
                }
                Some(Msg::Failed { slot, pending, err }) => {
                    self.schedule.finish(slot);
                    let e = self.error(pending.dir, err);
                    let done = pending.done;
                    completing(|| done(Err(e.into())));
                }
                Some(Msg::Shutdown) | None => {
                    if !self.shutting_down {
                        self.shutting_down = true;
                        self.schedule
                            .push(Kind::Alone, Span::default(), Op::Close { reply: None });
                    }
                }
            }
        }
    }

    fn queue(&mut self, op: Op<E>) {
        let (kind, span) = match &op {
            Op::Read { offset, len, .. } => (Kind::Read, align::span(*offset, *len as u64)),
            Op::Write { offset, data, .. } if align::is_aligned(*offset, data.len() as u64) => {
                (Kind::Write, align::span(*offset, data.len() as u64))
            }
            _ => (Kind::Alone, Span::default()),
        };
        self.schedule.push(kind, span, op);
    }

    /// Issues queued requests while the head may start.
    fn pump(&mut self) {
        while let Some(next) = self.schedule.next() {
            match next {
                Next::Issue {
                    slot, span, item, ..
                } => self.issue(slot, span, item),
                Next::Alone(op) => {
                    self.settle();
                    self.alone(op);
                }
            }
        }
    }

    fn issue(&mut self, slot: usize, span: Span, op: Op<E>) {
        let (dir, offset, len, buf, done) = match op {
            Op::Read {
                offset,
                len,
                buf,
                done,
            } => (Direction::Read, offset, len, buf, done),
            Op::Write { offset, data, done } => (Direction::Write, offset, data.len(), data, done),
            other => {
                // Only reads and writes are queued as async kinds.
                self.schedule.finish(slot);
                return self.alone(other);
            }
        };
        let Some(disk) = self.disk.as_ref() else {
            self.schedule.finish(slot);
            return completing(|| done(Err(Error::Closed.into())));
        };
        if dir == Direction::Write {
            self.written = true;
        }
        self.need_wait = true;
        let pending = Pending {
            done,
            dir,
            offset,
            len,
        };
        let sectors = span.end - span.start;
        let submitted =
            disk.raw()
                .submit(&self.table, slot, dir, span.start, sectors, buf, pending);
        if let Err(rejected) = submitted {
            self.refused(slot, span, rejected);
        }
    }

    /// A submission the library refused outright. "Busy" (too many
    /// requests in flight for the library) goes back to the head of the
    /// queue, to be retried once a request completes, and the bound is
    /// lowered to what the library held; anything else fails.
    fn refused(&mut self, slot: usize, span: Span, r: Rejected<Pending<E>>) {
        self.schedule.finish(slot);
        let Rejected { buf, value: p, err } = r;
        let busy = VixCode::from_raw(err) == VixCode::OBJECT_IS_BUSY;
        if busy && self.busy_retries < MAX_BUSY_RETRIES {
            self.busy_retries += 1;
            let held = self.schedule.in_flight();
            if held > 0 && held < self.schedule.limit() {
                log::debug!(
                    target: "vddk::driver",
                    "the library refused a request with {held} in flight; \
                     keeping at most {held} in flight on this disk"
                );
                self.schedule.lower_limit(held);
            }
            if held == 0 {
                // Nothing of ours is in flight: let the library settle.
                self.need_wait = true;
                self.settle();
            }
            let (kind, op) = match p.dir {
                Direction::Read => (
                    Kind::Read,
                    Op::Read {
                        offset: p.offset,
                        len: p.len,
                        buf,
                        done: p.done,
                    },
                ),
                Direction::Write => (
                    Kind::Write,
                    Op::Write {
                        offset: p.offset,
                        data: buf,
                        done: p.done,
                    },
                ),
            };
            return self.schedule.push_front(kind, span, op);
        }
        let e = self.error(p.dir, err);
        let done = p.done;
        completing(|| done(Err(e.into())));
    }

    fn error(&self, dir: Direction, err: VixError) -> Error {
        let call = match dir {
            Direction::Read => "VixDiskLib_ReadAsync",
            Direction::Write => "VixDiskLib_WriteAsync",
        };
        match &self.disk {
            Some(d) => d.raw().check(call, err).err().unwrap_or(Error::Closed),
            None => Error::Closed,
        }
    }

    /// Runs a request that needs the handle to itself.
    fn alone(&mut self, op: Op<E>) {
        if let Op::Reopen { reply } = op {
            // Also after a reopen that failed, which left no disk.
            let Some(opener) = self.opener.clone() else {
                let _ = reply.send(Err(super::cannot_reopen()));
                return;
            };
            self.settle();
            let old = self.disk.take();
            let r = reopen_disk(old, self.written, &opener).map(|disk| {
                self.disk = Some(disk);
            });
            self.written = false;
            let _ = reply.send(r);
            return;
        }
        let Some(disk) = self.disk.as_ref() else {
            return reject(op);
        };
        match op {
            Op::Read {
                offset,
                len,
                buf,
                done,
            } => {
                let r = align::read(disk, offset, len, buf);
                completing(|| done(r.map_err(E::from)));
            }
            Op::Write { offset, data, done } => {
                self.written = true;
                let r = align::write(disk, offset, data);
                completing(|| done(r.map_err(E::from)));
            }
            Op::Flush { done } => {
                let r = disk.flush();
                if r.is_ok() {
                    self.written = false;
                }
                completing(|| done(r.map_err(E::from)));
            }
            Op::Allocated {
                offset,
                length,
                done,
            } => {
                let r = disk.allocated_blocks(offset, length, MIN_CHUNK);
                completing(|| done(r.map_err(E::from)));
            }
            Op::Reopen { .. } => {}
            Op::Close { reply } => {
                let r = self.close_disk();
                match reply {
                    Some(reply) => {
                        let _ = reply.send(r);
                    }
                    None => {
                        if let Err(e) = r {
                            log::warn!(target: "vddk::driver", "closing the disk: {e}");
                        }
                    }
                }
            }
        }
    }

    /// VDDK Wait, if async requests were submitted since the last one:
    /// synchronous calls must not overlap async ones on the handle.
    fn settle(&mut self) {
        if !self.need_wait {
            return;
        }
        self.need_wait = false;
        if let Some(disk) = &self.disk {
            if let Err(e) = disk.wait() {
                log::warn!(target: "vddk::driver", "{e}");
            }
        }
    }

    fn close_disk(&mut self) -> Result<()> {
        self.settle();
        let Some(disk) = self.disk.take() else {
            return Ok(());
        };
        let flushed = if self.written { disk.flush() } else { Ok(()) };
        self.written = false;
        let closed = disk.close();
        self.closed.store(true, Ordering::Release);
        for op in self.schedule.take_queued() {
            reject(op);
        }
        flushed.and(closed)
    }

    /// The thread is about to end: answer stragglers, and keep the slots
    /// alive if the library broke its word and still owes a callback.
    fn retire(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Submit(op) = msg {
                reject(op);
            }
        }
        if self.table.any_pending() {
            log::error!(
                target: "vddk::driver",
                "the library closed a disk with async requests still pending; \
                 their buffers are kept rather than freed"
            );
            std::mem::forget(Arc::clone(&self.table));
        }
    }
}

/// Fails a request that will never run.
pub(crate) fn reject<E: From<Error>>(op: Op<E>) {
    match op {
        Op::Read { done, .. } | Op::Write { done, .. } => {
            completing(|| done(Err(Error::Closed.into())))
        }
        Op::Flush { done } => completing(|| done(Err(Error::Closed.into()))),
        Op::Allocated { done, .. } => completing(|| done(Err(Error::Closed.into()))),
        Op::Close { reply } => {
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
        }
        Op::Reopen { reply } => {
            let _ = reply.send(Err(Error::Closed));
        }
    }
}
