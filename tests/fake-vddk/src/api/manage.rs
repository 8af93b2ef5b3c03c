//! Disk management: Create, Grow, Clone, Unlink, Rename, CreateChild,
//! CheckRepair, SpaceNeededForClone, Attach and IsAttachPossible, and the
//! functions the fake does not implement (Shrink, Defragment), which answer
//! VIX_E_NOT_SUPPORTED.

use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};

use super::{opt_str, vix, VixResult};
use crate::ffi::*;
use crate::handles::{self, Conn};
use crate::rules::{enter_global, require_init};
use crate::vmdk::{self, Adapter, DiskType, VmdkDisk};
use crate::{errors, knobs, log};

fn disk_type(code: u32) -> Option<DiskType> {
    Some(match code {
        1 => DiskType::MonolithicSparse,
        2 => DiskType::MonolithicFlat,
        3 => DiskType::SplitSparse,
        4 => DiskType::SplitFlat,
        5 => DiskType::VmfsFlat,
        6 => DiskType::StreamOptimized,
        7 => DiskType::VmfsThin,
        8 => DiskType::VmfsSparse,
        _ => return None,
    })
}

fn adapter(code: u32) -> Adapter {
    match code {
        1 => Adapter::Ide,
        2 => Adapter::BusLogic,
        3 => Adapter::LsiLogic,
        _ => Adapter::Unknown,
    }
}

/// Decodes CreateParams.
///
/// # Safety
/// `p` is NULL or points to a CreateParams.
unsafe fn create_params(p: *const CreateParams) -> Result<vmdk::CreateParams, VixError> {
    if p.is_null() {
        return Err(VIX_E_INVALID_ARG);
    }
    // SAFETY: non-NULL, per the caller a CreateParams.
    let p = unsafe { &*p };
    let Some(disk_type) = disk_type(p.disk_type) else {
        log::warn(&format!("VixDiskLib: unknown disk type {}", p.disk_type));
        return Err(VIX_E_INVALID_ARG);
    };
    Ok(vmdk::CreateParams {
        disk_type,
        adapter: adapter(p.adapter_type),
        hw_version: p.hw_version,
        capacity: p.capacity,
    })
}

fn local_only(conn: &Conn, function: &str) -> Result<(), VixError> {
    if conn.remote.is_some() {
        log::warn(&format!(
            "VixDiskLib: {function} works on local connections only; connect with serverName NULL"
        ));
        return Err(VIX_E_NOT_SUPPORTED);
    }
    Ok(())
}

fn engine_err(function: &str, e: vmdk::VmdkError) -> VixError {
    log::warn(&format!("VixDiskLib: {function}: {}", errors::describe(&e)));
    errors::from_vmdk(&e)
}

/// Reports progress; false when the caller asks to stop.
fn progress(func: ProgressFunc, data: *mut c_void, percent: i32) -> bool {
    match func {
        // SAFETY: the caller's progress callback with its own data pointer.
        Some(f) => unsafe { f(data, percent) != 0 },
        None => true,
    }
}

/// Creates a local disk.
#[no_mangle]
pub extern "C" fn VixDiskLib_Create(
    connection: Connection,
    path: *const c_char,
    params: *const CreateParams,
    progress_func: ProgressFunc,
    progress_data: *mut c_void,
) -> VixError {
    vix("VixDiskLib_Create", |_| -> VixResult {
        require_init("VixDiskLib_Create")?;
        let _global = enter_global("VixDiskLib_Create")?;
        let conn = handles::conn(connection, "VixDiskLib_Create")?;
        local_only(&conn, "VixDiskLib_Create")?;
        // SAFETY: NULL or a NUL-terminated string / CreateParams from the caller.
        let (path, params) = unsafe {
            (
                opt_str(path).ok_or(VIX_E_INVALID_ARG)?,
                create_params(params)?,
            )
        };
        knobs::call_latency();
        progress(progress_func, progress_data, 0);
        vmdk::create(Path::new(&path), &params).map_err(|e| engine_err("VixDiskLib_Create", e))?;
        progress(progress_func, progress_data, 100);
        Ok(VIX_OK)
    })
}

