//! The pipelined worker when the connection is lost: issuing stops, the
//! requests that failed with it wait at the head of the queue, and the
//! disk is opened again through a new connection as the
//! [`Reconnect`](super::Reconnect) policy says (see reconnect.rs for what
//! is safe to issue again).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{reject_with, Msg, Op, Worker};
use crate::disk::Disk;
use crate::driver::reconnect::{give_up_message, refused_login, CLOSED_WHILE_RECONNECTING};
use crate::driver::schedule::{Kind, Span};
use crate::driver::{reopen_disk, Opener};
use crate::error::Error;

impl<E: From<Error> + Send + 'static> Worker<E> {
    /// Whether `e` means the connection is gone and the policy will make
    /// it again; the first such error stops issuing.
    pub(super) fn connection_lost(&mut self, e: &Error) -> bool {
        if self.policy.is_none() || !e.is_connection_lost() {
            return false;
        }
        if !self.lost {
            log::warn!(
                target: "vddk::driver",
                "the connection to the host was lost ({e}); reconnecting"
            );
            self.lost = true;
        }
        true
    }

    /// With nothing in flight: opens the disk again through a new
    /// connection, waiting before each try as the policy says; after the
    /// last try, every waiting request fails.
    pub(super) fn reconnect(&mut self) {
        let (Some(policy), Some(opener)) = (self.policy, self.opener.clone()) else {
            self.lost = false;
            return;
        };
        // The old handle is dead: no Wait, no flush on it.
        self.need_wait = false;
        let mut old = self.disk.take();
        if let Some(disk) = self.take_standby() {
            log::info!(target: "vddk::driver", "reconnected: switched to the standby handle");
            self.disk = Some(disk);
            self.lost = false;
            self.status.reconnections.fetch_add(1, Ordering::Relaxed);
            self.start_standby(old.take(), &opener);
            return;
        }
        loop {
            self.tries_in_row += 1;
            let n = self.tries_in_row;
            let wait = policy.wait_before(n);
            log::debug!(target: "vddk::driver", "reconnecting in {wait:?} (try {n})");
            if !self.pause(wait) {
                drop(old.take());
                let msg = CLOSED_WHILE_RECONNECTING.to_string();
                log::warn!(target: "vddk::driver", "{msg}");
                self.give_up(msg);
                return;
            }
            match reopen_disk(old.take(), false, &opener) {
                Ok(disk) => {
                    log::info!(target: "vddk::driver", "reconnected (try {n})");
                    let standby = policy.keeps_standby() && disk.is_read_only();
                    self.disk = Some(disk);
                    self.lost = false;
                    self.status.reconnections.fetch_add(1, Ordering::Relaxed);
                    if standby {
                        self.start_standby(None, &opener);
                    }
                    return;
                }
                Err(e) if n >= policy.max_tries() || refused_login(&e) => {
                    let msg = give_up_message(&e, n);
                    log::error!(target: "vddk::driver", "{msg}");
                    self.give_up(msg);
                    return;
                }
                Err(e) => log::warn!(
                    target: "vddk::driver",
                    "reconnecting, try {n} of {}: {e}",
                    policy.max_tries()
                ),
            }
        }
    }

    /// The standby handle, once its open has ended (waiting for it if it
    /// is still under way: that is sooner than a new one); None if there
    /// is none or its open failed.
    fn take_standby(&mut self) -> Option<Disk> {
        match self.standby.take()?.recv() {
            Ok(Ok(disk)) => Some(disk),
            Ok(Err(e)) => {
                log::debug!(target: "vddk::driver", "the standby handle did not open: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// Opens a standby handle on a thread of its own, after closing `dead`
    /// there (Close and Open are serialised process-wide; neither holds up
    /// the requests on the new handle).
    fn start_standby(&mut self, dead: Option<Disk>, opener: &Opener) {
        let (tx, rx) = mpsc::channel();
        let opener = Arc::clone(opener);
        let started = std::thread::Builder::new()
            .name("vddk-standby".into())
            .spawn(move || {
                if let Some(d) = dead {
                    if let Err(e) = d.close() {
                        log::debug!(target: "vddk::driver", "closing the lost handle: {e}");
                    }
                }
                let _ = tx.send(opener());
            });
        match started {
            Ok(_) => self.standby = Some(rx),
            Err(e) => log::warn!(target: "vddk::driver", "no standby handle: {e}"),
        }
    }

    /// Closes the standby handle (waiting for its open to end).
    pub(super) fn drop_standby(&mut self) {
        if let Some(d) = self.take_standby() {
            if let Err(e) = d.close() {
                log::debug!(target: "vddk::driver", "closing the standby handle: {e}");
            }
        }
    }

    /// Ends a reconnection that will not succeed: every waiting request
    /// fails with `msg` (a close among them is done, with no disk to close).
    fn give_up(&mut self, msg: String) {
        self.lost = false;
        self.gave_up = Some(msg);
        let queued: Vec<Op<E>> = self.schedule.take_queued().collect();
        for op in queued {
            let e = self.gone();
            reject_with(op, e);
        }
    }

    /// Waits `wait` before a reconnection try, taking in requests
    /// meanwhile; false as soon as the disk is being closed (a close, or
    /// the last handle gone), so that closing never waits out the policy's
    /// delays.
    fn pause(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.shutting_down {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match self.rx.recv_timeout(left) {
                Ok(Msg::Submit(op)) => {
                    let closing = matches!(op, Op::Close { .. });
                    self.queue(op);
                    if closing {
                        return false;
                    }
                }
                Ok(Msg::Freed(slot)) => self.schedule.finish(slot),
                Ok(Msg::Failed {
                    slot, pending, buf, ..
                }) => {
                    self.schedule.finish(slot);
                    let (kind, span, op) = pending.again(buf);
                    self.schedule.push_front(kind, span, op);
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.shutting_down = true;
                    self.schedule
                        .push(Kind::Alone, Span::default(), Op::Close { reply: None });
                }
                Err(RecvTimeoutError::Timeout) => return true,
            }
        }
    }

    /// What a request is told when there is no disk.
    pub(super) fn gone(&self) -> Error {
        match &self.gave_up {
            Some(msg) => Error::Disconnected(msg.clone()),
            None => Error::Closed,
        }
    }
}
