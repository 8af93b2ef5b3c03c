//! The crate's one error type, and the table of VIX error names.

use std::fmt;

/// What went wrong, with enough detail to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The VDDK shared object could not be found or is unusable.
    #[error("{source}")]
    Load {
        /// The loader's report: every path tried and why each failed.
        #[from]
        source: vddk_sys::LoadError,
    },

    /// [`crate::Vddk::init`] was called a second time in this process.
    #[error(
        "VDDK is already initialised in this process (VixDiskLib_InitEx may run only once per \
         process): clone the existing Vddk instead of calling Vddk::init again"
    )]
    AlreadyInitialized,

    /// A VDDK function returned an error.
    #[error("{0}")]
    Vix(Box<VixFailure>),

    /// An argument was rejected before it reached VDDK.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The loaded library does not export a function this operation needs.
    #[error(
        "{function} is not available in the loaded VDDK library ({path}); \
         a newer VDDK may provide it"
    )]
    Unsupported {
        /// The missing function's symbol name.
        function: &'static str,
        /// The library that lacks it.
        path: String,
    },

    /// The operating system refused something (e.g. starting a thread).
    #[error("{0}")]
    Io(#[from] std::io::Error),

    /// The disk worker was closed (or its thread stopped) before this request ran.
    #[error("the disk worker is closed; no further requests are accepted on it")]
    Closed,
}

/// Details of a failed VDDK call: see [`Error::Vix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VixFailure {
    /// The VDDK function that failed, e.g. `"VixDiskLib_Open"`.
    pub call: &'static str,
    /// The error code, already masked to its low 16 bits.
    pub code: u64,
    /// The code's symbolic name from the header (`"VIX_E_FAIL"`), or
    /// `"VIX_E_UNKNOWN"` when this crate does not know it.
    pub name: &'static str,
    /// VDDK's own description (GetErrorText), if it gave one.
    pub text: Option<String>,
    /// What to try next, for the failures users commonly meet.
    pub hint: Option<String>,
}

impl fmt::Display for VixFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {} ({})", self.call, self.name, self.code)?;
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, ". Hint: {hint}")?;
        }
        Ok(())
    }
}

impl Error {
    /// The masked VIX code, when VDDK reported the failure.
    pub fn vix_code(&self) -> Option<u64> {
        match self {
            Error::Vix(f) => Some(f.code),
            _ => None,
        }
    }

    /// The details of a failed VDDK call, if that is what this is.
    pub fn vix(&self) -> Option<&VixFailure> {
        match self {
            Error::Vix(f) => Some(f),
            _ => None,
        }
    }

    /// The hint attached to a VDDK failure, if any.
    pub fn hint(&self) -> Option<&str> {
        self.vix().and_then(|f| f.hint.as_deref())
    }
}

