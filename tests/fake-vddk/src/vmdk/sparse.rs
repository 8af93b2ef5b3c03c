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

fn u32_at(b: &[u8], o: usize) -> u32 {
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

    /// Writes into an already allocated raw grain.
    pub fn write_in_grain(
        &self,
        data_sector: u64,
        within: u64,
        buf: &[u8],
    ) -> Result<(), VmdkError> {
        self.file
            .write_all_at(buf, (data_sector + within) * SECTOR)?;
        Ok(())
    }

    /// Allocates grain `grain_no` at the end of the file with the whole-grain
    /// contents `data`, then points the primary and the redundant grain
    /// table entries at it (data first, so a crash leaves no entry pointing
    /// at garbage).
    pub fn allocate(&mut self, grain_no: u64, data: &[u8]) -> Result<(), VmdkError> {
        let per = u64::from(self.header.num_gtes);
        let (gd_index, gt_index) = ((grain_no / per) as usize, (grain_no % per) as usize);
        if gd_index >= self.gd.len() {
            return Err(VmdkError::OutOfRange);
        }
        let at = self.end;
        let sector = u32::try_from(at).map_err(|_| {
            VmdkError::NotSupported(
                "sparse extent is full: grain offsets beyond 2 TiB do not fit a grain table entry"
                    .into(),
            )
        })?;
        self.file.write_all_at(data, at * SECTOR)?;
        self.end = at + self.header.grain_size;
        if self.gd[gd_index] == 0 {
            self.new_tables(gd_index)?;
        }
        let bytes = sector.to_le_bytes();
        let off = gt_index as u64 * 4;
        if let Some(rgd) = &self.rgd {
            let rgt = u64::from(rgd[gd_index]);
            if rgt != 0 {
                self.file.write_all_at(&bytes, rgt * SECTOR + off)?;
            }
        }
        self.file
            .write_all_at(&bytes, u64::from(self.gd[gd_index]) * SECTOR + off)?;
        if let Some(t) = self.table(gd_index)? {
            t[gt_index] = sector;
        }
        Ok(())
    }

    /// Grains per grain table.
    pub fn grains_per_table(&self) -> u64 {
        u64::from(self.header.num_gtes)
    }

    /// Allocates the grains from `first` that `data` fills whole (all
    /// unallocated, all in one grain table) like [`allocate`](Self::allocate),
    /// but with one write for their data and one per directory for their
    /// table entries: grain by grain, a large copy would spend its time in
    /// three system calls per 64 KiB.
    pub fn allocate_run(&mut self, first: u64, data: &[u8]) -> Result<(), VmdkError> {
        let per = u64::from(self.header.num_gtes);
        let gs = self.header.grain_size;
        let grain_bytes = (gs * SECTOR) as usize;
        let count = (data.len() / grain_bytes) as u64;
        if count == 0 || data.len() % grain_bytes != 0 || first / per != (first + count - 1) / per {
            return Err(VmdkError::Invalid(
                "allocate_run takes whole grains within one grain table".into(),
            ));
        }
        let (gd_index, gt_index) = ((first / per) as usize, (first % per) as usize);
        if gd_index >= self.gd.len() {
            return Err(VmdkError::OutOfRange);
        }
        let at = self.end;
        let entries = (0..count)
            .map(|i| u32::try_from(at + i * gs))
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| {
                VmdkError::NotSupported(
                    "sparse extent is full: grain offsets beyond 2 TiB do not fit a grain table entry"
                        .into(),
                )
            })?;
        self.file.write_all_at(data, at * SECTOR)?;
        self.end = at + count * gs;
        if self.gd[gd_index] == 0 {
            self.new_tables(gd_index)?;
        }
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        let off = gt_index as u64 * 4;
        if let Some(rgd) = &self.rgd {
            let rgt = u64::from(rgd[gd_index]);
            if rgt != 0 {
                self.file.write_all_at(&bytes, rgt * SECTOR + off)?;
            }
        }
        self.file
            .write_all_at(&bytes, u64::from(self.gd[gd_index]) * SECTOR + off)?;
        if let Some(t) = self.table(gd_index)? {
            t[gt_index..gt_index + entries.len()].copy_from_slice(&entries);
        }
        Ok(())
    }

    /// Appends zeroed grain tables (primary and redundant) for a directory
    /// entry that has none, and records them in both directories.
    fn new_tables(&mut self, gd_index: usize) -> Result<(), VmdkError> {
        let gt_sectors = (u64::from(self.header.num_gtes) * 4).div_ceil(SECTOR);
        let zero = vec![0u8; (gt_sectors * SECTOR) as usize];
        let place = |this: &mut SparseExtent| -> Result<u32, VmdkError> {
            let at = this.end;
            this.file.write_all_at(&zero, at * SECTOR)?;
            this.end += gt_sectors;
            u32::try_from(at).map_err(|_| VmdkError::NotSupported("sparse extent is full".into()))
        };
        if self.rgd.is_some() {
            let r = place(self)?;
            let rgd_offset = self.header.rgd_offset;
            self.file
                .write_all_at(&r.to_le_bytes(), rgd_offset * SECTOR + gd_index as u64 * 4)?;
            if let Some(rgd) = self.rgd.as_mut() {
                rgd[gd_index] = r;
            }
        }
        let p = place(self)?;
        self.file.write_all_at(
            &p.to_le_bytes(),
            self.header.gd_offset * SECTOR + gd_index as u64 * 4,
        )?;
        self.gd[gd_index] = p;
        self.gts
            .insert(gd_index, vec![0; self.header.num_gtes as usize]);
        Ok(())
    }
}

