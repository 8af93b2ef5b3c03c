//! Creating disks (and a child of an open one), and growing them.

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::descriptor::{Descriptor, ExtentKind, ExtentLine, Mode};
use super::disk::{adapter_of, default_geometry};
use super::link::{self, DescPlace};
use super::sparse::{self, SparseExtent, SparseHeader, SECTOR};
use super::{Adapter, CreateParams, DiskType, VmdkError};

/// Extent size of the twoGbMaxExtent types: 2 GiB less one MiB, as VMware
/// splits them.
pub const SPLIT_SECTORS: u64 = 4_192_256;
/// Grain size of every sparse extent we create (64 KiB).
const GRAIN: u64 = 128;
/// Room reserved for an embedded descriptor, in sectors (VMware's value).
const EMBEDDED_DESC_SECTORS: u64 = 20;
/// Largest capacity a hosted sparse extent can address: grain table entries
/// are 32-bit sector numbers.
const MAX_SPARSE_SECTORS: u64 = u32::MAX as u64 - (1 << 20);

/// Largest capacity of any disk: its byte size must fit a file offset.
const MAX_CAPACITY: u64 = i64::MAX as u64 / SECTOR;

fn check_capacity(capacity: u64) -> Result<(), VmdkError> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(VmdkError::InvalidArg(format!(
            "capacity {capacity} sectors is out of range (1 to {MAX_CAPACITY})"
        )));
    }
    Ok(())
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// A content ID: 8 hex digits, never the "no parent" value ffffffff.
pub fn new_cid() -> String {
    let cid = (random_u64() as u32).min(0xffff_fffe);
    format!("{cid:08x}")
}

/// A ddb.uuid in VMware's spelling: `60 00 c2 9a ... 1d-5b ...`.
fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    bytes[..3].copy_from_slice(&[0x60, 0x00, 0xc2]);
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}", hex[..8].join(" "), hex[8..].join(" "))
}

fn adapter_name(a: Adapter) -> Result<&'static str, VmdkError> {
    match a {
        Adapter::Ide => Ok("ide"),
        Adapter::BusLogic => Ok("buslogic"),
        Adapter::LsiLogic => Ok("lsilogic"),
        Adapter::Unknown => Err(VmdkError::InvalidArg(
            "adapter type must be IDE, SCSI_BUSLOGIC or SCSI_LSILOGIC".into(),
        )),
    }
}

fn create_type(t: DiskType) -> Result<&'static str, VmdkError> {
    Ok(match t {
        DiskType::MonolithicSparse => "monolithicSparse",
        DiskType::MonolithicFlat => "monolithicFlat",
        DiskType::SplitSparse => "twoGbMaxExtentSparse",
        DiskType::SplitFlat => "twoGbMaxExtentFlat",
        DiskType::VmfsFlat => "vmfs",
        DiskType::VmfsThin => "vmfsThin",
        DiskType::StreamOptimized | DiskType::VmfsSparse => {
            return Err(VmdkError::NotSupported(format!(
                "creating {t:?} disks is not supported; create a monolithicSparse disk instead"
            )))
        }
    })
}

/// Creates a file that must not exist yet.
fn create_new(path: &Path) -> Result<File, VmdkError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => VmdkError::AlreadyExists(path.to_path_buf()),
            ErrorKind::NotFound => VmdkError::NotFound(path.parent().unwrap_or(path).to_path_buf()),
            _ => VmdkError::Io(e),
        })
}

