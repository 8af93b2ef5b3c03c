//! Parameters for creating disks: [`CreateParams`], [`DiskType`], [`HwVersion`].

use std::fmt;
use std::str::FromStr;

use crate::disk::AdapterType;
use crate::error::{Error, Result};

/// The on-disk format of a new disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiskType {
    /// One growable file (hosted products).
    MonolithicSparse,
    /// One preallocated file (descriptor plus `-flat.vmdk`).
    MonolithicFlat,
    /// Growable, split in 2 GB extents.
    SplitSparse,
    /// Preallocated, split in 2 GB extents.
    SplitFlat,
    /// Preallocated ESX file.
    VmfsFlat,
    /// Compressed, read-only, for streaming (OVF).
    StreamOptimized,
    /// Thin-provisioned ESX file.
    VmfsThin,
    /// ESX sparse (snapshot redo log).
    VmfsSparse,
}

impl DiskType {
    const NAMES: &'static [(DiskType, &'static str, u32)] = &[
        (
            DiskType::MonolithicSparse,
            "monolithicSparse",
            vddk_sys::VIXDISKLIB_DISK_MONOLITHIC_SPARSE,
        ),
        (
            DiskType::MonolithicFlat,
            "monolithicFlat",
            vddk_sys::VIXDISKLIB_DISK_MONOLITHIC_FLAT,
        ),
        (
            DiskType::SplitSparse,
            "twoGbMaxExtentSparse",
            vddk_sys::VIXDISKLIB_DISK_SPLIT_SPARSE,
        ),
        (
            DiskType::SplitFlat,
            "twoGbMaxExtentFlat",
            vddk_sys::VIXDISKLIB_DISK_SPLIT_FLAT,
        ),
        (
            DiskType::VmfsFlat,
            "vmfs",
            vddk_sys::VIXDISKLIB_DISK_VMFS_FLAT,
        ),
        (
            DiskType::StreamOptimized,
            "streamOptimized",
            vddk_sys::VIXDISKLIB_DISK_STREAM_OPTIMIZED,
        ),
        (
            DiskType::VmfsThin,
            "vmfsThin",
            vddk_sys::VIXDISKLIB_DISK_VMFS_THIN,
        ),
        (
            DiskType::VmfsSparse,
            "vmfsSparse",
            vddk_sys::VIXDISKLIB_DISK_VMFS_SPARSE,
        ),
    ];

    /// The VDDK constant.
    pub fn as_raw(self) -> u32 {
        Self::NAMES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or(0, |e| e.2)
    }

    /// The descriptor's `createType` name, e.g. `monolithicSparse`.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or("", |e| e.1)
    }
}

impl FromStr for DiskType {
    type Err = Error;

    /// Accepts the `createType` names (case-insensitive) and the short
    /// forms `sparse`, `flat`, `thin`.
    fn from_str(s: &str) -> Result<DiskType> {
        let short = match s.to_ascii_lowercase().as_str() {
            "sparse" => Some(DiskType::MonolithicSparse),
            "flat" => Some(DiskType::MonolithicFlat),
            "thin" => Some(DiskType::VmfsThin),
            _ => None,
        };
        short
            .or_else(|| {
                Self::NAMES
                    .iter()
                    .find(|(_, n, _)| n.eq_ignore_ascii_case(s))
                    .map(|e| e.0)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|e| e.1).collect();
                Error::InvalidArgument(format!(
                    "unknown disk type {s:?}: use sparse, flat, thin or one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for DiskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A virtual hardware version, as Create takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HwVersion(pub u16);

impl HwVersion {
    /// Workstation 4.
    pub const WORKSTATION_4: HwVersion =
        HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_WORKSTATION_4 as u16);
    /// Workstation 5 (= ESX 3.0).
    pub const WORKSTATION_5: HwVersion =
        HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_WORKSTATION_5 as u16);
    /// Workstation 6.
    pub const WORKSTATION_6: HwVersion =
        HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_WORKSTATION_6 as u16);
    /// ESX 4.x.
    pub const ESX4X: HwVersion = HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_ESX4X as u16);
    /// ESX 5.0.
    pub const ESX50: HwVersion = HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_ESX50 as u16);
    /// ESX 5.1.
    pub const ESX51: HwVersion = HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_ESX51 as u16);
    /// ESX 5.5.
    pub const ESX55: HwVersion = HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_ESX55 as u16);
    /// ESX 6.0.
    pub const ESX60: HwVersion = HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_ESX60 as u16);
    /// ESX 6.5.
    pub const ESX65: HwVersion = HwVersion(vddk_sys::VIXDISKLIB_HWVERSION_ESX65 as u16);
}

