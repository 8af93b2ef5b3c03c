//! [`VixCode`]: a VIX error code, decoded once.

use std::fmt;

/// A VIX error code, masked to its low 16 bits (VDDK may set higher bits).
///
/// A newtype with one associated constant per documented code rather than
/// an enum: a code this crate does not know is still a plain `VixCode`
/// that compares, prints and matches like the others, no two values can
/// mean the same code (as an enum's `Other(5)` and `ObjectIsBusy` would),
/// and new constants never break a caller's `match`.
///
/// # Examples
///
/// ```
/// use vddk::VixCode;
///
/// fn advice(code: VixCode) -> &'static str {
///     match code {
///         VixCode::DISK_FULL => "free space on the datastore",
///         VixCode::FILE_READ_ONLY => "open the disk read-write",
///         c if c.is_connection_lost() => "reconnect and retry",
///         _ => "see the message",
///     }
/// }
/// assert_eq!(advice(VixCode::from_raw(8)), "free space on the datastore");
/// assert_eq!(advice(VixCode::HOST_TCP_CONN_LOST), "reconnect and retry");
/// assert_eq!(VixCode::from_raw(0x0002_0000_0000_0001), VixCode::FAIL);
/// assert_eq!(VixCode::FAIL.to_string(), "VIX_E_FAIL (1)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VixCode(u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $konst:ident = $sys:ident;)*) => {
        impl VixCode {
            $(
                $(#[$doc])*
                pub const $konst: VixCode = VixCode(vddk_sys::$sys as u16);
            )*
        }

        /// Every documented code with its symbolic name.
        const NAMES: &[(VixCode, &str)] = &[$((VixCode::$konst, stringify!($sys))),*];
    };
}

codes! {
    /// Success.
    OK = VIX_OK;
    /// Unspecified failure ("Unknown error"); at a remote Open, most often
    /// a wrong thumbprint.
    FAIL = VIX_E_FAIL;
    /// The library or the server ran out of memory (NFC buffers too).
    OUT_OF_MEMORY = VIX_E_OUT_OF_MEMORY;
    /// An argument was rejected.
    INVALID_ARG = VIX_E_INVALID_ARG;
    /// No such file (disk path).
    FILE_NOT_FOUND = VIX_E_FILE_NOT_FOUND;
    /// The object is in use (e.g. too many requests in flight).
    OBJECT_IS_BUSY = VIX_E_OBJECT_IS_BUSY;
    /// The operation is not supported here.
    NOT_SUPPORTED = VIX_E_NOT_SUPPORTED;
    /// A file could not be read or written.
    FILE_ERROR = VIX_E_FILE_ERROR;
    /// The disk or datastore is full.
    DISK_FULL = VIX_E_DISK_FULL;
    /// The disk or connection is read-only.
    FILE_READ_ONLY = VIX_E_FILE_READ_ONLY;
    /// The file exists already.
    FILE_ALREADY_EXISTS = VIX_E_FILE_ALREADY_EXISTS;
    /// Permission denied on a file.
    FILE_ACCESS_ERROR = VIX_E_FILE_ACCESS_ERROR;
    /// Another program holds the disk's lock.
    FILE_ALREADY_LOCKED = VIX_E_FILE_ALREADY_LOCKED;
    /// A buffer was too small (metadata calls).
    BUFFER_TOOSMALL = VIX_E_BUFFER_TOOSMALL;
    /// Wrong user, password or session cookie.
    AUTHENTICATION_FAIL = VIX_E_AUTHENTICATION_FAIL;
    /// The connection to the host was lost.
    HOST_CONNECTION_LOST = VIX_E_HOST_CONNECTION_LOST;
    /// A closed or unknown handle.
    INVALID_HANDLE = VIX_E_INVALID_HANDLE;
    /// The user lacks a permission on the host or VM.
    HOST_USER_PERMISSIONS = VIX_E_HOST_USER_PERMISSIONS;
    /// No VM with that moref.
    VM_NOT_FOUND = VIX_E_VM_NOT_FOUND;
    /// No snapshot with that moref.
    SNAPSHOT_NOTFOUND = VIX_E_SNAPSHOT_NOTFOUND;
    /// The server name does not resolve or answer.
    HOST_SERVER_NOT_FOUND = VIX_E_HOST_SERVER_NOT_FOUND;
    /// The server refused the network connection.
    HOST_NETWORK_CONN_REFUSED = VIX_E_HOST_NETWORK_CONN_REFUSED;
    /// The TCP connection to the host was lost.
    HOST_TCP_CONN_LOST = VIX_E_HOST_TCP_CONN_LOST;
    /// The disk is not valid.
    DISK_INVAL = VIX_E_DISK_INVAL;
    /// Sectors outside the disk.
    DISK_OUTOFRANGE = VIX_E_DISK_OUTOFRANGE;
    /// No metadata entry with that key.
    DISK_KEY_NOTFOUND = VIX_E_DISK_KEY_NOTFOUND;
    /// The host cannot be reached.
    CANNOT_CONNECT_TO_HOST = VIX_E_CANNOT_CONNECT_TO_HOST;
    /// An async request was accepted (not an error).
    ASYNC = VIX_ASYNC;
    /// A synchronous call while async requests were in flight.
    ASYNC_MIXEDMODE_UNSUPPORTED = VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED;
    /// The TLS handshake with the server failed.
    NET_HTTP_SSL_SECURITY = VIX_E_NET_HTTP_SSL_SECURITY;
}