/// Writes a new hosted sparse extent of `capacity` sectors with
/// preallocated grain tables (primary and redundant). The layout is
/// header, [embedded descriptor], redundant directory and tables,
/// directory and tables, padding to a whole grain; data grains follow.
fn write_sparse_extent(
    file: &File,
    capacity: u64,
    descriptor: Option<&str>,
) -> Result<(), VmdkError> {
    if capacity > MAX_SPARSE_SECTORS {
        return Err(VmdkError::NotSupported(format!(
            "a sparse extent holds at most {MAX_SPARSE_SECTORS} sectors (2 TiB); use a flat or split disk"
        )));
    }
    let (desc_offset, desc_size) = if descriptor.is_some() {
        (1, EMBEDDED_DESC_SECTORS)
    } else {
        (0, 0)
    };
    let mut h = SparseHeader {
        version: 1,
        flags: sparse::FLAG_NL_DETECT | sparse::FLAG_RGD,
        capacity,
        grain_size: GRAIN,
        desc_offset,
        desc_size,
        num_gtes: sparse::GTES_PER_GT,
        rgd_offset: 0,
        gd_offset: 0,
        overhead: 0,
        compress: 0,
    };
    let entries = h.gd_entries();
    let gd_sectors = (entries * 4).div_ceil(SECTOR).max(1);
    let gt_sectors = u64::from(sparse::GTES_PER_GT) * 4 / SECTOR;
    h.rgd_offset = 1 + desc_size;
    let rgt = h.rgd_offset + gd_sectors;
    h.gd_offset = rgt + entries * gt_sectors;
    let gt = h.gd_offset + gd_sectors;
    h.overhead = (gt + entries * gt_sectors).div_ceil(GRAIN) * GRAIN;

    file.write_all_at(&h.to_bytes(), 0)?;
    if let Some(text) = descriptor {
        let mut buf = text.as_bytes().to_vec();
        if buf.len() >= (desc_size * SECTOR) as usize {
            return Err(VmdkError::InvalidArg(
                "descriptor too large for the embedded area".into(),
            ));
        }
        buf.resize((desc_size * SECTOR) as usize, 0);
        file.write_all_at(&buf, desc_offset * SECTOR)?;
    }
    for (dir, tables) in [(h.rgd_offset, rgt), (h.gd_offset, gt)] {
        let mut raw = Vec::with_capacity((entries * 4) as usize);
        for i in 0..entries {
            let at = u32::try_from(tables + i * gt_sectors)
                .map_err(|_| VmdkError::NotSupported("grain tables beyond 2 TiB".into()))?;
            raw.extend_from_slice(&at.to_le_bytes());
        }
        file.write_all_at(&raw, dir * SECTOR)?;
    }
    // The tables themselves are zero: a hole in the file reads as zeroes.
    file.set_len(h.overhead * SECTOR)?;
    file.sync_all()?;
    Ok(())
}

/// Splits `capacity` into extent sizes of at most SPLIT_SECTORS.
fn split(capacity: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut left = capacity;
    while left > 0 {
        let n = left.min(SPLIT_SECTORS);
        v.push(n);
        left -= n;
    }
    v
}

fn stem_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".vmdk")
        .map(str::to_string)
        .unwrap_or(name)
}

/// Writes the files of a new disk; on error the caller removes `made`.
fn create_files(
    path: &Path,
    params: &CreateParams,
    made: &mut Vec<PathBuf>,
) -> Result<(), VmdkError> {
    let ctype = create_type(params.disk_type)?;
    let adapter = adapter_name(params.adapter)?;
    check_capacity(params.capacity)?;
    let stem = stem_of(path);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let geo = default_geometry(params.capacity, params.adapter);
    let mut d = Descriptor::default();
    d.header_set("version", "1");
    d.header_set("encoding", "UTF-8");
    d.header_set("CID", &new_cid());
    d.header_set("parentCID", "ffffffff");
    d.header_set("createType", ctype);
    let extent = |sectors, kind, file: String| ExtentLine {
        access: Mode::Rw,
        sectors,
        kind,
        file: Some(file),
        offset: 0,
    };
    let files: Vec<(String, u64)> = match params.disk_type {
        DiskType::MonolithicSparse => vec![(name.clone(), params.capacity)],
        DiskType::MonolithicFlat | DiskType::VmfsFlat | DiskType::VmfsThin => {
            vec![(format!("{stem}-flat.vmdk"), params.capacity)]
        }
        DiskType::SplitSparse => split(params.capacity)
            .into_iter()
            .enumerate()
            .map(|(i, n)| (format!("{stem}-s{:03}.vmdk", i + 1), n))
            .collect(),
        _ => split(params.capacity)
            .into_iter()
            .enumerate()
            .map(|(i, n)| (format!("{stem}-f{:03}.vmdk", i + 1), n))
            .collect(),
    };
    let kind = match params.disk_type {
        DiskType::MonolithicSparse | DiskType::SplitSparse => ExtentKind::Sparse,
        DiskType::VmfsFlat | DiskType::VmfsThin => ExtentKind::Vmfs,
        _ => ExtentKind::Flat,
    };
    for (f, n) in &files {
        d.extents.push(extent(*n, kind, f.clone()));
    }
    d.ddb_set("adapterType", adapter);
    d.ddb_set("geometry.cylinders", &geo.cylinders.to_string());
    d.ddb_set("geometry.heads", &geo.heads.to_string());
    d.ddb_set("geometry.sectors", &geo.sectors.to_string());
    d.ddb_set(
        "longContentID",
        &format!("{:016x}{:016x}", random_u64(), random_u64()),
    );
    d.ddb_set("uuid", &new_uuid());
    d.ddb_set("virtualHWVersion", &params.hw_version.to_string());
    if params.disk_type == DiskType::VmfsThin {
        d.ddb_set("thinProvisioned", "1");
    }
    let text = d.to_text();

    if params.disk_type == DiskType::MonolithicSparse {
        let f = create_new(path)?;
        made.push(path.to_path_buf());
        return write_sparse_extent(&f, params.capacity, Some(&text));
    }
    let desc = create_new(path)?;
    made.push(path.to_path_buf());
    for (f, n) in &files {
        let p = link::resolve(path, f);
        let file = create_new(&p)?;
        made.push(p);
        if kind == ExtentKind::Sparse {
            write_sparse_extent(&file, *n, None)?;
        } else {
            // A sparse file: the disk reads as zeroes without using space.
            file.set_len(n * SECTOR)?;
        }
    }
    desc.write_all_at(text.as_bytes(), 0)?;
    desc.sync_all()?;
    Ok(())
}

