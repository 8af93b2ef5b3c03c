//! Open, Close, GetInfo, FreeInfo, GetTransportMode and Flush.

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{disk_call, malloc_string, opt_str, put, vix, VixResult};
use crate::ffi::*;
use crate::handles::{self, Allocation, Conn, Disk, RemoteConn};
use crate::knobs::{self, Op};
use crate::link::{self, DiskLink};
use crate::remote::{self, canonical_thumbprint};
use crate::rules::{enter_global, require_init, violation};
use crate::vmdk::{Adapter, VmdkDisk};
use crate::{errors, log};

fn transport_cstr(name: &str) -> &'static CStr {
    match name {
        "nbdssl" => c"nbdssl",
        "nbd" => c"nbd",
        "san" => c"san",
        "hotadd" => c"hotadd",
        _ => c"file",
    }
}

/// Where a remote disk path leads, after the checks the real library makes
/// (certificate, transport, VM and snapshot membership): the local file,
/// the transport, and the datastore path opened (the snapshot's disk with
/// a snapshot).
pub(crate) fn resolve_remote(
    rc: &RemoteConn,
    conn: &Conn,
    path: &str,
) -> Result<(PathBuf, &'static CStr, String), VixError> {
    let Some(transport) = rc.transports.first() else {
        log::warn(&format!(
            "VixDiskLib: Open: none of the requested transport modes is offered by {} (it offers {}); \
             pass one of those to ConnectEx",
            rc.server.name,
            rc.server.transports.join(":")
        ));
        return Err(VIX_E_FAIL);
    };
    let given = conn.params.thumbprint.as_deref().map(canonical_thumbprint);
    if given.as_deref() != Some(rc.server.thumbprint.as_str()) {
        log::warn(&format!(
            "SSL Verification: Failed to verify SSL certificate: actual thumbprint={} expected={}",
            rc.server.thumbprint,
            conn.params.thumbprint.as_deref().unwrap_or("(null)")
        ));
        log::warn(&format!(
            "VixDiskLib: Cannot open disk {path}: Unknown error"
        ));
        return Err(VIX_E_FAIL);
    }
    let wanted = path.trim();
    let mut target = wanted.to_string();
    if let Some(vm) = &rc.vm {
        // With a snapshot, the disk may be named as the VM has it (the
        // snapshot's disk is opened) or as the snapshot's own
        // configuration has it (its delta file: what CDI's warm import and
        // backup tools read from the snapshot's hardware list).
        let own = rc.snapshot.as_ref().and_then(|snap| {
            vm.snapshots
                .iter()
                .find(|s| &s.snapshot == snap && s.target.trim() == wanted)
        });
        match own {
            Some(s) => target = s.target.clone(),
            None => target = vm_disk_in_snapshot(rc, vm, wanted)?,
        }
    }
    match remote::inventory().resolve(&target) {
        Ok(p) => Ok((p, transport_cstr(transport), target)),
        Err(why) => {
            log::warn(&format!("VixDiskLib: Open: {why}"));
            Err(VIX_E_FILE_NOT_FOUND)
        }
    }
}

/// `wanted`, a disk of the VM, as the connection's snapshot (if any) has
/// it.
fn vm_disk_in_snapshot(rc: &RemoteConn, vm: &remote::Vm, wanted: &str) -> Result<String, VixError> {
    if !vm.disks.iter().any(|d| d.trim() == wanted) {
        log::warn(&format!(
            "VixDiskLib: Open: {wanted} is not a disk of VM {}",
            vm.moref
        ));
        return Err(VIX_E_FILE_NOT_FOUND);
    }
    let Some(snap) = &rc.snapshot else {
        return Ok(wanted.to_string());
    };
    match vm
        .snapshots
        .iter()
        .find(|s| &s.snapshot == snap && s.disk.trim() == wanted)
    {
        Some(s) => Ok(s.target.clone()),
        None => {
            log::warn(&format!(
                "VixDiskLib: Open: snapshot {snap} does not contain {wanted}"
            ));
            Err(VIX_E_FILE_NOT_FOUND)
        }
    }
}

/// Logs what the real library logs when an ESXi host refuses one more NFC
/// connection and returns the code Open gives. The DISKLIB line shapes are
/// those of a real failed remote Open; `NBD_ERR_GENERIC` is the error VMware
/// KB 1022543 names for too many NFC connections; the `[NFC ERROR]` text
/// and the VIX code (VIX_E_FAIL) are unverified.
fn nfc_limit_reached(path: &str, url: &str, host: &str, open: usize, max: u32) -> VixError {
    log::warn(&format!(
        "[NFC ERROR]NfcFssrvr_DiskOpen: the server refused the connection: {host} has {open} NFC \
         connections open, its limit (max_nfc_connections) is {max}"
    ));
    log::info(&format!(
        "DISKLIB-DSCPTR: DescriptorOpenNbd: Failed to open NBD extent '{url}': NBD_ERR_GENERIC"
    ));
    log::info(&format!(
        "DISKLIB-LINK  : \"{url}\" : failed to open (NBD_ERR_GENERIC)."
    ));
    log::warn(&format!(
        "VixDiskLib: VixDiskLib_Open: Cannot open disk {path}. Error {} ({}); close a disk on {host} \
         first",
        link::LIMIT_CODE,
        errors::text(link::LIMIT_CODE)
    ));
    link::LIMIT_CODE
}

