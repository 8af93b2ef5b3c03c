//! [`OpenFlags`]: how a disk is opened, and the wire [`Compression`] a
//! remote open may ask for.

use std::fmt;
use std::str::FromStr;

use bitflags::bitflags;

use crate::error::{Error, Result};

bitflags! {
    /// How to open a disk (Open's `flags`).
    ///
    /// # Examples
    ///
    /// ```
    /// use vddk::{Compression, OpenFlags};
    ///
    /// let flags = OpenFlags::READ_ONLY | OpenFlags::compression("zlib".parse()?);
    /// assert!(flags.contains(OpenFlags::READ_ONLY | OpenFlags::COMPRESSION_ZLIB));
    /// assert!(!flags.contains(OpenFlags::SINGLE_LINK));
    /// assert_eq!(OpenFlags::compression(Compression::None), OpenFlags::empty());
    /// // Read-write, the default:
    /// assert_eq!(OpenFlags::default(), OpenFlags::empty());
    /// // conn.open("[datastore1] web/web.vmdk", flags)?
    /// # Ok::<(), vddk::Error>(())
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct OpenFlags: u32 {
        /// Bypass the host's page cache (local disks).
        const UNBUFFERED = vddk_sys::VIXDISKLIB_FLAG_OPEN_UNBUFFERED;
        /// Open only this link of a chain, not its parents.
        const SINGLE_LINK = vddk_sys::VIXDISKLIB_FLAG_OPEN_SINGLE_LINK;
        /// Refuse writes.
        const READ_ONLY = vddk_sys::VIXDISKLIB_FLAG_OPEN_READ_ONLY;
        /// zlib compression on the wire (NBD/NBDSSL, vSphere 6.5+).
        const COMPRESSION_ZLIB = vddk_sys::VIXDISKLIB_FLAG_OPEN_COMPRESSION_ZLIB;
        /// FastLZ compression on the wire.
        const COMPRESSION_FASTLZ = vddk_sys::VIXDISKLIB_FLAG_OPEN_COMPRESSION_FASTLZ;
        /// SkipZ compression on the wire.
        const COMPRESSION_SKIPZ = vddk_sys::VIXDISKLIB_FLAG_OPEN_COMPRESSION_SKIPZ;
    }
}

impl OpenFlags {
    /// The flag for `c` (empty for [`Compression::None`]), to combine with others:
    /// `OpenFlags::READ_ONLY | OpenFlags::compression(Compression::Zlib)`.
    pub const fn compression(c: Compression) -> OpenFlags {
        match c {
            Compression::None => OpenFlags::empty(),
            Compression::Zlib => OpenFlags::COMPRESSION_ZLIB,
            Compression::FastLz => OpenFlags::COMPRESSION_FASTLZ,
            Compression::SkipZ => OpenFlags::COMPRESSION_SKIPZ,
        }
    }
}

/// Wire compression for the NBD transports.
///
/// # Examples
///
/// ```
/// use vddk::{Compression, OpenFlags};
///
/// let c: Compression = "FastLZ".parse()?;
/// assert_eq!(c, Compression::FastLz);
/// assert_eq!(c.to_string(), "fastlz");
/// assert_eq!(OpenFlags::compression(c), OpenFlags::COMPRESSION_FASTLZ);
/// assert_eq!(Compression::default(), Compression::None);
/// assert!("lz4".parse::<Compression>().is_err());
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// zlib.
    Zlib,
    /// FastLZ.
    FastLz,
    /// SkipZ.
    SkipZ,
}

impl FromStr for Compression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Compression> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "zlib" => Ok(Compression::Zlib),
            "fastlz" => Ok(Compression::FastLz),
            "skipz" => Ok(Compression::SkipZ),
            _ => Err(Error::InvalidArgument(format!(
                "unknown compression {s:?}: use none, zlib, fastlz or skipz"
            ))),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::FastLz => "fastlz",
            Compression::SkipZ => "skipz",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_have_vddk_values_and_compression_combines() {
        assert_eq!(OpenFlags::READ_ONLY.bits(), 4);
        assert_eq!(OpenFlags::SINGLE_LINK.bits(), 2);
        assert_eq!(OpenFlags::UNBUFFERED.bits(), 1);
        let f = OpenFlags::READ_ONLY | OpenFlags::compression(Compression::Zlib);
        assert_eq!(f.bits(), 4 | 16);
        assert_eq!(OpenFlags::compression(Compression::SkipZ).bits(), 64);
        assert!(OpenFlags::compression(Compression::None).is_empty());
    }

    #[test]
    fn compression_parses_all_names() {
        for c in [
            Compression::None,
            Compression::Zlib,
            Compression::FastLz,
            Compression::SkipZ,
        ] {
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
        assert_eq!("ZLIB".parse::<Compression>().unwrap(), Compression::Zlib);
        assert!("lz4".parse::<Compression>().is_err());
    }
}