/// See [`super::create`].
pub(super) fn create(path: &Path, params: &CreateParams) -> Result<(), VmdkError> {
    let mut made = Vec::new();
    let r = create_files(path, params, &mut made);
    if r.is_err() {
        for p in made {
            let _ = std::fs::remove_file(p);
        }
    }
    r
}

/// The parentFileNameHint for `parent` as seen from `child`: the bare file
/// name when both share a directory, else the absolute path.
fn parent_hint(parent: &Path, child: &Path) -> Result<String, VmdkError> {
    let abs = |p: &Path| -> Result<PathBuf, VmdkError> {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = dir.canonicalize().map_err(|e| link::not_found_or(e, dir))?;
        Ok(dir.join(p.file_name().unwrap_or_default()))
    };
    let (pa, ca) = (abs(parent)?, abs(child)?);
    if pa.parent() == ca.parent() {
        Ok(pa
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned())
    } else {
        Ok(pa.to_string_lossy().into_owned())
    }
}

/// See [`super::create_child`].
pub(super) fn create_child(
    parent: &Path,
    child: &Path,
    disk_type: DiskType,
) -> Result<(), VmdkError> {
    if !matches!(
        disk_type,
        DiskType::MonolithicSparse | DiskType::SplitSparse
    ) {
        return Err(VmdkError::NotSupported(format!(
            "a child disk must be sparse (monolithicSparse or twoGbMaxExtentSparse), not {disk_type:?}"
        )));
    }
    let (pd, _) = link::read_descriptor(parent)?;
    let hint = parent_hint(parent, child)?;
    let adapter = match adapter_of(&pd) {
        Adapter::Unknown => Adapter::LsiLogic,
        a => a,
    };
    let hw_version = pd
        .ddb_get("virtualHWVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let params = CreateParams {
        disk_type,
        adapter,
        hw_version,
        capacity: pd.capacity(),
    };
    let mut made = Vec::new();
    let r = create_files(child, &params, &mut made).and_then(|()| {
        let (mut d, place) = link::read_descriptor(child)?;
        d.header_set("parentCID", pd.header_get("CID").unwrap_or("ffffffff"));
        d.header_set("parentFileNameHint", &hint);
        // A child shows its parent's geometry to the guest.
        for key in ["geometry.cylinders", "geometry.heads", "geometry.sectors"] {
            if let Some(v) = pd.ddb_get(key) {
                d.ddb_set(key, v);
            }
        }
        link::write_descriptor(&d, &place)
    });
    if r.is_err() {
        for p in made {
            let _ = std::fs::remove_file(p);
        }
    }
    r
}

