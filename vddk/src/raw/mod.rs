//! The FFI layer: the only place this crate uses `unsafe`.
//!
//! Each C object has an owner here whose `Drop` releases it with the
//! library's own function: [`Lib`] (InitEx/Exit), [`RawConnection`]
//! (ConnectEx/Disconnect), [`RawDisk`] (Open/Close), and the short-lived
//! owners of library-allocated memory (info, block lists, error text).
//! Owners hold their parents through `Arc`, so Exit runs only after the last
//! connection and disk are gone.

mod asyncio;
mod conn;
mod disk;
pub(crate) mod logsink;

use std::ffi::{CStr, CString};
use std::mem::ManuallyDrop;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use vddk_sys::VixError;

use crate::error::{hint_for, vix_error_name, CallContext, Error, Result, VixFailure};
use crate::stats::{timed, Stats};

pub(crate) use asyncio::Rejected;
pub(crate) use conn::RawConnection;
pub(crate) use disk::RawDisk;

/// The API version this crate asks InitEx for: 6.7 is the oldest library it
/// supports, and a newer library serves older callers.
const API_MAJOR: u32 = 6;
const API_MINOR: u32 = 7;

/// Set by the first successful load; InitEx may run only once per process.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Serialises Open, Close, ConnectEx, Disconnect, Create, Grow, Clone,
/// PrepareForAccess/EndAccess, InitEx and Exit, as VDDK requires.
static GLOBAL: Mutex<()> = Mutex::new(());

pub(crate) fn global_lock() -> MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A path as a C string, refusing interior NULs.
pub(crate) fn c_path(what: &str, p: &Path) -> Result<CString> {
    c_string(what, &p.to_string_lossy())
}

/// A string as a C string, refusing interior NULs.
pub(crate) fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidArgument(format!("{what} {s:?} contains a NUL byte")))
}

/// Copies a C string the library owns (may be NULL).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for this call.
pub(crate) unsafe fn copy_c_str(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    Some(s)
}

/// The initialised library. Dropping it calls Exit.
pub(crate) struct Lib {
    // The shared object stays mapped after Exit: VDDK may leave
    // process-wide state (atexit handlers, thread-locals) pointing into it.
    sys: ManuallyDrop<vddk_sys::Library>,
    /// Per-function call statistics, when asked for.
    stats: Option<Stats>,
}

