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
mod params;
mod progress;

use std::ffi::{CStr, CString};
use std::mem::ManuallyDrop;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use vddk_sys::VixError;

use crate::error::{hint_for, CallContext, Error, Result, VixFailure};
use crate::stats::{timed, Stats};
use crate::vix::VixCode;

pub(crate) use asyncio::{AsyncTable, Direction, Finished, Rejected};
pub(crate) use conn::RawConnection;
pub(crate) use disk::{InfoCopy, RawDisk};
pub(crate) use params::{ConnectSpec, CredSpec, ReportedCreds};

/// The API version this crate asks InitEx for: 6.7 is the oldest library it
/// supports, and a newer library serves older callers.
const API_MAJOR: u32 = 6;
const API_MINOR: u32 = 7;

/// Where this process is in the library's life. VMware's programming guide
/// allows InitEx once per process (it sets up process-wide state such as
/// localisation), so after Exit the library stays exited.
static STATE: AtomicU8 = AtomicU8::new(NEVER);
const NEVER: u8 = 0;
const LIVE: u8 = 1;
const EXITED: u8 = 2;

/// Serialises Open, Close, ConnectEx, Disconnect, Create, Grow, Clone,
/// PrepareForAccess/EndAccess, InitEx and Exit, as VDDK requires.
static GLOBAL: Mutex<()> = Mutex::new(());

pub(crate) fn global_lock() -> MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A path as a C string (its bytes as they are), refusing interior NULs.
pub(crate) fn c_path(what: &str, p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{what} {p:?} contains a NUL byte")))
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
        let (searched, _) = load.resolve_dir();
        let config = config_file.map(|p| c_path("config file", p)).transpose()?;
        match STATE.compare_exchange(NEVER, LIVE, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {}
            Err(EXITED) => return Err(Error::Exited),
            Err(_) => return Err(Error::AlreadyInitialized),
        }
        let sys = match vddk_sys::Library::load(load) {
            Ok(sys) => sys,
            Err(e) => {
                // Nothing was initialised, so a retry with another libdir is fine.
                STATE.store(NEVER, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        // InitEx finds VDDK's plugins and configuration under the
        // distribution the file came from, wherever it was found.
        let libdir = match c_path("libdir", &sys.distribution_dir(&searched)) {
            Ok(d) => d,
            Err(e) => {
                STATE.store(NEVER, Ordering::SeqCst);
                return Err(e);
            }
        };
        let [log, warn, panic] = logsink::callbacks();
        let _guard = global_lock();
        // SAFETY: the callbacks are valid for the life of the process, the
        // strings outlive the call, and STATE guarantees no other
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
            STATE.store(NEVER, Ordering::SeqCst);
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
        let code = VixCode::from_raw(err);
        let text = self.error_text(err);
        let hint = hint_for(call, code, text.as_deref(), ctx);
        VixFailure::new(call, code, text, hint).into()
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
        STATE.store(EXITED, Ordering::SeqCst);
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
        send::<super::AsyncTable<Vec<u8>>>();
        sync::<super::AsyncTable<Vec<u8>>>();
    }
}
