//! The VMDK engine: real VMDK files read and written, independent of the C
//! ABI. `api` (the exported VixDiskLib functions) calls only what is here.
//!
//! Sectors are 512 bytes. Buffers passed to `read`/`write` are whole sectors.
//!
//! Inside: `descriptor` (the text descriptor), `sparse` (hosted sparse and
//! streamOptimized extents), `link` (one link of a chain: descriptor,
//! extents, chained read/write), `disk` ([`VmdkDisk`]) and `create`
//! (create, create_child, grow).
//!
//! Not modelled: the CID is not changed on write (VMware does, to mark
//! children of a written parent stale), disks are not locked against a
//! second opener, and vmfsSparse (COWD) redo logs are refused.

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
    /// `monolithicSparse`: one sparse file with the descriptor inside.
    MonolithicSparse,
    /// `monolithicFlat`: descriptor plus one raw `-flat.vmdk`.
    MonolithicFlat,
    /// `twoGbMaxExtentSparse`: descriptor plus `-sNNN.vmdk` sparse extents.
    SplitSparse,
    /// `twoGbMaxExtentFlat`: descriptor plus `-fNNN.vmdk` raw extents.
    SplitFlat,
    /// `vmfs`: descriptor plus a VMFS (raw) extent.
    VmfsFlat,
    /// `streamOptimized`: compressed, read-only here.
    StreamOptimized,
    /// `vmfsThin`: like `vmfs`, served as a flat extent.
    VmfsThin,
    /// `vmfsSparse`: ESX redo log; not supported.
    VmfsSparse,
}

/// Adapter types (values = VIXDISKLIB_ADAPTER_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// ddb.adapterType = "ide"
    Ide,
    /// ddb.adapterType = "buslogic"
    BusLogic,
    /// ddb.adapterType = "lsilogic"
    LsiLogic,
    /// Anything else (e.g. "pvscsi", "legacyESX") or absent.
    Unknown,
}

/// Parameters of VixDiskLib_Create, already decoded from the C struct.
#[derive(Debug, Clone)]
pub struct CreateParams {
    /// Subformat to create.
    pub disk_type: DiskType,
    /// Written as ddb.adapterType; decides the default geometry.
    pub adapter: Adapter,
    /// VIXDISKLIB_HWVERSION_* value, written as ddb.virtualHWVersion.
    pub hw_version: u16,
    /// Capacity in sectors.
    pub capacity: u64,
}

/// CHS geometry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u32,
    /// Heads.
    pub heads: u32,
    /// Sectors per track.
    pub sectors: u32,
}

/// What VixDiskLib_GetInfo reports.
#[derive(Debug, Clone)]
pub struct DiskInfo {
    /// Capacity in sectors.
    pub capacity: u64,
    /// BIOS geometry (ddb.geometry.bios*, else the physical one).
    pub bios_geometry: Geometry,
    /// Physical geometry (ddb.geometry.*, else the adapter's default).
    pub physical_geometry: Geometry,
    /// ddb.adapterType.
    pub adapter: Adapter,
    /// Number of links in the chain (1 for a disk without parent).
    pub num_links: i32,
    /// parentFileNameHint of the top link, if any.
    pub parent_hint: Option<String>,
    /// ddb.uuid if present.
    pub uuid: Option<String>,
}

mod create;
mod descriptor;
mod disk;
mod link;
mod rename;
mod sparse;
pub use disk::{default_geometry, VmdkDisk};
pub use link::FlatPiece;
pub use sparse::read_full;

/// Creates a new, all-zero disk at `path` (VixDiskLib_Create).
///
/// `path` names the descriptor (for `MonolithicSparse`, the one sparse file
/// with the descriptor embedded). Extent files are created next to it:
/// `<stem>-flat.vmdk` (MonolithicFlat, VmfsFlat, VmfsThin),
/// `<stem>-f001.vmdk`... (SplitFlat) or `<stem>-s001.vmdk`... (SplitSparse),
/// split every 4192256 sectors (2047 MiB). Flat extents are sparse files,
/// so creating a big flat disk costs no space. The descriptor gets a
/// random CID, `parentCID=ffffffff`, and ddb.adapterType, ddb.geometry.*
/// (see [`default_geometry`]), ddb.uuid, ddb.longContentID and
/// ddb.virtualHWVersion (= `hw_version`); VmfsThin adds
/// ddb.thinProvisioned = "1".
///
/// Errors: `AlreadyExists` (the descriptor or an extent file exists; nothing
/// is overwritten), `NotFound` (the directory does not exist),
/// `InvalidArg` (capacity 0, adapter `Unknown`), `NotSupported`
/// (StreamOptimized, VmfsSparse; a sparse extent above 2 TiB), `Io`.
/// A failed create removes the files it made.
pub fn create(path: &Path, params: &CreateParams) -> Result<(), VmdkError> {
    create::create(path, params)
}

/// Creates a child (delta) disk at `child` whose parent is the disk at
/// `parent` (VixDiskLib_CreateChild): same capacity, `parentCID` = the
/// parent's CID, `parentFileNameHint` = the parent's file name when both
/// are in one directory, else its absolute path; the parent's geometry,
/// adapter and hardware version are copied (the child gets its own
/// ddb.uuid). Only
/// `MonolithicSparse` and `SplitSparse` children are supported
/// (`NotSupported` otherwise). The parent is only read. Errors:
/// `AlreadyExists` (child exists), `NotFound` (parent or directory
/// missing), `Invalid` (parent not a VMDK).
pub fn create_child(parent: &Path, child: &Path, disk_type: DiskType) -> Result<(), VmdkError> {
    create::create_child(parent, child, disk_type)
}

/// Renames the closed disk at `src` to `dst` (VixDiskLib_Rename): its
/// extent files move beside `dst`, those named after the old disk take
/// the new name (`web-flat.vmdk` becomes `new-flat.vmdk`), and the
/// descriptor, in its own file or embedded in a sparse extent, is
/// rewritten to name them. Children that name this disk as their parent
/// are not rewritten (VDDK does not follow links either). Nothing is
/// changed when a step fails. Errors: `AlreadyExists` (`dst` or a new
/// extent name exists), `NotFound`, `Invalid`, `Io`.
pub fn rename(src: &Path, dst: &Path) -> Result<(), VmdkError> {
    rename::rename(src, dst)
}

/// Grows a closed disk to `capacity` sectors (VixDiskLib_Grow). The
/// added sectors read as zeroes. Equal capacity is a no-op.
///
/// - Flat disks: the last extent grows (its file is extended sparsely).
/// - Sparse disks: the last extent grows in place when its grain directory
///   has spare slots (one directory sector maps 4 GiB, so a disk created
///   at up to 4 GiB can grow to 4 GiB, a larger one to the next multiple of
///   4 GiB); new grain tables are appended in both directories. Beyond
///   that, `NotSupported`, with the disk left unchanged.
/// - Split types fill the last extent up to 2047 MiB, then add extents.
/// - `update_geometry` rewrites ddb.geometry.* for the new capacity.
///
/// Errors: `InvalidArg` (smaller capacity), `NotSupported`
/// (streamOptimized, no room, bare extents without descriptor), `NotFound`,
/// `Invalid`, `Io`. The caller must make sure the disk is not open.
pub fn grow(path: &Path, capacity: u64, update_geometry: bool) -> Result<(), VmdkError> {
    create::grow(path, capacity, update_geometry)
}
