//! Progress of a copy on stderr, with [`indicatif`]: a bar with bytes,
//! rate and time left when stderr is a terminal, and otherwise (a log, a
//! pipe) a plain line now and then, so a long copy still shows it is
//! moving.
//!
//! Both carry an optional message at the end of the line
//! ([`Progress::set_message`]), for news such as a reconnection.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar's layout on a terminal.
const TEMPLATE: &str =
    "[{bar:30}] {percent:>3}% {binary_bytes} of {binary_total_bytes}  {binary_bytes_per_sec}  \
     ETA {eta} {msg}";

/// Without a terminal, a line each time this fraction of the total more
/// is done...
const LINE_STEP: f64 = 0.10;
/// ...or this long after the previous line, whichever comes first.
const LINE_EVERY: Duration = Duration::from_secs(30);

/// The bar on screen, if any, so log lines can clear it first.
static DRAWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Progress of a job of known size.
#[derive(Debug)]
pub struct Progress {
    /// Keeps position, rate and time left; draws itself on a terminal.
    bar: ProgressBar,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Nothing shown.
    Off,
    /// The bar draws itself.
    Bar,
    /// Plain lines, printed by [`Progress::update`].
    Lines { printed: Option<(Instant, u64)> },
}

impl Progress {
    /// Progress of `total` bytes, of which `already` were done before this
    /// run (they count toward the percentage but not the rate). With
    /// `show`, a bar when stderr is a terminal and plain lines otherwise.
    pub fn new(total: u64, already: u64, show: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let mode = match (show, terminal) {
            (false, _) => Mode::Off,
            (true, true) => Mode::Bar,
            (true, false) => Mode::Lines { printed: None },
        };
        Progress::with_mode(total, already, mode)
    }

    fn with_mode(total: u64, already: u64, mode: Mode) -> Progress {
        let target = match mode {
            Mode::Bar => ProgressDrawTarget::stderr_with_hz(10),
            _ => ProgressDrawTarget::hidden(),
        };
        let bar = ProgressBar::with_draw_target(Some(total), target)
            .with_style(style())
            .with_position(already.min(total));
        // The estimator starts from `already`: earlier runs add nothing
        // to the rate.
        bar.tick();
        bar.reset_eta();
        if matches!(mode, Mode::Bar) {
            *lock_drawn() = Some(bar.clone());
        }
        Progress { bar, mode }
    }

    /// Whether anything is shown.
    pub fn enabled(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// Records that `done` bytes of the total are finished.
    pub fn update(&mut self, done: u64) {
        self.bar.set_position(done);
        self.print_line_if_due(false);
    }

    /// Shows `msg` at the end of the progress line from now on (an empty
    /// message removes it). Without a terminal, a line with it is printed
    /// at once.
    pub fn set_message(&mut self, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_message(msg);
        self.print_line_if_due(true);
    }

    /// Clears the bar; without a terminal, prints a last line unless the
    /// latest already showed where the job ended.
    pub fn finish(&mut self) {
        match self.mode {
            Mode::Bar => {
                self.bar.finish_and_clear();
                *lock_drawn() = None;
            }
            Mode::Lines {
                printed: Some((_, at)),
            } if at == self.bar.position() => {}
            Mode::Lines { .. } => self.print_line_if_due(true),
            Mode::Off => {}
        }
    }

    fn print_line_if_due(&mut self, force: bool) {
        let Mode::Lines { printed } = &mut self.mode else {
            return;
        };
        let done = self.bar.position();
        let total = self.bar.length().unwrap_or(0);
        let due = match *printed {
            _ if force => true,
            None => step(done, total) > 0,
            Some((when, at)) => step(done, total) > step(at, total) || when.elapsed() >= LINE_EVERY,
        };
        if due {
            *printed = Some((Instant::now(), done));
            let line = self.line();
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    /// The plain line: percentage, bytes, rate, time left and message.
    pub fn line(&self) -> String {
        let done = self.bar.position();
        let total = self.bar.length().unwrap_or(0);
        // Rounded down, as on the bar: 100% only once everything is done.
        let percent = (u128::from(done) * 100)
            .checked_div(u128::from(total))
            .unwrap_or(100);
        let msg = self.bar.message();
        format!(
            "progress: {percent}% {} of {}  {}/s  ETA {:#}{}{msg}",
            BinaryBytes(done),
            BinaryBytes(total),
            BinaryBytes(self.bar.per_sec() as u64),
            HumanDuration(self.bar.eta()),
            if msg.is_empty() { "" } else { "  " },
        )
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if matches!(self.mode, Mode::Bar) {
            *lock_drawn() = None;
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(TEMPLATE)
        .expect("the progress template is valid")
        .progress_chars("#.")
}

/// How many [`LINE_STEP`]s of `total` `done` has passed.
fn step(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    (done as f64 / total as f64 / LINE_STEP + 1e-9) as u64
}

fn lock_drawn() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    DRAWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Standard error for other output (the logger's): a progress bar on
/// screen is cleared while it writes, and drawn again after.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = lock_drawn().clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_percent_bytes_rate_eta_and_message() {
        let mut p = Progress::with_mode(100 << 20, 0, Mode::Off);
        assert!(!p.enabled());
        std::thread::sleep(Duration::from_millis(50));
        p.update(25 << 20);
        let l = p.line();
        assert!(
            l.starts_with("progress: 25% 25.00 MiB of 100.00 MiB  "),
            "{l}"
        );
        assert!(l.contains(" MiB/s  ETA "), "{l}");
        assert!(!l.ends_with(' '), "{l}");
        p.set_message("reconnected");
        assert!(p.line().ends_with("s  reconnected"), "{}", p.line());
    }

    #[test]
    fn earlier_runs_count_toward_the_percentage_not_the_rate() {
        let mut p = Progress::with_mode(100 << 20, 50 << 20, Mode::Off);
        std::thread::sleep(Duration::from_millis(100));
        p.update((50 << 20) + (1 << 20));
        let l = p.line();
        assert!(l.starts_with("progress: 51% "), "{l}");
        // About 10 MiB/s; the 50 MiB done before would make it hundreds.
        assert!(p.bar.per_sec() < (40 << 20) as f64, "{l}");
    }

    #[test]
    fn lines_come_at_each_tenth() {
        assert_eq!(step(9, 100), 0);
        assert_eq!(step(10, 100), 1);
        assert_eq!(step(100, 100), 10);
        assert_eq!(step(0, 0), 0);
        assert_eq!(step(3, 10), 3);
    }
}
