//! Parameters for creating disks: [`CreateParams`], [`DiskType`], [`HwVersion`].

use std::fmt;
use std::str::FromStr;

use crate::disk_info::AdapterType;
use crate::error::{Error, Result};

/// The on-disk format of a new disk.
///
/// # Examples
///
/// ```
/// use vddk::{CreateParams, DiskType};
///
/// // nbdkit's `create-type=` names, the descriptor's, or a short form:
/// let t: DiskType = "monolithic-sparse".parse()?;
/// assert_eq!(t, DiskType::MonolithicSparse);
/// assert_eq!("twoGbMaxExtentFlat".parse::<DiskType>()?, DiskType::SplitFlat);
/// assert_eq!("thin".parse::<DiskType>()?, DiskType::VmfsThin);
/// assert_eq!(DiskType::SplitFlat.to_string(), "twoGbMaxExtentFlat");
/// assert_eq!(DiskType::SplitFlat.nbdkit_name(), "split-flat");
/// let params = CreateParams::new(t, 8 << 30);
/// # let _ = params;
/// # Ok::<(), vddk::Error>(())
/// ```
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
    /// Each type with its descriptor `createType` name, the name nbdkit's
    /// `create-type=` uses, and the VDDK constant.
    const NAMES: &'static [(DiskType, &'static str, &'static str, u32)] = &[
        (
            DiskType::MonolithicSparse,
            "monolithicSparse",
            "monolithic-sparse",
            vddk_sys::VIXDISKLIB_DISK_MONOLITHIC_SPARSE,
        ),
        (
            DiskType::MonolithicFlat,
            "monolithicFlat",
            "monolithic-flat",
            vddk_sys::VIXDISKLIB_DISK_MONOLITHIC_FLAT,
        ),
        (
            DiskType::SplitSparse,
            "twoGbMaxExtentSparse",
            "split-sparse",
            vddk_sys::VIXDISKLIB_DISK_SPLIT_SPARSE,
        ),
        (
            DiskType::SplitFlat,
            "twoGbMaxExtentFlat",
            "split-flat",
            vddk_sys::VIXDISKLIB_DISK_SPLIT_FLAT,
        ),
        (
            DiskType::VmfsFlat,
            "vmfs",
            "vmfs-flat",
            vddk_sys::VIXDISKLIB_DISK_VMFS_FLAT,
        ),
        (
            DiskType::StreamOptimized,
            "streamOptimized",
            "stream-optimized",
            vddk_sys::VIXDISKLIB_DISK_STREAM_OPTIMIZED,
        ),
        (
            DiskType::VmfsThin,
            "vmfsThin",
            "vmfs-thin",
            vddk_sys::VIXDISKLIB_DISK_VMFS_THIN,
        ),
        (
            DiskType::VmfsSparse,
            "vmfsSparse",
            "vmfs-sparse",
            vddk_sys::VIXDISKLIB_DISK_VMFS_SPARSE,
        ),
    ];

    fn entry(self) -> &'static (DiskType, &'static str, &'static str, u32) {
        // Every variant has a row (checked by a test), so the fallback is never taken.
        Self::NAMES
            .iter()
            .find(|e| e.0 == self)
            .unwrap_or(&Self::NAMES[0])
    }

    /// The VDDK constant.
    pub fn as_raw(self) -> u32 {
        self.entry().3
    }

    /// The descriptor's `createType` name, e.g. `monolithicSparse`.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The name nbdkit's `create-type=` takes, e.g. `monolithic-sparse`.
    pub fn nbdkit_name(self) -> &'static str {
        self.entry().2
    }
}

impl FromStr for DiskType {
    type Err = Error;

    /// Accepts nbdkit's `create-type=` names (`monolithic-sparse`, ...),
    /// the descriptor's `createType` names (case-insensitive) and the short
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
                    .find(|(_, n, k, _)| n.eq_ignore_ascii_case(s) || k.eq_ignore_ascii_case(s))
                    .map(|e| e.0)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|e| e.2).collect();
                Error::InvalidArgument(format!(
                    "unknown disk type {s:?}: use one of {} (or the descriptor's createType \
                     name, e.g. monolithicSparse)",
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
///
/// # Examples
///
/// ```
/// use vddk::{CreateParams, DiskType, HwVersion};
///
/// // nbdkit's `create-hwversion=` names, or the number itself.
/// assert_eq!("esx65".parse::<HwVersion>()?, HwVersion::ESX65);
/// assert_eq!("19".parse::<HwVersion>()?, HwVersion(19));
/// assert!(HwVersion::ESX65 > HwVersion::ESX60);
/// assert_eq!(HwVersion::default(), HwVersion::WORKSTATION_6);
/// let params = CreateParams::new(DiskType::VmfsThin, 8 << 30).hw_version(HwVersion::ESX65);
/// assert_eq!(params.hw_version.0, 13);
/// # Ok::<(), vddk::Error>(())
/// ```
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

impl HwVersion {
    /// The names nbdkit's `create-hwversion=` takes.
    const NAMES: &'static [(&'static str, HwVersion)] = &[
        ("workstation4", HwVersion::WORKSTATION_4),
        ("workstation5", HwVersion::WORKSTATION_5),
        ("workstation6", HwVersion::WORKSTATION_6),
        ("esx30", HwVersion::WORKSTATION_5),
        ("esx4x", HwVersion::ESX4X),
        ("esx50", HwVersion::ESX50),
        ("esx51", HwVersion::ESX51),
        ("esx55", HwVersion::ESX55),
        ("esx60", HwVersion::ESX60),
        ("esx65", HwVersion::ESX65),
    ];
}

