//! The bound on requests in flight per connection: a request counts from
//! the moment it is read until its reply has been written. That is the
//! back-pressure on a client that pipelines faster than the disk answers,
//! or reads its replies slower than the disk produces them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::budget::Share;

/// Most requests in flight on one connection.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// Read/write payload bytes in flight, shared out equally between the
/// connections in transmission in this process: each may have its share in
/// flight (one request larger than that still runs, alone). 8 MiB keeps a
/// disk busy (a VDDK handle pipelines 16 requests, 4 MiB at nbdcopy's
/// size) while bounding what clients that read their replies slowly make
/// the server hold, whether they open one connection or four, and when
/// many servers run side by side. Each connection checks only its own
/// share, so a stalled client never holds up another.
const IN_FLIGHT_BYTES_TOTAL: usize = 8 << 20;
/// The smallest share, however many connections there are.
const MIN_IN_FLIGHT_BYTES: usize = 1 << 20;

/// Connections in transmission in this process.
static TRANSMITTING: AtomicUsize = AtomicUsize::new(0);

/// This connection's share of [`IN_FLIGHT_BYTES_TOTAL`].
fn byte_share() -> usize {
    share_of(TRANSMITTING.load(Ordering::Relaxed))
}

/// One share when `connections` connections transmit.
fn share_of(connections: usize) -> usize {
    (IN_FLIGHT_BYTES_TOTAL / connections.max(1)).max(MIN_IN_FLIGHT_BYTES)
}

/// Counts a connection in [`TRANSMITTING`] while it lives.
pub(crate) struct Transmitting;

impl Transmitting {
    pub(crate) fn enter() -> Transmitting {
        TRANSMITTING.fetch_add(1, Ordering::Relaxed);
        Transmitting
    }
}

impl Drop for Transmitting {
    fn drop(&mut self) {
        TRANSMITTING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts requests in flight and blocks the reader when there are too many.
#[derive(Default)]
pub(crate) struct InFlight {
    state: Mutex<Count>,
    changed: Condvar,
}

#[derive(Default)]
struct Count {
    requests: usize,
    bytes: usize,
    /// Threads waiting on `changed`: a release wakes them only if there
    /// are any, since a wake-up is a system call even with no one to wake.
    waiting: usize,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Count> {
        // The counts are updated with no code that can panic in between.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, mut s: MutexGuard<'a, Count>) -> MutexGuard<'a, Count> {
        s.waiting += 1;
        let mut s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        s.waiting -= 1;
        s
    }

    /// Waits for room, then counts a request of `bytes` until the returned
    /// slot is dropped.
    pub(crate) fn acquire(self: &Arc<Self>, bytes: usize) -> Slot {
        let mut s = self.lock();
        while s.requests >= MAX_IN_FLIGHT || (s.requests > 0 && s.bytes + bytes > byte_share()) {
            s = self.wait(s);
        }
        s.requests += 1;
        s.bytes += bytes;
        Slot {
            inflight: Arc::clone(self),
            bytes,
            share: None,
        }
    }

    fn release(&self, bytes: usize) {
        let mut s = self.lock();
        s.requests -= 1;
        s.bytes -= bytes;
        let waiting = s.waiting > 0;
        drop(s);
        if waiting {
            self.changed.notify_all();
        }
    }

    /// Waits until every request has been answered.
    pub(crate) fn drain(&self) {
        let mut s = self.lock();
        while s.requests > 0 {
            s = self.wait(s);
        }
    }
}

/// One request's share of [`InFlight`], released when dropped, with its
/// share of the server's budget.
pub(crate) struct Slot {
    inflight: Arc<InFlight>,
    bytes: usize,
    share: Option<Share>,
}

impl Slot {
    /// Keeps `share` of the server's budget for as long as the slot.
    pub(crate) fn holding(mut self, share: Option<Share>) -> Slot {
        self.share = share;
        self
    }

    /// The request's write payload has arrived whole.
    pub(crate) fn arrived(&mut self) {
        if let Some(s) = &mut self.share {
            s.arrived();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inflight.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_release_wakes_the_reader_waiting_at_the_limit_and_the_drain() {
        let f = Arc::new(InFlight::default());
        let mut slots: Vec<Slot> = (0..MAX_IN_FLIGHT).map(|_| f.acquire(0)).collect();
        let waiter = |f: &Arc<InFlight>, drain: bool| {
            let f = Arc::clone(f);
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                if drain {
                    f.drain();
                } else {
                    drop(f.acquire(0));
                }
                tx.send(()).unwrap();
            });
            rx
        };
        let reader = waiter(&f, false);
        while f.lock().waiting == 0 {
            std::thread::yield_now();
        }
        assert!(
            reader.try_recv().is_err(),
            "the limit holds the reader back"
        );
        slots.pop();
        reader
            .recv_timeout(Duration::from_secs(10))
            .expect("a release lets the waiting reader in");

        let drained = waiter(&f, true);
        while f.lock().waiting == 0 {
            std::thread::yield_now();
        }
        while let Some(slot) = slots.pop() {
            assert!(drained.try_recv().is_err(), "requests are still in flight");
            drop(slot);
        }
        drained
            .recv_timeout(Duration::from_secs(10))
            .expect("the last release ends the drain");
    }

    #[test]
    fn byte_shares_split_the_total_down_to_a_floor() {
        assert_eq!(share_of(0), 8 << 20);
        assert_eq!(share_of(1), 8 << 20);
        assert_eq!(share_of(4), 2 << 20);
        assert_eq!(share_of(8), 1 << 20);
        assert_eq!(share_of(100), 1 << 20);
    }
}
