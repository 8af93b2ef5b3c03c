//! Drives the pipelined driver's request schedule with an arbitrary
//! sequence of operations and checks it against a simple model.
//!
//! Input (read through `Unstructured`): the number of slots, then
//! operations: push or push_front a read, write or alone request
//! (flush, allocation query, close) with an arbitrary sector span (mostly
//! small so that spans overlap, sometimes empty, inverted or at the ends
//! of u64); next; pump (next until nothing may start); finish an in-flight
//! slot or any slot number; a refusal as the driver handles "busy" (finish
//! the slot, lower the limit to what stays in flight, put the request back
//! at the front); lower_limit; take_queued. At the end everything in flight
//! finishes and the queue is pumped dry.
//!
//! Checked, as the module's docs promise: requests start strictly in queue
//! order (push at the back, push_front at the front), each the head of the
//! queue with its kind and span; a request starts only while fewer than the
//! limit are in flight, in a slot below the number of slots that is not in
//! use; a read never starts while an overlapping write is in flight and a
//! write never while anything overlapping is (so overlapping requests, at
//! least one a write, are never in flight together and take effect in
//! queue order); an alone request starts only with nothing in flight; a
//! head that may start does start (for non-empty spans: an empty span may
//! wait on a span around it); the limit only goes down and never below
//! one; in_flight, is_idle, head_waits_for_drain and limit agree with the
//! model; finishing a slot not in flight changes nothing; every request
//! pushed comes out exactly once (started, run alone or taken back).
#![no_main]

