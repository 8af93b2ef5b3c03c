//! Deadlines over a whole unit of a connection's traffic (a negotiation,
//! a write payload, a reply), not over each system call: a timeout that
//! starts again after every partial read or write lets a client that
//! trickles a byte at a time hold its buffers, and the server's shutdown,
//! for as long as it likes. The code that knows where a unit begins and
//! ends sets and clears the deadline; the socket wrappers
//! ([`super::socket`]) enforce it on every call.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One deadline, for reading or for writing.
#[derive(Debug, Default)]
pub(crate) struct Deadline(Mutex<Option<(Instant, &'static str)>>);

impl Deadline {
    /// From now on, the unit described by `what` ("the write payload")
    /// must be done within `within`; zero means no limit.
    pub(crate) fn set(&self, within: Duration, what: &'static str) {
        let until = (!within.is_zero()).then(|| (Instant::now() + within, what));
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = until;
    }

    /// The unit is done.
    pub(crate) fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The time left for the next system call: `Ok(None)` without a
    /// deadline, an error once it has passed.
    pub(crate) fn left(&self) -> io::Result<Option<Duration>> {
        let d = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((until, what)) = d else {
            return Ok(None);
        };
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client did not complete {what} in time"),
            ));
        }
        Ok(Some(left))
    }
}

/// A connection's deadlines and how long each kind of unit may take.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// Negotiation, then each write payload.
    pub read: Deadline,
    /// Each reply, or batch of replies written together.
    pub write: Deadline,
    /// How long a write payload may take to arrive, whole.
    pub payload_timeout: Duration,
    /// How long the client may take to receive a reply, whole.
    pub write_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_runs_until_cleared_and_then_fails_calls() {
        let d = Deadline::default();
        assert_eq!(d.left().unwrap(), None);
        d.set(Duration::from_secs(60), "the reply");
        assert!(d
            .left()
            .unwrap()
            .is_some_and(|l| l > Duration::from_secs(50)));
        d.clear();
        assert_eq!(d.left().unwrap(), None);
        d.set(Duration::from_nanos(1), "the write payload");
        std::thread::sleep(Duration::from_millis(2));
        let e = d.left().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("the write payload"), "{e}");
        d.set(Duration::ZERO, "nothing");
        assert_eq!(d.left().unwrap(), None, "zero is no limit");
    }
}