/// Grows a closed local disk.
#[no_mangle]
pub extern "C" fn VixDiskLib_Grow(
    connection: Connection,
    path: *const c_char,
    capacity: u64,
    update_geometry: Bool,
    progress_func: ProgressFunc,
    progress_data: *mut c_void,
) -> VixError {
    vix("VixDiskLib_Grow", |_| {
        require_init("VixDiskLib_Grow")?;
        let conn = handles::conn(connection, "VixDiskLib_Grow")?;
        local_only(&conn, "VixDiskLib_Grow")?;
        // SAFETY: NULL or a NUL-terminated string from the caller.
        let path = unsafe { opt_str(path) }.ok_or(VIX_E_INVALID_ARG)?;
        knobs::call_latency();
        if !progress(progress_func, progress_data, 0) {
            log::warn("VixDiskLib: Grow cancelled by the progress callback");
            return Err(VIX_E_FAIL);
        }
        vmdk::grow(Path::new(&path), capacity, update_geometry != 0)
            .map_err(|e| engine_err("VixDiskLib_Grow", e))?;
        progress(progress_func, progress_data, 100);
        Ok(VIX_OK)
    })
}

/// The files that make up a disk: the descriptor and its extents.
fn disk_files(path: &Path) -> Result<Vec<PathBuf>, VixError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VIX_E_FILE_NOT_FOUND,
        _ => VIX_E_FILE_ERROR,
    })?;
    let mut files = vec![path.to_path_buf()];
    if bytes.starts_with(b"KDMV") || bytes.starts_with(b"COWD") {
        return Ok(files);
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    if !text.contains("# Disk DescriptorFile") {
        return Err(VIX_E_DISK_INVAL);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for line in text.lines() {
        let line = line.trim();
        if !["RW ", "RDONLY ", "NOACCESS "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            continue;
        }
        if let Some(name) = line.split('"').nth(1) {
            files.push(dir.join(name));
        }
    }
    Ok(files)
}

fn unlink_disk(path: &Path) -> Result<(), VixError> {
    for file in disk_files(path)? {
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn(&format!(
                    "VixDiskLib: cannot remove {}: {e}",
                    file.display()
                ));
                return Err(VIX_E_FILE_ACCESS_ERROR);
            }
        }
    }
    Ok(())
}

/// Deletes a local disk and its extent files.
#[no_mangle]
pub extern "C" fn VixDiskLib_Unlink(connection: Connection, path: *const c_char) -> VixError {
    vix("VixDiskLib_Unlink", |_| {
        require_init("VixDiskLib_Unlink")?;
        let conn = handles::conn(connection, "VixDiskLib_Unlink")?;
        local_only(&conn, "VixDiskLib_Unlink")?;
        // SAFETY: NULL or a NUL-terminated string from the caller.
        let path = unsafe { opt_str(path) }.ok_or(VIX_E_INVALID_ARG)?;
        knobs::call_latency();
        unlink_disk(Path::new(&path))?;
        Ok(VIX_OK)
    })
}

fn source_path(conn: &Conn, path: &str) -> Result<PathBuf, VixError> {
    match &conn.remote {
        None => Ok(PathBuf::from(path)),
        Some(rc) => super::disk::resolve_remote(rc, conn, path).map(|(p, _, _)| p),
    }
}

/// Copies a disk (local or remote source) into a new local disk.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn VixDiskLib_Clone(
    dst_connection: Connection,
    dst_path: *const c_char,
    src_connection: Connection,
    src_path: *const c_char,
    params: *const CreateParams,
    progress_func: ProgressFunc,
    progress_data: *mut c_void,
    overwrite: Bool,
) -> VixError {
    vix("VixDiskLib_Clone", |ctx| {
        require_init("VixDiskLib_Clone")?;
        let dst_conn = handles::conn(dst_connection, "VixDiskLib_Clone")?;
        let src_conn = handles::conn(src_connection, "VixDiskLib_Clone")?;
        local_only(&dst_conn, "VixDiskLib_Clone (destination)")?;
        // SAFETY: NULL or NUL-terminated strings / CreateParams from the caller.
        let (dst, src, mut params) = unsafe {
            (
                opt_str(dst_path).ok_or(VIX_E_INVALID_ARG)?,
                opt_str(src_path).ok_or(VIX_E_INVALID_ARG)?,
                create_params(params)?,
            )
        };
        let src = source_path(&src_conn, &src)?;
        let mut source =
            VmdkDisk::open(&src, true, false).map_err(|e| engine_err("VixDiskLib_Clone", e))?;
        params.capacity = source.capacity();
        let dst = PathBuf::from(dst);
        if dst.exists() {
            if overwrite == 0 {
                return Err(VIX_E_FILE_ALREADY_EXISTS);
            }
            unlink_disk(&dst)?;
        }
        vmdk::create(&dst, &params).map_err(|e| engine_err("VixDiskLib_Clone", e))?;
        let mut target =
            VmdkDisk::open(&dst, false, false).map_err(|e| engine_err("VixDiskLib_Clone", e))?;
        const STEP: u64 = 2048;
        let capacity = params.capacity;
        let mut buf = vec![0u8; (STEP * SECTOR) as usize];
        let mut sector = 0;
        while sector < capacity {
            let n = STEP.min(capacity - sector);
            let chunk = &mut buf[..(n * SECTOR) as usize];
            source
                .read(sector, chunk)
                .map_err(|e| engine_err("VixDiskLib_Clone", e))?;
            if chunk.iter().any(|b| *b != 0) {
                target
                    .write(sector, chunk)
                    .map_err(|e| engine_err("VixDiskLib_Clone", e))?;
                ctx.bytes += n * SECTOR;
            }
            sector += n;
            if !progress(
                progress_func,
                progress_data,
                (sector * 100 / capacity) as i32,
            ) {
                log::warn("VixDiskLib: Clone cancelled by the progress callback");
                return Err(VIX_E_FAIL);
            }
        }
        target
            .flush()
            .map_err(|e| engine_err("VixDiskLib_Clone", e))?;
        Ok(VIX_OK)
    })
}

