//! One link of a disk chain: its descriptor, where that descriptor lives,
//! and its opened extents.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::descriptor::{Descriptor, ExtentKind, ExtentLine, Mode};
use super::sparse::{self, SparseExtent, SECTOR};
use super::VmdkError;

/// Largest separate descriptor file we read; real ones are a few hundred bytes.
const MAX_DESCRIPTOR_FILE: u64 = 1 << 20;
/// `COWD`: the ESX vmfsSparse redo-log magic.
const COWD_MAGIC: u32 = 0x4457_4f43;

/// Where the descriptor text is stored.
#[derive(Debug, Clone)]
pub enum DescPlace {
    /// A text file of its own.
    File(PathBuf),
    /// Inside a sparse extent file: `offset` and `size` in sectors.
    Embedded {
        path: PathBuf,
        offset: u64,
        size: u64,
    },
    /// A bare sparse extent without any descriptor: nowhere to write one.
    None,
}

/// The storage behind one extent.
pub enum Store {
    /// FLAT or VMFS: raw sectors at `offset` (sectors) in `file` (shared,
    /// so reads can run outside the disk's lock: see [`flat_plan`]).
    Flat { file: Arc<File>, offset: u64 },
    /// ZERO: no file.
    Zero,
    /// Hosted sparse.
    Sparse(Box<SparseExtent>),
}

/// An opened extent and where it sits in the disk.
pub struct Extent {
    /// First disk sector this extent serves.
    pub start: u64,
    /// Size in sectors.
    pub sectors: u64,
    /// Mode mode from the extent line.
    pub access: Mode,
    /// Its storage.
    pub store: Store,
}

/// One opened link.
pub struct Link {
    /// The path the link was opened by.
    pub path: PathBuf,
    /// The parsed descriptor.
    pub desc: Descriptor,
    /// Where to write the descriptor back.
    pub place: DescPlace,
    /// Extents in disk order.
    pub extents: Vec<Extent>,
    /// Whether writes are allowed (false for parents and streamOptimized).
    pub writable: bool,
}

pub(crate) fn not_found_or(e: std::io::Error, path: &Path) -> VmdkError {
    if e.kind() == ErrorKind::NotFound {
        VmdkError::NotFound(path.to_path_buf())
    } else {
        VmdkError::Io(e)
    }
}

fn open_file(path: &Path, write: bool) -> Result<File, VmdkError> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| not_found_or(e, path))
}

/// Reads the descriptor of the disk at `path`, from a text file or from
/// the sparse header's embedded area.
pub fn read_descriptor(path: &Path) -> Result<(Descriptor, DescPlace), VmdkError> {
    let file = open_file(path, false)?;
    let mut magic = [0u8; 4];
    let n = sparse::read_some(&file, 0, &mut magic)?;
    let magic = u32::from_le_bytes(magic);
    if n == 4 && magic == COWD_MAGIC {
        return Err(VmdkError::NotSupported(format!(
            "{} is a vmfsSparse (COWD) redo log, which this library does not open",
            path.display()
        )));
    }
    if n == 4 && magic == sparse::MAGIC {
        let h = sparse::read_header(&file)?;
        if h.desc_offset == 0 || h.desc_size == 0 {
            // A bare extent: describe it as a one-extent monolithic disk.
            let name = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = format!(
                "version=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\nRW {} SPARSE \"{}\"\n",
                h.capacity, name
            );
            return Ok((Descriptor::parse(&text)?, DescPlace::None));
        }
        let len = h
            .desc_size
            .checked_mul(SECTOR)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l as u64 <= MAX_DESCRIPTOR_FILE)
            .ok_or_else(|| {
                VmdkError::Invalid(format!(
                    "embedded descriptor of {} sectors is too large",
                    h.desc_size
                ))
            })?;
        let mut raw = vec![0u8; len];
        let at = h.desc_offset.checked_mul(SECTOR).ok_or_else(|| {
            VmdkError::Invalid(format!("descriptor offset {} is impossible", h.desc_offset))
        })?;
        let got = sparse::read_some(&file, at, &mut raw)?;
        raw.truncate(got);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let desc = Descriptor::parse(&String::from_utf8_lossy(&raw[..end]))?;
        let place = DescPlace::Embedded {
            path: path.to_path_buf(),
            offset: h.desc_offset,
            size: h.desc_size,
        };
        return Ok((desc, place));
    }
    let len = file.metadata()?.len();
    if len > MAX_DESCRIPTOR_FILE {
        return Err(VmdkError::Invalid(format!(
            "{} is neither a sparse VMDK nor a descriptor file (too large for a descriptor)",
            path.display()
        )));
    }
    let mut raw = vec![0u8; len as usize];
    file.read_exact_at(&mut raw, 0)?;
    // qemu-img pads descriptor files with NULs; the text ends at the first.
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let desc = Descriptor::parse(&String::from_utf8_lossy(&raw[..end])).map_err(|e| match e {
        VmdkError::Invalid(m) => VmdkError::Invalid(format!("{}: {m}", path.display())),
        other => other,
    })?;
    Ok((desc, DescPlace::File(path.to_path_buf())))
}

