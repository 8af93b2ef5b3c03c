//! The disk handle owner and its synchronous calls.

use std::cell::Cell;
use std::ffi::c_char;
use std::ptr::{self, addr_of};
use std::sync::Arc;

use vddk_sys::{VixDiskLibBlock, VixDiskLibBlockList, VixDiskLibHandle, VixDiskLibInfo, VixError};

use super::{c_string, copy_c_str, global_lock, logsink, Lib, RawConnection};
use crate::error::Result;

/// GetInfo's answer, copied out of the library's struct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InfoCopy {
    pub capacity_sectors: u64,
    /// Cylinders, heads, sectors.
    pub bios_geometry: (u32, u32, u32),
    pub physical_geometry: (u32, u32, u32),
    pub adapter: u32,
    pub num_links: i32,
    pub parent_hint: Option<String>,
    pub uuid: Option<String>,
    pub logical_sector_size: Option<u32>,
    pub physical_sector_size: Option<u32>,
}

/// An open disk. Dropping it calls Close (after Wait, if async I/O ran).
pub(crate) struct RawDisk {
    handle: VixDiskLibHandle,
    conn: Arc<RawConnection>,
    /// Set once async I/O was submitted, so Close first waits for it.
    pub(super) used_async: Cell<bool>,
    closed: bool,
    /// Opened with VIXDISKLIB_FLAG_OPEN_READ_ONLY.
    read_only: bool,
    /// The connections of parents attached under this disk: their chains
    /// are read through this handle now, so they stay connected until it
    /// is closed.
    parents: Vec<Arc<RawConnection>>,
}

// SAFETY: VDDK allows a handle to be used from any thread as long as calls
// on it do not overlap. `RawDisk` is not `Sync` (it holds a raw pointer and
// a `Cell`), so only one thread at a time can reach it; moving it between
// threads is fine. Close runs under the global lock wherever it happens.
unsafe impl Send for RawDisk {}

impl RawDisk {
    pub(super) fn new(handle: VixDiskLibHandle, conn: Arc<RawConnection>, flags: u32) -> RawDisk {
        RawDisk {
            handle,
            conn,
            used_async: Cell::new(false),
            closed: false,
            read_only: flags & vddk_sys::VIXDISKLIB_FLAG_OPEN_READ_ONLY != 0,
            parents: Vec::new(),
        }
    }

    /// Whether the handle was opened read-only.
    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn lib(&self) -> &Lib {
        &self.conn.lib
    }

    pub(super) fn handle(&self) -> VixDiskLibHandle {
        self.handle
    }

    pub(crate) fn check(&self, call: &'static str, err: VixError) -> Result<()> {
        self.lib().check(call, err, &self.conn.context())
    }

    /// GetInfo, copied out and freed with FreeInfo.
    pub(crate) fn info(&self) -> Result<InfoCopy> {
        let mut p: *mut VixDiskLibInfo = ptr::null_mut();
        // SAFETY: valid handle and out-pointer; no other call on this handle
        // can overlap (`&self` of a !Sync type).
        let err = self.lib().timed("VixDiskLib_GetInfo", 0, || unsafe {
            self.lib().core().VixDiskLib_GetInfo(self.handle, &mut p)
        });
        self.check("VixDiskLib_GetInfo", err)?;
        if p.is_null() {
            return Err(crate::Error::InvalidArgument(
                "VixDiskLib_GetInfo succeeded but returned no information".into(),
            ));
        }
        let owner = InfoOwner { p, lib: self.lib() };
        let newer = self.lib().sys().major_version() >= 7;
        // SAFETY: `p` points to a VixDiskLibInfo owned by `owner`. Fields
        // are read one by one through raw pointers because a pre-7.0
        // library allocates a shorter struct without the sector sizes.
        let info = unsafe {
            let geo = |g: *const vddk_sys::VixDiskLibGeometry| {
                (
                    addr_of!((*g).cylinders).read(),
                    addr_of!((*g).heads).read(),
                    addr_of!((*g).sectors).read(),
                )
            };
            InfoCopy {
                capacity_sectors: addr_of!((*p).capacity).read(),
                bios_geometry: geo(addr_of!((*p).biosGeo)),
                physical_geometry: geo(addr_of!((*p).physGeo)),
                adapter: addr_of!((*p).adapterType).read(),
                num_links: addr_of!((*p).numLinks).read(),
                parent_hint: copy_c_str(addr_of!((*p).parentFileNameHint).read())
                    .filter(|s| !s.is_empty()),
                uuid: copy_c_str(addr_of!((*p).uuid).read()).filter(|s| !s.is_empty()),
                logical_sector_size: newer.then(|| addr_of!((*p).logicalSectorSize).read()),
                physical_sector_size: newer.then(|| addr_of!((*p).physicalSectorSize).read()),
            }
        };
        drop(owner);
        Ok(info)
    }

