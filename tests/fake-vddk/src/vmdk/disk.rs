//! An open VMDK chain (skeleton: the engine fills these in).

use std::path::Path;

use super::{CreateParams, DiskInfo, VmdkError};

/// An open VMDK: its descriptor, extents and parent chain.
pub struct VmdkDisk {
    _private: (),
}

impl VmdkDisk {
    /// Opens the disk at `path`. `single_link` opens only this link
    /// (no parent); `read_only` refuses writes.
    pub fn open(path: &Path, read_only: bool, single_link: bool) -> Result<VmdkDisk, VmdkError> {
        let _ = (path, read_only, single_link);
        Err(VmdkError::NotSupported("engine not written yet".into()))
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        0
    }

    /// What GetInfo reports.
    pub fn info(&self) -> DiskInfo {
        unreachable!()
    }

    /// Reads whole sectors starting at `sector` into `buf` (len % 512 == 0).
    /// Unallocated sparse grains read from the parent, or as zeroes.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), VmdkError> {
        let _ = (sector, buf);
        Err(VmdkError::NotSupported("engine not written yet".into()))
    }

    /// Writes whole sectors starting at `sector` (len % 512 == 0),
    /// allocating grains in sparse extents.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), VmdkError> {
        let _ = (sector, buf);
        Err(VmdkError::NotSupported("engine not written yet".into()))
    }

    /// Makes every completed write durable (fsync of the extent files).
    pub fn flush(&mut self) -> Result<(), VmdkError> {
        Ok(())
    }

    /// Allocated ranges within [start, start+count), in sectors, each
    /// rounded out to `chunk` boundaries, sorted and merged. `start`,
    /// `count` and `chunk` are already validated by the caller.
    /// Flat extents are fully allocated; ZERO extents never are.
    pub fn allocated(&self, start: u64, count: u64, chunk: u64) -> Result<Vec<(u64, u64)>, VmdkError> {
        let _ = (start, count, chunk);
        Ok(Vec::new())
    }

    /// Keys of the descriptor's disk database (ddb.*), without the
    /// `ddb.` prefix, as VDDK reports them (e.g. "adapterType", "uuid").
    pub fn metadata_keys(&self) -> Vec<String> {
        Vec::new()
    }

    /// The value of one DDB key (without the `ddb.` prefix).
    pub fn metadata_get(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }

    /// Sets a DDB key and rewrites the descriptor.
    pub fn metadata_set(&mut self, key: &str, value: &str) -> Result<(), VmdkError> {
        let _ = (key, value);
        Err(VmdkError::NotSupported("engine not written yet".into()))
    }
}

pub(super) fn create(path: &Path, params: &CreateParams) -> Result<(), VmdkError> {
    let _ = (path, params);
    Err(VmdkError::NotSupported("engine not written yet".into()))
}

pub(super) fn grow(path: &Path, capacity: u64, update_geometry: bool) -> Result<(), VmdkError> {
    let _ = (path, capacity, update_geometry);
    Err(VmdkError::NotSupported("engine not written yet".into()))
}
