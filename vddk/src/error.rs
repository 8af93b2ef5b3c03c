//! The crate's one error type, and the table of VIX error names.

use std::fmt;

use crate::vix::VixCode;

/// What went wrong, with enough detail to act on it.
///
/// Variants that wrap another error are transparent: their message is the
/// wrapped error's, and `source()` is the wrapped error's own source, so a
/// printer that walks the chain shows each message once.
///
/// # Examples
///
/// Acting on a failure by its kind, and VDDK's by its [`VixCode`]:
///
/// ```
/// use vddk::{Error, VixCode, VixFailure};
///
/// fn advice(e: &Error) -> &'static str {
///     match e {
///         Error::Vix(f) if f.code() == VixCode::FILE_ALREADY_LOCKED => "open it read-only",
///         Error::OutOfRange { .. } => "stay inside the disk",
///         e if e.is_connection_lost() => "connect again",
///         _ => "read the message",
///     }
/// }
/// // As a failed Open returns it:
/// let locked = Error::from(VixFailure::new(
///     "VixDiskLib_Open", VixCode::FILE_ALREADY_LOCKED, None, None,
/// ));
/// assert_eq!(advice(&locked), "open it read-only");
/// let past_end = Error::OutOfRange { offset: 1 << 30, length: 512, capacity: 1 << 30 };
/// assert_eq!(advice(&past_end), "stay inside the disk");
/// // Code in `std::io` terms gets the nearest kind.
/// assert_eq!(std::io::Error::from(past_end).kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The VDDK shared object could not be found or is unusable.
    #[error(transparent)]
    Load(#[from] vddk_sys::LoadError),

    /// [`crate::Vddk::init`] was called while the library is initialised.
    #[error(
        "VDDK is already initialised in this process (VixDiskLib_InitEx may run only once per \
         process): clone the existing Vddk instead of calling Vddk::init again"
    )]
    AlreadyInitialized,

    /// [`crate::Vddk::init`] was called after the library had exited.
    #[error(
        "VDDK was initialised and has exited in this process, and VixDiskLib cannot be \
         initialised twice in one process: keep a Vddk alive for as long as the program \
         uses VDDK, or start a new process"
    )]
    Exited,

    /// A VDDK function returned an error; match on [`VixFailure::code`].
    #[error(transparent)]
    Vix(Box<VixFailure>),

    /// A request reaches past the end of the disk.
    #[error(
        "bytes {offset}..{end} are outside the disk ({capacity} bytes)",
        end = offset.saturating_add(*length)
    )]
    OutOfRange {
        /// Byte offset of the request.
        offset: u64,
        /// Its length in bytes.
        length: u64,
        /// The disk's size in bytes.
        capacity: u64,
    },

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
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// The disk was closed (or its driver stopped) before this request ran.
    #[error("the disk is closed; no further requests are accepted on it")]
    Closed,

    /// The connection to the host was lost and a driver's
    /// [`Reconnect`](crate::Reconnect) policy could not make it again (the
    /// message says why and what to do); the driver's requests fail with
    /// this until the disk is reopened.
    #[error("{0}")]
    Disconnected(String),

    /// A long operation stopped because its progress callback returned
    /// false. What it had done so far stays (VDDK does not roll back): a
    /// cancelled Clone leaves a partial destination to delete.
    #[error("{call} was cancelled by its progress callback")]
    Cancelled {
        /// The VDDK function that stopped, e.g. `"VixDiskLib_Clone"`.
        call: &'static str,
    },
}

/// Details of a failed VDDK call: see [`Error::Vix`].
///
/// Its message names the call, the code, VDDK's own text and, for the
/// failures users commonly meet, what to try next:
///
/// ```text
/// VixDiskLib_Open failed: VIX_E_FAIL (1): Unknown error. Hint: check thumbprint= ...
/// ```
///
/// # Examples
///
/// ```
/// use vddk::{Error, VixCode, VixFailure};
///
/// // As a failed Open returns it:
/// let err = Error::from(VixFailure::new(
///     "VixDiskLib_Open",
///     VixCode::FILE_NOT_FOUND,
///     Some("The file does not exist".into()),
///     None,
/// ));
/// let failure = err.vix().expect("VDDK reported it");
/// assert_eq!((failure.call(), failure.code()), ("VixDiskLib_Open", VixCode::FILE_NOT_FOUND));
/// assert_eq!(failure.hint(), None);
/// assert_eq!(
///     err.to_string(),
///     "VixDiskLib_Open failed: VIX_E_FILE_NOT_FOUND (4): The file does not exist"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VixFailure {
    call: &'static str,
    code: VixCode,
    text: Option<String>,
    hint: Option<String>,
}

