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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use vddk_sys::VixError;

mod lost;

use super::schedule::{Kind, Next, Schedule, Span};
use super::{align, completing, reopen_disk, Done, Opener, Reconnect};
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
    /// A request failed; the driver thread reports it, or issues it
    /// again after a reconnection (hence its buffer).
    Failed {
        slot: usize,
        pending: Pending<E>,
        buf: Vec<u8>,
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

impl<E> Pending<E> {
    /// The request again, with its buffer back, to be issued later.
    fn again(self, buf: Vec<u8>) -> (Kind, Span, Op<E>) {
        let span = align::span(self.offset, self.len as u64);
        let op = match self.dir {
            Direction::Read => Op::Read {
                offset: self.offset,
                len: self.len,
                buf,
                done: self.done,
            },
            Direction::Write => Op::Write {
                offset: self.offset,
                data: buf,
                done: self.done,
            },
        };
        let kind = match self.dir {
            Direction::Read => Kind::Read,
            Direction::Write => Kind::Write,
        };
        (kind, span, op)
    }
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
                buf,
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

/// What the driver's handles see of its thread.
#[derive(Default)]
pub(crate) struct Status {
    /// The disk is closed.
    pub(crate) closed: AtomicBool,
    /// Reconnections made after lost connections.
    pub(crate) reconnections: AtomicU64,
}

pub(crate) struct Worker<E> {
    disk: Option<Disk>,
    table: Arc<AsyncTable<Pending<E>>>,
    rx: Receiver<Msg<E>>,
    schedule: Schedule<Op<E>>,
    status: Arc<Status>,
    written: bool,
    /// Async requests were submitted since the last Wait.
    need_wait: bool,
    /// Busy refusals since the last successful completion.
    busy_retries: u32,
    shutting_down: bool,
    opener: Option<Opener>,
    /// Reconnect when the connection is lost, if set.
    policy: Option<Reconnect>,
    /// The connection is lost: nothing is issued until it is made again.
    lost: bool,
    /// Reconnections since a request last completed.
    tries_in_row: u32,
    /// Why the last reconnection failed, once the policy gave up: what
    /// later requests are told.
    gave_up: Option<String>,
    /// A handle being opened, or open, in the background for the next
    /// loss ([`Reconnect::standby`]).
    standby: Option<Receiver<Result<Disk>>>,
}

impl<E: From<Error> + Send + 'static> Worker<E> {
    /// A worker for `disk` with `slots` requests in flight at most; the
    /// caller keeps the sender, the table reports to it too.
    pub(crate) fn new(
        disk: Disk,
        slots: usize,
        tx: Sender<Msg<E>>,
        rx: Receiver<Msg<E>>,
        status: Arc<Status>,
        opener: Option<Opener>,
        policy: Option<Reconnect>,
    ) -> Worker<E> {
        let table = AsyncTable::new(slots, Arc::new(Sink { tx }));
        Worker {
            disk: Some(disk),
            schedule: Schedule::new(table.len()),
            table,
            rx,
            status,
            written: false,
            need_wait: false,
            busy_retries: 0,
            shutting_down: false,
            opener,
            policy,
            lost: false,
            tries_in_row: 0,
            gave_up: None,
            standby: None,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            if self.lost && self.schedule.in_flight() == 0 {
                self.reconnect();
            }
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
                    self.tries_in_row = 0;
                    self.schedule.finish(slot);
                }
                Some(Msg::Failed {
                    slot,
                    pending,
                    buf,
                    err,
                }) => {
                    self.schedule.finish(slot);
                    let e = self.error(pending.dir, err);
                    if self.connection_lost(&e) {
                        let (kind, span, op) = pending.again(buf);
                        self.schedule.push_front(kind, span, op);
                    } else {
                        let done = pending.done;
                        completing(|| done(Err(e.into())));
                    }
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

    /// Issues queued requests while the head may start (none while the
    /// connection is lost).
    fn pump(&mut self) {
        while !self.lost {
            let Some(next) = self.schedule.next() else {
                return;
            };
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
            let e = self.gone();
            return completing(|| done(Err(e.into())));
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
            self.refused(slot, rejected);
        }
    }

    /// A submission the library refused outright. "Busy" (too many
    /// requests in flight for the library) goes back to the head of the
    /// queue, to be retried once a request completes, and the bound is
    /// lowered to what the library held; anything else fails.
    fn refused(&mut self, slot: usize, r: Rejected<Pending<E>>) {
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
            let (kind, span, op) = p.again(buf);
            return self.schedule.push_front(kind, span, op);
        }
        let e = self.error(p.dir, err);
        if self.connection_lost(&e) {
            let (kind, span, op) = p.again(buf);
            return self.schedule.push_front(kind, span, op);
        }
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
            let e = self.gone();
            return reject_with(op, e);
        };
        // Each request runs, and comes back to the head of the queue if
        // the connection was lost under it and will be made again.
        let again = |w: &mut Self, failed: Option<&Error>| match failed {
            Some(e) => w.connection_lost(e),
            None => {
                w.tries_in_row = 0;
                false
            }
        };
        match op {
            Op::Read {
                offset,
                len,
                mut buf,
                done,
            } => {
                let r = align::read(disk, offset, len, &mut buf).map(|()| buf);
                if again(self, r.as_ref().err()) {
                    let op = Op::Read {
                        offset,
                        len,
                        buf: Vec::new(),
                        done,
                    };
                    return self.schedule.push_front(Kind::Alone, Span::default(), op);
                }
                completing(|| done(r.map_err(E::from)));
            }
            Op::Write { offset, data, done } => {
                self.written = true;
                let r = align::write(disk, offset, &data);
                if again(self, r.as_ref().err()) {
                    let op = Op::Write { offset, data, done };
                    return self.schedule.push_front(Kind::Alone, Span::default(), op);
                }
                completing(|| done(r.map(|()| data).map_err(E::from)));
            }
            Op::Flush { done } => {
                let r = disk.flush();
                if again(self, r.as_ref().err()) {
                    let op = Op::Flush { done };
                    return self.schedule.push_front(Kind::Alone, Span::default(), op);
                }
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
                if again(self, r.as_ref().err()) {
                    let op = Op::Allocated {
                        offset,
                        length,
                        done,
                    };
                    return self.schedule.push_front(Kind::Alone, Span::default(), op);
                }
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
        self.drop_standby();
        self.settle();
        let Some(disk) = self.disk.take() else {
            return Ok(());
        };
        let flushed = if self.written { disk.flush() } else { Ok(()) };
        self.written = false;
        let closed = disk.close();
        self.status.closed.store(true, Ordering::Release);
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

/// Fails a request that will never run: the disk is closed.
pub(crate) fn reject<E: From<Error>>(op: Op<E>) {
    reject_with(op, Error::Closed)
}

/// Fails a request that will never run, with `e`.
fn reject_with<E: From<Error>>(op: Op<E>, e: Error) {
    match op {
        Op::Read { done, .. } | Op::Write { done, .. } => completing(|| done(Err(e.into()))),
        Op::Flush { done } => completing(|| done(Err(e.into()))),
        Op::Allocated { done, .. } => completing(|| done(Err(e.into()))),
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
