//! Progress callbacks for VDDK's long operations (Create, Grow, Clone,
//! CreateChild, Shrink, Defragment): a Rust closure behind VDDK's
//! `Bool (*)(void *data, int percent)`, which stops the operation when it
//! returns false.

use std::any::Any;
use std::ffi::{c_int, c_void};
use std::panic::{self, AssertUnwindSafe};

use crate::error::{Error, Result};

/// The callback VDDK is given and what it saw, alive for one call.
pub(crate) struct Progress<'a> {
    report: &'a mut dyn FnMut(u8) -> bool,
    cancelled: bool,
    panic: Option<Box<dyn Any + Send>>,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(report: &'a mut dyn FnMut(u8) -> bool) -> Progress<'a> {
        Progress {
            report,
            cancelled: false,
            panic: None,
        }
    }

    /// The function and data pointer to pass to VDDK. The pointer is valid
    /// while `self` is borrowed, which outlasts the call it is passed to.
    pub(crate) fn callback(&mut self) -> (vddk_sys::VixDiskLibProgressFunc, *mut c_void) {
        (
            Some(trampoline),
            (self as *mut Progress<'a>).cast::<c_void>(),
        )
    }

    /// Turns the call's outcome into the caller's: a panic in the callback
    /// resumes here, on the Rust side of the boundary; a failure after the
    /// callback asked to stop is [`Error::Cancelled`].
    pub(crate) fn finish(self, call: &'static str, outcome: Result<()>) -> Result<()> {
        if let Some(payload) = self.panic {
            panic::resume_unwind(payload);
        }
        match outcome {
            Err(_) if self.cancelled => Err(Error::Cancelled { call }),
            other => other,
        }
    }
}

extern "C" fn trampoline(data: *mut c_void, percent: c_int) -> vddk_sys::Bool {
    if data.is_null() {
        return 1;
    }
    // SAFETY: `data` is the `Progress` that `callback` handed out for the
    // call now running; VDDK calls back from inside that call, one report at
    // a time, so this is the only reference in use.
    let state = unsafe { &mut *data.cast::<Progress<'_>>() };
    if state.panic.is_some() || state.cancelled {
        return 0;
    }
    let percent = percent.clamp(0, 100) as u8;
    // No panic may unwind into C: keep it and stop the operation.
    match panic::catch_unwind(AssertUnwindSafe(|| (state.report)(percent))) {
        Ok(true) => 1,
        Ok(false) => {
            state.cancelled = true;
            0
        }
        Err(payload) => {
            state.panic = Some(payload);
            0
        }
    }
}
