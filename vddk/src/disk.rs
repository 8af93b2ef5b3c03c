//! [`Disk`]: an open virtual disk and its synchronous operations.

use std::cell::Cell;
use std::fmt;
use std::path::Path;

use crate::blocks::{self, Extent};
use crate::create::DiskType;
use crate::disk_info::DiskInfo;
use crate::error::{Error, Result};
use crate::raw::RawDisk;
use crate::SECTOR_SIZE;

/// An open disk (Open). Dropping it closes it; [`Disk::close`] reports the result.
///
/// Offsets and lengths are in bytes and must be whole 512-byte sectors,
/// as VDDK reads and writes only whole sectors; [`DiskDriver`](crate::DiskDriver)
/// serves any alignment.
///
/// `Send` but not `Sync`: VDDK forbids concurrent calls on one handle, so
/// a disk is used by one thread at a time. To drive it from many threads,
/// hand it to a [`DiskDriver`](crate::DiskDriver).
///
/// # Examples
///
/// Copying the data of one disk into another of the same size, whole
/// sectors at a time (the [crate-level example](crate#example) connects
/// and opens one on vSphere):
///
/// ```no_run
/// # fn demo(conn: &vddk::Connection) -> vddk::Result<()> {
/// use vddk::OpenFlags;
///
/// let src = conn.open("/vms/web.vmdk", OpenFlags::READ_ONLY)?;
/// let dst = conn.open("/vms/web-copy.vmdk", OpenFlags::empty())?;
/// let mut buf = vec![0u8; 1 << 20];
/// for extent in src.allocated_blocks(0, src.capacity()?, vddk::MIN_CHUNK)? {
///     let mut at = extent.offset;
///     while at < extent.end() {
///         let n = (extent.end() - at).min(buf.len() as u64) as usize;
///         src.read_at(at, &mut buf[..n])?;
///         dst.write_at(at, &buf[..n])?;
///         at += n as u64;
///     }
/// }
/// dst.flush()?;
/// dst.close()?;
/// # Ok(())
/// # }
/// ```
pub struct Disk {
    raw: RawDisk,
    capacity: Cell<Option<u64>>,
}

impl Disk {
    pub(crate) fn from_raw(raw: RawDisk) -> Disk {
        Disk {
            raw,
            capacity: Cell::new(None),
        }
    }

    /// Size, geometry, adapter, chain and identity of the disk.
    ///
    /// # Errors
    /// [`Error::Vix`] from GetInfo.
    pub fn info(&self) -> Result<DiskInfo> {
        let info = DiskInfo::from_raw(self.raw.info()?);
        self.capacity.set(Some(info.capacity));
        Ok(info)
    }

    /// The disk's size in bytes (GetInfo, asked once).
    ///
    /// # Errors
    /// [`Error::Vix`] from GetInfo.
    pub fn capacity(&self) -> Result<u64> {
        match self.capacity.get() {
            Some(c) => Ok(c),
            None => Ok(self.info()?.capacity),
        }
    }

    /// Whether [`Disk::attach`] would take `parent` under this disk
    /// (IsAttachPossible): `Ok` when it would, else the reason as VDDK's
    /// error.
    ///
    /// # Errors
    /// [`Error::Vix`] saying why not (e.g. this disk is not a child of
    /// `parent`, or was opened with its chain rather than single-link);
    /// [`Error::Unsupported`] from a library without the function.
    pub fn check_attach(&self, parent: &Disk) -> Result<()> {
        self.raw.is_attach_possible(&parent.raw)
    }