    /// GetTransportMode.
    pub(crate) fn transport_mode(&self) -> String {
        // SAFETY: valid handle; the result is a static string (or NULL).
        unsafe { copy_c_str(self.lib().core().VixDiskLib_GetTransportMode(self.handle)) }
            .unwrap_or_default()
    }

    /// Read; `buf.len()` is a whole number of sectors (checked by the caller).
    pub(crate) fn read(&self, start: u64, buf: &mut [u8]) -> Result<()> {
        let sectors = (buf.len() / 512) as u64;
        // SAFETY: `buf` holds exactly `sectors` sectors and is exclusively
        // borrowed for the call.
        let err = self
            .lib()
            .timed("VixDiskLib_Read", buf.len() as u64, || unsafe {
                self.lib()
                    .core()
                    .VixDiskLib_Read(self.handle, start, sectors, buf.as_mut_ptr())
            });
        self.check("VixDiskLib_Read", err)
    }

    /// Read of `len` bytes (a whole number of sectors, checked by the
    /// caller) into the spare capacity of the empty `buf`, which is not
    /// zeroed first: at local-disk speeds, zeroing would cost as much as
    /// the read's own copy. `buf` holds the bytes only if the read succeeds.
    pub(crate) fn read_into(&self, start: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        let sectors = (len / 512) as u64;
        buf.clear();
        buf.reserve(len);
        // SAFETY: `buf` has room for `sectors` whole sectors in its spare
        // capacity, which VixDiskLib_Read only writes (never reads), and
        // nothing else can reach it during the call.
        let err = self.lib().timed("VixDiskLib_Read", len as u64, || unsafe {
            self.lib()
                .core()
                .VixDiskLib_Read(self.handle, start, sectors, buf.as_mut_ptr())
        });
        self.check("VixDiskLib_Read", err)?;
        // SAFETY: Read succeeded, so VDDK wrote all `len` bytes.
        unsafe { buf.set_len(len) };
        Ok(())
    }

    /// Write; `buf.len()` is a whole number of sectors (checked by the caller).
    pub(crate) fn write(&self, start: u64, buf: &[u8]) -> Result<()> {
        let sectors = (buf.len() / 512) as u64;
        // SAFETY: `buf` holds exactly `sectors` sectors for the call.
        let err = self
            .lib()
            .timed("VixDiskLib_Write", buf.len() as u64, || unsafe {
                self.lib()
                    .core()
                    .VixDiskLib_Write(self.handle, start, sectors, buf.as_ptr())
            });
        self.check("VixDiskLib_Write", err)
    }

    /// Flush.
    pub(crate) fn flush(&self) -> Result<()> {
        // SAFETY: valid handle.
        let err = self.lib().timed("VixDiskLib_Flush", 0, || unsafe {
            self.lib().core().VixDiskLib_Flush(self.handle)
        });
        self.check("VixDiskLib_Flush", err)
    }

    /// CreateChild: a delta disk at `child` whose parent is this disk.
    pub(crate) fn create_child(
        &self,
        child: &std::path::Path,
        disk_type: u32,
        report: &mut dyn FnMut(u8) -> bool,
    ) -> Result<()> {
        let create_child = self
            .lib()
            .optional()
            .create_child
            .ok_or_else(|| self.lib().unsupported("VixDiskLib_CreateChild"))?;
        let cpath = super::c_path("child path", child)?;
        let mut progress = super::progress::Progress::new(report);
        let (func, data) = progress.callback();
        let err = {
            let _guard = global_lock();
            // SAFETY: valid handle and string; the global lock is held, as
            // for Create, since this makes files; `data` is `progress`,
            // alive until after the call.
            self.lib().timed("VixDiskLib_CreateChild", 0, || unsafe {
                create_child(self.handle, cpath.as_ptr(), disk_type, func, data)
            })
        };
        let outcome = self.check("VixDiskLib_CreateChild", err);
        progress.finish("VixDiskLib_CreateChild", outcome)
    }

    /// IsAttachPossible, with this disk as the child.
    pub(crate) fn is_attach_possible(&self, parent: &RawDisk) -> Result<()> {
        let possible = self
            .lib()
            .optional()
            .is_attach_possible
            .ok_or_else(|| self.lib().unsupported("VixDiskLib_IsAttachPossible"))?;
        // SAFETY: two valid handles, neither used by another thread (a
        // RawDisk is not Sync and both are borrowed here).
        let err = self
            .lib()
            .timed("VixDiskLib_IsAttachPossible", 0, || unsafe {
                possible(parent.handle, self.handle)
            });
        self.check("VixDiskLib_IsAttachPossible", err)
    }

