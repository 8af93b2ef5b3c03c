//! The VMDK engine: real VMDK files read and written, independent of the C
//! ABI. `api` (the exported VixDiskLib functions) calls only what is here.
//!
//! Sectors are 512 bytes. Buffers passed to `read`/`write` are whole sectors.

use std::io;
use std::path::{Path, PathBuf};

/// Why an engine operation failed. The ABI layer maps each to a VIX code.
#[derive(Debug)]
pub enum VmdkError {
    /// The file (or an extent or parent it names) does not exist. -> VIX_E_FILE_NOT_FOUND
    NotFound(PathBuf),
    /// The file is not a VMDK we understand, or is corrupt. -> VIX_E_DISK_INVAL
    Invalid(String),
    /// Write to a read-only disk or read-only subformat. -> VIX_E_FILE_READ_ONLY
    ReadOnly,
    /// Range beyond capacity. -> VIX_E_DISK_OUTOFRANGE
    OutOfRange,
    /// Metadata key absent. -> VIX_E_DISK_KEY_NOTFOUND
    KeyNotFound(String),
    /// Create over an existing file. -> VIX_E_FILE_ALREADY_EXISTS
    AlreadyExists(PathBuf),
    /// Bad argument (e.g. unaligned chunk). -> VIX_E_INVALID_ARG
    InvalidArg(String),
    /// Feature not implemented for this subformat. -> VIX_E_NOT_SUPPORTED
    NotSupported(String),
    /// Underlying I/O error. -> VIX_E_FILE_ERROR (or E_DISK_FULL for ENOSPC)
    Io(io::Error),
}

impl From<io::Error> for VmdkError {
    fn from(e: io::Error) -> Self {
        VmdkError::Io(e)
    }
}

/// Disk types VixDiskLib_Create accepts (values = VIXDISKLIB_DISK_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    MonolithicSparse,
    MonolithicFlat,
    SplitSparse,
    SplitFlat,
    VmfsFlat,
    StreamOptimized,
    VmfsThin,
    VmfsSparse,
}

/// Adapter types (values = VIXDISKLIB_ADAPTER_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    Ide,
    BusLogic,
    LsiLogic,
    Unknown,
}

/// Parameters of VixDiskLib_Create, already decoded from the C struct.
#[derive(Debug, Clone)]
pub struct CreateParams {
    pub disk_type: DiskType,
    pub adapter: Adapter,
    /// VIXDISKLIB_HWVERSION_* value, written as ddb.virtualHWVersion.
    pub hw_version: u16,
    /// Capacity in sectors.
    pub capacity: u64,
}

/// CHS geometry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u32,
    pub heads: u32,
    pub sectors: u32,
}

/// What VixDiskLib_GetInfo reports.
#[derive(Debug, Clone)]
pub struct DiskInfo {
    pub capacity: u64,
    pub bios_geometry: Geometry,
    pub physical_geometry: Geometry,
    pub adapter: Adapter,
    /// Number of links in the chain (1 for a disk without parent).
    pub num_links: i32,
    /// parentFileNameHint of the top link, if any.
    pub parent_hint: Option<String>,
    /// ddb.uuid if present.
    pub uuid: Option<String>,
}

mod disk;
pub use disk::VmdkDisk;

/// Creates a new disk at `path` (a descriptor path ending in .vmdk).
/// Fails with AlreadyExists if the file exists.
pub fn create(path: &Path, params: &CreateParams) -> Result<(), VmdkError> {
    disk::create(path, params)
}

/// Grows a closed disk to `capacity` sectors (never shrinks).
pub fn grow(path: &Path, capacity: u64, update_geometry: bool) -> Result<(), VmdkError> {
    disk::grow(path, capacity, update_geometry)
}