impl Default for HwVersion {
    fn default() -> HwVersion {
        HwVersion::WORKSTATION_6
    }
}

/// What [`Connection::create`](crate::Connection::create) makes.
///
/// ```
/// use vddk::{AdapterType, CreateParams, DiskType};
/// let p = CreateParams::new(DiskType::MonolithicSparse, 2048).adapter(AdapterType::ScsiLsiLogic);
/// assert_eq!(p.capacity_bytes(), 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateParams {
    /// The format.
    pub disk_type: DiskType,
    /// The adapter recorded in the descriptor.
    pub adapter: AdapterType,
    /// The hardware version recorded in the descriptor.
    pub hw_version: HwVersion,
    /// Size in 512-byte sectors.
    pub capacity_sectors: u64,
    /// Logical sector size (VDDK 7.0+; `None`: 512).
    pub logical_sector_size: Option<u32>,
    /// Physical sector size (VDDK 7.0+; `None`: 512).
    pub physical_sector_size: Option<u32>,
}

impl CreateParams {
    /// A disk of `capacity_sectors` sectors, LSI Logic adapter, hardware version 6.
    pub fn new(disk_type: DiskType, capacity_sectors: u64) -> CreateParams {
        CreateParams {
            disk_type,
            adapter: AdapterType::ScsiLsiLogic,
            hw_version: HwVersion::default(),
            capacity_sectors,
            logical_sector_size: None,
            physical_sector_size: None,
        }
    }

    /// Sets the adapter type.
    pub fn adapter(mut self, adapter: AdapterType) -> Self {
        self.adapter = adapter;
        self
    }

    /// Sets the hardware version.
    pub fn hw_version(mut self, hw: HwVersion) -> Self {
        self.hw_version = hw;
        self
    }

    /// Size in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_sectors * crate::SECTOR_SIZE
    }

    pub(crate) fn to_raw(&self) -> vddk_sys::VixDiskLibCreateParams {
        vddk_sys::VixDiskLibCreateParams {
            diskType: self.disk_type.as_raw(),
            adapterType: self.adapter.as_raw(),
            hwVersion: self.hw_version.0,
            capacity: self.capacity_sectors,
            logicalSectorSize: self.logical_sector_size.unwrap_or(0),
            physicalSectorSize: self.physical_sector_size.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_types_parse_and_map_to_constants() {
        assert_eq!(
            "sparse".parse::<DiskType>().unwrap(),
            DiskType::MonolithicSparse
        );
        assert_eq!(
            "MONOLITHICFLAT".parse::<DiskType>().unwrap(),
            DiskType::MonolithicFlat
        );
        assert_eq!(DiskType::StreamOptimized.as_raw(), 6);
        assert_eq!(DiskType::VmfsSparse.as_raw(), 8);
        assert!("floppy".parse::<DiskType>().is_err());
        for (t, name, _) in DiskType::NAMES {
            assert_eq!(name.parse::<DiskType>().unwrap(), *t);
        }
    }

    #[test]
    fn create_params_fill_the_c_struct() {
        let raw = CreateParams::new(DiskType::MonolithicFlat, 100)
            .adapter(AdapterType::Ide)
            .hw_version(HwVersion::ESX65)
            .to_raw();
        assert_eq!(
            (
                raw.diskType,
                raw.adapterType,
                raw.hwVersion,
                raw.capacity,
                raw.logicalSectorSize
            ),
            (2, 1, 13, 100, 0)
        );
    }
}