impl Lib {
    /// Loads the library and calls InitEx with our log sinks.
    pub(crate) fn init(
        load: &vddk_sys::LoadOptions,
        config_file: Option<&Path>,
        stats: Option<Stats>,
    ) -> Result<Lib> {
        let (libdir, _) = load.resolve_dir();
        let libdir = c_path("libdir", &libdir)?;
        let config = config_file.map(|p| c_path("config file", p)).transpose()?;
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyInitialized);
        }
        let sys = match vddk_sys::Library::load(load) {
            Ok(sys) => sys,
            Err(e) => {
                // Nothing was initialised, so a retry with another libdir is fine.
                INITIALISED.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        let [log, warn, panic] = logsink::callbacks();
        let _guard = global_lock();
        // SAFETY: the callbacks are valid for the life of the process, the
        // strings outlive the call, and INITIALISED guarantees no other
        // InitEx runs in this process.
        let err = timed(stats.as_ref(), "VixDiskLib_InitEx", 0, || unsafe {
            sys.core().VixDiskLib_InitEx(
                API_MAJOR,
                API_MINOR,
                log,
                warn,
                panic,
                libdir.as_ptr(),
                config.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        });
        let lib = Lib {
            sys: ManuallyDrop::new(sys),
            stats,
        };
        if vddk_sys::error_code(err) != u64::from(vddk_sys::VIX_OK) {
            let e = lib.error("VixDiskLib_InitEx", err, &CallContext::default());
            // Exit must not run for a library that did not initialise; a
            // failed InitEx leaves nothing behind, so another try is allowed.
            std::mem::forget(lib);
            INITIALISED.store(false, Ordering::SeqCst);
            return Err(e);
        }
        Ok(lib)
    }

    pub(crate) fn sys(&self) -> &vddk_sys::Library {
        &self.sys
    }

    pub(crate) fn core(&self) -> &vddk_sys::VixDiskLibCore {
        self.sys.core()
    }

    pub(crate) fn optional(&self) -> &vddk_sys::OptionalFunctions {
        self.sys.optional()
    }

    /// The statistics being collected, if any.
    pub(crate) fn stats(&self) -> Option<&Stats> {
        self.stats.as_ref()
    }

    /// Runs `f` (a call of `function` moving `bytes`), timing it when
    /// statistics are collected.
    pub(crate) fn timed<T>(&self, function: &'static str, bytes: u64, f: impl FnOnce() -> T) -> T {
        timed(self.stats.as_ref(), function, bytes, f)
    }

    /// ListTransportModes.
    pub(crate) fn transport_modes(&self) -> String {
        // SAFETY: returns a static string owned by the library (or NULL).
        unsafe { copy_c_str(self.core().VixDiskLib_ListTransportModes()) }.unwrap_or_default()
    }

    /// VDDK's description of `err` (GetErrorText), freed with FreeErrorText.
    pub(crate) fn error_text(&self, err: VixError) -> Option<String> {
        // SAFETY: GetErrorText takes any code and a NULL locale; it returns
        // a string we own, which FreeErrorText releases exactly once below.
        let p = unsafe { self.core().VixDiskLib_GetErrorText(err, std::ptr::null()) };
        // SAFETY: NULL or a NUL-terminated string, still allocated.
        let text = unsafe { copy_c_str(p) };
        if !p.is_null() {
            // SAFETY: `p` came from GetErrorText and is not used again.
            unsafe { self.core().VixDiskLib_FreeErrorText(p) };
        }
        text.map(|t| t.trim_end().to_owned())
            .filter(|t| !t.is_empty())
    }

    /// Turns a failed call's code into an [`Error`] with name, text and hint.
    pub(crate) fn error(&self, call: &'static str, err: VixError, ctx: &CallContext) -> Error {
        let code = vddk_sys::error_code(err);
        let text = self.error_text(err);
        let hint = hint_for(call, code, text.as_deref(), ctx);
        Error::Vix(Box::new(VixFailure {
            call,
            code,
            name: vix_error_name(err),
            text,
            hint,
        }))
    }

    /// `Ok` for VIX_OK, the decoded error otherwise.
    pub(crate) fn check(&self, call: &'static str, err: VixError, ctx: &CallContext) -> Result<()> {
        if vddk_sys::error_code(err) == u64::from(vddk_sys::VIX_OK) {
            Ok(())
        } else {
            Err(self.error(call, err, ctx))
        }
    }

    pub(crate) fn unsupported(&self, function: &'static str) -> Error {
        Error::Unsupported {
            function,
            path: self.sys.path().display().to_string(),
        }
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        let _guard = global_lock();
        // SAFETY: every connection and disk holds an Arc<Lib>, so none is
        // left; InitEx succeeded (a failed one forgets the Lib).
        self.timed("VixDiskLib_Exit", 0, || unsafe {
            self.core().VixDiskLib_Exit()
        });
        ::log::debug!(target: logsink::TARGET, "VixDiskLib_Exit done");
    }
}

/// Compile-time proof that the types shared across threads are `Send` and
/// `Sync` where the safe layer relies on it.
#[cfg(test)]
mod send_sync {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}

    #[test]
    fn owners_have_the_expected_auto_traits() {
        send::<super::Lib>();
        sync::<super::Lib>();
        send::<super::RawConnection>();
        sync::<super::RawConnection>();
        send::<super::RawDisk>();
        send::<super::asyncio::AsyncSlot>();
        sync::<super::asyncio::AsyncSlot>();
    }
}
