//! What is known of a disk's allocation: QueryAllocatedBlocks costs about
//! a second per call on a remote disk, so answers are kept per 32 GiB
//! window. Writes only ever allocate, so a write marks its bytes allocated
//! in the windows it touches instead of throwing them away; a query that
//! was in flight across a write is answered but not kept (the generation
//! tells). A window is queried once at a time: a request that needs a
//! window already being queried waits for that answer (clients ask for
//! block status on several connections at once, and nbdcopy does).

use std::collections::BTreeMap;

use crate::backend::{Extent, Known};

/// Bytes per window (32 GiB: one QueryAllocatedBlocks call at 64 KiB chunks).
pub(crate) const WINDOW: u64 = 32 << 30;

/// What runs when a window's query ends.
pub(crate) type Waiter = Box<dyn FnOnce() + Send>;

/// Allocated runs `(offset, length)` per window, sorted and disjoint.
#[derive(Default)]
pub(crate) struct Allocation {
    windows: BTreeMap<u64, Vec<(u64, u64)>>,
    generation: u64,
    /// Windows being queried, and what waits for each answer.
    querying: BTreeMap<u64, Vec<Waiter>>,
}

impl Allocation {
    /// Window `w`'s allocated runs, if known.
    pub(crate) fn window(&self, w: u64) -> Option<&[(u64, u64)]> {
        self.windows.get(&w).map(Vec::as_slice)
    }

    /// Whether window `w` is being queried.
    pub(crate) fn querying(&self, w: u64) -> bool {
        self.querying.contains_key(&w)
    }

    /// Runs `waiter` when the query of window `w` under way ends.
    pub(crate) fn wait_for(&mut self, w: u64, waiter: Waiter) {
        self.querying.entry(w).or_default().push(waiter);
    }

    /// Window `w` is being queried from now on.
    pub(crate) fn begin_query(&mut self, w: u64) {
        self.querying.entry(w).or_default();
    }

    /// Window `w`'s query ended (answered or failed): what waited for it,
    /// to run once the lock is released.
    pub(crate) fn end_query(&mut self, w: u64) -> Vec<Waiter> {
        self.querying.remove(&w).unwrap_or_default()
    }

    /// The windows of `[offset, end)` not known yet.
    pub(crate) fn missing(&self, offset: u64, end: u64) -> Vec<u64> {
        (offset / WINDOW..end.div_ceil(WINDOW))
            .filter(|w| !self.windows.contains_key(w))
            .collect()
    }

    /// Changes with every write: a query answered after a write began may
    /// not be kept.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Keeps window `w`'s answer, unless a write happened since `generation`.
    pub(crate) fn keep(&mut self, w: u64, generation: u64, runs: &[(u64, u64)]) {
        if self.generation == generation {
            self.windows.insert(w, merge(runs.to_vec()));
        }
    }

    /// Allocated runs within `[offset, end)`, if every window is known.
    pub(crate) fn runs_within(&self, offset: u64, end: u64) -> Option<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for w in offset / WINDOW..end.div_ceil(WINDOW) {
            for &(s, n) in self.windows.get(&w)? {
                let (a, b) = (s.max(offset), (s + n).min(end));
                if a < b {
                    out.push((a, b - a));
                }
            }
        }
        Some(out)
    }

    /// A write of `[offset, end)` allocated those bytes.
    pub(crate) fn mark_allocated(&mut self, offset: u64, end: u64) {
        self.generation += 1;
        for w in offset / WINDOW..end.div_ceil(WINDOW) {
            if let Some(runs) = self.windows.get_mut(&w) {
                let (a, b) = (offset.max(w * WINDOW), end.min((w + 1) * WINDOW));
                runs.push((a, b - a));
                *runs = merge(std::mem::take(runs));
            }
        }
    }

    /// What is known of `[offset, offset + len)`, without I/O.
    pub(crate) fn known(&self, offset: u64, len: u64) -> Known {
        match self.runs_within(offset, offset + len) {
            None => Known::Unknown,
            Some(runs) if runs.is_empty() => Known::Hole,
            Some(runs) if runs == [(offset, len)] => Known::Data,
            Some(runs) => Known::Runs(extents(offset, len, &runs)),
        }
    }
}