impl SparseExtent {
    /// Grows the extent to `capacity` sectors in place: the grain directory
    /// keeps its position, so it must already have zeroed room for the new
    /// entries (its last sector is usually partly free: 128 entries of
    /// 32 MiB each per sector). New grain tables are appended, zeroed, to
    /// both directories. Refuses compressed extents and directories
    /// without room with `NotSupported`, before changing anything.
    pub fn grow_in_place(&mut self, capacity: u64) -> Result<(), VmdkError> {
        if self.compressed() {
            return Err(VmdkError::NotSupported(
                "a streamOptimized disk cannot grow".into(),
            ));
        }
        if capacity <= self.header.capacity {
            return Ok(());
        }
        let old = self.gd.len();
        let mut bigger = self.header.clone();
        bigger.capacity = capacity;
        let new = usize::try_from(bigger.gd_entries()).map_err(|_| {
            VmdkError::NotSupported("capacity too large for a sparse extent".into())
        })?;
        let room = (old * 4).div_ceil(SECTOR as usize) * (SECTOR as usize / 4);
        if new > room {
            return Err(VmdkError::NotSupported(format!(
                "the grain directory has room for {room} tables but {new} are needed; growing past \
                 {} sectors would mean moving the directory, which is not supported: clone to a new, larger disk instead",
                room as u64 * u64::from(self.header.num_gtes) * self.header.grain_size
            )));
        }
        let mut dirs = vec![self.header.gd_offset];
        if self.rgd.is_some() {
            dirs.push(self.header.rgd_offset);
        }
        for &d in &dirs {
            let slots = read_table(&self.file, d, new)?;
            if slots[old..].iter().any(|&e| e != 0) {
                return Err(VmdkError::NotSupported(
                    "the grain directory's spare room is not empty; this sparse extent cannot grow in place".into(),
                ));
            }
        }
        let mut sector0 = [0u8; 512];
        self.file.read_exact_at(&mut sector0, 0)?;
        sector0[12..20].copy_from_slice(&capacity.to_le_bytes());
        self.gd.resize(new, 0);
        if let Some(r) = self.rgd.as_mut() {
            r.resize(new, 0);
        }
        for i in old..new {
            self.new_tables(i)?;
        }
        // The header last: until it changes the extent is the old, valid size.
        self.file.write_all_at(&sector0, 0)?;
        self.header.capacity = capacity;
        self.file.sync_data()?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