/// Opens a disk: a local VMDK path, or a datastore path on a remote connection.
#[no_mangle]
pub extern "C" fn VixDiskLib_Open(
    connection: Connection,
    path: *const c_char,
    flags: u32,
    out: *mut Handle,
) -> VixError {
    vix("VixDiskLib_Open", |_| -> VixResult {
        require_init("VixDiskLib_Open")?;
        let _global = enter_global("VixDiskLib_Open")?;
        let conn = handles::conn(connection, "VixDiskLib_Open")?;
        // SAFETY: NULL or a NUL-terminated string from the caller.
        let Some(path) = (unsafe { opt_str(path) }) else {
            return Err(VIX_E_INVALID_ARG);
        };
        if out.is_null() {
            return Err(VIX_E_INVALID_ARG);
        }
        knobs::call_latency();
        if let Some(code) = knobs::get().inject(Op::Open) {
            log::warn(&format!(
                "VixDiskLib: Open {path}: injected failure {}",
                errors::name(code)
            ));
            return Err(code);
        }
        let read_only = conn.read_only || flags & FLAG_OPEN_READ_ONLY != 0;
        if let Some(cl) = &conn.link {
            cl.check("VixDiskLib_Open", &path)?;
        }
        let (file, transport, nfc_name) = match &conn.remote {
            None => (PathBuf::from(&path), c"file", None),
            Some(rc) => {
                if !rc.link.open_cost.is_zero() {
                    std::thread::sleep(rc.link.open_cost);
                }
                if conn.params.cred_type == CRED_SESSIONID {
                    if let Some(why) = super::connect::cookie_expired(&rc.server, &rc.link) {
                        log::warn(&why);
                        log::warn(&format!(
                            "VixDiskLib: VixDiskLib_Open: Cannot open disk {path}. Error {} ({})",
                            VIX_E_AUTHENTICATION_FAIL,
                            errors::text(VIX_E_AUTHENTICATION_FAIL)
                        ));
                        return Err(VIX_E_AUTHENTICATION_FAIL);
                    }
                }
                let (file, transport, target) = resolve_remote(rc, &conn, &path)?;
                let port = conn
                    .link
                    .as_ref()
                    .map_or(conn.params.nfc_port, |l| l.nfc_port);
                let url = link::nfc_url(
                    &transport.to_string_lossy(),
                    flags,
                    &target,
                    &rc.nfc_host,
                    port,
                );
                (file, transport, Some(url))
            }
        };
        let nfc =
            match (&conn.link, &nfc_name) {
                (Some(cl), Some(url)) => Some(DiskLink::admit(cl).map_err(|(open, max)| {
                    nfc_limit_reached(&path, url, &cl.host.name, open, max)
                })?),
                _ => None,
            };
        let engine =
            VmdkDisk::open(&file, read_only, flags & FLAG_OPEN_SINGLE_LINK != 0).map_err(|e| {
                log::warn(&format!(
                    "VixDiskLib: Cannot open disk {path}: {}",
                    errors::describe(&e)
                ));
                errors::from_vmdk(&e)
            })?;
        match &nfc_name {
            // The server opens the chain; the client logs one "custom" link.
            Some(url) => log::info(&link::opened_line(
                url,
                read_only,
                "custom",
                engine.capacity(),
            )),
            None => {
                for (link_path, kind, sectors) in engine.links() {
                    log::info(&link::opened_line(
                        &link_path.display().to_string(),
                        read_only,
                        &kind,
                        sectors,
                    ));
                }
            }
        }
        log::info(&format!(
            "VixDiskLib: Opened {path} (transport {}, {})",
            transport.to_string_lossy(),
            if read_only { "read-only" } else { "read-write" }
        ));
        let disk = Arc::new(Disk::new(
            conn.clone(),
            engine,
            file,
            read_only,
            transport,
            nfc,
        ));
        conn.open_disks.fetch_add(1, Ordering::SeqCst);
        let handle = handles::add_disk(disk);
        // SAFETY: checked non-NULL above.
        unsafe { put(out, handle) }?;
        Ok(VIX_OK)
    })
}