impl FromStr for HwVersion {
    type Err = Error;

    /// Accepts nbdkit's names (`workstation6`, `esx65`, ...) or a number.
    fn from_str(s: &str) -> Result<HwVersion> {
        if let Some((_, v)) = Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(*v);
        }
        s.parse::<u16>().map(HwVersion).map_err(|_| {
            let names: Vec<&str> = Self::NAMES.iter().map(|e| e.0).collect();
            Error::InvalidArgument(format!(
                "unknown hardware version {s:?}: use one of {} or a number",
                names.join(", ")
            ))
        })
    }
}

impl Default for HwVersion {
    fn default() -> HwVersion {
        HwVersion::WORKSTATION_6
    }
}

/// What [`Connection::create`](crate::Connection::create) makes.
///
/// # Examples
///
/// ```
/// use vddk::{AdapterType, CreateParams, DiskType};
/// let p = CreateParams::new(DiskType::MonolithicSparse, 1 << 20).adapter(AdapterType::ScsiLsiLogic);
/// assert_eq!(p.capacity, 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateParams {
    /// The format.
    pub disk_type: DiskType,
    /// The adapter recorded in the descriptor.
    pub adapter: AdapterType,
    /// The hardware version recorded in the descriptor.
    pub hw_version: HwVersion,
    /// Size in bytes (a multiple of 512).
    pub capacity: u64,
    /// Logical sector size (VDDK 7.0+; `None`: 512).
    pub logical_sector_size: Option<u32>,
    /// Physical sector size (VDDK 7.0+; `None`: 512).
    pub physical_sector_size: Option<u32>,
}

impl CreateParams {
    /// A disk of `capacity` bytes (a multiple of 512), LSI Logic adapter,
    /// hardware version 6.
    pub fn new(disk_type: DiskType, capacity: u64) -> CreateParams {
        CreateParams {
            disk_type,
            adapter: AdapterType::ScsiLsiLogic,
            hw_version: HwVersion::default(),
            capacity,
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

    pub(crate) fn to_raw(&self) -> Result<vddk_sys::VixDiskLibCreateParams> {
        if self.capacity % crate::SECTOR_SIZE != 0 {
            return Err(Error::InvalidArgument(format!(
                "a disk of {} bytes is not a whole number of 512-byte sectors",
                self.capacity
            )));
        }
        Ok(vddk_sys::VixDiskLibCreateParams {
            diskType: self.disk_type.as_raw(),
            adapterType: self.adapter.as_raw(),
            hwVersion: self.hw_version.0,
            capacity: self.capacity / crate::SECTOR_SIZE,
            logicalSectorSize: self.logical_sector_size.unwrap_or(0),
            physicalSectorSize: self.physical_sector_size.unwrap_or(0),
        })
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
        for (t, name, nbdkit, _) in DiskType::NAMES {
            assert_eq!(name.parse::<DiskType>().unwrap(), *t);
            assert_eq!(nbdkit.parse::<DiskType>().unwrap(), *t);
            assert_eq!(t.name(), *name);
            assert_eq!(t.nbdkit_name(), *nbdkit);
        }
        assert_eq!(
            "split-sparse".parse::<DiskType>().unwrap(),
            DiskType::SplitSparse
        );
    }

    #[test]
    fn create_params_fill_the_c_struct() {
        let raw = CreateParams::new(DiskType::MonolithicFlat, 51200)
            .adapter(AdapterType::Ide)
            .hw_version(HwVersion::ESX65)
            .to_raw()
            .unwrap();
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
        assert!(CreateParams::new(DiskType::MonolithicFlat, 1000)
            .to_raw()
            .is_err());
    }

    #[test]
    fn hardware_versions_parse_names_and_numbers() {
        assert_eq!("esx65".parse::<HwVersion>().unwrap(), HwVersion::ESX65);
        assert_eq!("ESX30".parse::<HwVersion>().unwrap(), HwVersion(4));
        assert_eq!("17".parse::<HwVersion>().unwrap(), HwVersion(17));
        assert!("esx99".parse::<HwVersion>().is_err());
    }
}
