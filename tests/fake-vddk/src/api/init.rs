//! InitEx, Exit, ListTransportModes, GetErrorText and FreeErrorText.

use std::ffi::{c_char, c_void};

use super::{malloc_string, other, vix};
use crate::ffi::*;
use crate::handles::{self, Allocation};
use crate::knobs::{self, Knobs};
use crate::rules::{self, violation};
use crate::{asyncio, errors, link, log, remote, stats};

/// The version this fake reports, as the real library's first log line does.
pub const VERSION_LINE: &str = "VMware VixDiskLib (8.0.2) Release build-22394481";

/// Initialises the library: callbacks, knobs, inventory, async thread.
#[no_mangle]
pub extern "C" fn VixDiskLib_InitEx(
    major: u32,
    minor: u32,
    log_func: Option<LogFunc>,
    warn_func: Option<LogFunc>,
    panic_func: Option<LogFunc>,
    lib_dir: *const c_char,
    config_file: *const c_char,
) -> VixError {
    vix("VixDiskLib_InitEx", |_| {
        if rules::initialized() {
            return Err(violation(
                VIX_E_FAIL,
                "VixDiskLib_InitEx called a second time; call it once per process and Exit once at the end",
            ));
        }
        log::install(log_func, warn_func, panic_func);
        let knobs = match Knobs::parse(|k| std::env::var(k).ok()) {
            Ok(k) => k,
            Err(e) => {
                log::warn(&format!("VixDiskLib: fake-vddk: {e}"));
                log::uninstall();
                return Err(VIX_E_INVALID_ARG);
            }
        };
        if let Err(e) = remote::load_from_env() {
            log::warn(&format!("VixDiskLib: fake-vddk: {e}"));
            log::uninstall();
            return Err(VIX_E_INVALID_ARG);
        }
        let summary = knobs.summary();
        knobs::install(Some(knobs));
        link::reset();
        stats::reset();
        asyncio::start();
        rules::set_initialized(true);
        // SAFETY: NULL or NUL-terminated strings from the caller.
        let (lib_dir, config) = unsafe { (super::opt_str(lib_dir), super::opt_str(config_file)) };
        log::info(VERSION_LINE);
        log::info(&format!(
            "VixDiskLib: VixDiskLib_InitEx: version {major}.{minor}, libDir={}, configFile={}",
            lib_dir.as_deref().unwrap_or("(null)"),
            config.as_deref().unwrap_or("(null)")
        ));
        log::info(&format!(
            "VixDiskLib: fake-vddk {}: {summary}",
            env!("CARGO_PKG_VERSION")
        ));
        if log_func.is_none() {
            log::warn("VixDiskLib: InitEx given no log callback; messages go to stderr");
        }
        Ok(VIX_OK)
    })
}

/// Shuts the library down; every handle and connection must be closed.
#[no_mangle]
pub extern "C" fn VixDiskLib_Exit() {
    other("VixDiskLib_Exit", (), || {
        if !rules::initialized() {
            violation(
                VIX_E_FAIL,
                "VixDiskLib_Exit called without a matching InitEx",
            );
            return;
        }
        let (conns, disks) = handles::live_counts();
        if conns + disks > 0 {
            violation(
                VIX_E_FAIL,
                &format!(
                    "VixDiskLib_Exit called with {conns} open connection(s) and {disks} open disk handle(s); \
                     Close every disk and Disconnect every connection first"
                ),
            );
        }
        for disk in handles::live_disks() {
            disk.wait_idle();
        }
        asyncio::stop();
        handles::clear();
        let knobs = knobs::get();
        if let Some(path) = &knobs.stats_path {
            stats::record("VixDiskLib_Exit", false, 0, std::time::Duration::ZERO);
            if let Err(e) = stats::write(path) {
                log::warn(&format!(
                    "VixDiskLib: cannot write FAKE_VDDK_STATS={}: {e}",
                    path.display()
                ));
            }
        }
        log::info("VixDiskLib: VixDiskLib_Exit: done");
        rules::set_initialized(false);
        log::uninstall();
    })
}

/// The transports this library can use, best first.
#[no_mangle]
pub extern "C" fn VixDiskLib_ListTransportModes() -> *const c_char {
    other("VixDiskLib_ListTransportModes", c"file".as_ptr(), || {
        c"file:san:hotadd:nbdssl:nbd".as_ptr()
    })
}

/// An English description of `err`, malloc'd; free with FreeErrorText.
#[no_mangle]
pub extern "C" fn VixDiskLib_GetErrorText(err: VixError, _locale: *const c_char) -> *mut c_char {
    other("VixDiskLib_GetErrorText", std::ptr::null_mut(), || {
        let p = malloc_string(&errors::text(err));
        handles::track(p as *mut c_void, Allocation::ErrorText);
        p
    })
}

/// Frees a GetErrorText result.
#[no_mangle]
pub extern "C" fn VixDiskLib_FreeErrorText(text: *mut c_char) {
    other("VixDiskLib_FreeErrorText", (), || {
        if text.is_null() {
            return;
        }
        if handles::untrack(
            text as *mut c_void,
            &[Allocation::ErrorText],
            "VixDiskLib_FreeErrorText",
        )
        .is_ok()
        {
            super::free_string(text);
        }
    })
}
