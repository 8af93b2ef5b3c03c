//! The one error type of the backend stack, and where it becomes an NBD
//! error number.

use vddk::VixCode;

use crate::proto::errno::Failure;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// VDDK reported it (the VIX code is in there).
    #[error(transparent)]
    Vddk(#[from] vddk::Error),
    /// The operating system reported it (a file, an overlay).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The export is read-only.
    #[error("the export is read-only")]
    ReadOnly,
    /// The request reaches past the end of the export.
    #[error("bytes {offset}..{} are outside the export ({size} bytes)", offset.saturating_add(*length))]
    OutOfRange {
        /// Byte offset of the request.
        offset: u64,
        /// Its length.
        length: u64,
        /// The export's size.
        size: u64,
    },
    /// The layer cannot do this (e.g. a zero that would not be fast).
    #[error("{0} is not supported by this export")]
    Unsupported(&'static str),
    /// A layer's own failure, described.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The failure to report for this error, `writing` when the request
    /// wrote: the spec wants ENOSPC for writes past the end, EINVAL for
    /// other requests there.
    pub fn failure(&self, writing: bool) -> Failure {
        let out_of_range = if writing {
            Failure::NoSpace
        } else {
            Failure::Invalid
        };
        match self {
            Error::ReadOnly => Failure::ReadOnly,
            Error::OutOfRange { .. } => out_of_range,
            Error::Unsupported(_) => Failure::NotSupported,
            Error::Failed(_) => Failure::Io,
            Error::Io(e) => match e.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => Failure::NoSpace,
                Some(libc::EROFS) | Some(libc::EPERM) | Some(libc::EACCES) => Failure::ReadOnly,
                Some(libc::EOPNOTSUPP) => Failure::NotSupported,
                _ => Failure::Io,
            },
            Error::Vddk(e) => match e {
                vddk::Error::OutOfRange { .. } => out_of_range,
                _ => match e.vix_code() {
                    Some(VixCode::FILE_READ_ONLY) => Failure::ReadOnly,
                    Some(VixCode::DISK_FULL) => Failure::NoSpace,
                    Some(VixCode::DISK_OUTOFRANGE) => out_of_range,
                    Some(VixCode::NOT_SUPPORTED) => Failure::NotSupported,
                    _ => Failure::Io,
                },
            },
        }
    }

    /// Whether the connection to a host is gone (a new one may work).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::Vddk(e) if e.is_connection_lost())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vix(code: VixCode) -> Error {
        Error::Vddk(vddk::VixFailure::new("VixDiskLib_Write", code, None, None).into())
    }

    #[test]
    fn each_error_maps_to_one_failure() {
        let cases = [
            (vix(VixCode::FILE_READ_ONLY), true, Failure::ReadOnly),
            (vix(VixCode::DISK_FULL), true, Failure::NoSpace),
            (vix(VixCode::DISK_OUTOFRANGE), true, Failure::NoSpace),
            (vix(VixCode::DISK_OUTOFRANGE), false, Failure::Invalid),
            (vix(VixCode::NOT_SUPPORTED), false, Failure::NotSupported),
            (vix(VixCode::HOST_TCP_CONN_LOST), false, Failure::Io),
            (Error::ReadOnly, true, Failure::ReadOnly),
            (Error::Unsupported("fast zero"), true, Failure::NotSupported),
            (Error::Failed("x".into()), false, Failure::Io),
            (
                Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC)),
                true,
                Failure::NoSpace,
            ),
            (
                Error::Vddk(vddk::Error::OutOfRange {
                    offset: 0,
                    length: 1,
                    capacity: 0,
                }),
                false,
                Failure::Invalid,
            ),
        ];
        for (e, writing, want) in cases {
            assert_eq!(e.failure(writing), want, "{e}");
        }
        assert!(vix(VixCode::HOST_TCP_CONN_LOST).is_connection_lost());
        assert!(!vix(VixCode::DISK_FULL).is_connection_lost());
    }
}
