//! Routing VDDK's log, warning and panic messages to the `log` facade.
//!
//! The C shim (`log_shim.c`) formats each message; [`sink`] receives the
//! text. Lines that report the server's actual thumbprint are remembered so
//! that a failed remote Open can say which thumbprint the server has.

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vddk_sys::{__va_list_tag, VixDiskLibGenericLogFunc};

extern "C" {
    fn vddk_rs_log_set_sink(sink: extern "C" fn(c_int, *const c_char));
    fn vddk_rs_log_info(fmt: *const c_char, args: *mut __va_list_tag);
    fn vddk_rs_log_warn(fmt: *const c_char, args: *mut __va_list_tag);
    fn vddk_rs_log_panic(fmt: *const c_char, args: *mut __va_list_tag);
}

/// The `log` target VDDK's own messages are logged under.
pub(crate) const TARGET: &str = "vddk::library";

/// The last `actual thumbprint=` value VDDK logged.
static LAST_THUMBPRINT: Mutex<Option<String>> = Mutex::new(None);

/// When VDDK last logged an NFC buffer allocation failure.
static LAST_NFC_ALLOC_FAILURE: Mutex<Option<Instant>> = Mutex::new(None);

/// How long an NFC allocation failure line is taken to explain a failed call.
const NFC_HINT_WINDOW: Duration = Duration::from_secs(10);

/// The three callbacks to hand to InitEx (never NULL: VDDK's built-in
/// ones are not thread-safe).
pub(crate) fn callbacks() -> [VixDiskLibGenericLogFunc; 3] {
    // SAFETY: registering a plain function pointer in the shim's static;
    // called before InitEx, so no VDDK thread can be logging concurrently.
    unsafe { vddk_rs_log_set_sink(sink) };
    [
        Some(vddk_rs_log_info),
        Some(vddk_rs_log_warn),
        Some(vddk_rs_log_panic),
    ]
}

/// Forgets the remembered thumbprint (before a remote Open, so a stale line
/// from an earlier connection is never blamed).
pub(crate) fn clear_actual_thumbprint() {
    *LAST_THUMBPRINT.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The thumbprint VDDK last reported as the server's actual one.
pub(crate) fn actual_thumbprint() -> Option<String> {
    LAST_THUMBPRINT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Whether VDDK logged an NFC allocation failure moments ago (the error
/// code of the failed call does not say so).
pub(crate) fn recent_nfc_alloc_failure() -> bool {
    LAST_NFC_ALLOC_FAILURE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some_and(|t| t.elapsed() < NFC_HINT_WINDOW)
}

extern "C" fn sink(level: c_int, msg: *const c_char) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the shim passes a NUL-terminated buffer that lives until this
    // function returns.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    // A panic (e.g. in a logger implementation) must not unwind into C.
    let _ = catch_unwind(AssertUnwindSafe(|| route(level, &text)));
}

fn route(level: c_int, text: &str) {
    let line = text.trim_end_matches(['\n', '\r']);
    if line.contains("Failed to allocate") {
        *LAST_NFC_ALLOC_FAILURE
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
    if let Some(tp) = thumbprint_in(line) {
        *LAST_THUMBPRINT.lock().unwrap_or_else(|e| e.into_inner()) = Some(tp);
        log::warn!(target: TARGET, "{line}");
        return;
    }
    match level {
        0 => log::debug!(target: TARGET, "{line}"),
        1 => log::warn!(target: TARGET, "{line}"),
        _ => log::error!(target: TARGET, "VDDK panic: {line}"),
    }
}

/// Extracts `X` from a line holding `actual thumbprint=X`.
pub(crate) fn thumbprint_in(line: &str) -> Option<String> {
    let at = line.find("actual thumbprint=")?;
    let rest = &line[at + "actual thumbprint=".len()..];
    let tp: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == ':')
        .collect();
    (!tp.is_empty()).then(|| tp.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    extern "C" {
        fn vddk_rs_log_selftest(level: c_int, fmt: *const c_char, ...);
    }

    struct Capture(Mutex<Vec<(log::Level, String, String)>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
            v.push((r.level(), r.target().to_owned(), r.args().to_string()));
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

    fn captured_with(marker: &str) -> Vec<(log::Level, String, String)> {
        static INIT: OnceLock<()> = OnceLock::new();
        INIT.get_or_init(|| {
            log::set_logger(&CAPTURE).expect("no other logger in this test binary");
            log::set_max_level(log::LevelFilter::Trace);
            callbacks();
        });
        let v = CAPTURE.0.lock().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .filter(|(_, _, m)| m.contains(marker))
            .cloned()
            .collect()
    }

    #[test]
    fn va_list_messages_are_formatted_levelled_and_trimmed() {
        captured_with("");
        let long = "x".repeat(3000);
        let long_c = std::ffi::CString::new(long.clone()).unwrap();
        // SAFETY: the format's conversions match the arguments' C types.
        unsafe {
            vddk_rs_log_selftest(
                0,
                c"fmt-a %d %s %llu\n".as_ptr(),
                42 as c_int,
                c"str".as_ptr(),
                7u64,
            );
            vddk_rs_log_selftest(1, c"fmt-b %s\n".as_ptr(), long_c.as_ptr());
            vddk_rs_log_selftest(2, c"fmt-c %05.1f".as_ptr(), 2.5f64);
        }
        let a = captured_with("fmt-a");
        assert_eq!(
            a,
            vec![(
                log::Level::Debug,
                TARGET.to_owned(),
                "fmt-a 42 str 7".to_owned()
            )]
        );
        let b = captured_with("fmt-b");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].0, log::Level::Warn);
        assert_eq!(
            b[0].2,
            format!("fmt-b {long}"),
            "long messages are not truncated"
        );
        let c = captured_with("fmt-c");
        assert_eq!(
            c,
            vec![(
                log::Level::Error,
                TARGET.to_owned(),
                "VDDK panic: fmt-c 002.5".to_owned()
            )]
        );
    }

    #[test]
    fn thumbprint_is_found_in_the_mismatch_line() {
        let line =
            "SSL Error: Failed to verify SSL certificate: actual thumbprint=b2:31:BD expected=12";
        assert_eq!(thumbprint_in(line).as_deref(), Some("B2:31:BD"));
        assert_eq!(thumbprint_in("nothing here"), None);
        assert_eq!(thumbprint_in("actual thumbprint= x"), None);
    }

    #[test]
    fn routed_thumbprint_line_is_remembered() {
        route(
            0,
            "Failed to verify SSL certificate: actual thumbprint=AA:BB expected=CC\n",
        );
        assert_eq!(actual_thumbprint().as_deref(), Some("AA:BB"));
        clear_actual_thumbprint();
        assert_eq!(actual_thumbprint(), None);
    }
}