/// Writes `desc` back to where it was read from. An embedded descriptor
/// must fit its reserved area, which is zero-padded so no stale text stays.
pub fn write_descriptor(desc: &Descriptor, place: &DescPlace) -> Result<(), VmdkError> {
    let text = desc.to_text();
    match place {
        DescPlace::File(path) => {
            // Write a sibling and rename it so a failure never leaves half a descriptor.
            let tmp = path.with_extension("vmdk.tmp");
            std::fs::write(&tmp, text.as_bytes())?;
            std::fs::rename(&tmp, path)?;
        }
        DescPlace::Embedded { path, offset, size } => {
            let room = (size * SECTOR) as usize;
            if text.len() >= room {
                return Err(VmdkError::NotSupported(format!(
                    "the descriptor would need {} bytes but the sparse file reserves {room}; shorten the values",
                    text.len()
                )));
            }
            let mut buf = text.into_bytes();
            buf.resize(room, 0);
            let f = open_file(path, true)?;
            f.write_all_at(&buf, offset * SECTOR)?;
            f.sync_data()?;
        }
        DescPlace::None => {
            return Err(VmdkError::NotSupported(
                "this sparse extent has no descriptor area to store metadata in".into(),
            ))
        }
    }
    Ok(())
}

/// Resolves an extent or parent file name against the descriptor's directory.
pub fn resolve(desc_path: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    desc_path
        .parent()
        .map(|d| d.join(p))
        .unwrap_or_else(|| p.to_path_buf())
}

/// `this_file`: for a descriptor embedded in a sparse file with a single
/// sparse extent (monolithicSparse, streamOptimized), that extent is the
/// file itself whatever name the line gives: the name is stale after a copy
/// or rename, and following it would read or write another disk.
fn open_extent(
    desc_path: &Path,
    line: &ExtentLine,
    start: u64,
    write: bool,
    this_file: Option<&Path>,
) -> Result<Extent, VmdkError> {
    let write = write && line.access == Mode::Rw;
    let store = match line.kind {
        ExtentKind::Zero => Store::Zero,
        ExtentKind::VmfsSparse => {
            return Err(VmdkError::NotSupported(
                "VMFSSPARSE (redo log) extents are not supported; convert the disk first".into(),
            ))
        }
        kind => {
            let name = line.file.as_deref().unwrap_or_default();
            let path = match this_file {
                Some(p) if kind == ExtentKind::Sparse => p.to_path_buf(),
                _ => resolve(desc_path, name),
            };
            let file = open_file(&path, write)?;
            if kind == ExtentKind::Sparse {
                let s = SparseExtent::open(file)?;
                if s.capacity() < line.sectors {
                    return Err(VmdkError::Invalid(format!(
                        "sparse extent {} holds {} sectors but the descriptor says {}",
                        path.display(),
                        s.capacity(),
                        line.sectors
                    )));
                }
                Store::Sparse(Box::new(s))
            } else {
                let fits = line
                    .offset
                    .checked_add(line.sectors)
                    .and_then(|end| end.checked_mul(SECTOR))
                    .is_some();
                if !fits {
                    return Err(VmdkError::Invalid(format!(
                        "extent {} at offset {} with {} sectors lies beyond any file",
                        path.display(),
                        line.offset,
                        line.sectors
                    )));
                }
                Store::Flat {
                    file: Arc::new(file),
                    offset: line.offset,
                }
            }
        }
    };
    Ok(Extent {
        start,
        sectors: line.sectors,
        access: line.access,
        store,
    })
}

