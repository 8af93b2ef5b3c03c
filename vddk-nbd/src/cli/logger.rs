//! A minimal `log` backend: one line per record on stderr, prefixed with
//! the program name and level as nbdkit does (`vddk-nbd: debug: ...`).

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let msg = record.args().to_string();
        // Write errors are ignored: stderr may be closed in the background,
        // and logging must never bring the server down.
        let _ = writeln!(
            std::io::stderr().lock(),
            "vddk-nbd: {level}: {}",
            msg.trim_end()
        );
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger: debug and above with `-v`, warnings and errors
/// otherwise. A second call is harmless.
pub fn init(verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Warn
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
