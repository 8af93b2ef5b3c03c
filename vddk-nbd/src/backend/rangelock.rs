//! A lock over sector ranges: writes hold the sectors they touch, so a
//! read-modify-write of a partial sector cannot interleave with another
//! write to the same sector.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// The set of sector ranges currently held.
#[derive(Debug, Default)]
pub struct RangeLock {
    held: Mutex<Vec<(u64, u64)>>,
    released: Condvar,
}

/// Holds `[start, end)` until dropped (dropping may happen on any thread).
#[derive(Debug)]
pub struct RangeGuard {
    lock: Arc<RangeLock>,
    range: (u64, u64),
}

impl RangeLock {
    /// Blocks until no held range overlaps `[start, end)`, then holds it.
    pub fn lock(self: &Arc<Self>, start: u64, end: u64) -> RangeGuard {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while held.iter().any(|&(s, e)| s < end && start < e) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.push((start, end));
        RangeGuard {
            lock: Arc::clone(self),
            range: (start, end),
        }
    }
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        let mut held = self
            .lock
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = held.iter().position(|&r| r == self.range) {
            held.swap_remove(i);
        }
        drop(held);
        self.lock.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn overlapping_ranges_wait_disjoint_do_not() {
        let lock = Arc::new(RangeLock::default());
        let g = lock.lock(10, 20);
        let _disjoint = lock.lock(20, 30);
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = Arc::clone(&lock);
        let t = std::thread::spawn(move || {
            let _g = l2.lock(15, 16);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "overlap must wait"
        );
        drop(g);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("released range is granted");
        t.join().unwrap();
    }
}
