//! The one place internal failures become NBD error numbers.

use super::consts::errno::*;

/// What went wrong with a request, in the server's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Write to a read-only export.
    ReadOnly,
    /// Write beyond the end of the export, or the disk is full.
    NoSpace,
    /// Read or other request beyond the end of the export, bad flags,
    /// zero length, unknown command.
    Invalid,
    /// Request larger than the maximum payload.
    TooBig,
    /// Fast zero asked for; zeroing here is never faster than writing.
    NotSupported,
    /// The server is shutting down.
    ShuttingDown,
    /// The disk failed.
    Io,
}

/// Maps a failure to the error number sent to the client. `structured`
/// says whether structured replies were negotiated: the spec reserves
/// EOVERFLOW for those clients, so others get EINVAL.
pub fn nbd_errno(failure: Failure, structured: bool) -> u32 {
    match failure {
        Failure::ReadOnly => EPERM,
        Failure::NoSpace => ENOSPC,
        Failure::Invalid => EINVAL,
        Failure::TooBig if structured => EOVERFLOW,
        Failure::TooBig => EINVAL,
        Failure::NotSupported => ENOTSUP,
        Failure::ShuttingDown => ESHUTDOWN,
        Failure::Io => EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            (Failure::ReadOnly, true, 1),
            (Failure::NoSpace, false, 28),
            (Failure::Invalid, true, 22),
            (Failure::TooBig, true, 75),
            (Failure::TooBig, false, 22),
            (Failure::NotSupported, true, 95),
            (Failure::ShuttingDown, false, 108),
            (Failure::Io, false, 5),
        ];
        for (f, s, want) in cases {
            assert_eq!(nbd_errno(f, s), want, "{f:?} structured={s}");
        }
    }
}
