//! The order in which a pipelined disk issues its requests: a state
//! machine with no I/O, threads or clock, so every rule is unit-tested.
//!
//! Requests start in submission order. The head of the queue waits while
//! it overlaps an earlier request still in flight that it must follow (a
//! read follows overlapping writes; a write follows anything overlapping),
//! so overlapping requests take effect in the order they were submitted,
//! while requests that do not overlap run side by side, up to a bound.
//! Some requests must run with nothing else in flight ([`Kind::Alone`]:
//! flush, allocation queries, writes that need a read-modify-write, close).

use std::collections::VecDeque;

/// What a queued request needs from the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An async read of its sectors.
    Read,
    /// An async write of its sectors.
    Write,
    /// Runs with nothing else in flight.
    Alone,
}

/// Sectors `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    fn overlaps(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The request to start now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    /// An async read or write in `slot` (below the number of slots).
    Issue {
        slot: usize,
        kind: Kind,
        span: Span,
        item: T,
    },
    /// A request to run now, with nothing in flight.
    Alone(T),
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    span: Span,
    write: bool,
}

struct Queued<T> {
    kind: Kind,
    span: Span,
    item: T,
}

/// Queue and in-flight set of one disk.
pub(crate) struct Schedule<T> {
    queue: VecDeque<Queued<T>>,
    /// Indexed by slot.
    flights: Vec<Option<Flight>>,
    free: Vec<usize>,
    /// The most requests in flight now (at most `flights.len()`).
    limit: usize,
    in_flight: usize,
}

impl<T> Schedule<T> {
    /// At most `slots` requests in flight (at least one).
    pub(crate) fn new(slots: usize) -> Schedule<T> {
        let slots = slots.max(1);
        Schedule {
            queue: VecDeque::new(),
            flights: vec![None; slots],
            free: (0..slots).rev().collect(),
            limit: slots,
            in_flight: 0,
        }
    }

    /// Queues a request behind the others.
    pub(crate) fn push(&mut self, kind: Kind, span: Span, item: T) {
        self.queue.push_back(Queued { kind, span, item });
    }

    /// Queues a request ahead of the others (one the disk refused as busy).
    pub(crate) fn push_front(&mut self, kind: Kind, span: Span, item: T) {
        self.queue.push_front(Queued { kind, span, item });
    }

    /// The head of the queue, if it may start now.
    pub(crate) fn next(&mut self) -> Option<Next<T>> {
        let head = self.queue.front()?;
        match head.kind {
            Kind::Alone => {
                if self.in_flight > 0 {
                    return None;
                }
                let q = self.queue.pop_front()?;
                Some(Next::Alone(q.item))
            }
            Kind::Read | Kind::Write => {
                let write = head.kind == Kind::Write;
                let span = head.span;
                let blocked = self.in_flight >= self.limit
                    || self
                        .flights
                        .iter()
                        .flatten()
                        .any(|f| (write || f.write) && f.span.overlaps(span));
                if blocked {
                    return None;
                }
                let slot = self.free.pop()?;
                let q = self.queue.pop_front()?;
                self.flights[slot] = Some(Flight { span, write });
                self.in_flight += 1;
                Some(Next::Issue {
                    slot,
                    kind: q.kind,
                    span,
                    item: q.item,
                })
            }
        }
    }

    /// The request in `slot` has finished (or was never started).
    pub(crate) fn finish(&mut self, slot: usize) {
        if let Some(f) = self.flights.get_mut(slot) {
            if f.take().is_some() {
                self.in_flight -= 1;
                self.free.push(slot);
            }
        }
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Nothing queued and nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0
    }

    /// Whether the head must run alone and is waiting for the disk to drain.
    pub(crate) fn head_waits_for_drain(&self) -> bool {
        self.in_flight > 0 && self.queue.front().is_some_and(|q| q.kind == Kind::Alone)
    }

    /// Keeps at most `n` (at least one) requests in flight from now on.
    pub(crate) fn lower_limit(&mut self, n: usize) {
        self.limit = self.limit.min(n.max(1));
    }