/// Convenience alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Symbolic names of the VIX codes in the project's header, by masked value.
const NAMES: &[(u32, &str)] = &[
    (vddk_sys::VIX_OK, "VIX_OK"),
    (vddk_sys::VIX_E_FAIL, "VIX_E_FAIL"),
    (vddk_sys::VIX_E_OUT_OF_MEMORY, "VIX_E_OUT_OF_MEMORY"),
    (vddk_sys::VIX_E_INVALID_ARG, "VIX_E_INVALID_ARG"),
    (vddk_sys::VIX_E_FILE_NOT_FOUND, "VIX_E_FILE_NOT_FOUND"),
    (vddk_sys::VIX_E_OBJECT_IS_BUSY, "VIX_E_OBJECT_IS_BUSY"),
    (vddk_sys::VIX_E_NOT_SUPPORTED, "VIX_E_NOT_SUPPORTED"),
    (vddk_sys::VIX_E_FILE_ERROR, "VIX_E_FILE_ERROR"),
    (vddk_sys::VIX_E_DISK_FULL, "VIX_E_DISK_FULL"),
    (vddk_sys::VIX_E_FILE_READ_ONLY, "VIX_E_FILE_READ_ONLY"),
    (
        vddk_sys::VIX_E_FILE_ALREADY_EXISTS,
        "VIX_E_FILE_ALREADY_EXISTS",
    ),
    (vddk_sys::VIX_E_FILE_ACCESS_ERROR, "VIX_E_FILE_ACCESS_ERROR"),
    (
        vddk_sys::VIX_E_FILE_ALREADY_LOCKED,
        "VIX_E_FILE_ALREADY_LOCKED",
    ),
    (vddk_sys::VIX_E_BUFFER_TOOSMALL, "VIX_E_BUFFER_TOOSMALL"),
    (
        vddk_sys::VIX_E_AUTHENTICATION_FAIL,
        "VIX_E_AUTHENTICATION_FAIL",
    ),
    (
        vddk_sys::VIX_E_HOST_CONNECTION_LOST,
        "VIX_E_HOST_CONNECTION_LOST",
    ),
    (vddk_sys::VIX_E_INVALID_HANDLE, "VIX_E_INVALID_HANDLE"),
    (
        vddk_sys::VIX_E_HOST_USER_PERMISSIONS,
        "VIX_E_HOST_USER_PERMISSIONS",
    ),
    (vddk_sys::VIX_E_VM_NOT_FOUND, "VIX_E_VM_NOT_FOUND"),
    (vddk_sys::VIX_E_SNAPSHOT_NOTFOUND, "VIX_E_SNAPSHOT_NOTFOUND"),
    (
        vddk_sys::VIX_E_HOST_SERVER_NOT_FOUND,
        "VIX_E_HOST_SERVER_NOT_FOUND",
    ),
    (
        vddk_sys::VIX_E_HOST_NETWORK_CONN_REFUSED,
        "VIX_E_HOST_NETWORK_CONN_REFUSED",
    ),
    (
        vddk_sys::VIX_E_HOST_TCP_CONN_LOST,
        "VIX_E_HOST_TCP_CONN_LOST",
    ),
    (vddk_sys::VIX_E_DISK_INVAL, "VIX_E_DISK_INVAL"),
    (vddk_sys::VIX_E_DISK_OUTOFRANGE, "VIX_E_DISK_OUTOFRANGE"),
    (vddk_sys::VIX_E_DISK_KEY_NOTFOUND, "VIX_E_DISK_KEY_NOTFOUND"),
    (
        vddk_sys::VIX_E_CANNOT_CONNECT_TO_HOST,
        "VIX_E_CANNOT_CONNECT_TO_HOST",
    ),
    (vddk_sys::VIX_ASYNC, "VIX_ASYNC"),
    (
        vddk_sys::VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED,
        "VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED",
    ),
    (
        vddk_sys::VIX_E_NET_HTTP_SSL_SECURITY,
        "VIX_E_NET_HTTP_SSL_SECURITY",
    ),
];

/// The symbolic name of a VIX code (masked first), or `"VIX_E_UNKNOWN"`.
pub fn vix_error_name(err: vddk_sys::VixError) -> &'static str {
    let code = vddk_sys::error_code(err);
    NAMES
        .iter()
        .find(|(c, _)| u64::from(*c) == code)
        .map_or("VIX_E_UNKNOWN", |(_, n)| n)
}

/// Where a failing call happened, which decides the hint.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallContext {
    /// The connection is to a server (not local files).
    pub remote: bool,
    /// The thumbprint the caller gave, upper-case.
    pub given_thumbprint: Option<String>,
    /// The thumbprint the library last logged as the server's actual one.
    pub actual_thumbprint: Option<String>,
    /// The library just logged an NFC buffer allocation failure.
    pub nfc_alloc_failed: bool,
}

