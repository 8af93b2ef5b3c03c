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
        let context = context();
        // Write errors are ignored: stderr may be closed in the background,
        // and logging must never bring the server down.
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}: {context}{level}: {}",
            super::program(),
            msg.trim_end()
        );
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

thread_local! {
    /// The connection this thread works for, when its name does not say.
    static CONNECTION: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// nbdkit's prefix for messages about a connection: `vddk[1]: `, with the
/// plugin's name and the connection's number (from 1).
fn context() -> String {
    let n = CONNECTION.with(std::cell::Cell::get).or_else(|| {
        std::thread::current()
            .name()
            .and_then(|n| n.strip_prefix(vddk_nbd::server::CONNECTION_THREAD))
            .and_then(|n| n.parse().ok())
    });
    match n {
        Some(n) => format!("{}[{n}]: ", PLUGIN.get().copied().unwrap_or("vddk")),
        None => String::new(),
    }
}

/// The plugin's name, for the connection prefix.
static PLUGIN: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets the plugin's name used in connection prefixes.
pub fn set_plugin(name: &'static str) {
    let _ = PLUGIN.set(name);
}

/// Runs `f` with this thread's messages about connection `n`: for what a
/// disk opened before the first connection says (nbdkit opens it for the
/// first connection, and callers read that line there).
pub fn as_connection<T>(n: u64, f: impl FnOnce() -> T) -> T {
    let old = CONNECTION.with(|c| c.replace(Some(n)));
    let r = f();
    CONNECTION.with(|c| c.set(old));
    r
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
