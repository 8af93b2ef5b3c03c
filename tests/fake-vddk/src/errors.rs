//! VIX error codes: their names, their English texts, and how engine
//! errors map onto them.

use crate::ffi::*;
use crate::vmdk::VmdkError;

/// (code, name without the `VIX_E_` prefix, text GetErrorText returns).
const TABLE: &[(VixError, &str, &str)] = &[
    (VIX_OK, "OK", "The operation was successful"),
    (VIX_E_FAIL, "FAIL", "Unknown error"),
    (
        VIX_E_OUT_OF_MEMORY,
        "OUT_OF_MEMORY",
        "Memory allocation failed: out of memory",
    ),
    (
        VIX_E_INVALID_ARG,
        "INVALID_ARG",
        "One of the parameters was invalid",
    ),
    (
        VIX_E_FILE_NOT_FOUND,
        "FILE_NOT_FOUND",
        "A file was not found",
    ),
    (
        VIX_E_OBJECT_IS_BUSY,
        "OBJECT_IS_BUSY",
        "This object is busy with another request",
    ),
    (
        VIX_E_NOT_SUPPORTED,
        "NOT_SUPPORTED",
        "The operation is not supported",
    ),
    (
        VIX_E_FILE_ERROR,
        "FILE_ERROR",
        "A file access error occurred on the host or guest",
    ),
    (
        VIX_E_DISK_FULL,
        "DISK_FULL",
        "There is not enough space on the disk",
    ),
    (
        VIX_E_FILE_READ_ONLY,
        "FILE_READ_ONLY",
        "The file is read-only",
    ),
    (
        VIX_E_FILE_ALREADY_EXISTS,
        "FILE_ALREADY_EXISTS",
        "The file already exists",
    ),
    (
        VIX_E_FILE_ACCESS_ERROR,
        "FILE_ACCESS_ERROR",
        "You do not have access rights to this file",
    ),
    (
        VIX_E_FILE_ALREADY_LOCKED,
        "FILE_ALREADY_LOCKED",
        "The file is locked by another process",
    ),
    (
        VIX_E_BUFFER_TOOSMALL,
        "BUFFER_TOOSMALL",
        "The buffer is too small to hold the result",
    ),
    (
        VIX_E_AUTHENTICATION_FAIL,
        "AUTHENTICATION_FAIL",
        "Authentication failed: check the user name, password or session cookie",
    ),
    (
        VIX_E_HOST_CONNECTION_LOST,
        "HOST_CONNECTION_LOST",
        "The connection to the host was lost",
    ),
    (
        VIX_E_INVALID_HANDLE,
        "INVALID_HANDLE",
        "The handle is not valid",
    ),
    (
        VIX_E_HOST_USER_PERMISSIONS,
        "HOST_USER_PERMISSIONS",
        "The user lacks permission on the host",
    ),
    (
        VIX_E_VM_NOT_FOUND,
        "VM_NOT_FOUND",
        "The virtual machine cannot be found",
    ),
    (
        VIX_E_SNAPSHOT_NOTFOUND,
        "SNAPSHOT_NOTFOUND",
        "The snapshot cannot be found",
    ),
    (
        VIX_E_HOST_SERVER_NOT_FOUND,
        "HOST_SERVER_NOT_FOUND",
        "The host name cannot be resolved",
    ),
    (
        VIX_E_HOST_NETWORK_CONN_REFUSED,
        "HOST_NETWORK_CONN_REFUSED",
        "The server refused connection",
    ),
    (
        VIX_E_HOST_TCP_CONN_LOST,
        "HOST_TCP_CONN_LOST",
        "The TCP connection to the host was lost",
    ),
    (
        VIX_E_DISK_INVAL,
        "DISK_INVAL",
        "The disk is not valid or is corrupt",
    ),
    (
        VIX_E_DISK_OUTOFRANGE,
        "DISK_OUTOFRANGE",
        "The requested sectors are beyond the end of the disk",
    ),
    (
        VIX_E_DISK_KEY_NOTFOUND,
        "DISK_KEY_NOTFOUND",
        "The metadata key was not found",
    ),
    (
        VIX_E_CANNOT_CONNECT_TO_HOST,
        "CANNOT_CONNECT_TO_HOST",
        "Cannot connect to the host",
    ),
    (VIX_ASYNC, "ASYNC", "The asynchronous operation was started"),
    (
        VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED,
        "ASYNC_MIXEDMODE_UNSUPPORTED",
        "Mixing synchronous and asynchronous I/O on one handle is not supported",
    ),
    (
        VIX_E_NET_HTTP_SSL_SECURITY,
        "NET_HTTP_SSL_SECURITY",
        "The SSL security check failed",
    ),
];

