//! Per-function call statistics: how often each VDDK function was called,
//! how many bytes it moved and how long it took.
//!
//! Collection is opt-in ([`InitOptions::collect_stats`](crate::InitOptions::collect_stats)):
//! when off, a call costs one branch on an `Option`; when on, two clock
//! reads and a short lock per call. For ReadAsync and WriteAsync the time is
//! the submission only (the transfer overlaps other calls), as in
//! nbdkit's `-D vddk.stats=1`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The totals for one VDDK function.
///
/// # Examples
///
/// One line of a report on what [`Vddk::stats`](crate::Vddk::stats) returns:
///
/// ```
/// use std::time::Duration;
/// use vddk::CallStats;
///
/// fn line(s: &CallStats) -> String {
///     let mib_per_s = s.bytes as f64 / f64::from(1 << 20) / s.time.as_secs_f64();
///     format!("{}: {} calls, {mib_per_s:.0} MiB/s", s.function, s.calls)
/// }
/// let read = CallStats {
///     function: "VixDiskLib_Read",
///     calls: 1024,
///     bytes: 1 << 30,
///     time: Duration::from_secs(8),
/// };
/// assert_eq!(line(&read), "VixDiskLib_Read: 1024 calls, 128 MiB/s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStats {
    /// The C function, e.g. `VixDiskLib_ReadAsync`.
    pub function: &'static str,
    /// How many times it was called.
    pub calls: u64,
    /// Bytes read or written by those calls (0 for calls that move no data).
    pub bytes: u64,
    /// Total time spent inside the function.
    pub time: Duration,
}

/// A live view of the statistics of one initialised library; it stays
/// readable after the library has exited, so the figures can include Exit.
/// Cheap to clone.
///
/// # Examples
///
/// ```no_run
/// use vddk::{InitOptions, Vddk};
///
/// let vddk = Vddk::init(InitOptions::new().collect_stats(true))?;
/// let stats = vddk.stats_handle().expect("collect_stats is on");
/// // ... connect, open, copy ...
/// drop(vddk); // Exit runs here, once no connection or disk holds the library
/// for s in stats.snapshot() {
///     eprintln!("{:<36} {:>8} calls {:>14} bytes {:?}", s.function, s.calls, s.bytes, s.time);
/// }
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stats {
    table: Arc<Mutex<Vec<CallStats>>>,
}

impl Stats {
    /// The totals so far, one entry per function called, the most time
    /// first (ties by name, so the order is stable).
    pub fn snapshot(&self) -> Vec<CallStats> {
        let mut v = self
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        v.sort_by(|a, b| b.time.cmp(&a.time).then(a.function.cmp(b.function)));
        v
    }

    pub(crate) fn record(&self, function: &'static str, bytes: u64, time: Duration) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // A linear scan: a process calls a dozen or so distinct functions.
        match t.iter_mut().find(|c| c.function == function) {
            Some(c) => {
                c.calls += 1;
                c.bytes += bytes;
                c.time += time;
            }
            None => t.push(CallStats {
                function,
                calls: 1,
                bytes,
                time,
            }),
        }
    }

    /// Runs `f`, recording it as one call of `function` moving `bytes`.
    pub(crate) fn time<T>(&self, function: &'static str, bytes: u64, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let r = f();
        self.record(function, bytes, t0.elapsed());
        r
    }
}

/// Times `f` when `stats` is collecting; otherwise just runs it.
pub(crate) fn timed<T>(
    stats: Option<&Stats>,
    function: &'static str,
    bytes: u64,
    f: impl FnOnce() -> T,
) -> T {
    match stats {
        Some(s) => s.time(function, bytes, f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_accumulate_and_sort_by_time() {
        let s = Stats::default();
        s.record("VixDiskLib_Read", 512, Duration::from_micros(10));
        s.record("VixDiskLib_Open", 0, Duration::from_micros(50));
        s.record("VixDiskLib_Read", 1024, Duration::from_micros(35));
        s.record("VixDiskLib_Close", 0, Duration::from_micros(40));
        let v = s.snapshot();
        let names: Vec<_> = v.iter().map(|c| c.function).collect();
        assert_eq!(
            names,
            ["VixDiskLib_Open", "VixDiskLib_Read", "VixDiskLib_Close"]
        );
        assert_eq!(v[1].calls, 2);
        assert_eq!(v[1].bytes, 1536);
        assert_eq!(v[1].time, Duration::from_micros(45));
        // Equal times: by name.
        s.record("VixDiskLib_Wait", 0, Duration::from_micros(40));
        let names: Vec<_> = s.snapshot().iter().map(|c| c.function).collect();
        assert_eq!(names[2..], ["VixDiskLib_Close", "VixDiskLib_Wait"]);
    }

    #[test]
    fn timed_without_stats_only_runs() {
        assert_eq!(timed(None, "VixDiskLib_Read", 1, || 7), 7);
        let s = Stats::default();
        assert_eq!(timed(Some(&s), "VixDiskLib_Wait", 0, || 8), 8);
        assert_eq!(s.snapshot()[0].calls, 1);
        assert_eq!(s.snapshot()[0].bytes, 0);
    }

    #[test]
    fn a_clone_sees_the_same_table() {
        let s = Stats::default();
        let view = s.clone();
        s.record("VixDiskLib_Flush", 0, Duration::from_millis(1));
        assert_eq!(view.snapshot().len(), 1);
    }
}