impl Link {
    /// Opens the link at `path`; `write` asks for a writable link (refused
    /// later, at write time, for read-only subformats).
    pub fn open(path: &Path, write: bool) -> Result<Link, VmdkError> {
        let (desc, place) = read_descriptor(path)?;
        let stream = desc.create_type() == "streamOptimized";
        let mut extents = Vec::with_capacity(desc.extents.len());
        let mut start = 0;
        let embedded = !matches!(place, DescPlace::File(_));
        let this_file = (embedded && desc.extents.len() == 1).then_some(path);
        for line in &desc.extents {
            let e = open_extent(path, line, start, write && !stream, this_file)?;
            start = start
                .checked_add(line.sectors)
                .filter(|&s| s.checked_mul(SECTOR).is_some())
                .ok_or_else(|| {
                    VmdkError::Invalid("the extents add up to an impossible capacity".into())
                })?;
            extents.push(e);
        }
        let compressed = extents
            .iter()
            .any(|e| matches!(&e.store, Store::Sparse(s) if s.compressed()));
        Ok(Link {
            path: path.to_path_buf(),
            desc,
            place,
            extents,
            writable: write && !stream && !compressed,
        })
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.desc.capacity()
    }

    /// Index of the extent holding `sector`.
    pub fn extent_at(&self, sector: u64) -> Option<usize> {
        let i = self
            .extents
            .partition_point(|e| e.start + e.sectors <= sector);
        (i < self.extents.len()).then_some(i)
    }
}

/// One piece of a read served straight from a flat extent's file:
/// `len` bytes at byte `pos` of `file`.
pub struct FlatPiece {
    /// The extent's file.
    pub file: Arc<File>,
    /// Byte offset in the file.
    pub pos: u64,
    /// Bytes to read.
    pub len: usize,
}

/// Where the `sectors` sectors at disk `sector` lie when all of them are in
/// readable flat extents of the top link (`None` otherwise), so the read
/// itself can be done without holding the disk: flat data needs no tables.
pub fn flat_plan(links: &[Link], sector: u64, sectors: u64) -> Option<Vec<FlatPiece>> {
    let top = links.first()?;
    let mut plan = Vec::new();
    let mut s = sector;
    let end = sector.checked_add(sectors)?;
    while s < end {
        let e = &top.extents[top.extent_at(s)?];
        if e.access == Mode::NoAccess {
            return None;
        }
        let Store::Flat { file, offset } = &e.store else {
            return None;
        };
        let rel = s - e.start;
        let n = (end - s).min(e.sectors - rel);
        plan.push(FlatPiece {
            file: Arc::clone(file),
            pos: (offset + rel) * SECTOR,
            len: usize::try_from(n * SECTOR).ok()?,
        });
        s += n;
    }
    Some(plan)
}

/// Reads `buf` at disk `sector` from the chain `links` (top first): grains
/// a link does not hold come from the next one, and past the last link (or
/// past a shorter parent's end) the disk reads as zeroes.
pub fn read_chain(links: &mut [Link], sector: u64, buf: &mut [u8]) -> Result<(), VmdkError> {
    let Some((top, rest)) = links.split_first_mut() else {
        buf.fill(0);
        return Ok(());
    };
    let mut pos = 0usize;
    let mut s = sector;
    while pos < buf.len() {
        let left = (buf.len() - pos) as u64 / SECTOR;
        let Some(i) = top.extent_at(s) else {
            buf[pos..].fill(0);
            return Ok(());
        };
        let e = &mut top.extents[i];
        let rel = s - e.start;
        let mut n = left.min(e.sectors - rel);
        let piece_len = |n: u64| (n * SECTOR) as usize;
        if e.access == Mode::NoAccess {
            return Err(VmdkError::Invalid(format!(
                "sector {s} lies in a NOACCESS extent of {}",
                top.path.display()
            )));
        }
        match &mut e.store {
            Store::Zero => buf[pos..pos + piece_len(n)].fill(0),
            Store::Flat { file, offset } => {
                sparse::read_full(
                    file,
                    (*offset + rel) * SECTOR,
                    &mut buf[pos..pos + piece_len(n)],
                )?;
            }
            Store::Sparse(sp) => {
                let gs = sp.grain_size();
                let grain = rel / gs;
                let within = rel % gs;
                n = n.min(gs - within);
                let piece = &mut buf[pos..pos + piece_len(n)];
                match sp.lookup(grain)? {
                    sparse::Grain::Unallocated => read_chain(rest, s, piece)?,
                    g => sp.read_grain(g, grain, within, piece)?,
                }
            }
        }
        pos += piece_len(n);
        s += n;
    }
    Ok(())
}