/// Makes the extent file at `path` (FLAT/VMFS) cover `end` sectors.
fn extend_flat(path: &Path, end: u64) -> Result<(), VmdkError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| link::not_found_or(e, path))?;
    let bytes = end
        .checked_mul(SECTOR)
        .filter(|&b| b <= MAX_CAPACITY * SECTOR)
        .ok_or_else(|| VmdkError::InvalidArg(format!("extent end {end} is out of range")))?;
    if f.metadata()?.len() < bytes {
        f.set_len(bytes)?;
    }
    Ok(())
}

fn grow_sparse(path: &Path, capacity: u64) -> Result<(), VmdkError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| link::not_found_or(e, path))?;
    SparseExtent::open(f)?.grow_in_place(capacity)
}

/// See [`super::grow`].
pub(super) fn grow(path: &Path, capacity: u64, update_geometry: bool) -> Result<(), VmdkError> {
    let (mut d, place) = link::read_descriptor(path)?;
    let old = d.capacity();
    if capacity < old {
        return Err(VmdkError::InvalidArg(format!(
            "new capacity {capacity} is smaller than the current {old} sectors; disks only grow"
        )));
    }
    if capacity == old {
        return Ok(());
    }
    check_capacity(capacity)?;
    if matches!(place, DescPlace::None) {
        return Err(VmdkError::NotSupported(
            "a sparse extent without a descriptor cannot grow".into(),
        ));
    }
    let ctype = d.create_type().to_string();
    if ctype == "streamOptimized" {
        return Err(VmdkError::NotSupported(
            "a streamOptimized disk cannot grow".into(),
        ));
    }
    let split_type = ctype.starts_with("twoGbMaxExtent");
    let stem = stem_of(path);
    let mut left = capacity - old;
    // Fill the last extent (up to the split size for split types), then
    // add split extents for the rest.
    if let Some(last) = d.extents.last_mut() {
        let add = if split_type {
            left.min(SPLIT_SECTORS.saturating_sub(last.sectors))
        } else {
            left
        };
        if add > 0 {
            let target = last.sectors + add;
            match (last.kind, last.file.as_deref()) {
                (ExtentKind::Zero, _) => {}
                (ExtentKind::Flat | ExtentKind::Vmfs, Some(f)) => {
                    extend_flat(&link::resolve(path, f), last.offset.saturating_add(target))?
                }
                (ExtentKind::Sparse, Some(f)) => grow_sparse(&link::resolve(path, f), target)?,
                _ => {
                    return Err(VmdkError::NotSupported(format!(
                        "cannot grow a {:?} extent",
                        last.kind
                    )))
                }
            }
            last.sectors = target;
            left -= add;
        }
    }
    if left > 0 {
        let kind = d.extents.last().map(|e| e.kind).unwrap_or(ExtentKind::Flat);
        for n in split(left) {
            let idx = d.extents.len() + 1;
            let (file, made_kind) = match kind {
                ExtentKind::Sparse => (format!("{stem}-s{idx:03}.vmdk"), ExtentKind::Sparse),
                _ => (format!("{stem}-f{idx:03}.vmdk"), ExtentKind::Flat),
            };
            let p = link::resolve(path, &file);
            let f = create_new(&p)?;
            if made_kind == ExtentKind::Sparse {
                write_sparse_extent(&f, n, None)?;
            } else {
                f.set_len(n * SECTOR)?;
            }
            d.extents.push(ExtentLine {
                access: Mode::Rw,
                sectors: n,
                kind: made_kind,
                file: Some(file),
                offset: 0,
            });
        }
    }
    if update_geometry {
        let geo = default_geometry(capacity, adapter_of(&d));
        d.ddb_set("geometry.cylinders", &geo.cylinders.to_string());
        d.ddb_set("geometry.heads", &geo.heads.to_string());
        d.ddb_set("geometry.sectors", &geo.sectors.to_string());
    }
    link::write_descriptor(&d, &place)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_and_cid_have_vmware_shape() {
        let u = new_uuid();
        assert_eq!(u.len(), 47, "{u}");
        assert!(u.starts_with("60 00 c2 "));
        assert_eq!(&u[23..24], "-");
        let c = new_cid();
        assert_eq!(c.len(), 8);
        assert_ne!(c, "ffffffff");
        assert_ne!(new_cid(), new_cid());
    }

    #[test]
    fn split_sizes_add_up() {
        assert_eq!(
            split(SPLIT_SECTORS * 2 + 5),
            vec![SPLIT_SECTORS, SPLIT_SECTORS, 5]
        );
        assert!(split(0).is_empty());
    }
}