/// The advice attached to the failures users commonly meet.
pub(crate) fn hint_for(
    call: &str,
    code: u64,
    text: Option<&str>,
    ctx: &CallContext,
) -> Option<String> {
    let code32 = u32::try_from(code).unwrap_or(u32::MAX);
    let nfc_alloc = ctx.nfc_alloc_failed || text.is_some_and(|t| t.contains("Failed to allocate"));
    if nfc_alloc {
        return Some(
            "the server refused to allocate an NFC buffer: issue smaller requests \
             (at most 2 MiB) or fewer at once"
                .into(),
        );
    }
    match code32 {
        vddk_sys::VIX_E_FAIL if ctx.remote && call == "VixDiskLib_Open" => {
            Some(match (&ctx.actual_thumbprint, &ctx.given_thumbprint) {
                (Some(actual), Some(given)) if !actual.eq_ignore_ascii_case(given) => format!(
                    "the server's thumbprint is {actual}, you gave {given}: check the thumbprint \
                     (thumbprint=)"
                ),
                (Some(actual), None) => format!(
                    "the server's thumbprint is {actual} and none was given: pass it as the \
                     thumbprint"
                ),
                _ => "a failed remote Open is most often a wrong server thumbprint: check \
                      thumbprint= (the SHA-1 fingerprint of the server's certificate, \
                      e.g. from `openssl x509 -fingerprint -sha1`)"
                    .into(),
            })
        }
        vddk_sys::VIX_E_AUTHENTICATION_FAIL | vddk_sys::VIX_E_HOST_USER_PERMISSIONS => Some(
            "check the credentials (user name and password, or that the session cookie has \
             not expired) and the user's permissions on the VM"
                .into(),
        ),
        vddk_sys::VIX_E_VM_NOT_FOUND => Some(
            "no VM with that moref: on ESXi it is a number (moref=16), on vCenter vm-N \
             (moref=vm-16)"
                .into(),
        ),
        vddk_sys::VIX_E_SNAPSHOT_NOTFOUND => {
            Some("no snapshot with that moref on this VM: check snapshot=".into())
        }
        vddk_sys::VIX_E_HOST_SERVER_NOT_FOUND
        | vddk_sys::VIX_E_HOST_NETWORK_CONN_REFUSED
        | vddk_sys::VIX_E_CANNOT_CONNECT_TO_HOST => {
            Some("check the server name, port and that it is reachable from here".into())
        }
        vddk_sys::VIX_E_FILE_NOT_FOUND if call == "VixDiskLib_Open" => Some(
            "check the disk path: local disks take an absolute path, remote ones \
             \"[datastore] vm/vm.vmdk\""
                .into(),
        ),
        vddk_sys::VIX_E_FILE_ALREADY_LOCKED => {
            Some("another program has the disk open; close it or open read-only".into())
        }
        vddk_sys::VIX_E_OUT_OF_MEMORY => {
            Some("the library ran out of memory: issue smaller requests or fewer at once".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `#define VIX_*` in the header must have its name in the table,
    /// with the same value.
    #[test]
    fn table_matches_the_header() {
        let header = include_str!("../../vddk-sys/include/vddk_abi.h");
        let mut seen = 0;
        for line in header.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            if !(name.starts_with("VIX_E_") || name == "VIX_OK" || name == "VIX_ASYNC") {
                continue;
            }
            let value: u64 = value.parse().expect("numeric VIX code in the header");
            assert_eq!(vix_error_name(value), name, "value {value}");
            seen += 1;
        }
        assert_eq!(seen, NAMES.len(), "table and header list different codes");
    }

    #[test]
    fn names_mask_high_bits_and_unknown_is_named() {
        assert_eq!(vix_error_name(0x0002_0000_0000_0001), "VIX_E_FAIL");
        assert_eq!(vix_error_name(16052), "VIX_E_DISK_KEY_NOTFOUND");
        assert_eq!(vix_error_name(9999), "VIX_E_UNKNOWN");
    }

    #[test]
    fn remote_open_failure_names_both_thumbprints() {
        let ctx = CallContext {
            remote: true,
            given_thumbprint: Some("AA:BB".into()),
            actual_thumbprint: Some("CC:DD".into()),
            nfc_alloc_failed: false,
        };
        let hint = hint_for("VixDiskLib_Open", 1, None, &ctx).unwrap();
        assert!(
            hint.contains("the server's thumbprint is CC:DD, you gave AA:BB"),
            "{hint}"
        );
        let local = CallContext::default();
        assert_eq!(hint_for("VixDiskLib_Open", 1, None, &local), None);
        let generic = hint_for(
            "VixDiskLib_Open",
            1,
            None,
            &CallContext {
                remote: true,
                ..local
            },
        );
        assert!(generic.unwrap().contains("thumbprint"));
    }

    #[test]
    fn hints_for_auth_and_nfc_allocation() {
        let ctx = CallContext::default();
        assert!(hint_for("VixDiskLib_ConnectEx", 35, None, &ctx)
            .unwrap()
            .contains("credentials"));
        let text = "NFC error 5 ... Failed to allocate the requested 4194304 bytes";
        assert!(hint_for("VixDiskLib_Read", 1, Some(text), &ctx)
            .unwrap()
            .contains("smaller"));
    }

    #[test]
    fn display_carries_call_code_name_text_and_hint() {
        let f = VixFailure {
            call: "VixDiskLib_Open",
            code: 1,
            name: "VIX_E_FAIL",
            text: Some("Unknown error".into()),
            hint: Some("check it".into()),
        };
        assert_eq!(
            Error::Vix(Box::new(f)).to_string(),
            "VixDiskLib_Open failed: VIX_E_FAIL (1): Unknown error. Hint: check it"
        );
    }
}
