//! Warnings that clients can cause (unknown export names, refused
//! connections, failed TLS handshakes, malformed requests), limited to a
//! few a minute of each kind: a client that repeats a mistake thousands of
//! times must not be able to flood the log, or hide the lines that matter
//! among its own. What is left out is counted and reported with the next
//! warning of the kind after the minute.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Warnings of one kind logged in full per [`WINDOW`].
const BURST: u32 = 10;
/// The period over which [`BURST`] applies.
const WINDOW: Duration = Duration::from_secs(60);

/// One kind of client-caused warning and its allowance.
pub(crate) struct Limited {
    /// What the warnings are about, plural, for the line that counts
    /// those left out ("requests for unknown exports").
    what: &'static str,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    window_start: Option<Instant>,
    logged: u32,
    left_out: u64,
}

/// What to do with one warning.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Log it, after saying how many were left out in the last window.
    Log { left_out_before: u64 },
    /// Log it, and say that those like it are left out for a while.
    LogLast,
    /// Leave it out.
    Skip,
}

impl State {
    fn judge(&mut self, now: Instant) -> Verdict {
        let mut left_out_before = 0;
        let expired = match self.window_start {
            Some(t) => now.saturating_duration_since(t) >= WINDOW,
            None => true,
        };
        if expired {
            left_out_before = std::mem::take(&mut self.left_out);
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < BURST {
            self.logged += 1;
            if self.logged == BURST && left_out_before == 0 {
                Verdict::LogLast
            } else {
                Verdict::Log { left_out_before }
            }
        } else {
            self.left_out += 1;
            Verdict::Skip
        }
    }
}

impl Limited {
    pub(crate) const fn new(what: &'static str) -> Limited {
        Limited {
            what,
            state: Mutex::new(State {
                window_start: None,
                logged: 0,
                left_out: 0,
            }),
        }
    }

    /// Logs `message` as a warning unless this kind has had its allowance.
    pub(crate) fn warn(&self, message: fmt::Arguments<'_>) {
        let verdict = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .judge(Instant::now());
        match verdict {
            Verdict::Log { left_out_before } => {
                if left_out_before > 0 {
                    log::warn!(
                        "{left_out_before} more warnings about {} were left out in the last \
                         minute (clients repeating a mistake)",
                        self.what
                    );
                }
                log::warn!("{message}");
            }
            Verdict::LogLast => log::warn!(
                "{message} (further warnings about {} are left out for a minute)",
                self.what
            ),
            Verdict::Skip => {}
        }
    }
}

/// Clients asking for exports this server does not have.
pub(crate) static UNKNOWN_EXPORT: Limited = Limited::new("unknown export names");
/// Connections refused for being over the limit.
pub(crate) static OVER_LIMIT: Limited = Limited::new("refused connections");
/// TLS handshakes that failed.
pub(crate) static TLS_FAILED: Limited = Limited::new("failed TLS handshakes");
/// Connections closed because the client stopped sending a payload or
/// taking its replies.
pub(crate) static STALLED: Limited = Limited::new("stalled clients");
/// Connections closed for a malformed request or negotiation.
pub(crate) static MALFORMED: Limited = Limited::new("malformed requests and options");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_a_window_then_a_count_of_what_was_left_out() {
        let mut s = State::default();
        let t = Instant::now();
        for i in 1..BURST {
            assert_eq!(
                s.judge(t),
                Verdict::Log { left_out_before: 0 },
                "warning {i}"
            );
        }
        assert_eq!(
            s.judge(t),
            Verdict::LogLast,
            "the last of the burst says so"
        );
        for _ in 0..1990 {
            assert_eq!(s.judge(t + WINDOW / 2), Verdict::Skip);
        }
        assert_eq!(
            s.judge(t + WINDOW),
            Verdict::Log {
                left_out_before: 1990
            },
            "the next window starts by counting what was left out"
        );
        assert_eq!(s.judge(t + WINDOW), Verdict::Log { left_out_before: 0 });
    }
}