    /// Attach: `parent`'s chain goes under this disk. VDDK invalidates the
    /// parent handle whether the call succeeds or not, so it is never
    /// closed afterwards; its connection is kept with this disk.
    pub(crate) fn attach(&mut self, mut parent: RawDisk) -> Result<()> {
        let attach = self
            .lib()
            .optional()
            .attach
            .ok_or_else(|| self.lib().unsupported("VixDiskLib_Attach"))?;
        if parent.used_async.get() {
            if let Err(e) = parent.wait() {
                ::log::warn!(target: logsink::TARGET, "before attaching: {e}");
            }
        }
        let err = {
            // Under the lock Open and Close take: the call ends a handle.
            let _guard = global_lock();
            // SAFETY: two valid handles, both exclusively ours; the parent
            // handle is not used again (marked closed below).
            self.lib().timed("VixDiskLib_Attach", 0, || unsafe {
                attach(parent.handle, self.handle)
            })
        };
        parent.closed = true;
        let outcome = self.check("VixDiskLib_Attach", err);
        if outcome.is_ok() {
            self.parents.push(Arc::clone(&parent.conn));
            self.parents.append(&mut parent.parents);
        }
        outcome
    }

    /// SpaceNeededForClone: bytes a clone of this disk as `disk_type` takes.
    pub(crate) fn space_needed_for_clone(&self, disk_type: u32) -> Result<u64> {
        let space = self
            .lib()
            .optional()
            .space_needed_for_clone
            .ok_or_else(|| self.lib().unsupported("VixDiskLib_SpaceNeededForClone"))?;
        let mut bytes = 0u64;
        // SAFETY: valid handle and out-pointer; calls on this handle do not
        // overlap (`&self` of a !Sync type).
        let err = self
            .lib()
            .timed("VixDiskLib_SpaceNeededForClone", 0, || unsafe {
                space(self.handle, disk_type, &mut bytes)
            });
        self.check("VixDiskLib_SpaceNeededForClone", err)?;
        Ok(bytes)
    }

    /// Shrink or Defragment: reclaims unused space of a sparse disk.
    pub(crate) fn compact(&self, defragment: bool) -> Result<()> {
        let (f, name) = if defragment {
            (self.lib().optional().defragment, "VixDiskLib_Defragment")
        } else {
            (self.lib().optional().shrink, "VixDiskLib_Shrink")
        };
        let f = f.ok_or_else(|| self.lib().unsupported(name))?;
        // SAFETY: valid handle; calls on this handle do not overlap.
        let err = self.lib().timed(name, 0, || unsafe {
            f(self.handle, Some(super::conn::no_progress), ptr::null_mut())
        });
        self.check(name, err)
    }

    /// Wait: returns when every async request on the handle has completed.
    pub(crate) fn wait(&self) -> Result<()> {
        // SAFETY: valid handle.
        let err = self.lib().timed("VixDiskLib_Wait", 0, || unsafe {
            self.lib().core().VixDiskLib_Wait(self.handle)
        });
        self.check("VixDiskLib_Wait", err)
    }

    /// One QueryAllocatedBlocks call; the range is already chunk-aligned.
    pub(crate) fn query_allocated(
        &self,
        start: u64,
        count: u64,
        chunk: u64,
    ) -> Result<Vec<(u64, u64)>> {
        let mut list: *mut VixDiskLibBlockList = ptr::null_mut();
        // SAFETY: valid handle and out-pointer.
        let err = self
            .lib()
            .timed("VixDiskLib_QueryAllocatedBlocks", 0, || unsafe {
                self.lib().core().VixDiskLib_QueryAllocatedBlocks(
                    self.handle,
                    start,
                    count,
                    chunk,
                    &mut list,
                )
            });
        self.check("VixDiskLib_QueryAllocatedBlocks", err)?;
        if list.is_null() {
            return Ok(Vec::new());
        }
        let owner = BlockListOwner {
            p: list,
            lib: self.lib(),
        };
        // SAFETY: `list` is a block list owned by `owner`, with `numBlocks`
        // entries following the header.
        let out = unsafe {
            let n = addr_of!((*list).numBlocks).read() as usize;
            let first = addr_of!((*list).blocks).cast::<VixDiskLibBlock>();
            std::slice::from_raw_parts(first, n)
                .iter()
                .map(|b| (b.offset, b.length))
                .collect()
        };
        drop(owner);
        Ok(out)
    }

