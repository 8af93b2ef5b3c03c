//! An open VMDK chain: the engine behind VixDiskLib_Open and the calls on
//! its handle.

use std::path::{Path, PathBuf};

use super::descriptor::Descriptor;
use super::link::{self, Link, Store};
use super::sparse::SECTOR;
use super::{Adapter, DiskInfo, Geometry, VmdkError};

/// Parent links deeper than this are taken for a loop in the hints.
const MAX_CHAIN: usize = 64;

/// An open VMDK: its descriptor, extents and parent chain.
///
/// Not internally synchronised (`&mut self` for I/O): the ABI layer must
/// serialise calls on one handle, as VDDK requires of its callers. It is
/// `Send`, so a handle may move between threads.
pub struct VmdkDisk {
    /// Top link first, then its parent, and so on.
    links: Vec<Link>,
    read_only: bool,
}

fn chain_err(child: &Path, parent: &Path, e: VmdkError) -> VmdkError {
    match e {
        VmdkError::NotFound(p) => VmdkError::NotFound(p),
        VmdkError::Invalid(m) => VmdkError::Invalid(format!(
            "parent {} of {}: {m}",
            parent.display(),
            child.display()
        )),
        other => other,
    }
}

impl VmdkDisk {
    /// Opens the disk whose descriptor (or monolithic sparse file) is at
    /// `path`, with its whole parent chain unless `single_link`.
    ///
    /// - `read_only`: every write and metadata_set fails with `ReadOnly`;
    ///   files are opened read-only. Parents are always opened read-only.
    /// - `single_link`: only this link is opened; grains it does not hold
    ///   read as zeroes and `info().num_links` is 1.
    /// - A streamOptimized disk opens, but writes fail with `ReadOnly`.
    ///
    /// Errors: `NotFound` (the disk, an extent or a parent is missing),
    /// `Invalid` (not a VMDK, corrupt header or descriptor),
    /// `NotSupported` (vmfsSparse/COWD redo logs), `Io`.
    pub fn open(path: &Path, read_only: bool, single_link: bool) -> Result<VmdkDisk, VmdkError> {
        let mut links = vec![Link::open(path, !read_only)?];
        while !single_link && links.len() < MAX_CHAIN + 1 {
            let last = &links[links.len() - 1];
            let Some(hint) = last.desc.parent_hint() else {
                break;
            };
            if links.len() >= MAX_CHAIN {
                return Err(VmdkError::Invalid(format!(
                    "the parent chain of {} is longer than {MAX_CHAIN} links (a loop in parentFileNameHint?)",
                    path.display()
                )));
            }
            let parent_path = link::resolve(&last.path, hint);
            let child_path = last.path.clone();
            let parent = Link::open(&parent_path, false)
                .map_err(|e| chain_err(&child_path, &parent_path, e))?;
            links.push(parent);
        }
        Ok(VmdkDisk { links, read_only })
    }

    /// Whether `parent`'s chain can go under this disk (Attach): this disk
    /// is one link (opened single-link), it names a parent, the parent's
    /// top link is the content its `parentCID` names, and the capacities
    /// agree. Errors: `InvalidArg` saying which of these fails.
    pub fn can_attach(&self, parent: &VmdkDisk) -> Result<(), VmdkError> {
        let child = self.top();
        if self.links.len() != 1 {
            return Err(VmdkError::InvalidArg(format!(
                "{} was opened with its parent chain; open it single-link to attach a parent",
                child.path.display()
            )));
        }
        let wants = match child.desc.header_get("parentCID") {
            Some(cid) if !cid.eq_ignore_ascii_case("ffffffff") => cid,
            _ => {
                return Err(VmdkError::InvalidArg(format!(
                    "{} is not a child disk (no parentCID)",
                    child.path.display()
                )))
            }
        };
        let has = parent.top().desc.header_get("CID").unwrap_or("");
        if !has.eq_ignore_ascii_case(wants) {
            return Err(VmdkError::InvalidArg(format!(
                "{} has content ID {has}, but {} was made from {wants}",
                parent.path().display(),
                child.path.display()
            )));
        }
        if parent.capacity() != self.capacity() {
            return Err(VmdkError::InvalidArg(format!(
                "{} holds {} sectors, its parent {} {}",
                child.path.display(),
                self.capacity(),
                parent.path().display(),
                parent.capacity()
            )));
        }
        Ok(())
    }