/// Closes a disk handle after its in-flight async requests complete.
#[no_mangle]
pub extern "C" fn VixDiskLib_Close(handle: Handle) -> VixError {
    vix("VixDiskLib_Close", |_| {
        require_init("VixDiskLib_Close")?;
        let _global = enter_global("VixDiskLib_Close")?;
        let disk = handles::disk(handle, "VixDiskLib_Close")?;
        if disk.open_thread != std::thread::current().id() && knobs::get().same_thread {
            return Err(violation(
                VIX_E_FAIL,
                &format!(
                    "VixDiskLib_Close of {} on another thread than its Open (FAKE_VDDK_SAME_THREAD=1); \
                     open and close every disk from one thread",
                    disk.path.display()
                ),
            ));
        }
        let _busy = disk.enter("VixDiskLib_Close")?;
        knobs::call_latency();
        disk.wait_idle();
        let flushed = disk.engine().flush();
        handles::remove(handle);
        if let Some(l) = &disk.link {
            l.release();
        }
        disk.conn.open_disks.fetch_sub(1, Ordering::SeqCst);
        flushed.map_err(|e| errors::from_vmdk(&e))?;
        Ok(VIX_OK)
    })
}

fn adapter_code(a: Adapter) -> u32 {
    match a {
        Adapter::Ide => 1,
        Adapter::BusLogic => 2,
        Adapter::LsiLogic => 3,
        Adapter::Unknown => 256,
    }
}

/// The disk's geometry, capacity, adapter, chain length and UUID.
#[no_mangle]
pub extern "C" fn VixDiskLib_GetInfo(handle: Handle, out: *mut *mut Info) -> VixError {
    disk_call("VixDiskLib_GetInfo", handle, |_, disk| {
        if out.is_null() {
            return Err(VIX_E_INVALID_ARG);
        }
        knobs::call_latency();
        disk.check_link("VixDiskLib_GetInfo")?;
        let info = disk.engine().info();
        let geo = |g: crate::vmdk::Geometry| Geometry {
            cylinders: g.cylinders,
            heads: g.heads,
            sectors: g.sectors,
        };
        let opt = |s: &Option<String>| s.as_deref().map_or(std::ptr::null_mut(), malloc_string);
        // SAFETY: malloc of one Info, checked for NULL, fully written below.
        let p = unsafe { libc::malloc(std::mem::size_of::<Info>()) } as *mut Info;
        if p.is_null() {
            return Err(VIX_E_OUT_OF_MEMORY);
        }
        // SAFETY: `p` is valid for one Info write.
        unsafe {
            p.write(Info {
                bios_geo: geo(info.bios_geometry),
                phys_geo: geo(info.physical_geometry),
                capacity: info.capacity,
                adapter_type: adapter_code(info.adapter),
                num_links: info.num_links,
                parent_file_name_hint: opt(&info.parent_hint),
                uuid: opt(&info.uuid),
                logical_sector_size: 512,
                physical_sector_size: 512,
            })
        };
        handles::track(p as *mut c_void, Allocation::Info);
        // SAFETY: checked non-NULL above.
        unsafe { put(out, p) }?;
        Ok(VIX_OK)
    })
}

/// Frees a GetInfo result.
#[no_mangle]
pub extern "C" fn VixDiskLib_FreeInfo(info: *mut Info) {
    super::other("VixDiskLib_FreeInfo", (), || {
        if info.is_null()
            || handles::untrack(
                info as *mut c_void,
                &[Allocation::Info],
                "VixDiskLib_FreeInfo",
            )
            .is_err()
        {
            return;
        }
        // SAFETY: tracked as an Info we built in GetInfo; its strings came
        // from malloc_string and are freed exactly once, here.
        unsafe {
            super::free_string((*info).parent_file_name_hint);
            super::free_string((*info).uuid);
            libc::free(info as *mut c_void);
        }
    })
}

/// The transport the handle uses: "file" locally, the chosen one remotely.
#[no_mangle]
pub extern "C" fn VixDiskLib_GetTransportMode(handle: Handle) -> *const c_char {
    super::other("VixDiskLib_GetTransportMode", c"".as_ptr(), || {
        if require_init("VixDiskLib_GetTransportMode").is_err() {
            return c"".as_ptr();
        }
        match handles::disk(handle, "VixDiskLib_GetTransportMode") {
            Ok(d) => d.transport.as_ptr(),
            Err(_) => c"".as_ptr(),
        }
    })
}

/// Makes completed writes durable.
#[no_mangle]
pub extern "C" fn VixDiskLib_Flush(handle: Handle) -> VixError {
    disk_call("VixDiskLib_Flush", handle, |_, disk| {
        knobs::call_latency();
        if let Some(code) = knobs::get().inject(Op::Flush) {
            log::warn(&format!(
                "VixDiskLib: Flush: injected failure {}",
                errors::name(code)
            ));
            return Err(code);
        }
        disk.wait_idle();
        disk.check_link("VixDiskLib_Flush")?;
        disk.engine().flush().map_err(|e| errors::from_vmdk(&e))?;
        Ok(VIX_OK)
    })
}
