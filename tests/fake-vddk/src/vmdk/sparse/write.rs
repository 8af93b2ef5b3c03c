//! Writing a sparse extent: into allocated grains, allocating new grains
//! and grain tables (both directories), and growing in place.

use std::os::unix::fs::FileExt;

use super::{read_table, SparseExtent, SECTOR};
use crate::vmdk::VmdkError;

impl SparseExtent {
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
        let sector = entry(at)?;
        self.file.write_all_at(data, at * SECTOR)?;
        self.end = at + self.header.grain_size;
        self.point_tables(gd_index, gt_index, &[sector])
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
            .map(|i| entry(at + i * gs))
            .collect::<Result<Vec<u32>, _>>()?;
        self.file.write_all_at(data, at * SECTOR)?;
        self.end = at + count * gs;
        self.point_tables(gd_index, gt_index, &entries)
    }

    /// Points entries `gt_index..` of the grain table of directory entry
    /// `gd_index` (made if missing) at `entries`, the redundant table
    /// first, and updates the loaded copy.
    fn point_tables(
        &mut self,
        gd_index: usize,
        gt_index: usize,
        entries: &[u32],
    ) -> Result<(), VmdkError> {
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
            t[gt_index..gt_index + entries.len()].copy_from_slice(entries);
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

/// The grain table entry for file sector `at`.
fn entry(at: u64) -> Result<u32, VmdkError> {
    u32::try_from(at).map_err(|_| {
        VmdkError::NotSupported(
            "sparse extent is full: grain offsets beyond 2 TiB do not fit a grain table entry"
                .into(),
        )
    })
}