/// The English text for a (masked) error code.
pub fn text(err: VixError) -> String {
    let code = err & 0xFFFF;
    match TABLE.iter().find(|(c, _, _)| *c == code) {
        Some((_, _, text)) => (*text).to_string(),
        None => format!("Unknown error (code {code})"),
    }
}

/// The symbolic name of a code, e.g. `VIX_E_FAIL`, for log lines.
pub fn name(err: VixError) -> String {
    let code = err & 0xFFFF;
    match TABLE.iter().find(|(c, _, _)| *c == code) {
        Some((VIX_OK, _, _)) => "VIX_OK".into(),
        Some((VIX_ASYNC, _, _)) => "VIX_ASYNC".into(),
        Some((_, name, _)) => format!("VIX_E_{name}"),
        None => format!("VIX error {code}"),
    }
}

/// Parses an error code given in a knob: a number, or a name with or
/// without the `VIX_E_` prefix (`DISK_FULL`, `VIX_E_DISK_FULL`).
pub fn parse(s: &str) -> Option<VixError> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let upper = s.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("VIX_E_").unwrap_or(&upper);
    TABLE
        .iter()
        .find(|(_, name, _)| *name == bare)
        .map(|(c, _, _)| *c)
}

/// Maps an engine error to the VIX code VDDK gives for it.
pub fn from_vmdk(e: &VmdkError) -> VixError {
    match e {
        VmdkError::NotFound(_) => VIX_E_FILE_NOT_FOUND,
        VmdkError::Invalid(_) => VIX_E_DISK_INVAL,
        VmdkError::ReadOnly => VIX_E_FILE_READ_ONLY,
        VmdkError::OutOfRange => VIX_E_DISK_OUTOFRANGE,
        VmdkError::KeyNotFound(_) => VIX_E_DISK_KEY_NOTFOUND,
        VmdkError::AlreadyExists(_) => VIX_E_FILE_ALREADY_EXISTS,
        VmdkError::InvalidArg(_) => VIX_E_INVALID_ARG,
        VmdkError::NotSupported(_) => VIX_E_NOT_SUPPORTED,
        VmdkError::Io(io) => match io.raw_os_error() {
            Some(libc::ENOSPC) => VIX_E_DISK_FULL,
            Some(libc::EACCES) | Some(libc::EPERM) => VIX_E_FILE_ACCESS_ERROR,
            Some(libc::ENOENT) => VIX_E_FILE_NOT_FOUND,
            _ => VIX_E_FILE_ERROR,
        },
    }
}

/// A human description of an engine error for the log.
pub fn describe(e: &VmdkError) -> String {
    match e {
        VmdkError::NotFound(p) => format!("file not found: {}", p.display()),
        VmdkError::Invalid(s) => format!("invalid disk: {s}"),
        VmdkError::ReadOnly => "the disk is read-only".into(),
        VmdkError::OutOfRange => "range beyond the disk's capacity".into(),
        VmdkError::KeyNotFound(k) => format!("metadata key not found: {k}"),
        VmdkError::AlreadyExists(p) => format!("file already exists: {}", p.display()),
        VmdkError::InvalidArg(s) => format!("invalid argument: {s}"),
        VmdkError::NotSupported(s) => format!("not supported: {s}"),
        VmdkError::Io(io) => format!("I/O error: {io}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_names() {
        assert_eq!(text(VIX_E_FAIL), "Unknown error");
        assert_eq!(text(0x0001_0000_0000_000B), "The file is read-only");
        assert_eq!(name(VIX_E_DISK_OUTOFRANGE), "VIX_E_DISK_OUTOFRANGE");
        assert_eq!(name(VIX_ASYNC), "VIX_ASYNC");
        assert!(text(54321).contains("54321"));
    }

    #[test]
    fn parse_codes() {
        assert_eq!(parse("8"), Some(VIX_E_DISK_FULL));
        assert_eq!(parse("DISK_FULL"), Some(VIX_E_DISK_FULL));
        assert_eq!(
            parse("vix_e_host_tcp_conn_lost"),
            Some(VIX_E_HOST_TCP_CONN_LOST)
        );
        assert_eq!(parse("NO_SUCH"), None);
    }

    #[test]
    fn engine_errors_map() {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(from_vmdk(&VmdkError::Io(enospc)), VIX_E_DISK_FULL);
        assert_eq!(from_vmdk(&VmdkError::OutOfRange), VIX_E_DISK_OUTOFRANGE);
        assert_eq!(
            from_vmdk(&VmdkError::KeyNotFound("x".into())),
            VIX_E_DISK_KEY_NOTFOUND
        );
    }
}
