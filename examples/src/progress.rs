//! A one-line progress bar on stderr with rate and time left, drawn only
//! when stderr is a terminal (so logs and pipes stay clean).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::units;

/// Progress of a job of known size.
#[derive(Debug)]
pub struct Progress {
    total: u64,
    started: Instant,
    last_draw: Option<Instant>,
    enabled: bool,
    base: u64,
}

impl Progress {
    /// A bar for `total` bytes, of which `already` were done before this
    /// run (they count toward the percentage but not the rate). Draws only
    /// when `show` and stderr is a terminal.
    pub fn new(total: u64, already: u64, show: bool) -> Progress {
        Progress {
            total,
            started: Instant::now(),
            last_draw: None,
            enabled: show && std::io::stderr().is_terminal(),
            base: already,
        }
    }

    /// Whether anything is drawn.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records that `done` bytes of the total are finished; redraws at
    /// most ten times a second.
    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(now);
        let line = self.line(done, now.duration_since(self.started));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// Clears the bar's line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }

    /// The text of the bar for `done` bytes after `elapsed`.
    pub fn line(&self, done: u64, elapsed: Duration) -> String {
        const WIDTH: usize = 30;
        let frac = if self.total == 0 {
            1.0
        } else {
            (done as f64 / self.total as f64).clamp(0.0, 1.0)
        };
        let filled = (frac * WIDTH as f64) as usize;
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let this_run = done.saturating_sub(self.base);
        let secs = elapsed.as_secs_f64();
        let eta = if this_run > 0 && secs > 0.0 {
            let per_sec = this_run as f64 / secs;
            let left = self.total.saturating_sub(done) as f64 / per_sec;
            units::clock(Duration::from_secs_f64(left.min(1e9)))
        } else {
            "-:--".to_string()
        };
        format!(
            "[{bar}] {:5.1}% {} of {}  {}  ETA {eta}",
            frac * 100.0,
            units::bytes(done),
            units::bytes(self.total),
            units::rate(this_run, elapsed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_percent_rate_and_eta() {
        let p = Progress::new(100 << 20, 0, false);
        assert!(!p.enabled());
        let l = p.line(25 << 20, Duration::from_secs(5));
        assert!(l.contains(" 25.0%"), "{l}");
        assert!(l.contains("5.0 MiB/s"), "{l}");
        assert!(l.contains("ETA 0:15"), "{l}");
        assert!(l.starts_with("[#######........"), "{l}");
        let resumed = Progress::new(100, 50, false);
        assert!(resumed
            .line(50, Duration::from_secs(1))
            .contains("ETA -:--"));
    }
}