/// How many grains from `grain` a write can allocate in one go: grains
/// that are not allocated (or are zero grains), that the write covers whole
/// (`left` sectors from `within` sectors into `grain`, `room` sectors left
/// in the extent), and that share one grain table. Zero when the first
/// one does not qualify.
fn fresh_whole_grains(
    sp: &mut sparse::SparseExtent,
    grain: u64,
    within: u64,
    left: u64,
    room: u64,
) -> Result<u64, VmdkError> {
    let gs = sp.grain_size();
    let per = sp.grains_per_table();
    if within != 0 || sp.compressed() {
        return Ok(0);
    }
    let most = (left.min(room) / gs).min(per - grain % per);
    let mut n = 0;
    while n < most {
        match sp.lookup(grain + n)? {
            sparse::Grain::Unallocated | sparse::Grain::Zero => n += 1,
            _ => break,
        }
    }
    Ok(n)
}

/// Writes `buf` at disk `sector` into the top link of `links`, allocating
/// sparse grains (filled from the rest of the chain where not written).
pub fn write_chain(links: &mut [Link], sector: u64, buf: &[u8]) -> Result<(), VmdkError> {
    let mut pos = 0usize;
    let mut s = sector;
    while pos < buf.len() {
        let left = (buf.len() - pos) as u64 / SECTOR;
        let top = &mut links[0];
        let i = top.extent_at(s).ok_or(VmdkError::OutOfRange)?;
        let e = &mut top.extents[i];
        if e.access != Mode::Rw {
            return Err(VmdkError::ReadOnly);
        }
        let rel = s - e.start;
        let mut n = left.min(e.sectors - rel);
        let bytes = |n: u64| (n * SECTOR) as usize;
        match &mut e.store {
            Store::Zero => return Err(VmdkError::ReadOnly),
            Store::Flat { file, offset } => {
                file.write_all_at(&buf[pos..pos + bytes(n)], (*offset + rel) * SECTOR)?;
            }
            Store::Sparse(sp) => {
                let gs = sp.grain_size();
                let grain = rel / gs;
                let within = rel % gs;
                n = n.min(gs - within);
                let piece = &buf[pos..pos + bytes(n)];
                let whole = fresh_whole_grains(sp, grain, within, left, e.sectors - rel)?;
                if whole > 0 {
                    sp.allocate_run(grain, &buf[pos..pos + bytes(whole * gs)])?;
                    pos += bytes(whole * gs);
                    s += whole * gs;
                    continue;
                }
                match sp.lookup(grain)? {
                    sparse::Grain::Data(d) => sp.write_in_grain(d, within, piece)?,
                    sparse::Grain::Compressed(_) => return Err(VmdkError::ReadOnly),
                    _ => {
                        let extent_start = e.start;
                        let extent_sectors = e.sectors;
                        let grain_start = grain * gs;
                        let in_extent = gs.min(extent_sectors - grain_start);
                        let mut full = vec![0u8; bytes(gs)];
                        // Copy-on-write: what this write does not cover keeps
                        // what the chain showed before.
                        if n < in_extent {
                            read_chain(
                                links,
                                extent_start + grain_start,
                                &mut full[..bytes(in_extent)],
                            )?;
                        }
                        full[bytes(within)..bytes(within + n)].copy_from_slice(piece);
                        if let Store::Sparse(sp) = &mut links[0].extents[i].store {
                            sp.allocate(grain, &full)?;
                        }
                    }
                }
            }
        }
        pos += bytes(n);
        s += n;
    }
    Ok(())
}
