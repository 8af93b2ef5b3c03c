//! The library's usage rules: a breach is logged loudly and returns an
//! error, or aborts the process when FAKE_VDDK_STRICT=1.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::ffi::{VixError, VIX_E_FAIL};
use crate::{knobs, log};

/// Prefix of every breach line, so tests and users can grep for it.
pub const PREFIX: &str = "FAKE VDDK RULE VIOLATION: ";

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Reports a breach; returns `code` for the caller to hand back (unless
/// strict mode aborts first).
pub fn violation(code: VixError, what: &str) -> VixError {
    let line = format!("{PREFIX}{what}");
    log::warn(&line);
    if knobs::strict() {
        log::panic(&format!("{line} (FAKE_VDDK_STRICT=1: aborting)"));
        std::process::abort();
    }
    code
}

/// Marks the library initialised (true) or exited (false); returns the
/// previous state.
pub fn set_initialized(on: bool) -> bool {
    INITIALIZED.swap(on, Ordering::SeqCst)
}

/// Whether InitEx has run and Exit has not.
pub fn initialized() -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

/// Fails a call made outside InitEx..Exit.
pub fn require_init(function: &str) -> Result<(), VixError> {
    if initialized() {
        Ok(())
    } else {
        Err(violation(
            VIX_E_FAIL,
            &format!("{function} called before VixDiskLib_InitEx (or after VixDiskLib_Exit); call InitEx once at start-up"),
        ))
    }
}

static GLOBAL_BUSY: std::sync::Mutex<Option<&'static str>> = std::sync::Mutex::new(None);

/// Held while ConnectEx, Disconnect, Open, Close or Create runs: VDDK
/// requires those to be serialised (one thread, or one global lock).
pub struct GlobalGuard;

impl Drop for GlobalGuard {
    fn drop(&mut self) {
        *GLOBAL_BUSY.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Claims the open/close section; overlapping calls are a breach.
pub fn enter_global(function: &'static str) -> Result<GlobalGuard, VixError> {
    let mut busy = GLOBAL_BUSY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(other) = *busy {
        drop(busy);
        return Err(violation(
            crate::ffi::VIX_E_OBJECT_IS_BUSY,
            &format!(
                "{function} called while {other} is running on another thread; serialise \
                 ConnectEx/Disconnect/Open/Close/Create with one global lock"
            ),
        ));
    }
    *busy = Some(function);
    Ok(GlobalGuard)
}
