//! The 512-byte sparse extent header (layout in the parent module's
//! comment), decoded and encoded.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{MAGIC, MAX_GRAIN_SECTORS};
use crate::vmdk::VmdkError;

/// The decoded sparse extent header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHeader {
    /// Format version: 1 (hosted), 2 or 3 (streamOptimized).
    pub version: u32,
    /// FLAG_* bits.
    pub flags: u32,
    /// Capacity of this extent in sectors.
    pub capacity: u64,
    /// Grain size in sectors (a power of two).
    pub grain_size: u64,
    /// Embedded descriptor start (sectors), 0 if none.
    pub desc_offset: u64,
    /// Embedded descriptor room (sectors).
    pub desc_size: u64,
    /// Entries per grain table.
    pub num_gtes: u32,
    /// Redundant grain directory (sectors).
    pub rgd_offset: u64,
    /// Grain directory (sectors).
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    /// 1 = deflate.
    pub compress: u16,
}

pub(super) fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl SparseHeader {
    /// Decodes and sanity-checks a header sector.
    pub fn parse(b: &[u8; 512]) -> Result<SparseHeader, VmdkError> {
        if u32_at(b, 0) != MAGIC {
            return Err(VmdkError::Invalid(
                "not a hosted sparse extent (no KDMV magic)".into(),
            ));
        }
        let h = SparseHeader {
            version: u32_at(b, 4),
            flags: u32_at(b, 8),
            capacity: u64_at(b, 12),
            grain_size: u64_at(b, 20),
            desc_offset: u64_at(b, 28),
            desc_size: u64_at(b, 36),
            num_gtes: u32_at(b, 44),
            rgd_offset: u64_at(b, 48),
            gd_offset: u64_at(b, 56),
            overhead: u64_at(b, 64),
            compress: u16::from_le_bytes([b[77], b[78]]),
        };
        if !(1..=3).contains(&h.version) {
            return Err(VmdkError::Invalid(format!(
                "sparse extent version {} is not supported (only 1, 2 and 3)",
                h.version
            )));
        }
        if h.grain_size == 0 || !h.grain_size.is_power_of_two() || h.grain_size > MAX_GRAIN_SECTORS
        {
            return Err(VmdkError::Invalid(format!(
                "invalid grain size {} sectors",
                h.grain_size
            )));
        }
        if h.num_gtes == 0 || h.num_gtes > 1 << 16 {
            return Err(VmdkError::Invalid(format!(
                "invalid numGTEsPerGT {}",
                h.num_gtes
            )));
        }
        if h.compress > 1 {
            return Err(VmdkError::Invalid(format!(
                "unknown compression algorithm {}",
                h.compress
            )));
        }
        Ok(h)
    }

    /// Encodes the header sector.
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_size.to_le_bytes());
        b[28..36].copy_from_slice(&self.desc_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.desc_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.num_gtes.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[73..77].copy_from_slice(b"\n \r\n");
        b[77..79].copy_from_slice(&self.compress.to_le_bytes());
        b
    }

    /// Number of grain directory entries the capacity needs.
    pub fn gd_entries(&self) -> u64 {
        let grains = self.capacity.div_ceil(self.grain_size);
        grains.div_ceil(u64::from(self.num_gtes))
    }
}

/// Reads the header sector of `file`.
pub fn read_header(file: &File) -> Result<SparseHeader, VmdkError> {
    let mut b = [0u8; 512];
    file.read_exact_at(&mut b, 0)?;
    SparseHeader::parse(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmdk::sparse::{FLAG_NL_DETECT, FLAG_RGD, GTES_PER_GT};

    #[test]
    fn header_round_trips_and_counts_directory_entries() {
        let h = SparseHeader {
            version: 1,
            flags: FLAG_NL_DETECT | FLAG_RGD,
            capacity: 2048 * 1024 * 5 + 3,
            grain_size: 128,
            desc_offset: 1,
            desc_size: 20,
            num_gtes: GTES_PER_GT,
            rgd_offset: 21,
            gd_offset: 30,
            overhead: 128,
            compress: 0,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"KDMV");
        assert_eq!(SparseHeader::parse(&b).unwrap(), h);
        // 5 GiB + 3 sectors = 81921 grains -> 161 tables of 512.
        assert_eq!(h.gd_entries(), 161);
    }

    #[test]
    fn header_rejects_bad_grain_size() {
        let mut h = SparseHeader {
            version: 1,
            flags: 0,
            capacity: 100,
            grain_size: 100,
            desc_offset: 0,
            desc_size: 0,
            num_gtes: 512,
            rgd_offset: 0,
            gd_offset: 1,
            overhead: 128,
            compress: 0,
        };
        assert!(SparseHeader::parse(&h.to_bytes()).is_err());
        h.grain_size = 128;
        h.version = 4;
        assert!(SparseHeader::parse(&h.to_bytes()).is_err());
    }
}