    /// The current bound on requests in flight.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes every queued request out (when the disk goes away).
    pub(crate) fn take_queued(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queue.drain(..).map(|q| q.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    fn issued(n: Option<Next<u32>>) -> (usize, u32) {
        match n {
            Some(Next::Issue { slot, item, .. }) => (slot, item),
            other => panic!("expected an issue, got {other:?}"),
        }
    }

    #[test]
    fn disjoint_requests_run_side_by_side_up_to_the_bound() {
        let mut s = Schedule::new(2);
        s.push(Kind::Read, span(0, 8), 1);
        s.push(Kind::Write, span(8, 16), 2);
        s.push(Kind::Read, span(16, 24), 3);
        let (a, _) = issued(s.next());
        let (b, _) = issued(s.next());
        assert_ne!(a, b);
        assert_eq!(s.next(), None, "the bound holds the third");
        s.finish(a);
        assert_eq!(issued(s.next()).1, 3);
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn overlaps_wait_only_where_order_matters() {
        let mut s = Schedule::new(8);
        s.push(Kind::Read, span(0, 8), 1);
        s.push(Kind::Read, span(4, 12), 2);
        issued(s.next());
        assert_eq!(issued(s.next()).1, 2, "reads over reads go ahead");
        s.push(Kind::Write, span(10, 20), 3);
        assert_eq!(s.next(), None, "a write waits for an overlapping read");
        let mut s = Schedule::new(8);
        s.push(Kind::Write, span(0, 8), 1);
        s.push(Kind::Read, span(7, 9), 2);
        s.push(Kind::Read, span(100, 101), 3);
        let (w, _) = issued(s.next());
        assert_eq!(s.next(), None, "a read waits for an overlapping write");
        assert_eq!(s.next(), None, "and so does everything behind it");
        s.finish(w);
        assert_eq!(issued(s.next()).1, 2);
        assert_eq!(issued(s.next()).1, 3);
    }

    #[test]
    fn adjacent_spans_do_not_overlap() {
        let mut s = Schedule::new(8);
        s.push(Kind::Write, span(0, 8), 1);
        s.push(Kind::Write, span(8, 16), 2);
        issued(s.next());
        assert_eq!(issued(s.next()).1, 2);
    }

    #[test]
    fn alone_waits_for_a_drain_and_holds_what_follows() {
        let mut s = Schedule::new(8);
        s.push(Kind::Write, span(0, 8), 1);
        let (w, _) = issued(s.next());
        s.push(Kind::Alone, Span::default(), 2);
        s.push(Kind::Read, span(100, 108), 3);
        assert!(s.head_waits_for_drain());
        assert_eq!(s.next(), None);
        s.finish(w);
        assert!(!s.head_waits_for_drain());
        assert_eq!(s.next(), Some(Next::Alone(2)));
        assert_eq!(issued(s.next()).1, 3);
    }

    #[test]
    fn a_lowered_limit_and_a_retry_at_the_front() {
        let mut s = Schedule::new(4);
        for i in 0..4 {
            s.push(Kind::Read, span(i * 8, i * 8 + 8), i as u32);
        }
        let (a, _) = issued(s.next());
        let (b, item) = issued(s.next());
        // The disk refused the second as busy: back to the front, bound lowered.
        s.finish(b);
        s.lower_limit(s.in_flight());
        s.push_front(Kind::Read, span(8, 16), item);
        assert_eq!(s.limit(), 1);
        assert_eq!(s.next(), None);
        s.finish(a);
        assert_eq!(issued(s.next()).1, item);
        s.lower_limit(0);
        assert_eq!(s.limit(), 1, "never below one");
    }

    #[test]
    fn finishing_an_unknown_or_free_slot_changes_nothing() {
        let mut s: Schedule<u32> = Schedule::new(2);
        s.finish(0);
        s.finish(99);
        assert_eq!(s.in_flight(), 0);
        assert!(s.is_idle());
        s.push(Kind::Read, span(0, 1), 1);
        assert!(!s.is_idle());
        assert_eq!(s.take_queued().collect::<Vec<_>>(), vec![1]);
        assert!(s.is_idle());
    }
}