impl VixFailure {
    /// A failure of `call` with `code`; VDDK's text and a hint are optional.
    pub fn new(
        call: &'static str,
        code: VixCode,
        text: Option<String>,
        hint: Option<String>,
    ) -> VixFailure {
        VixFailure {
            call,
            code,
            text,
            hint,
        }
    }

    /// The VDDK function that failed, e.g. `"VixDiskLib_Open"`.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The error code.
    pub fn code(&self) -> VixCode {
        self.code
    }

    /// VDDK's own description (GetErrorText), if it gave one.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// What to try next, for the failures users commonly meet.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for VixFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.call, self.code)?;
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, ". Hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VixFailure {}

impl From<VixFailure> for Error {
    fn from(f: VixFailure) -> Error {
        Error::Vix(Box::new(f))
    }
}

impl Error {
    /// The VIX code, when VDDK reported the failure.
    pub fn vix_code(&self) -> Option<VixCode> {
        self.vix().map(VixFailure::code)
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
        self.vix().and_then(VixFailure::hint)
    }

    /// Whether the connection to the host is gone
    /// ([`VixCode::is_connection_lost`]): the handle will not work again,
    /// but a new connection and handle may.
    pub fn is_connection_lost(&self) -> bool {
        self.vix_code().is_some_and(VixCode::is_connection_lost)
    }
}

impl From<Error> for std::io::Error {
    /// Keeps the message, with the closest I/O error kind, for code that
    /// works in `std::io` terms.
    fn from(e: Error) -> std::io::Error {
        use std::io::ErrorKind as K;
        let kind = match &e {
            Error::Io(io) => io.kind(),
            Error::OutOfRange { .. } | Error::InvalidArgument(_) => K::InvalidInput,
            Error::Load(_) | Error::Unsupported { .. } => K::Unsupported,
            Error::Closed => K::BrokenPipe,
            Error::Cancelled { .. } => K::Interrupted,
            Error::Disconnected(_) => K::NotConnected,
            Error::Vix(f) => match f.code() {
                VixCode::FILE_READ_ONLY
                | VixCode::FILE_ACCESS_ERROR
                | VixCode::HOST_USER_PERMISSIONS
                | VixCode::AUTHENTICATION_FAIL => K::PermissionDenied,
                VixCode::FILE_NOT_FOUND | VixCode::VM_NOT_FOUND | VixCode::SNAPSHOT_NOTFOUND => {
                    K::NotFound
                }
                VixCode::FILE_ALREADY_EXISTS => K::AlreadyExists,
                VixCode::OUT_OF_MEMORY => K::OutOfMemory,
                VixCode::INVALID_ARG | VixCode::DISK_OUTOFRANGE => K::InvalidInput,
                VixCode::NOT_SUPPORTED => K::Unsupported,
                c if c.is_connection_lost() => K::ConnectionAborted,
                _ => K::Other,
            },
            _ => K::Other,
        };
        match e {
            Error::Io(io) => io,
            other => std::io::Error::new(kind, other),
        }
    }
}

/// Convenience alias used throughout the crate.
///
/// # Examples
///
/// ```
/// use vddk::{ConnectParams, Result};
///
/// fn params(server: &str, vm: &str, transports: &str) -> Result<ConnectParams> {
///     Ok(ConnectParams::remote(server).vm(vm.parse()?).transports(transports.parse()?))
/// }
/// assert!(params("vcenter.example.com", "vm-16", "nbdssl:nbd").is_ok());
/// assert!(params("vcenter.example.com", "vm 16", "nbd").is_err());
/// ```
pub type Result<T> = std::result::Result<T, Error>;

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
    code: VixCode,
    text: Option<&str>,
    ctx: &CallContext,
) -> Option<String> {
    let nfc_alloc = ctx.nfc_alloc_failed || text.is_some_and(|t| t.contains("Failed to allocate"));
    if nfc_alloc {
        return Some(
            "the server refused to allocate an NFC buffer: issue smaller requests \
             (at most 2 MiB) or fewer at once"
                .into(),
        );
    }
    match code {
        VixCode::FAIL if ctx.remote && call == "VixDiskLib_Open" => {
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
        VixCode::AUTHENTICATION_FAIL | VixCode::HOST_USER_PERMISSIONS => Some(
            "check the credentials (user name and password, or that the session cookie has \
             not expired) and the user's permissions on the VM"
                .into(),
        ),
        VixCode::VM_NOT_FOUND => Some(
            "no VM with that moref: on ESXi it is a number (moref=16), on vCenter vm-N \
             (moref=vm-16)"
                .into(),
        ),
        VixCode::SNAPSHOT_NOTFOUND => {
            Some("no snapshot with that moref on this VM: check snapshot=".into())
        }
        VixCode::HOST_SERVER_NOT_FOUND
        | VixCode::HOST_NETWORK_CONN_REFUSED
        | VixCode::CANNOT_CONNECT_TO_HOST => {
            Some("check the server name, port and that it is reachable from here".into())
        }
        VixCode::FILE_NOT_FOUND if call == "VixDiskLib_Open" => Some(
            "check the disk path: local disks take an absolute path, remote ones \
             \"[datastore] vm/vm.vmdk\""
                .into(),
        ),
        VixCode::FILE_ALREADY_LOCKED => {
            Some("another program has the disk open; close it or open read-only".into())
        }
        VixCode::OUT_OF_MEMORY => {
            Some("the library ran out of memory: issue smaller requests or fewer at once".into())
        }
        _ if call == "VixDiskLib_Attach" || call == "VixDiskLib_IsAttachPossible" => Some(
            "the child must be a disk made from this parent (Disk::create_child), opened alone \
             with OpenFlags::SINGLE_LINK, and the parent unchanged since"
                .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_open_failure_names_both_thumbprints() {
        let ctx = CallContext {
            remote: true,
            given_thumbprint: Some("AA:BB".into()),
            actual_thumbprint: Some("CC:DD".into()),
            nfc_alloc_failed: false,
        };
        let hint = hint_for("VixDiskLib_Open", VixCode::FAIL, None, &ctx).unwrap();
        assert!(
            hint.contains("the server's thumbprint is CC:DD, you gave AA:BB"),
            "{hint}"
        );
        let local = CallContext::default();
        assert_eq!(
            hint_for("VixDiskLib_Open", VixCode::FAIL, None, &local),
            None
        );
        let generic = hint_for(
            "VixDiskLib_Open",
            VixCode::FAIL,
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
        assert!(hint_for(
            "VixDiskLib_ConnectEx",
            VixCode::AUTHENTICATION_FAIL,
            None,
            &ctx
        )
        .unwrap()
        .contains("credentials"));
        let text = "NFC error 5 ... Failed to allocate the requested 4194304 bytes";
        assert!(hint_for("VixDiskLib_Read", VixCode::FAIL, Some(text), &ctx)
            .unwrap()
            .contains("smaller"));
    }

    #[test]
    fn display_carries_call_code_name_text_and_hint() {
        let f = VixFailure::new(
            "VixDiskLib_Open",
            VixCode::FAIL,
            Some("Unknown error".into()),
            Some("check it".into()),
        );
        let e = Error::from(f.clone());
        assert_eq!(
            e.to_string(),
            "VixDiskLib_Open failed: VIX_E_FAIL (1): Unknown error. Hint: check it"
        );
        // Transparent: the chain does not repeat the message.
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.vix(), Some(&f));
        assert_eq!(e.vix_code(), Some(VixCode::FAIL));
    }

    #[test]
    fn wrapped_errors_are_not_printed_twice() {
        let io = Error::from(std::io::Error::other("no threads"));
        assert_eq!(io.to_string(), "no threads");
        assert!(std::error::Error::source(&io).is_none());
        let range = Error::OutOfRange {
            offset: 1024,
            length: 512,
            capacity: 1024,
        };
        assert_eq!(
            range.to_string(),
            "bytes 1024..1536 are outside the disk (1024 bytes)"
        );
        let io = std::io::Error::from(range);
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
        assert!(io.to_string().contains("outside the disk"), "{io}");
        let lost = std::io::Error::from(Error::from(VixFailure::new(
            "VixDiskLib_Read",
            VixCode::HOST_TCP_CONN_LOST,
            None,
            None,
        )));
        assert_eq!(lost.kind(), std::io::ErrorKind::ConnectionAborted);
    }
}
