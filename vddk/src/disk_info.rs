//! What GetInfo tells of a disk: [`DiskInfo`], with its [`Geometry`] and
//! [`AdapterType`].

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::SECTOR_SIZE;

/// The disk's controller type.
///
/// # Examples
///
/// ```
/// use vddk::{AdapterType, CreateParams, DiskType};
///
/// let a: AdapterType = "scsi-buslogic".parse()?;
/// assert_eq!(a, AdapterType::ScsiBusLogic);
/// assert_eq!(a.to_string(), "buslogic");
/// let params = CreateParams::new(DiskType::MonolithicSparse, 1 << 30).adapter(a);
/// # let _ = params;
/// // A disk may report a controller this crate has no name for.
/// let other = AdapterType::Other(256);
/// assert_eq!((other.as_raw(), other.to_string()), (256, "unknown(256)".to_string()));
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdapterType {
    /// IDE.
    Ide,
    /// BusLogic SCSI.
    ScsiBusLogic,
    /// LSI Logic SCSI.
    ScsiLsiLogic,
    /// Anything else the library reports, with its raw value.
    Other(u32),
}

impl AdapterType {
    pub(crate) fn from_raw(v: u32) -> AdapterType {
        match v {
            vddk_sys::VIXDISKLIB_ADAPTER_IDE => AdapterType::Ide,
            vddk_sys::VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC => AdapterType::ScsiBusLogic,
            vddk_sys::VIXDISKLIB_ADAPTER_SCSI_LSILOGIC => AdapterType::ScsiLsiLogic,
            other => AdapterType::Other(other),
        }
    }

    /// The VDDK constant.
    pub fn as_raw(self) -> u32 {
        match self {
            AdapterType::Ide => vddk_sys::VIXDISKLIB_ADAPTER_IDE,
            AdapterType::ScsiBusLogic => vddk_sys::VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC,
            AdapterType::ScsiLsiLogic => vddk_sys::VIXDISKLIB_ADAPTER_SCSI_LSILOGIC,
            AdapterType::Other(v) => v,
        }
    }
}

impl FromStr for AdapterType {
    type Err = Error;

    fn from_str(s: &str) -> Result<AdapterType> {
        match s.to_ascii_lowercase().as_str() {
            "ide" => Ok(AdapterType::Ide),
            "buslogic" | "scsi-buslogic" => Ok(AdapterType::ScsiBusLogic),
            "lsilogic" | "scsi-lsilogic" => Ok(AdapterType::ScsiLsiLogic),
            _ => Err(Error::InvalidArgument(format!(
                "unknown adapter type {s:?}: use ide, scsi-buslogic or scsi-lsilogic"
            ))),
        }
    }
}

impl fmt::Display for AdapterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterType::Ide => f.write_str("ide"),
            AdapterType::ScsiBusLogic => f.write_str("buslogic"),
            AdapterType::ScsiLsiLogic => f.write_str("lsilogic"),
            AdapterType::Other(v) => write!(f, "unknown({v})"),
        }
    }
}

/// Cylinders, heads, sectors per track.
///
/// # Examples
///
/// ```
/// use vddk::{Geometry, SECTOR_SIZE};
///
/// // As a disk of 8 GiB reports it in `DiskInfo::bios_geometry`.
/// let bios = Geometry { cylinders: 1044, heads: 255, sectors: 63 };
/// let chs = [bios.cylinders, bios.heads, bios.sectors].map(u64::from);
/// let addressable = chs.iter().product::<u64>() * SECTOR_SIZE;
/// // CHS addressing reaches a little less than the capacity.
/// assert_eq!(addressable, 8_587_192_320);
/// assert!(addressable <= 8 << 30);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u32,
    /// Heads.
    pub heads: u32,
    /// Sectors per track.
    pub sectors: u32,
}

/// What GetInfo reports about a disk.
///
/// # Examples
///
/// ```no_run
/// # fn demo(disk: &vddk::Disk) -> vddk::Result<()> {
/// let info = disk.info()?;
/// println!("{} bytes on a {} controller", info.capacity, info.adapter);
/// if let Some(parent) = &info.parent_hint {
///     println!("a child disk, {} links deep, of {parent}", info.num_links);
/// }
/// let logical = info.logical_sector_size.unwrap_or(512);
/// println!("uuid {}, {logical}-byte sectors", info.uuid.as_deref().unwrap_or("none"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in bytes (a whole number of 512-byte sectors).
    pub capacity: u64,
    /// BIOS geometry.
    pub bios_geometry: Geometry,
    /// Physical geometry.
    pub physical_geometry: Geometry,
    /// Controller type.
    pub adapter: AdapterType,
    /// Number of links in the chain (1 for a disk without parents).
    pub num_links: i32,
    /// The parent's file name, for a child disk.
    pub parent_hint: Option<String>,
    /// The disk's UUID, when it has one.
    pub uuid: Option<String>,
    /// Logical sector size (only reported by VDDK 7.0 and later).
    pub logical_sector_size: Option<u32>,
    /// Physical sector size (only reported by VDDK 7.0 and later).
    pub physical_sector_size: Option<u32>,
}

impl DiskInfo {
    pub(crate) fn from_raw(raw: crate::raw::InfoCopy) -> DiskInfo {
        let geo = |(cylinders, heads, sectors)| Geometry {
            cylinders,
            heads,
            sectors,
        };
        DiskInfo {
            capacity: raw.capacity_sectors.saturating_mul(SECTOR_SIZE),
            bios_geometry: geo(raw.bios_geometry),
            physical_geometry: geo(raw.physical_geometry),
            adapter: AdapterType::from_raw(raw.adapter),
            num_links: raw.num_links,
            parent_hint: raw.parent_hint,
            uuid: raw.uuid,
            logical_sector_size: raw.logical_sector_size,
            physical_sector_size: raw.physical_sector_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_types_round_trip() {
        for a in [
            AdapterType::Ide,
            AdapterType::ScsiBusLogic,
            AdapterType::ScsiLsiLogic,
        ] {
            assert_eq!(AdapterType::from_raw(a.as_raw()), a);
            assert_eq!(a.to_string().parse::<AdapterType>().unwrap(), a);
        }
        assert_eq!(AdapterType::from_raw(256), AdapterType::Other(256));
    }

    #[test]
    fn info_capacity_is_in_bytes() {
        let raw = crate::raw::InfoCopy {
            capacity_sectors: 3,
            adapter: vddk_sys::VIXDISKLIB_ADAPTER_IDE,
            num_links: 1,
            ..Default::default()
        };
        let info = DiskInfo::from_raw(raw);
        assert_eq!(info.capacity, 1536);
        assert_eq!(info.adapter, AdapterType::Ide);
    }
}