    /// Puts `parent`'s disk chain under this disk (Attach), so that what
    /// this disk does not hold is read from `parent`: this disk is a child
    /// (made by [`Disk::create_child`]) opened with
    /// [`OpenFlags::SINGLE_LINK`](crate::OpenFlags::SINGLE_LINK), and `parent` may be on another
    /// connection, e.g. a base disk on a server under a local redo log that
    /// takes the writes, leaving the base as it was.
    ///
    /// `parent` is consumed whatever the outcome: VDDK invalidates its
    /// handle even when the call fails, so it must not be closed again.
    /// Its connection stays open as long as this disk, which now reads
    /// through it.
    ///
    /// # Errors
    /// [`Error::Vix`] from Attach (the same reasons as
    /// [`Disk::check_attach`]); [`Error::Unsupported`] from a library
    /// without the function (`parent` is then closed as usual).
    ///
    /// # Examples
    /// ```no_run
    /// # fn run(remote: &vddk::Connection, local: &vddk::Connection) -> vddk::Result<()> {
    /// use vddk::{DiskType, OpenFlags};
    ///
    /// let base = remote.open("[datastore1] vm/vm.vmdk", OpenFlags::READ_ONLY)?;
    /// base.create_child("/var/tmp/vm-redo.vmdk", DiskType::MonolithicSparse)?;
    /// let mut redo = local.open("/var/tmp/vm-redo.vmdk", OpenFlags::SINGLE_LINK)?;
    /// redo.check_attach(&base)?;
    /// redo.attach(base)?;
    /// // Reads see the base; writes stay in the local redo log.
    /// redo.write_at(0, &[0u8; 512])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn attach(&mut self, parent: Disk) -> Result<()> {
        self.raw.attach(parent.raw)?;
        // The chain under this disk changed; what GetInfo says may too.
        self.capacity.set(None);
        Ok(())
    }

    /// The transport in use (`file`, `nbd`, `nbdssl`, `hotadd`, `san`).
    pub fn transport_mode(&self) -> String {
        self.raw.transport_mode()
    }

    /// Reads `buf.len()` bytes at byte `offset` (Read).
    ///
    /// ```no_run
    /// # fn demo(disk: &vddk::Disk) -> vddk::Result<()> {
    /// let mut boot = [0u8; 512];
    /// disk.read_at(0, &mut boot)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `offset` and `buf.len()` are
    /// whole sectors; [`Error::OutOfRange`] past the end; [`Error::Vix`]
    /// from Read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.check(offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.raw.read(start, buf)
    }

    /// Reads `len` bytes at byte `offset` into a new buffer, without
    /// zeroing it first (at local-disk speeds, zeroing costs as much as
    /// the read's own copy).
    ///
    /// ```no_run
    /// # fn demo(disk: &vddk::Disk) -> vddk::Result<()> {
    /// let first_mib = disk.read_to_vec(0, 1 << 20)?;
    /// assert_eq!(first_mib.len(), 1 << 20);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Disk::read_at`].
    pub fn read_to_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(offset, len, &mut buf)?;
        Ok(buf)
    }

    /// Reads `len` bytes at `offset` into `buf`, replacing its contents
    /// and reusing its capacity.
    pub(crate) fn read_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        let start = self.check(offset, len as u64)?;
        buf.clear();
        if len == 0 {
            return Ok(());
        }
        self.raw.read_into(start, len, buf)
    }

    /// Writes `buf` at byte `offset` (Write).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `offset` and `buf.len()` are
    /// whole sectors; [`Error::OutOfRange`] past the end; [`Error::Vix`]
    /// from Write.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let start = self.check(offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.raw.write(start, buf)
    }

    /// Creates a child (delta, redo-log) disk at `child` whose parent is
    /// this disk (CreateChild): the child starts empty, reads fall through
    /// to this disk, and writes opened on the child land in it only. The
    /// child is a local path next to, or anywhere from, the parent; its
    /// type is sparse ([`DiskType::MonolithicSparse`] or
    /// [`DiskType::SplitSparse`]). Write nothing more to this disk
    /// afterwards: the child records the parent as it is now.
    ///
    /// ```no_run
    /// # fn demo(conn: &vddk::Connection) -> vddk::Result<()> {
    /// use vddk::{DiskType, OpenFlags};
    /// let base = conn.open("/vms/base.vmdk", OpenFlags::READ_ONLY)?;
    /// base.create_child("/vms/base-redo.vmdk", DiskType::MonolithicSparse)?;
    /// drop(base);
    /// let redo = conn.open("/vms/base-redo.vmdk", OpenFlags::empty())?;
    /// redo.write_at(0, &[0u8; 512])?; // base.vmdk is untouched
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the library lacks CreateChild;
    /// [`Error::Vix`] from it (`VIX_E_FILE_ALREADY_EXISTS` for an existing
    /// child).
    pub fn create_child(&self, child: impl AsRef<Path>, disk_type: DiskType) -> Result<()> {
        self.raw
            .create_child(child.as_ref(), disk_type.as_raw(), &mut |_| true)
    }

    /// The bytes a clone of this disk as `disk_type` would take
    /// (SpaceNeededForClone), to check the destination's free space first.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without the function; [`Error::Vix`] from it.
    pub fn space_needed_for_clone(&self, disk_type: DiskType) -> Result<u64> {
        self.raw.space_needed_for_clone(disk_type.as_raw())
    }

    /// Gives the space of unused grains of a sparse disk back to the
    /// file system (Shrink). Local disks, opened for writing.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without the function; [`Error::Vix`] from it.
    pub fn shrink(&self) -> Result<()> {
        self.raw.compact(false)
    }

    /// Lays a sparse disk's grains out in order (Defragment). Local disks,
    /// opened for writing.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without the function; [`Error::Vix`] from it.
    pub fn defragment(&self) -> Result<()> {
        self.raw.compact(true)
    }

    /// Whether the disk was opened with [`OpenFlags::READ_ONLY`](crate::OpenFlags::READ_ONLY).
    pub fn is_read_only(&self) -> bool {
        self.raw.read_only()
    }

    /// Makes earlier writes durable (Flush).
    ///
    /// # Errors
    /// [`Error::Vix`] from Flush.
    pub fn flush(&self) -> Result<()> {
        self.raw.flush()
    }

    /// Waits for every asynchronous request on this handle (Wait).
    ///
    /// # Errors
    /// [`Error::Vix`] from Wait.
    pub fn wait(&self) -> Result<()> {
        self.raw.wait()
    }

    /// The allocated extents in `[offset, offset + length)`, in bytes,
    /// sorted and merged.
    ///
    /// VDDK answers only for whole chunks of `chunk` bytes (at least
    /// [`MIN_CHUNK`](crate::MIN_CHUNK), 64 KiB; rounded up to a multiple of
    /// it), at most 512×1024 chunks per call: the range is widened to whole
    /// chunks, split into calls, and the answer clipped back. A tail at the
    /// end of the disk shorter than a chunk cannot be queried and is
    /// reported as allocated.
    ///
    /// ```no_run
    /// # fn demo(disk: &vddk::Disk) -> vddk::Result<()> {
    /// let size = disk.capacity()?;
    /// for e in disk.allocated_blocks(0, size, vddk::MIN_CHUNK)? {
    ///     println!("data at bytes {}..{}", e.offset, e.end());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `offset` and `length` are whole
    /// sectors; [`Error::OutOfRange`] past the end; [`Error::Vix`] from
    /// QueryAllocatedBlocks (e.g. `VIX_E_NOT_SUPPORTED` for disks that
    /// cannot tell).
    pub fn allocated_blocks(&self, offset: u64, length: u64, chunk: u64) -> Result<Vec<Extent>> {
        let start = self.check(offset, length)?;
        let capacity = self.capacity()? / SECTOR_SIZE;
        let count = length / SECTOR_SIZE;
        let plan = blocks::plan(start, count, chunk / SECTOR_SIZE, capacity);
        let mut found = Vec::new();
        for call in &plan.calls {
            let runs = self
                .raw
                .query_allocated(call.start, call.count, plan.chunk)?;
            found.extend(
                runs.into_iter()
                    .map(|(start, length)| blocks::Run { start, length }),
            );
        }
        Ok(blocks::finish(found, plan.tail, start, count))
    }

    /// The metadata keys in the disk's descriptor (GetMetadataKeys).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the library lacks the function;
    /// [`Error::Vix`] from it.
    pub fn metadata_keys(&self) -> Result<Vec<String>> {
        self.raw.metadata_keys()
    }

    /// One metadata value (ReadMetadata).
    ///
    /// # Errors
    /// [`Error::Vix`] with [`VixCode::DISK_KEY_NOTFOUND`](crate::VixCode::DISK_KEY_NOTFOUND)
    /// for an unknown key.
    pub fn metadata_get(&self, key: &str) -> Result<String> {
        self.raw.metadata_get(key)
    }

    /// Sets one metadata value (WriteMetadata).
    ///
    /// # Errors
    /// [`Error::Vix`] from WriteMetadata (e.g. on a read-only disk).
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        self.raw.metadata_set(key, value)
    }

    /// Closes the disk and reports Close's result (dropping it closes too,
    /// logging any failure).
    ///
    /// # Errors
    /// [`Error::Vix`] from Close.
    pub fn close(self) -> Result<()> {
        self.raw.close()
    }

    pub(crate) fn raw(&self) -> &RawDisk {
        &self.raw
    }

    /// Checks that `[offset, offset + len)` is whole sectors inside the
    /// disk; returns the first sector.
    fn check(&self, offset: u64, len: u64) -> Result<u64> {
        check_aligned(offset, len)?;
        let capacity = self.capacity()?;
        check_range(offset, len, capacity)?;
        Ok(offset / SECTOR_SIZE)
    }
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disk")
            .field("capacity", &self.capacity.get())
            .finish_non_exhaustive()
    }
}