    /// Attach: `parent`'s whole chain goes under this disk's one link, so
    /// grains this disk does not hold are read from it. Checked as
    /// [`VmdkDisk::can_attach`] first; `parent` is consumed either way.
    pub fn attach(&mut self, parent: VmdkDisk) -> Result<(), VmdkError> {
        self.can_attach(&parent)?;
        self.links.extend(parent.links);
        Ok(())
    }

    /// What a handle holds once Attach has moved its chain under another
    /// disk: no links. The handle is gone from the registry by then, so no
    /// call reaches it.
    pub fn detached() -> VmdkDisk {
        VmdkDisk {
            links: Vec::new(),
            read_only: true,
        }
    }

    fn top(&self) -> &Link {
        &self.links[0]
    }

    /// The path the disk was opened by (its top link's descriptor).
    pub fn path(&self) -> &Path {
        &self.top().path
    }

    /// Capacity in sectors (the sum of the top link's extents).
    pub fn capacity(&self) -> u64 {
        self.top().capacity()
    }

    /// Each opened link, top first: its path, its descriptor's
    /// `createType` (`"unknown"` when absent) and its capacity in sectors.
    pub fn links(&self) -> Vec<(PathBuf, String, u64)> {
        self.links
            .iter()
            .map(|l| {
                let kind = match l.desc.create_type() {
                    "" => "unknown",
                    t => t,
                };
                (l.path.clone(), kind.to_string(), l.capacity())
            })
            .collect()
    }

    /// What GetInfo reports:
    /// - `capacity`: sectors;
    /// - `physical_geometry`: ddb.geometry.cylinders/heads/sectors, or
    ///   VDDK's default for the adapter when absent;
    /// - `bios_geometry`: ddb.geometry.biosCylinders/biosHeads/biosSectors
    ///   when present, else the physical geometry;
    /// - `adapter`: ddb.adapterType (`ide`, `buslogic`, `lsilogic`; anything
    ///   else is `Unknown`);
    /// - `num_links`: links opened (1 with `single_link`);
    /// - `parent_hint`: the top link's parentFileNameHint as written;
    /// - `uuid`: ddb.uuid.
    pub fn info(&self) -> DiskInfo {
        let d = &self.top().desc;
        let adapter = adapter_of(d);
        let capacity = self.capacity();
        let physical = geometry_from(
            d,
            "geometry.cylinders",
            "geometry.heads",
            "geometry.sectors",
        )
        .unwrap_or_else(|| default_geometry(capacity, adapter));
        let bios = geometry_from(
            d,
            "geometry.biosCylinders",
            "geometry.biosHeads",
            "geometry.biosSectors",
        )
        .unwrap_or(physical);
        DiskInfo {
            capacity,
            bios_geometry: bios,
            physical_geometry: physical,
            adapter,
            num_links: i32::try_from(self.links.len()).unwrap_or(i32::MAX),
            parent_hint: d.parent_hint().map(str::to_string),
            uuid: d.ddb_get("uuid").map(str::to_string),
        }
    }

    fn check_range(&self, sector: u64, len: usize) -> Result<(), VmdkError> {
        if len as u64 % SECTOR != 0 {
            return Err(VmdkError::InvalidArg(format!(
                "buffer of {len} bytes is not a whole number of 512-byte sectors"
            )));
        }
        let end = sector
            .checked_add(len as u64 / SECTOR)
            .ok_or(VmdkError::OutOfRange)?;
        if end > self.capacity() {
            return Err(VmdkError::OutOfRange);
        }
        Ok(())
    }