/// Checks that a local disk opens (the fake repairs nothing).
#[no_mangle]
pub extern "C" fn VixDiskLib_CheckRepair(
    connection: Connection,
    path: *const c_char,
    _repair: Bool,
) -> VixError {
    vix("VixDiskLib_CheckRepair", |_| {
        require_init("VixDiskLib_CheckRepair")?;
        let conn = handles::conn(connection, "VixDiskLib_CheckRepair")?;
        // SAFETY: NULL or a NUL-terminated string from the caller.
        let path = unsafe { opt_str(path) }.ok_or(VIX_E_INVALID_ARG)?;
        let file = source_path(&conn, &path)?;
        VmdkDisk::open(&file, true, false).map_err(|e| engine_err("VixDiskLib_CheckRepair", e))?;
        Ok(VIX_OK)
    })
}

/// Bytes a Clone of this disk would need: its capacity (an upper bound).
#[no_mangle]
pub extern "C" fn VixDiskLib_SpaceNeededForClone(
    handle: Handle,
    _disk_type: u32,
    out: *mut u64,
) -> VixError {
    vix("VixDiskLib_SpaceNeededForClone", |_| {
        require_init("VixDiskLib_SpaceNeededForClone")?;
        let disk = handles::disk(handle, "VixDiskLib_SpaceNeededForClone")?;
        // SAFETY: NULL-checked out pointer from the caller.
        unsafe { super::put(out, disk.capacity * SECTOR) }?;
        Ok(VIX_OK)
    })
}

fn unsupported(function: &str) -> VixResult {
    require_init(function)?;
    log::warn(&format!(
        "VixDiskLib: {function} is not implemented by fake-vddk"
    ));
    Err(VIX_E_NOT_SUPPORTED)
}

/// Renames a closed local disk and its extent files.
#[no_mangle]
pub extern "C" fn VixDiskLib_Rename(src: *const c_char, dst: *const c_char) -> VixError {
    vix("VixDiskLib_Rename", |_| {
        require_init("VixDiskLib_Rename")?;
        let _global = enter_global("VixDiskLib_Rename")?;
        // SAFETY: NULL or NUL-terminated strings from the caller.
        let (src, dst) = unsafe {
            (
                opt_str(src).ok_or(VIX_E_INVALID_ARG)?,
                opt_str(dst).ok_or(VIX_E_INVALID_ARG)?,
            )
        };
        knobs::call_latency();
        vmdk::rename(Path::new(&src), Path::new(&dst))
            .map_err(|e| engine_err("VixDiskLib_Rename", e))?;
        Ok(VIX_OK)
    })
}

