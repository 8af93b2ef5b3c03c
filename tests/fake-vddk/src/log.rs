//! Messages to the log, warning and panic callbacks given to InitEx (or to
//! stderr when they are NULL or InitEx has not run, as the real library does).

use std::ffi::{c_char, CString};
use std::sync::RwLock;

use crate::ffi::LogFunc;

extern "C" {
    /// From shim.c: calls `func("%s", message)` with a real va_list.
    fn fake_vddk_emit(func: LogFunc, message: *const c_char);
}

#[derive(Clone, Copy)]
struct Sinks {
    log: Option<LogFunc>,
    warn: Option<LogFunc>,
    panic: Option<LogFunc>,
}

static SINKS: RwLock<Sinks> = RwLock::new(Sinks {
    log: None,
    warn: None,
    panic: None,
});

/// Installs the callbacks InitEx received.
pub fn install(log: Option<LogFunc>, warn: Option<LogFunc>, panic: Option<LogFunc>) {
    let mut sinks = SINKS.write().unwrap_or_else(|e| e.into_inner());
    *sinks = Sinks { log, warn, panic };
}

/// Forgets the callbacks (at Exit: the caller may unload them afterwards).
pub fn uninstall() {
    install(None, None, None);
}

fn sinks() -> Sinks {
    *SINKS.read().unwrap_or_else(|e| e.into_inner())
}

fn emit(func: Option<LogFunc>, level: &str, message: &str) {
    let mut line = message.replace('\0', " ");
    if !line.ends_with('\n') {
        line.push('\n');
    }
    match (func, CString::new(line.clone())) {
        (Some(func), Ok(c)) => {
            // SAFETY: `func` is the callback the caller registered at InitEx
            // with the VDDK log signature; `c` is a valid NUL-terminated
            // string that outlives the call.
            unsafe { fake_vddk_emit(func, c.as_ptr()) }
        }
        _ => eprint!("{level}{line}"),
    }
}

/// An informational line (the log callback).
pub fn info(message: &str) {
    emit(sinks().log, "", message);
}

/// A warning line (the warn callback).
pub fn warn(message: &str) {
    emit(sinks().warn, "warning: ", message);
}

/// A fatal line (the panic callback), sent just before an abort.
pub fn panic(message: &str) {
    emit(sinks().panic, "panic: ", message);
}