/// Sorts and merges overlapping or touching runs.
pub(crate) fn merge(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (s, n) in runs {
        match out.last_mut() {
            Some(last) if s <= last.0 + last.1 => {
                let end = (last.0 + last.1).max(s + n);
                last.1 = end - last.0;
            }
            _ => out.push((s, n)),
        }
    }
    out
}

/// Allocated runs within `[offset, offset + len)` as extents from `offset`.
pub(crate) fn extents(offset: u64, len: u64, allocated: &[(u64, u64)]) -> Vec<Extent> {
    let end = offset + len;
    let mut out: Vec<Extent> = Vec::new();
    let mut push = |length: u64, hole: bool| {
        if length == 0 {
            return;
        }
        match out.last_mut() {
            Some(last) if last.hole == hole => last.length += length,
            _ => out.push(Extent { length, hole }),
        }
    };
    let mut at = offset;
    for &(s, n) in allocated {
        let (a, b) = (s.max(at), (s + n).min(end));
        if b <= a {
            continue;
        }
        push(a - at, true);
        push(b - a, false);
        at = b;
    }
    push(end - at, true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_mark() {
        assert_eq!(
            merge(vec![(10, 5), (0, 3), (3, 2), (14, 10)]),
            vec![(0, 5), (10, 14)]
        );
        let mut c = Allocation::default();
        c.keep(0, 0, &[(100, 10)]);
        assert_eq!(c.runs_within(0, 200), Some(vec![(100, 10)]));
        assert_eq!(
            c.runs_within(WINDOW - 1, WINDOW + 1),
            None,
            "second window not known"
        );
        c.mark_allocated(105, 120);
        assert_eq!(c.runs_within(0, 200), Some(vec![(100, 20)]));
        assert_eq!(c.generation(), 1);
        // A query that began before the write is not kept.
        c.keep(1, 0, &[(WINDOW, 5)]);
        assert_eq!(c.missing(0, 2 * WINDOW), vec![1]);
        // Writes into unknown windows change nothing kept.
        c.mark_allocated(WINDOW + 5, WINDOW + 6);
        assert_eq!(c.windows.len(), 1);
    }

    #[test]
    fn one_query_per_window_and_its_waiters() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        let mut c = Allocation::default();
        assert!(!c.querying(3));
        c.begin_query(3);
        assert!(c.querying(3));
        let woken = Arc::new(AtomicU32::new(0));
        for _ in 0..2 {
            let w = Arc::clone(&woken);
            c.wait_for(
                3,
                Box::new(move || {
                    w.fetch_add(1, Ordering::SeqCst);
                }),
            );
        }
        let waiters = c.end_query(3);
        assert!(!c.querying(3));
        waiters.into_iter().for_each(|f| f());
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert!(c.end_query(3).is_empty());
    }

    #[test]
    fn known_and_extents() {
        let mut c = Allocation::default();
        c.keep(0, 0, &[(4096, 4096)]);
        assert_eq!(c.known(4096, 512), Known::Data);
        assert_eq!(c.known(0, 512), Known::Hole);
        let ext = |length, hole| Extent { length, hole };
        assert_eq!(
            c.known(3584, 1024),
            Known::Runs(vec![ext(512, true), ext(512, false)])
        );
        assert_eq!(c.known(WINDOW, 1), Known::Unknown);
        assert_eq!(
            extents(100, 2000, &[(0, 512), (512, 512), (1536, 5120)]),
            vec![ext(924, false), ext(512, true), ext(564, false)]
        );
        assert_eq!(extents(0, 512, &[]), vec![ext(512, true)]);
    }
}
