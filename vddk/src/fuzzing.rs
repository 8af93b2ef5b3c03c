//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Internal: not part of the API, hidden from the docs, free to change in
//! any release. The wrappers speak plain tuples so that the crate-private
//! types they wrap stay private.

/// Planning an allocated-blocks query and merging its answers, as
/// [`Disk::allocated_blocks`](crate::Disk::allocated_blocks) does.
pub mod blocks {
    use crate::blocks as imp;
    pub use crate::blocks::{Extent, MAX_CHUNKS_PER_CALL, MIN_CHUNK};

    /// The smallest chunk VDDK accepts, in sectors.
    pub const MIN_CHUNK_SECTORS: u64 = imp::MIN_CHUNK / crate::SECTOR_SIZE;

    /// The QueryAllocatedBlocks calls for one request, in sectors.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Plan {
        /// Chunk size of every call.
        pub chunk: u64,
        /// `(start, count)` of each call.
        pub calls: Vec<(u64, u64)>,
        /// `(start, length)` of the part of the range in the partial chunk
        /// at the end of the disk, which no call covers.
        pub tail: Option<(u64, u64)>,
    }

    /// The plan for sectors `[start, start + count)` of a disk of
    /// `capacity` sectors, with chunks of at least `chunk` sectors; the
    /// range must lie inside the disk.
    pub fn plan(start: u64, count: u64, chunk: u64, capacity: u64) -> Plan {
        let p = imp::plan(start, count, chunk, capacity);
        Plan {
            chunk: p.chunk,
            calls: p.calls.iter().map(|c| (c.start, c.count)).collect(),
            tail: p.tail.map(|t| (t.start, t.length)),
        }
    }

    /// The extents (in bytes) for the runs `(start, length)` the calls
    /// found and the plan's tail, clipped to `[start, start + count)`.
    pub fn finish(
        found: Vec<(u64, u64)>,
        tail: Option<(u64, u64)>,
        start: u64,
        count: u64,
    ) -> Vec<Extent> {
        let run = |(start, length)| imp::Run { start, length };
        imp::finish(
            found.into_iter().map(run).collect(),
            tail.map(run),
            start,
            count,
        )
    }
}

// The driver keeps its schedule module to itself; the same source file is
// compiled here as a module of its own, so the code fuzzed is the driver's
// and the driver's module tree stays as it is. The copy has no state
// shared with the driver's, so loading the file twice is harmless.
#[allow(clippy::duplicate_mod)]
#[path = "driver/schedule.rs"]
mod schedule_impl;

/// The pipelined driver's request order (see the driver's docs): a queue
/// and an in-flight set with no I/O.
pub mod schedule {
    use super::schedule_impl as imp;

    /// What a queued request needs from the disk.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// An async read of its sectors.
        Read,
        /// An async write of its sectors.
        Write,
        /// Runs with nothing else in flight (flush, allocation query,
        /// unaligned write, close).
        Alone,
    }

    impl Kind {
        fn to_imp(self) -> imp::Kind {
            match self {
                Kind::Read => imp::Kind::Read,
                Kind::Write => imp::Kind::Write,
                Kind::Alone => imp::Kind::Alone,
            }
        }

        fn from_imp(k: imp::Kind) -> Kind {
            match k {
                imp::Kind::Read => Kind::Read,
                imp::Kind::Write => Kind::Write,
                imp::Kind::Alone => Kind::Alone,
            }
        }
    }

    /// The request to start now.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Next<T> {
        /// An async read or write in `slot`; `span` is sectors
        /// `(start, end)`.
        Issue {
            /// Below the number of slots.
            slot: usize,
            /// Read or write.
            kind: Kind,
            /// Sectors `(start, end)`.
            span: (u64, u64),
            /// What was queued.
            item: T,
        },
        /// A request to run now, with nothing in flight.
        Alone(T),
    }

    /// Queue and in-flight set of one disk.
    pub struct Schedule<T>(imp::Schedule<T>);

    impl<T> Schedule<T> {
        /// At most `slots` requests in flight (at least one).
        pub fn new(slots: usize) -> Schedule<T> {
            Schedule(imp::Schedule::new(slots))
        }

        /// Queues a request behind the others; `span` is sectors
        /// `(start, end)`.
        pub fn push(&mut self, kind: Kind, span: (u64, u64), item: T) {
            self.0.push(kind.to_imp(), to_span(span), item);
        }

        /// Queues a request ahead of the others.
        pub fn push_front(&mut self, kind: Kind, span: (u64, u64), item: T) {
            self.0.push_front(kind.to_imp(), to_span(span), item);
        }

        /// The head of the queue, if it may start now.
        // Not an iterator: None means "nothing may start yet", not the end.
        #[allow(clippy::should_implement_trait)]
        pub fn next(&mut self) -> Option<Next<T>> {
            self.0.next().map(|n| match n {
                imp::Next::Issue {
                    slot,
                    kind,
                    span,
                    item,
                } => Next::Issue {
                    slot,
                    kind: Kind::from_imp(kind),
                    span: (span.start, span.end),
                    item,
                },
                imp::Next::Alone(item) => Next::Alone(item),
            })
        }

        /// The request in `slot` has finished (or was never started).
        pub fn finish(&mut self, slot: usize) {
            self.0.finish(slot);
        }

        /// Requests in flight.
        pub fn in_flight(&self) -> usize {
            self.0.in_flight()
        }

        /// Nothing queued and nothing in flight.
        pub fn is_idle(&self) -> bool {
            self.0.is_idle()
        }

        /// Whether the head must run alone and waits for the disk to drain.
        pub fn head_waits_for_drain(&self) -> bool {
            self.0.head_waits_for_drain()
        }

        /// Keeps at most `n` (at least one) requests in flight from now on.
        pub fn lower_limit(&mut self, n: usize) {
            self.0.lower_limit(n);
        }

        /// The current bound on requests in flight.
        pub fn limit(&self) -> usize {
            self.0.limit()
        }

        /// Takes every queued request out, in queue order.
        pub fn take_queued(&mut self) -> Vec<T> {
            self.0.take_queued().collect()
        }
    }

    fn to_span((start, end): (u64, u64)) -> imp::Span {
        imp::Span { start, end }
    }
}
