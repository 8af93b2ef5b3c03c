//! A program's own code: copies a disk into a byte vector, the way a
//! backup tool would read a VM disk.

use vddk::{Disk, Result};

/// Reads the whole disk in 1 MiB pieces.
pub fn read_all(disk: &Disk) -> Result<Vec<u8>> {
    let size = disk.capacity()?;
    let mut out = vec![0u8; usize::try_from(size).unwrap_or(0)];
    for chunk in out.chunks_mut(1 << 20).enumerate() {
        let (i, buf) = chunk;
        disk.read_at(i as u64 * (1 << 20), buf)?;
    }
    Ok(out)
}
