//! The exported VixDiskLib functions, one file per group, and the wrapper
//! every one of them runs in: panics become VIX_E_FAIL plus a log line, and
//! each call is counted for the stats file.

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::ffi::*;
use crate::handles::{self, Disk};
use crate::rules::require_init;
use crate::{log, stats};

pub mod connect;
pub mod disk;
pub mod init;
pub mod io;
pub mod manage;
pub mod metadata;

/// Per-call facts the body reports for the stats file.
#[derive(Default)]
pub struct Ctx {
    pub bytes: u64,
}

/// Result of a body: `Ok(code)` with VIX_OK or VIX_ASYNC, `Err(code)` on failure.
pub type VixResult = Result<VixError, VixError>;

/// Runs an exported function returning VixError.
pub fn vix(function: &'static str, body: impl FnOnce(&mut Ctx) -> VixResult) -> VixError {
    let start = Instant::now();
    let mut ctx = Ctx::default();
    let result = match catch_unwind(AssertUnwindSafe(|| body(&mut ctx))) {
        Ok(Ok(code)) | Ok(Err(code)) => code,
        Err(panic) => {
            report_panic(function, &panic);
            VIX_E_FAIL
        }
    };
    let code = result & 0xFFFF;
    stats::record(
        function,
        code != VIX_OK && code != VIX_ASYNC,
        ctx.bytes,
        start.elapsed(),
    );
    result
}

/// Runs an exported function on an open disk (see [`with_disk`]).
pub fn disk_call(
    function: &'static str,
    handle: Handle,
    body: impl FnOnce(&mut Ctx, &Arc<Disk>) -> VixResult,
) -> VixError {
    vix(function, |ctx| {
        with_disk(function, handle, |disk| body(ctx, disk))
    })
}

/// Runs `body` on the disk `handle` names, as every call on an open disk
/// must: the library initialised, the handle a live disk's and no other
/// call on it running. The disk stays marked busy while `body` runs.
pub fn with_disk<T>(
    function: &str,
    handle: Handle,
    body: impl FnOnce(&Arc<Disk>) -> Result<T, VixError>,
) -> Result<T, VixError> {
    require_init(function)?;
    let disk = handles::disk(handle, function)?;
    let _busy = disk.enter(function)?;
    body(&disk)
}

/// Runs an exported function returning something else (a pointer, nothing);
/// a panic returns `on_panic`.
pub fn other<T>(function: &'static str, on_panic: T, body: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(panic) => {
            report_panic(function, &panic);
            on_panic
        }
    };
    stats::record(function, false, 0, start.elapsed());
    out
}

fn report_panic(function: &str, panic: &Box<dyn std::any::Any + Send>) {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    log::warn(&format!(
        "VixDiskLib: internal error in {function}: {what}; returning VIX_E_FAIL"
    ));
}

/// Reads an optional C string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub unsafe fn opt_str(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: guaranteed by the caller.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// Copies `s` into memory from `malloc`, NUL-terminated (NULL if out of memory).
pub fn malloc_string(s: &str) -> *mut c_char {
    let bytes = s.as_bytes();
    // SAFETY: malloc of len+1 bytes; checked for NULL before use.
    let p = unsafe { libc::malloc(bytes.len() + 1) } as *mut u8;
    if !p.is_null() {
        // SAFETY: `p` has room for len+1 bytes and does not overlap `bytes`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            *p.add(bytes.len()) = 0;
        }
    }
    p as *mut c_char
}

/// Frees what `malloc_string` returned (NULL is fine).
pub fn free_string(p: *mut c_char) {
    // SAFETY: `p` is NULL or came from malloc in `malloc_string`.
    unsafe { libc::free(p as *mut c_void) }
}

/// Writes `value` through an out pointer that may be NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub unsafe fn put<T>(out: *mut T, value: T) -> Result<(), VixError> {
    if out.is_null() {
        return Err(VIX_E_INVALID_ARG);
    }
    // SAFETY: non-NULL and valid per the caller.
    unsafe { out.write(value) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_vix_e_fail_not_an_unwind() {
        assert_eq!(vix("VixDiskLib_Test", |_| panic!("boom")), VIX_E_FAIL);
        assert_eq!(other("VixDiskLib_Test", 7, || panic!("boom")), 7);
        assert_eq!(
            vix("VixDiskLib_Test", |_| Err(VIX_E_DISK_FULL)),
            VIX_E_DISK_FULL
        );
        assert_eq!(vix("VixDiskLib_Test", |_| Ok(VIX_ASYNC)), VIX_ASYNC);
    }

    #[test]
    fn strings_round_trip_through_malloc() {
        let p = malloc_string("héllo");
        // SAFETY: `p` is a NUL-terminated string from malloc_string.
        assert_eq!(unsafe { opt_str(p) }.as_deref(), Some("héllo"));
        free_string(p);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { opt_str(std::ptr::null()) }, None);
    }
}