    /// Reads whole sectors starting at `sector` into `buf`.
    ///
    /// Grains the top link does not hold come from its parent (unless
    /// opened with `single_link`), or read as zeroes; ZERO extents read as
    /// zeroes. Errors: `InvalidArg` if `buf.len() % 512 != 0`, `OutOfRange`
    /// if the range passes the capacity, `Invalid` for a corrupt grain, `Io`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), VmdkError> {
        self.check_range(sector, buf.len())?;
        link::read_chain(&mut self.links, sector, buf)
    }

    /// Where a read of `sectors` at `sector` lies when it is wholly in flat
    /// extents of the top link (the pieces of its flat files); `None` for
    /// anything else, or a range outside the disk, which [`read`](Self::read)
    /// then serves (or refuses).
    pub fn flat_plan(&self, sector: u64, sectors: u64) -> Option<Vec<link::FlatPiece>> {
        let end = sector.checked_add(sectors)?;
        if sectors == 0 || end > self.capacity() {
            return None;
        }
        link::flat_plan(&self.links, sector, sectors)
    }

    /// Writes whole sectors starting at `sector` to the top link.
    ///
    /// Sparse extents allocate grains at the end of their file (the part of
    /// a new grain not written is copied from the parent, or zeroed) and
    /// update both the primary and the redundant grain table. Errors:
    /// `ReadOnly` (opened read-only, streamOptimized, RDONLY/ZERO extent),
    /// `InvalidArg`, `OutOfRange`, `NotSupported` (sparse file past 2 TiB),
    /// `Io` (ENOSPC there means disk full).
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), VmdkError> {
        if self.read_only || !self.top().writable {
            return Err(VmdkError::ReadOnly);
        }
        self.check_range(sector, buf.len())?;
        link::write_chain(&mut self.links, sector, buf)
    }

    /// Makes every completed write durable (fsync of the top link's files).
    /// A read-only disk has nothing to flush and returns Ok.
    pub fn flush(&mut self) -> Result<(), VmdkError> {
        if self.read_only {
            return Ok(());
        }
        for e in &self.top().extents {
            match &e.store {
                Store::Flat { file, .. } => file.sync_data()?,
                Store::Sparse(s) => s.file().sync_data()?,
                Store::Zero => {}
            }
        }
        Ok(())
    }

    /// Allocated ranges within `[start, start+count)`, as `(start, length)`
    /// in sectors, each rounded out to `chunk` boundaries (counted from
    /// sector 0), clipped to the range, sorted and merged.
    ///
    /// A chunk is allocated when any grain in it holds data in any link of
    /// the opened chain; FLAT/VMFS extents are wholly allocated, ZERO
    /// extents and zero grains never are. The caller has already checked
    /// VDDK's rules (chunk >= 128, range in whole chunks, chunk count).
    pub fn allocated(
        &self,
        start: u64,
        count: u64,
        chunk: u64,
    ) -> Result<Vec<(u64, u64)>, VmdkError> {
        let end = start.checked_add(count).ok_or(VmdkError::OutOfRange)?;
        if chunk == 0 {
            return Err(VmdkError::InvalidArg("chunk size must not be zero".into()));
        }
        if end > self.capacity().div_ceil(chunk) * chunk {
            return Err(VmdkError::OutOfRange);
        }
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for l in &self.links {
            for e in &l.extents {
                let (lo, hi) = (start.max(e.start), end.min(e.start + e.sectors));
                if lo >= hi {
                    continue;
                }
                match &e.store {
                    Store::Zero => {}
                    Store::Flat { .. } => ranges.push((lo, hi)),
                    Store::Sparse(sp) => {
                        let gs = sp.grain_size();
                        let (g0, g1) = ((lo - e.start) / gs, (hi - e.start).div_ceil(gs));
                        for (g, n) in sp.allocated_runs(g0, g1)? {
                            let s = e.start + g * gs;
                            ranges.push((s.max(lo), (s + n * gs).min(hi)));
                        }
                    }
                }
            }
        }
        for r in &mut ranges {
            r.0 = (r.0 / chunk * chunk).max(start);
            r.1 = (r.1.div_ceil(chunk) * chunk).min(end);
        }
        ranges.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e) in ranges {
            match out.last_mut() {
                Some(last) if s <= last.0 + last.1 => last.1 = last.1.max(e - last.0),
                _ => out.push((s, e - s)),
            }
        }
        Ok(out)
    }

    /// Keys of the top link's disk database without the `ddb.` prefix
    /// (e.g. "adapterType", "geometry.heads", "uuid"), in file order.
    pub fn metadata_keys(&self) -> Vec<String> {
        self.top().desc.ddb.iter().map(|(k, _)| k.clone()).collect()
    }

    /// The value of one DDB key (without the `ddb.` prefix), unquoted;
    /// `None` when absent (VixDiskLib_ReadMetadata's E_DISK_KEY_NOTFOUND).
    pub fn metadata_get(&self, key: &str) -> Option<String> {
        self.top().desc.ddb_get(key).map(str::to_string)
    }

    /// Sets a DDB key (without the `ddb.` prefix; added when absent) and
    /// rewrites the descriptor at once: a separate descriptor file is
    /// replaced, an embedded one is rewritten inside its reserved area and
    /// zero-padded, never touching the data after it.
    ///
    /// Errors: `ReadOnly` (opened read-only), `InvalidArg` (a key or value
    /// with a quote, `=` in the key, or a line break), `NotSupported` (the
    /// embedded area is too small for the new text; the disk is unchanged),
    /// `Io`.
    pub fn metadata_set(&mut self, key: &str, value: &str) -> Result<(), VmdkError> {
        if self.read_only {
            return Err(VmdkError::ReadOnly);
        }
        let bad = |c: char| c == '"' || c == '\n' || c == '\r' || c == '\0';
        if key.is_empty()
            || key.contains(bad)
            || key.contains('=')
            || key.contains(char::is_whitespace)
            || value.contains(bad)
        {
            return Err(VmdkError::InvalidArg(format!(
                "metadata key `{key}` or its value has characters a descriptor cannot hold"
            )));
        }
        let top = &mut self.links[0];
        let mut desc = top.desc.clone();
        desc.ddb_set(key, value);
        link::write_descriptor(&desc, &top.place)?;
        top.desc = desc;
        Ok(())
    }
}

