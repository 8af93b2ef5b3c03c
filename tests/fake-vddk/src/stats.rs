//! Per-function call statistics, written at Exit to FAKE_VDDK_STATS.
//!
//! Format (one line per function that was called, sorted by name, after a
//! header line):
//! ```text
//! # fake-vddk stats v1: function calls errors bytes time_us
//! VixDiskLib_Read 12 0 6144 850
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default, Clone, Copy)]
struct Stat {
    calls: u64,
    errors: u64,
    bytes: u64,
    time: Duration,
}

static STATS: Mutex<BTreeMap<&'static str, Stat>> = Mutex::new(BTreeMap::new());

/// Counts one call of `function`.
pub fn record(function: &'static str, failed: bool, bytes: u64, time: Duration) {
    let mut stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
    let s = stats.entry(function).or_default();
    s.calls += 1;
    s.errors += u64::from(failed);
    s.bytes += bytes;
    s.time += time;
}

/// Forgets everything counted so far (at InitEx).
pub fn reset() {
    STATS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The statistics as text, in the documented format.
pub fn render() -> String {
    let stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::from("# fake-vddk stats v1: function calls errors bytes time_us\n");
    for (name, s) in stats.iter() {
        out.push_str(&format!(
            "{name} {} {} {} {}\n",
            s.calls,
            s.errors,
            s.bytes,
            s.time.as_micros()
        ));
    }
    out
}

/// Writes the statistics to `path`.
pub fn write(path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render())
}
