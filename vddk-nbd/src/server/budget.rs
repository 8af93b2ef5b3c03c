//! The server's budget for request data: the bytes of write payloads and
//! read replies it holds at once, over every connection. A read or write
//! takes its length from the budget before its buffer is allocated and
//! gives it back once its reply is written; when the budget is spent, the
//! connections that want more stop reading requests until some is given
//! back, so clients press on the server's memory through their sockets'
//! buffers, not through its heap.
//!
//! Write payloads still on their way from the client count twice: against
//! the budget, and against half of it. A client that sends all of a
//! payload but its last byte holds its buffer until the payload timeout
//! ends its connection; however many do so, they hold at most half of the
//! budget, and the other half keeps serving reads and the requests whose
//! data has arrived.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// The smallest default budget: two requests of the largest size
/// (32 MiB), one arriving while the other is served.
const MIN_DEFAULT: u64 = 64 << 20;
/// The largest default budget: more than any client needs (a copy keeps
/// a few MiB in flight per connection), and little enough that clients
/// cannot make the server a burden on a large host.
const MAX_DEFAULT: u64 = 1 << 30;
/// The default is this fraction of the memory the process may use.
const DEFAULT_FRACTION: u64 = 16;

/// The default budget for a process allowed `memory` bytes (the machine's
/// memory, or a lower cgroup limit): a sixteenth of it, between 64 MiB
/// and 1 GiB.
pub(crate) fn default_for(memory: Option<u64>) -> usize {
    let budget = memory.map_or(MIN_DEFAULT, |m| {
        (m / DEFAULT_FRACTION).clamp(MIN_DEFAULT, MAX_DEFAULT)
    });
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// The memory this process may use: the machine's (`MemTotal`), or its
/// cgroup's limit when that is lower. `None` when neither can be read.
pub(crate) fn memory_limit() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| meminfo_total(&s));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    // "max" (cgroup v2) and v1's huge "no limit" values are no limit.
    .filter_map(|s| s.trim().parse::<u64>().ok())
    .min();
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal` from /proc/meminfo's text, in bytes.
fn meminfo_total(text: &str) -> Option<u64> {
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// The budget, shared by every connection of a server.
pub(crate) struct Budget {
    limit: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Bytes taken, arriving ones included.
    held: usize,
    /// Bytes of write payloads still being read from clients.
    arriving: usize,
    /// The server is shutting down: nothing more is handed out.
    closed: bool,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            state: Mutex::default(),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Counts are changed with nothing that can panic in between.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `bytes` (arriving or not) may be taken now. A request
    /// larger than the budget, or than its arriving half, still runs when
    /// nothing else holds any, so that a small budget slows the server
    /// rather than stopping it.
    fn fits(&self, s: &State, bytes: usize, arriving: bool) -> bool {
        let total = s.held == 0 || s.held + bytes <= self.limit;
        let half = !arriving || s.arriving == 0 || s.arriving + bytes <= self.limit / 2;
        total && half
    }

    /// Waits until `bytes` fit, then takes them until the returned share
    /// is dropped; `arriving` for a write payload not yet read. `None`
    /// once the server is shutting down: the caller stops reading.
    pub(crate) fn take(self: &Arc<Self>, bytes: usize, arriving: bool) -> Option<Share> {
        let mut s = self.lock();
        while !s.closed && !self.fits(&s, bytes, arriving) {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if s.closed {
            return None;
        }
        s.held += bytes;
        if arriving {
            s.arriving += bytes;
        }
        Some(Share {
            budget: Arc::clone(self),
            bytes,
            arriving,
        })
    }

    /// Refuses every share from now on and wakes those waiting for one.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Bytes taken right now.
    pub(crate) fn held(&self) -> usize {
        self.lock().held
    }

    fn give_back(&self, bytes: usize, arriving: bool, all: bool) {
        let mut s = self.lock();
        if arriving {
            s.arriving -= bytes;
        }
        if all {
            s.held -= bytes;
        }
        drop(s);
        self.changed.notify_all();
    }
}

/// Bytes taken from the [`Budget`], given back when dropped.
pub(crate) struct Share {
    budget: Arc<Budget>,
    bytes: usize,
    arriving: bool,
}

impl Share {
    /// The payload has been read whole: it no longer counts against the
    /// arriving half.
    pub(crate) fn arrived(&mut self) {
        if std::mem::take(&mut self.arriving) {
            self.budget.give_back(self.bytes, true, false);
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes, self.arriving, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    const MIB: usize = 1 << 20;

    /// Takes a share on another thread; the receiver gets it when it is
    /// handed out.
    fn taker(b: &Arc<Budget>, bytes: usize, arriving: bool) -> mpsc::Receiver<Option<Share>> {
        let b = Arc::clone(b);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(b.take(bytes, arriving));
        });
        rx
    }

    fn not_yet(rx: &mpsc::Receiver<Option<Share>>) {
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "the share must wait"
        );
    }

    fn given(rx: &mpsc::Receiver<Option<Share>>) -> Share {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the share is handed out once there is room")
            .expect("the budget is open")
    }

    #[test]
    fn arriving_payloads_hold_at_most_half_and_leave_the_rest_to_others() {
        let b = Budget::new(64 * MIB);
        let stalled: Vec<Share> = (0..4).map(|_| b.take(8 * MIB, true).unwrap()).collect();
        assert_eq!(b.held(), 32 * MIB);
        // A fifth stalled payload waits: the arriving half is spent...
        let fifth = taker(&b, 8 * MIB, true);
        not_yet(&fifth);
        // ...while reads still get the other half, and no more.
        let reads: Vec<Share> = (0..4).map(|_| b.take(8 * MIB, false).unwrap()).collect();
        let more = taker(&b, MIB, false);
        not_yet(&more);
        drop(reads);
        drop(given(&more));
        // A payload that arrives whole leaves the arriving half.
        let mut stalled = stalled;
        stalled[0].arrived();
        let fifth = given(&fifth);
        drop(stalled);
        drop(fifth);
        assert_eq!(b.held(), 0, "everything was given back");
    }

    #[test]
    fn a_request_larger_than_the_budget_runs_alone() {
        let b = Budget::new(MIB);
        let big = b.take(32 * MIB, true).expect("alone, it runs");
        let next = taker(&b, 512, false);
        not_yet(&next);
        drop(big);
        drop(given(&next));
    }

    #[test]
    fn closing_wakes_the_waiting_and_refuses_more() {
        let b = Budget::new(MIB);
        let held = b.take(MIB, false).unwrap();
        let waiting = taker(&b, MIB, false);
        not_yet(&waiting);
        b.close();
        assert!(
            waiting
                .recv_timeout(Duration::from_secs(10))
                .expect("woken")
                .is_none(),
            "no share during shutdown"
        );
        drop(held);
        assert!(b.take(1, false).is_none());
    }

    #[test]
    fn the_default_is_a_sixteenth_of_memory_within_bounds() {
        assert_eq!(default_for(None), 64 * MIB);
        assert_eq!(default_for(Some(512 * MIB as u64)), 64 * MIB);
        assert_eq!(default_for(Some(4 << 30)), 256 * MIB);
        assert_eq!(default_for(Some(64 << 30)), 1024 * MIB);
        let meminfo = "MemTotal:       24730176 kB\nMemFree:        24253184 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(24_730_176 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
    }
}