/// Refuses a range that does not start and end on sector boundaries.
pub(crate) fn check_aligned(offset: u64, len: u64) -> Result<()> {
    if offset % SECTOR_SIZE != 0 || len % SECTOR_SIZE != 0 {
        return Err(Error::InvalidArgument(format!(
            "{len} bytes at offset {offset} are not whole 512-byte sectors \
             (a DiskDriver serves any alignment)"
        )));
    }
    Ok(())
}

/// Refuses a range that reaches past `capacity`.
pub(crate) fn check_range(offset: u64, length: u64, capacity: u64) -> Result<()> {
    match offset.checked_add(length) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(Error::OutOfRange {
            offset,
            length,
            capacity,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_must_be_whole_sectors_inside_the_disk() {
        assert!(check_aligned(0, 0).is_ok());
        assert!(check_aligned(512, 4096).is_ok());
        assert!(matches!(
            check_aligned(0, 511),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            check_aligned(100, 512),
            Err(Error::InvalidArgument(_))
        ));
        assert!(check_range(0, 1024, 1024).is_ok());
        assert!(matches!(
            check_range(512, 1024, 1024),
            Err(Error::OutOfRange {
                offset: 512,
                length: 1024,
                capacity: 1024
            })
        ));
        assert!(check_range(u64::MAX, 2, 1024).is_err());
    }
}

/// Compile-time checks: a `Disk` may move between threads but never be
/// shared by them.
#[cfg(test)]
mod thread_rules {
    use super::Disk;

    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    struct IsSync;
    impl<T: ?Sized + Sync> AmbiguousIfSync<IsSync> for T {}

    fn send<T: Send>() {}

    #[test]
    fn disk_is_send_but_not_sync() {
        send::<Disk>();
        // Fails to compile (ambiguous impl) if `Disk` ever becomes `Sync`.
        <Disk as AmbiguousIfSync<_>>::check();
        <crate::raw::RawDisk as AmbiguousIfSync<_>>::check();
    }
}