/// Creates a sparse child (redo log) of an open local disk, whose parent
/// is that disk's file.
#[no_mangle]
pub extern "C" fn VixDiskLib_CreateChild(
    handle: Handle,
    child: *const c_char,
    disk_type: u32,
    progress_func: ProgressFunc,
    progress_data: *mut c_void,
) -> VixError {
    vix("VixDiskLib_CreateChild", |_| {
        require_init("VixDiskLib_CreateChild")?;
        let _global = enter_global("VixDiskLib_CreateChild")?;
        let disk = handles::disk(handle, "VixDiskLib_CreateChild")?;
        local_only(&disk.conn, "VixDiskLib_CreateChild")?;
        // SAFETY: NULL or a NUL-terminated string from the caller.
        let child = unsafe { opt_str(child) }.ok_or(VIX_E_INVALID_ARG)?;
        let Some(disk_type) = self::disk_type(disk_type) else {
            log::warn(&format!("VixDiskLib: unknown disk type {disk_type}"));
            return Err(VIX_E_INVALID_ARG);
        };
        knobs::call_latency();
        progress(progress_func, progress_data, 0);
        // The child takes the parent's CID as it is on disk now.
        disk.engine()
            .flush()
            .map_err(|e| engine_err("VixDiskLib_CreateChild", e))?;
        vmdk::create_child(&disk.path, Path::new(&child), disk_type)
            .map_err(|e| engine_err("VixDiskLib_CreateChild", e))?;
        progress(progress_func, progress_data, 100);
        Ok(VIX_OK)
    })
}

/// Not implemented: VIX_E_NOT_SUPPORTED.
#[no_mangle]
pub extern "C" fn VixDiskLib_Shrink(
    _handle: Handle,
    _progress: ProgressFunc,
    _data: *mut c_void,
) -> VixError {
    vix("VixDiskLib_Shrink", |_| unsupported("VixDiskLib_Shrink"))
}

/// Not implemented: VIX_E_NOT_SUPPORTED.
#[no_mangle]
pub extern "C" fn VixDiskLib_Defragment(
    _handle: Handle,
    _progress: ProgressFunc,
    _data: *mut c_void,
) -> VixError {
    vix("VixDiskLib_Defragment", |_| {
        unsupported("VixDiskLib_Defragment")
    })
}

/// Whether `child` (a child disk opened single-link) can take `parent`'s
/// chain: VIX_OK, or VIX_E_INVALID_ARG with the reason in the log.
#[no_mangle]
pub extern "C" fn VixDiskLib_IsAttachPossible(parent: Handle, child: Handle) -> VixError {
    vix("VixDiskLib_IsAttachPossible", |_| {
        require_init("VixDiskLib_IsAttachPossible")?;
        let (p, c) = attach_pair(parent, child, "VixDiskLib_IsAttachPossible")?;
        let _busy = (
            p.enter("VixDiskLib_IsAttachPossible")?,
            c.enter("VixDiskLib_IsAttachPossible")?,
        );
        let found = c.engine().can_attach(&p.engine());
        found.map_err(|e| {
            log::warn(&format!(
                "VixDiskLib_IsAttachPossible: {}",
                errors::describe(&e)
            ));
            errors::from_vmdk(&e)
        })?;
        Ok(VIX_OK)
    })
}

/// Puts `parent`'s chain under `child`: reads of what the child does not
/// hold go to the parent. The parent handle is gone afterwards, whether
/// the attach succeeded or not (as the real library documents: do not
/// close it). Its NFC connection is released too, so the chain is then
/// read without the link model.
#[no_mangle]
pub extern "C" fn VixDiskLib_Attach(parent: Handle, child: Handle) -> VixError {
    vix("VixDiskLib_Attach", |_| {
        require_init("VixDiskLib_Attach")?;
        let _global = enter_global("VixDiskLib_Attach")?;
        let (p, c) = attach_pair(parent, child, "VixDiskLib_Attach")?;
        let busy = (p.enter("VixDiskLib_Attach")?, c.enter("VixDiskLib_Attach")?);
        p.wait_idle();
        let chain = {
            let mut engine = p.engine();
            let _ = engine.flush();
            std::mem::replace(&mut *engine, VmdkDisk::detached())
        };
        handles::remove(parent);
        if let Some(l) = &p.link {
            l.release();
        }
        p.conn
            .open_disks
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        drop(busy);
        let attached = c.engine().attach(chain);
        attached.map_err(|e| {
            log::warn(&format!("VixDiskLib_Attach: {}", errors::describe(&e)));
            errors::from_vmdk(&e)
        })?;
        Ok(VIX_OK)
    })
}

/// The two disk handles of an attach, which must differ.
fn attach_pair(
    parent: Handle,
    child: Handle,
    function: &str,
) -> Result<(std::sync::Arc<handles::Disk>, std::sync::Arc<handles::Disk>), VixError> {
    if parent == child {
        return Err(VIX_E_INVALID_ARG);
    }
    Ok((
        handles::disk(parent, function)?,
        handles::disk(child, function)?,
    ))
}
