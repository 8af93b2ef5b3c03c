//! A stderr logger for the `log` facade, so VDDK's own messages (target
//! `vddk::library`) reach the user: warnings always, everything with `-v`.

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let msg = record.args().to_string();
            eprintln!(
                "{}: {}: {}",
                record.target(),
                record.level().as_str().to_ascii_lowercase(),
                msg.trim_end()
            );
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the logger: debug level when `verbose`, warnings otherwise.
pub fn init(verbose: bool) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(if verbose {
            LevelFilter::Debug
        } else {
            LevelFilter::Warn
        });
    }
}