/// The adapter named by ddb.adapterType.
pub(crate) fn adapter_of(d: &Descriptor) -> Adapter {
    match d.ddb_get("adapterType") {
        Some("ide") => Adapter::Ide,
        Some("buslogic") => Adapter::BusLogic,
        Some("lsilogic") => Adapter::LsiLogic,
        _ => Adapter::Unknown,
    }
}

fn geometry_from(d: &Descriptor, c: &str, h: &str, s: &str) -> Option<Geometry> {
    let get = |k: &str| d.ddb_get(k).and_then(|v| v.trim().parse::<u32>().ok());
    Some(Geometry {
        cylinders: get(c)?,
        heads: get(h)?,
        sectors: get(s)?,
    })
}

/// VDDK's geometry for a new disk: 16 heads for IDE, 255 for SCSI, 63
/// sectors per track, cylinders capped at 16383 (IDE) or 65535 (SCSI).
pub fn default_geometry(capacity: u64, adapter: Adapter) -> Geometry {
    let (heads, max_cyl) = match adapter {
        Adapter::Ide => (16u32, 16383u64),
        _ => (255, 65535),
    };
    let sectors = 63u32;
    let cylinders = (capacity / (u64::from(heads) * u64::from(sectors))).min(max_cyl) as u32;
    Geometry {
        cylinders,
        heads,
        sectors,
    }
}

// The ABI layer moves handles between threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<VmdkDisk>();
};