impl VixCode {
    /// Decodes a raw `VixError`, keeping only the code bits.
    pub const fn from_raw(err: vddk_sys::VixError) -> VixCode {
        VixCode(vddk_sys::error_code(err) as u16)
    }

    /// The masked code as a number.
    pub const fn value(self) -> u16 {
        self.0
    }

    /// The symbolic name from VDDK's header (`"VIX_E_DISK_FULL"`), when
    /// the code is one this crate knows.
    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(c, _)| *c == self).map(|(_, n)| *n)
    }

    /// Success ([`VixCode::OK`]).
    pub const fn is_ok(self) -> bool {
        self.0 == VixCode::OK.0
    }

    /// Whether the code says the connection to the host is gone: a handle
    /// that reported it will not work again, but a new connection may.
    pub const fn is_connection_lost(self) -> bool {
        matches!(
            self,
            VixCode::HOST_CONNECTION_LOST
                | VixCode::HOST_TCP_CONN_LOST
                | VixCode::HOST_NETWORK_CONN_REFUSED
                | VixCode::CANNOT_CONNECT_TO_HOST
        )
    }
}

impl fmt::Display for VixCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "VIX error {}", self.0),
        }
    }
}

impl fmt::Debug for VixCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `#define VIX_*` in the header has a constant with its name
    /// and value, and no constant lacks one.
    #[test]
    fn constants_match_the_header() {
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
            assert_eq!(VixCode::from_raw(value).name(), Some(name), "value {value}");
            seen += 1;
        }
        assert_eq!(seen, NAMES.len(), "table and header list different codes");
    }

    #[test]
    fn high_bits_are_masked_and_unknown_codes_still_print() {
        assert_eq!(VixCode::from_raw(0x0002_0000_0000_0001), VixCode::FAIL);
        assert_eq!(
            VixCode::from_raw(16052).name(),
            Some("VIX_E_DISK_KEY_NOTFOUND")
        );
        assert_eq!(VixCode::from_raw(9999).name(), None);
        assert_eq!(VixCode::from_raw(9999).to_string(), "VIX error 9999");
        assert!(VixCode::from_raw(0).is_ok());
    }

    #[test]
    fn connection_loss_is_classified() {
        for c in [
            VixCode::HOST_CONNECTION_LOST,
            VixCode::HOST_TCP_CONN_LOST,
            VixCode::HOST_NETWORK_CONN_REFUSED,
            VixCode::CANNOT_CONNECT_TO_HOST,
        ] {
            assert!(c.is_connection_lost(), "{c}");
        }
        for c in [
            VixCode::FAIL,
            VixCode::DISK_FULL,
            VixCode::AUTHENTICATION_FAIL,
        ] {
            assert!(!c.is_connection_lost(), "{c}");
        }
    }
}