use std::collections::{HashMap, VecDeque};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vddk::fuzzing::schedule::{Kind, Next, Schedule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Req {
    id: u64,
    kind: Kind,
    span: (u64, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    InFlight,
    Out,
}

/// Whether two requests share a sector.
fn share((a, b): (u64, u64), (c, d): (u64, u64)) -> bool {
    a.max(c) < b.min(d)
}

fn empty((a, b): (u64, u64)) -> bool {
    a >= b
}

/// Whether the schedule must keep these two out of flight together.
fn conflict(x: &Req, y: &Req) -> bool {
    (x.kind == Kind::Write || y.kind == Kind::Write) && share(x.span, y.span)
}

struct Model {
    s: Schedule<u64>,
    slots: usize,
    queue: VecDeque<Req>,
    flights: Vec<Option<Req>>,
    limit: usize,
    state: HashMap<u64, State>,
    next_id: u64,
    pushed: u64,
    out: u64,
}

impl Model {
    fn new(slots: usize) -> Model {
        let n = slots.max(1);
        Model {
            s: Schedule::new(slots),
            slots: n,
            queue: VecDeque::new(),
            flights: vec![None; n],
            limit: n,
            state: HashMap::new(),
            next_id: 0,
            pushed: 0,
            out: 0,
        }
    }

    fn in_flight(&self) -> usize {
        self.flights.iter().flatten().count()
    }

    fn queue(&mut self, r: Req, front: bool) {
        let prev = self.state.insert(r.id, State::Queued);
        assert!(
            prev.is_none() || prev == Some(State::Out),
            "{r:?} queued twice"
        );
        self.pushed += 1;
        if front {
            self.s.push_front(r.kind, r.span, r.id);
            self.queue.push_front(r);
        } else {
            self.s.push(r.kind, r.span, r.id);
            self.queue.push_back(r);
        }
    }

    fn push(&mut self, kind: Kind, span: (u64, u64), front: bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.queue(Req { id, kind, span }, front);
    }

    /// Marks `id` as come out of the queue; it must have been queued.
    fn came_out(&mut self, id: u64, to: State) {
        let st = self
            .state
            .get_mut(&id)
            .expect("an item never pushed came out");
        assert_eq!(*st, State::Queued, "item {id} came out twice");
        *st = to;
        self.out += 1;
    }

    /// Calls next and checks the answer; true when something started.
    fn next(&mut self) -> bool {
        let n = self.in_flight();
        let got = self.s.next();
        let Some(head) = self.queue.front().copied() else {
            assert!(got.is_none(), "an empty queue gave {got:?}");
            return false;
        };
        let flights: Vec<Req> = self.flights.iter().flatten().copied().collect();
        let may = match head.kind {
            Kind::Alone => n == 0,
            Kind::Read | Kind::Write => {
                n < self.limit && !flights.iter().any(|f| conflict(f, &head))
            }
        };
        match got {
            None => {
                // Only an empty span may wait beyond what the docs say
                // (the schedule counts it as overlapping a span around it).
                let spans_empty = head.kind != Kind::Alone
                    && (empty(head.span) || flights.iter().any(|f| empty(f.span)));
                assert!(
                    !may || spans_empty,
                    "{head:?} may start but waits; in flight {flights:?}, limit {}",
                    self.limit
                );
                false
            }
            Some(Next::Alone(id)) => {
                assert_eq!(head.kind, Kind::Alone, "{head:?} ran alone");
                assert_eq!(id, head.id, "ran {id} alone before the head {head:?}");
                assert_eq!(n, 0, "{head:?} ran alone with {n} in flight");
                self.queue.pop_front();
                self.came_out(id, State::Out);
                true
            }
            Some(Next::Issue {
                slot,
                kind,
                span,
                item,
            }) => {
                assert_eq!(item, head.id, "started {item} before the head {head:?}");
                assert_eq!(
                    (kind, span),
                    (head.kind, head.span),
                    "{head:?} started as {kind:?} {span:?}"
                );
                assert_ne!(kind, Kind::Alone, "{head:?} issued async");
                assert!(
                    n < self.limit,
                    "{head:?} started with {n} in flight, limit {}",
                    self.limit
                );
                assert!(slot < self.slots, "slot {slot} of {}", self.slots);
                assert!(self.flights[slot].is_none(), "slot {slot} in use");
                if let Some(f) = flights.iter().find(|f| conflict(f, &head)) {
                    panic!("{head:?} started while {f:?} is in flight");
                }
                self.queue.pop_front();
                self.flights[slot] = Some(head);
                self.came_out(item, State::InFlight);
                true
            }
        }
    }

    fn finish(&mut self, slot: usize) -> Option<Req> {
        self.s.finish(slot);
        let r = self.flights.get_mut(slot).and_then(Option::take)?;
        self.state.insert(r.id, State::Out);
        Some(r)
    }

    fn lower_limit(&mut self, n: usize) {
        self.s.lower_limit(n);
        self.limit = self.limit.min(n.max(1));
    }

    fn take_queued(&mut self) {
        let got = self.s.take_queued();
        let want: Vec<u64> = self.queue.drain(..).map(|r| r.id).collect();
        assert_eq!(got, want, "take_queued out of queue order");
        for id in got {
            self.came_out(id, State::Out);
        }
    }

    fn check(&self) {
        let n = self.in_flight();
        assert_eq!(self.s.in_flight(), n, "in_flight");
        assert!(n <= self.slots);
        assert_eq!(self.s.limit(), self.limit, "limit");
        assert!(self.limit >= 1 && self.limit <= self.slots);
        assert_eq!(self.s.is_idle(), self.queue.is_empty() && n == 0, "is_idle");
        let drain = n > 0 && self.queue.front().is_some_and(|r| r.kind == Kind::Alone);
        assert_eq!(self.s.head_waits_for_drain(), drain, "head_waits_for_drain");
    }

    /// Picks an in-flight slot when there is one.
    fn busy_slot(&self, u: &mut Unstructured) -> Result<Option<usize>> {
        let busy: Vec<usize> = (0..self.slots)
            .filter(|&i| self.flights[i].is_some())
            .collect();
        if busy.is_empty() {
            return Ok(None);
        }
        Ok(Some(busy[u.choose_index(busy.len())?]))
    }
}

fn span(u: &mut Unstructured) -> Result<(u64, u64)> {
    Ok(match u.int_in_range(0..=15u8)? {
        // Empty or inverted.
        0 => (u.arbitrary()?, u.arbitrary()?),
        // At the ends of u64.
        1 => {
            let len = u64::from(u.arbitrary::<u8>()?);
            let start = u64::MAX - len - u64::from(u.arbitrary::<u8>()?).min(u64::MAX - len);
            (start, start + len)
        }
        // Small, so that requests overlap often.
        _ => {
            let start = u64::from(u.int_in_range(0..=63u8)?);
            (start, start + u64::from(u.int_in_range(1..=16u8)?))
        }
    })
}

fn kind(u: &mut Unstructured) -> Result<Kind> {
    Ok(*u.choose(&[
        Kind::Read,
        Kind::Read,
        Kind::Write,
        Kind::Write,
        Kind::Alone,
    ])?)
}

fn run(u: &mut Unstructured, m: &mut Model) -> Result<()> {
    while !u.is_empty() {
        match u.int_in_range(0..=9u8)? {
            0 | 1 => {
                let (k, sp) = (kind(u)?, span(u)?);
                m.push(k, sp, false);
            }
            2 => {
                let (k, sp) = (kind(u)?, span(u)?);
                m.push(k, sp, true);
            }
            3 => {
                m.next();
            }
            4 => {
                // As the driver pumps: until nothing may start.
                while m.next() {}
            }
            5 => {
                if let Some(slot) = m.busy_slot(u)? {
                    m.finish(slot);
                }
            }
            6 => {
                // Any slot number, in flight or not, in range or not.
                let slot = if u.arbitrary()? {
                    usize::from(u.arbitrary::<u8>()?)
                } else {
                    u.arbitrary()?
                };
                let before = m.in_flight();
                let r = m.finish(slot);
                assert_eq!(m.in_flight() + usize::from(r.is_some()), before);
            }
            7 => {
                // The disk refused the request in `slot` as busy.
                if let Some(slot) = m.busy_slot(u)? {
                    if let Some(r) = m.finish(slot) {
                        let held = m.in_flight();
                        if held > 0 && held < m.limit {
                            m.lower_limit(held);
                        }
                        m.queue(r, true);
                    }
                }
            }
            8 => {
                let n = if u.arbitrary()? {
                    usize::from(u.int_in_range(0..=8u8)?)
                } else {
                    u.arbitrary()?
                };
                let before = m.limit;
                m.lower_limit(n);
                assert!(m.s.limit() <= before, "the limit went up");
            }
            _ => m.take_queued(),
        }
        m.check();
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let slots = match u.int_in_range(0..=3u8) {
        Ok(0) => 0,
        Ok(1) => usize::from(u.int_in_range(9..=64u8).unwrap_or(9)),
        _ => usize::from(u.int_in_range(1..=8u8).unwrap_or(1)),
    };
    let mut m = Model::new(slots);
    // Running out of input ends the sequence; that is not a finding.
    let _ = run(&mut u, &mut m);
    m.check();

    // Drain: finish what is in flight, pump, until the queue is empty;
    // with nothing in flight the head always starts.
    loop {
        for slot in 0..m.slots {
            m.finish(slot);
        }
        m.check();
        if m.queue.is_empty() {
            break;
        }
        assert!(
            m.next(),
            "nothing in flight, yet the head {:?} waits",
            m.queue.front()
        );
        while m.next() {}
        m.check();
    }
    m.take_queued();
    assert!(m.s.is_idle());
    assert_eq!(
        m.out, m.pushed,
        "pushed {} but {} came out",
        m.pushed, m.out
    );
    assert!(m.state.values().all(|&s| s == State::Out));
});
