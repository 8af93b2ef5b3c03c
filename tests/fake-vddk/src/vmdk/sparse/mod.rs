//! Hosted sparse extents (magic `KDMV`): header, grain directory and grain
//! tables, grain allocation, and compressed grains (streamOptimized).
//!
//! Layout of the 512-byte header (little endian, packed): magic 0, version 4,
//! flags 8, capacity 12, grainSize 20, descriptorOffset 28, descriptorSize 36,
//! numGTEsPerGT 44, rgdOffset 48, gdOffset 56, overHead 64,
//! uncleanShutdown 72, the four newline-check bytes 73..77,
//! compressAlgorithm 77. All offsets and sizes are in sectors.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::VmdkError;

mod header;
mod write;

use header::u32_at;
pub use header::{read_header, SparseHeader};

/// `KDMV` read as a little-endian u32.
pub const MAGIC: u32 = 0x564d_444b;
/// Sector size in bytes.
pub const SECTOR: u64 = 512;
/// gdOffset value meaning "the grain directory is found through the footer".
const GD_AT_END: u64 = u64::MAX;
/// Flag: the newline-check bytes are valid.
pub const FLAG_NL_DETECT: u32 = 1;
/// Flag: a redundant grain directory and tables exist.
pub const FLAG_RGD: u32 = 1 << 1;
/// Flag: a grain table entry of 1 means "reads as zeroes".
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// Flag: grains are deflate-compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag: the file uses stream markers.
pub const FLAG_MARKERS: u32 = 1 << 17;
/// Grain table entries per table that every writer uses.
pub const GTES_PER_GT: u32 = 512;
/// Largest grain we accept (VMware's limit is far smaller in practice).
const MAX_GRAIN_SECTORS: u64 = 128 * 2048;

/// Where one grain's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Not allocated here: read from the parent, or zeroes.
    Unallocated,
    /// Allocated and known to read as zeroes.
    Zero,
    /// Raw data starting at this file sector.
    Data(u64),
    /// Compressed grain whose marker (or stream) starts at this file sector.
    Compressed(u64),
}

/// An open hosted sparse extent.
pub struct SparseExtent {
    file: File,
    header: SparseHeader,
    gd: Vec<u32>,
    rgd: Option<Vec<u32>>,
    /// Loaded grain tables by directory index: the tables are loaded lazily
    /// so a large disk costs memory only for what is touched.
    gts: HashMap<usize, Vec<u32>>,
    /// The last decompressed grain, because readers ask for it sector by sector.
    cache: Option<(u64, Vec<u8>)>,
    /// Next free sector at the end of the file, where new grains go.
    end: u64,
}