    /// GetMetadataKeys: the keys, in the library's order.
    pub(crate) fn metadata_keys(&self) -> Result<Vec<String>> {
        let f = self
            .lib()
            .optional()
            .get_metadata_keys
            .ok_or_else(|| self.lib().unsupported("VixDiskLib_GetMetadataKeys"))?;
        let buf = self.sized_call("VixDiskLib_GetMetadataKeys", |buf, len, req| {
            // SAFETY: `buf` is NULL with len 0 or a buffer of `len` bytes;
            // `req` is a live out-pointer.
            unsafe { f(self.handle, buf, len, req) }
        })?;
        Ok(buf
            .split(|b| *b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect())
    }

    /// ReadMetadata.
    pub(crate) fn metadata_get(&self, key: &str) -> Result<String> {
        let f = self
            .lib()
            .optional()
            .read_metadata
            .ok_or_else(|| self.lib().unsupported("VixDiskLib_ReadMetadata"))?;
        let ckey = c_string("metadata key", key)?;
        let buf = self.sized_call("VixDiskLib_ReadMetadata", |buf, len, req| {
            // SAFETY: as in metadata_keys; `ckey` outlives the call.
            unsafe { f(self.handle, ckey.as_ptr(), buf, len, req) }
        })?;
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// WriteMetadata.
    pub(crate) fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        let f = self
            .lib()
            .optional()
            .write_metadata
            .ok_or_else(|| self.lib().unsupported("VixDiskLib_WriteMetadata"))?;
        let ckey = c_string("metadata key", key)?;
        let cval = c_string("metadata value", value)?;
        // SAFETY: valid handle and strings.
        let err = self.lib().timed("VixDiskLib_WriteMetadata", 0, || unsafe {
            f(self.handle, ckey.as_ptr(), cval.as_ptr())
        });
        self.check("VixDiskLib_WriteMetadata", err)
    }

    /// The two-step "ask the size, then fetch" protocol of the metadata calls.
    fn sized_call(
        &self,
        call: &'static str,
        mut f: impl FnMut(*mut c_char, vddk_sys::size_t, *mut vddk_sys::size_t) -> VixError,
    ) -> Result<Vec<u8>> {
        let mut required: vddk_sys::size_t = 0;
        let err = self
            .lib()
            .timed(call, 0, || f(ptr::null_mut(), 0, &mut required));
        let code = vddk_sys::error_code(err);
        if code != u64::from(vddk_sys::VIX_E_BUFFER_TOOSMALL) {
            self.check(call, err)?;
        }
        // The size can grow between the calls (another writer): retry a few times.
        for _ in 0..4 {
            // A size the library reports is trusted only up to 64 MiB.
            let len = usize::try_from(required.clamp(1, 64 << 20)).unwrap_or(1);
            let mut buf = vec![0u8; len];
            let mut again: vddk_sys::size_t = 0;
            let err = self.lib().timed(call, 0, || {
                f(buf.as_mut_ptr().cast(), len as vddk_sys::size_t, &mut again)
            });
            if vddk_sys::error_code(err) == u64::from(vddk_sys::VIX_E_BUFFER_TOOSMALL)
                && again > required
            {
                required = again;
                continue;
            }
            self.check(call, err)?;
            return Ok(buf);
        }
        self.check(call, u64::from(vddk_sys::VIX_E_BUFFER_TOOSMALL))
            .map(|()| Vec::new())
    }

    /// Close, reporting its result; Drop does the same and logs.
    pub(crate) fn close(mut self) -> Result<()> {
        self.closed = true;
        self.close_inner()
    }

    fn close_inner(&self) -> Result<()> {
        if self.used_async.get() {
            if let Err(e) = self.wait() {
                ::log::warn!(target: logsink::TARGET, "before closing: {e}");
            }
        }
        let err = {
            let _guard = global_lock();
            // SAFETY: the handle is open and this is its only Close.
            self.lib().timed("VixDiskLib_Close", 0, || unsafe {
                self.lib().core().VixDiskLib_Close(self.handle)
            })
        };
        self.check("VixDiskLib_Close", err)
    }
}

impl Drop for RawDisk {
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            if let Err(e) = self.close_inner() {
                ::log::warn!(target: logsink::TARGET, "closing a disk: {e}");
            }
        }
    }
}

/// Frees a VixDiskLibInfo with FreeInfo.
struct InfoOwner<'l> {
    p: *mut VixDiskLibInfo,
    lib: &'l Lib,
}

impl Drop for InfoOwner<'_> {
    fn drop(&mut self) {
        // SAFETY: `p` came from GetInfo and is freed once.
        unsafe { self.lib.core().VixDiskLib_FreeInfo(self.p) };
    }
}

/// Frees a VixDiskLibBlockList with FreeBlockList.
struct BlockListOwner<'l> {
    p: *mut VixDiskLibBlockList,
    lib: &'l Lib,
}

impl Drop for BlockListOwner<'_> {
    fn drop(&mut self) {
        // SAFETY: `p` came from QueryAllocatedBlocks and is freed once.
        let err = unsafe { self.lib.core().VixDiskLib_FreeBlockList(self.p) };
        if vddk_sys::error_code(err) != 0 {
            ::log::warn!(target: logsink::TARGET, "VixDiskLib_FreeBlockList failed: {err}");
        }
    }
}