fn read_table(file: &File, sector: u64, entries: usize) -> Result<Vec<u32>, VmdkError> {
    let mut raw = vec![0u8; entries * 4];
    let pos = sector
        .checked_mul(SECTOR)
        .ok_or_else(|| VmdkError::Invalid(format!("grain table offset {sector} is impossible")))?;
    file.read_exact_at(&mut raw, pos).map_err(|e| {
        VmdkError::Invalid(format!(
            "grain table at sector {sector} is unreadable ({e}); the file is truncated or corrupt"
        ))
    })?;
    Ok(raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl SparseExtent {
    /// Opens the sparse extent in `file` (opened read-write when the disk is
    /// writable). streamOptimized files with the directory at the end are
    /// read through their footer.
    pub fn open(file: File) -> Result<SparseExtent, VmdkError> {
        let mut header = read_header(&file)?;
        let len = file.metadata()?.len();
        if header.gd_offset == GD_AT_END {
            // The footer is a header copy one sector before the end-of-stream marker.
            if len < 3 * SECTOR {
                return Err(VmdkError::Invalid(
                    "streamOptimized file too short for its footer".into(),
                ));
            }
            let mut b = [0u8; 512];
            file.read_exact_at(&mut b, len - 2 * SECTOR)?;
            let footer = SparseHeader::parse(&b)?;
            if footer.gd_offset == GD_AT_END {
                return Err(VmdkError::Invalid(
                    "streamOptimized footer has no grain directory".into(),
                ));
            }
            header.gd_offset = footer.gd_offset;
            header.rgd_offset = footer.rgd_offset;
        }
        // A directory larger than the file is corruption; checking first
        // keeps a bad capacity from asking for an absurd allocation.
        let entries = usize::try_from(header.gd_entries())
            .ok()
            .filter(|&n| (n as u64).saturating_mul(4) <= len)
            .ok_or_else(|| {
                VmdkError::Invalid(format!(
                    "capacity {} needs a grain directory larger than the file; the header is corrupt",
                    header.capacity
                ))
            })?;
        let gd = read_table(&file, header.gd_offset, entries)?;
        let rgd = if header.flags & FLAG_RGD != 0 && header.rgd_offset != 0 {
            Some(read_table(&file, header.rgd_offset, entries)?)
        } else {
            None
        };
        let end = len.div_ceil(SECTOR);
        Ok(SparseExtent {
            file,
            header,
            gd,
            rgd,
            gts: HashMap::new(),
            cache: None,
            end,
        })
    }

    /// The header as read (with the footer's directory for streams).
    pub fn header(&self) -> &SparseHeader {
        &self.header
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Capacity of the extent in sectors.
    pub fn capacity(&self) -> u64 {
        self.header.capacity
    }

    /// Grain size in sectors.
    pub fn grain_size(&self) -> u64 {
        self.header.grain_size
    }

    /// Whether grains are compressed (the extent is then read-only).
    pub fn compressed(&self) -> bool {
        self.header.flags & FLAG_COMPRESSED != 0
    }

    fn table(&mut self, gd_index: usize) -> Result<Option<&mut Vec<u32>>, VmdkError> {
        let Some(&gt_sector) = self.gd.get(gd_index) else {
            return Ok(None);
        };
        if gt_sector == 0 {
            return Ok(None);
        }
        if !self.gts.contains_key(&gd_index) {
            let t = read_table(
                &self.file,
                u64::from(gt_sector),
                self.header.num_gtes as usize,
            )?;
            self.gts.insert(gd_index, t);
        }
        Ok(self.gts.get_mut(&gd_index))
    }

    /// Where grain number `grain` lives.
    pub fn lookup(&mut self, grain: u64) -> Result<Grain, VmdkError> {
        let per = u64::from(self.header.num_gtes);
        let (gd_index, gt_index) = ((grain / per) as usize, (grain % per) as usize);
        let flags = self.header.flags;
        let compressed = self.compressed();
        let Some(t) = self.table(gd_index)? else {
            return Ok(Grain::Unallocated);
        };
        Ok(match t[gt_index] {
            0 => Grain::Unallocated,
            1 if flags & FLAG_ZERO_GRAIN != 0 => Grain::Zero,
            s if compressed => Grain::Compressed(u64::from(s)),
            s => Grain::Data(u64::from(s)),
        })
    }

    /// Runs `(first grain, count)` of grains in `[first, end)` that hold data
    /// in this extent (zero grains and unallocated ones do not). Tables the
    /// directory does not point to are skipped whole.
    pub fn allocated_runs(&self, first: u64, end: u64) -> Result<Vec<(u64, u64)>, VmdkError> {
        let per = u64::from(self.header.num_gtes);
        let zero_flag = self.header.flags & FLAG_ZERO_GRAIN != 0;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut g = first;
        while g < end {
            let gd_index = (g / per) as usize;
            let table_end = ((g / per + 1) * per).min(end);
            let gt_sector = self.gd.get(gd_index).copied().unwrap_or(0);
            if gt_sector == 0 {
                g = table_end;
                continue;
            }
            // Not cached on this path: a query over a big disk must not
            // leave every table in memory.
            let loaded;
            let t = match self.gts.get(&gd_index) {
                Some(t) => t,
                None => {
                    loaded = read_table(
                        &self.file,
                        u64::from(gt_sector),
                        self.header.num_gtes as usize,
                    )?;
                    &loaded
                }
            };
            while g < table_end {
                let e = t[(g % per) as usize];
                if e != 0 && !(e == 1 && zero_flag) {
                    match runs.last_mut() {
                        Some(r) if r.0 + r.1 == g => r.1 += 1,
                        _ => runs.push((g, 1)),
                    }
                }
                g += 1;
            }
        }
        Ok(runs)
    }

    /// Reads `buf.len()` bytes of an allocated grain, `within` sectors into it.
    pub fn read_grain(
        &mut self,
        grain: Grain,
        grain_no: u64,
        within: u64,
        buf: &mut [u8],
    ) -> Result<(), VmdkError> {
        match grain {
            Grain::Unallocated | Grain::Zero => buf.fill(0),
            Grain::Data(s) => read_full(&self.file, (s + within) * SECTOR, buf)?,
            Grain::Compressed(s) => {
                if self.cache.as_ref().map(|c| c.0) != Some(grain_no) {
                    let data = self.inflate(s)?;
                    self.cache = Some((grain_no, data));
                }
                let data = self.cache.as_ref().map(|c| c.1.as_slice()).unwrap_or(&[]);
                let from = ((within * SECTOR) as usize).min(data.len());
                let to = from + buf.len();
                let avail = data.len().min(to).max(from);
                buf[..avail - from].copy_from_slice(&data[from..avail]);
                buf[avail - from..].fill(0);
            }
        }
        Ok(())
    }

    fn inflate(&self, sector: u64) -> Result<Vec<u8>, VmdkError> {
        let grain_bytes = (self.header.grain_size * SECTOR) as usize;
        let (start, size) = if self.header.flags & FLAG_MARKERS != 0 {
            let mut m = [0u8; 12];
            self.file.read_exact_at(&mut m, sector * SECTOR)?;
            (sector * SECTOR + 12, u32_at(&m, 8) as usize)
        } else {
            (sector * SECTOR, grain_bytes * 2 + 1024)
        };
        if size > grain_bytes * 2 + 1024 {
            return Err(VmdkError::Invalid(format!(
                "compressed grain at sector {sector} claims {size} bytes; the file is corrupt"
            )));
        }
        let mut raw = vec![0u8; size];
        let n = read_some(&self.file, start, &mut raw)?;
        raw.truncate(n);
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&raw, grain_bytes).map_err(|e| {
            VmdkError::Invalid(format!(
                "compressed grain at sector {sector} does not inflate: {e:?}"
            ))
        })
    }
}

/// Reads as much as the file holds at `pos`, returning the count.
pub fn read_some(file: &File, pos: u64, buf: &mut [u8]) -> Result<usize, VmdkError> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Reads `buf` at `pos`; bytes past the end of the file read as zeroes
/// (flat extents are often sparse files shorter than their extent).
pub fn read_full(file: &File, pos: u64, buf: &mut [u8]) -> Result<(), VmdkError> {
    let n = read_some(file, pos, buf)?;
    buf[n..].fill(0);
    Ok(())
}
