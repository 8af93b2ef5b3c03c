//! The connection owner: ConnectEx and Disconnect, and what is done on a
//! connection without a disk (Create, Grow, Clone, Unlink, CheckRepair,
//! GetConnectParams), PrepareForAccess, EndAccess and Cleanup.

use std::ffi::c_void;
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use vddk_sys::{VixDiskLibConnectParams, VixDiskLibConnection, VixDiskLibCreateParams};
use zeroize::Zeroizing;

use super::params::{owned, ConnectSpec, RawParams, ReportedCreds, ReportedParams};
use super::progress::Progress;
use super::{c_path, c_string, global_lock, logsink, Lib, RawDisk};
use crate::error::{CallContext, Result};

/// Progress sink for long operations: VDDK may not accept NULL everywhere,
/// and we never ask it to stop.
pub(super) extern "C" fn no_progress(
    _data: *mut c_void,
    _percent: std::ffi::c_int,
) -> vddk_sys::Bool {
    1
}

/// An open VDDK connection. Dropping it calls Disconnect.
pub(crate) struct RawConnection {
    handle: VixDiskLibConnection,
    pub(crate) lib: Arc<Lib>,
    remote: bool,
    given_thumbprint: Option<String>,
}

// SAFETY: the handle is an opaque token VDDK allows any thread to use, and
// every call that takes it (Open, Create, Grow, Clone, Disconnect) runs
// under the global lock, so no two threads use it at once.
unsafe impl Send for RawConnection {}
// SAFETY: as above; `&RawConnection` only reaches VDDK under the global lock.
unsafe impl Sync for RawConnection {}

impl RawConnection {
    /// ConnectEx.
    pub(crate) fn connect(lib: Arc<Lib>, p: &ConnectSpec<'_>) -> Result<RawConnection> {
        let snapshot = p.snapshot.map(|s| c_string("snapshot", s)).transpose()?;
        let transports = p
            .transports
            .as_deref()
            .map(|t| c_string("transports", t))
            .transpose()?;
        let remote = p.server.is_some();
        let given_thumbprint = p.thumbprint.clone();
        let params = RawParams::new(&lib, p)?;
        let mut handle: VixDiskLibConnection = ptr::null_mut();
        let (err, actual_thumbprint) = {
            let _guard = global_lock();
            logsink::clear_actual_thumbprint();
            // SAFETY: `params` and the strings are valid for the call; the
            // out-pointer is a live local; the global lock is held.
            let err = lib.timed("VixDiskLib_ConnectEx", 0, || unsafe {
                lib.core().VixDiskLib_ConnectEx(
                    params.as_ptr(),
                    vddk_sys::Bool::from(p.read_only),
                    snapshot.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                    transports.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                    &mut handle,
                )
            });
            (err, logsink::actual_thumbprint())
        };
        drop(params);
        let ctx = CallContext {
            remote,
            given_thumbprint: given_thumbprint.clone(),
            actual_thumbprint,
            ..CallContext::default()
        };
        lib.check("VixDiskLib_ConnectEx", err, &ctx)?;
        Ok(RawConnection {
            handle,
            lib,
            remote,
            given_thumbprint,
        })
    }

    /// What a failing call's hint needs to know.
    pub(crate) fn context(&self) -> CallContext {
        CallContext {
            remote: self.remote,
            given_thumbprint: self.given_thumbprint.clone(),
            actual_thumbprint: logsink::actual_thumbprint(),
            nfc_alloc_failed: logsink::recent_nfc_alloc_failure(),
        }
    }

    /// Open.
    pub(crate) fn open(self: &Arc<Self>, path: &Path, flags: u32) -> Result<RawDisk> {
        let cpath = c_path("disk path", path)?;
        let mut handle = ptr::null_mut();
        let (err, ctx) = {
            let _guard = global_lock();
            logsink::clear_actual_thumbprint();
            // SAFETY: live connection, valid string and out-pointer, global lock held.
            let err = self.lib.timed("VixDiskLib_Open", 0, || unsafe {
                self.lib
                    .core()
                    .VixDiskLib_Open(self.handle, cpath.as_ptr(), flags, &mut handle)
            });
            // Read under the lock: another Open would clear the line.
            (err, self.context())
        };
        self.lib.check("VixDiskLib_Open", err, &ctx)?;
        Ok(RawDisk::new(handle, Arc::clone(self), flags))
    }

    /// Create (local disks).
    pub(crate) fn create(&self, path: &Path, params: &VixDiskLibCreateParams) -> Result<()> {
        let cpath = c_path("disk path", path)?;
        let err = {
            let _guard = global_lock();
            // SAFETY: live connection, valid string and struct, global lock held.
            self.lib.timed("VixDiskLib_Create", 0, || unsafe {
                self.lib.core().VixDiskLib_Create(
                    self.handle,
                    cpath.as_ptr(),
                    params,
                    Some(no_progress),
                    ptr::null_mut(),
                )
            })
        };
        self.lib.check("VixDiskLib_Create", err, &self.context())
    }

    /// Grow (local disk, closed).
    pub(crate) fn grow(
        &self,
        path: &Path,
        capacity: u64,
        update_geometry: bool,
        report: &mut dyn FnMut(u8) -> bool,
    ) -> Result<()> {
        let grow = self
            .lib
            .optional()
            .grow
            .ok_or_else(|| self.lib.unsupported("VixDiskLib_Grow"))?;
        let cpath = c_path("disk path", path)?;
        let mut progress = Progress::new(report);
        let (func, data) = progress.callback();
        let err = {
            let _guard = global_lock();
            // SAFETY: live connection, valid string, global lock held;
            // `data` is `progress`, alive until after the call.
            self.lib.timed("VixDiskLib_Grow", 0, || unsafe {
                grow(
                    self.handle,
                    cpath.as_ptr(),
                    capacity,
                    vddk_sys::Bool::from(update_geometry),
                    func,
                    data,
                )
            })
        };
        let outcome = self.lib.check("VixDiskLib_Grow", err, &self.context());
        progress.finish("VixDiskLib_Grow", outcome)
    }

    /// Clone `src_path` on `src` to `dst_path` on this connection.
    pub(crate) fn clone_disk(
        &self,
        dst_path: &Path,
        src: &RawConnection,
        src_path: &Path,
        params: &VixDiskLibCreateParams,
        overwrite: bool,
        report: &mut dyn FnMut(u8) -> bool,
    ) -> Result<()> {
        let clone = self
            .lib
            .optional()
            .clone
            .ok_or_else(|| self.lib.unsupported("VixDiskLib_Clone"))?;
        let dst = c_path("destination path", dst_path)?;
        let srcp = c_path("source path", src_path)?;
        let mut progress = Progress::new(report);
        let (func, data) = progress.callback();
        let err = {
            let _guard = global_lock();
            // SAFETY: both connections are live, strings and struct valid,
            // global lock held; `data` is `progress`, alive until after the
            // call.
            self.lib.timed("VixDiskLib_Clone", 0, || unsafe {
                clone(
                    self.handle,
                    dst.as_ptr(),
                    src.handle,
                    srcp.as_ptr(),
                    params,
                    func,
                    data,
                    vddk_sys::Bool::from(overwrite),
                )
            })
        };
        let outcome = self.lib.check("VixDiskLib_Clone", err, &self.context());
        progress.finish("VixDiskLib_Clone", outcome)
    }
}

impl RawConnection {
    /// Unlink: deletes a local disk's descriptor and extent files.
    pub(crate) fn unlink(&self, path: &Path) -> Result<()> {
        let unlink = self
            .lib
            .optional()
            .unlink
            .ok_or_else(|| self.lib.unsupported("VixDiskLib_Unlink"))?;
        let cpath = c_path("disk path", path)?;
        let err = {
            let _guard = global_lock();
            // SAFETY: live connection, valid string, global lock held.
            self.lib.timed("VixDiskLib_Unlink", 0, || unsafe {
                unlink(self.handle, cpath.as_ptr())
            })
        };
        self.lib.check("VixDiskLib_Unlink", err, &self.context())
    }

    /// CheckRepair: checks a closed disk's metadata, repairing it if asked.
    pub(crate) fn check_repair(&self, path: &Path, repair: bool) -> Result<()> {
        let check_repair = self
            .lib
            .optional()
            .check_repair
            .ok_or_else(|| self.lib.unsupported("VixDiskLib_CheckRepair"))?;
        let cpath = c_path("disk path", path)?;
        let err = {
            let _guard = global_lock();
            // SAFETY: live connection, valid string, global lock held.
            self.lib.timed("VixDiskLib_CheckRepair", 0, || unsafe {
                check_repair(self.handle, cpath.as_ptr(), vddk_sys::Bool::from(repair))
            })
        };
        self.lib
            .check("VixDiskLib_CheckRepair", err, &self.context())
    }
}

impl RawConnection {
    /// GetConnectParams: the parameters the library holds for this
    /// connection.
    pub(crate) fn connect_params(&self) -> Result<ReportedParams> {
        let opt = self.lib.optional();
        let (get, free) = match (opt.get_connect_params, opt.free_connect_params) {
            (Some(g), Some(f)) => (g, f),
            // Without FreeConnectParams the answer could not be freed.
            _ => return Err(self.lib.unsupported("VixDiskLib_GetConnectParams")),
        };
        let mut out: *mut VixDiskLibConnectParams = ptr::null_mut();
        let err = {
            let _guard = global_lock();
            // SAFETY: live connection, out-pointer to a local, global lock held.
            self.lib.timed("VixDiskLib_GetConnectParams", 0, || unsafe {
                get(self.handle, &mut out)
            })
        };
        self.lib
            .check("VixDiskLib_GetConnectParams", err, &self.context())?;
        if out.is_null() {
            return Err(crate::Error::InvalidArgument(
                "VixDiskLib_GetConnectParams succeeded without parameters".into(),
            ));
        }
        // SAFETY: on success `out` points to a struct the library filled,
        // whose string members are NULL or NUL-terminated and whose union
        // member is the one credType names; it stays valid until freed
        // below, after everything has been copied.
        let reported = unsafe {
            let c = &*out;
            let creds = match c.credType {
                vddk_sys::VIXDISKLIB_CRED_UID => Some(ReportedCreds::UserPassword {
                    user: owned(c.creds.uid.userName).unwrap_or_default(),
                    password: Zeroizing::new(owned(c.creds.uid.password).unwrap_or_default()),
                }),
                vddk_sys::VIXDISKLIB_CRED_SESSIONID => Some(ReportedCreds::SessionCookie {
                    cookie: Zeroizing::new(owned(c.creds.sessionId.cookie).unwrap_or_default()),
                    user: owned(c.creds.sessionId.userName),
                    key: owned(c.creds.sessionId.key).map(Zeroizing::new),
                }),
                _ => None,
            };
            ReportedParams {
                vmx_spec: owned(c.vmxSpec),
                server: owned(c.serverName),
                thumbprint: owned(c.thumbPrint),
                port: c.port,
                nfc_host_port: c.nfcHostPort,
                creds,
            }
        };
        // SAFETY: allocated by GetConnectParams, freed once, not used after.
        unsafe { free(out) };
        Ok(reported)
    }
}

impl Lib {
    /// Rename: moves a local disk (descriptor and extents) to a new name.
    pub(crate) fn rename(&self, src: &Path, dst: &Path) -> Result<()> {
        let rename = self
            .optional()
            .rename
            .ok_or_else(|| self.unsupported("VixDiskLib_Rename"))?;
        let from = c_path("source path", src)?;
        let to = c_path("destination path", dst)?;
        let err = {
            let _guard = global_lock();
            // SAFETY: valid strings, global lock held.
            self.timed("VixDiskLib_Rename", 0, || unsafe {
                rename(from.as_ptr(), to.as_ptr())
            })
        };
        self.check("VixDiskLib_Rename", err, &CallContext::default())
    }
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        let _guard = global_lock();
        // SAFETY: the handle came from a successful ConnectEx and every
        // disk opened on it holds an Arc to this connection, so all are closed.
        let err = self.lib.timed("VixDiskLib_Disconnect", 0, || unsafe {
            self.lib.core().VixDiskLib_Disconnect(self.handle)
        });
        if let Err(e) = self
            .lib
            .check("VixDiskLib_Disconnect", err, &CallContext::default())
        {
            ::log::warn!(target: logsink::TARGET, "{e}");
        }
    }
}

impl Lib {
    /// PrepareForAccess, the vCenter call that blocks VM migration while
    /// disks are read.
    pub(crate) fn prepare_for_access(&self, p: &ConnectSpec<'_>, identity: &str) -> Result<()> {
        self.access(
            "VixDiskLib_PrepareForAccess",
            self.optional().prepare_for_access,
            p,
            identity,
        )
    }

    /// EndAccess, undoing PrepareForAccess.
    pub(crate) fn end_access(&self, p: &ConnectSpec<'_>, identity: &str) -> Result<()> {
        self.access(
            "VixDiskLib_EndAccess",
            self.optional().end_access,
            p,
            identity,
        )
    }

    /// Cleanup: what a crashed earlier run left behind for these
    /// parameters; (cleaned up, still remaining).
    pub(crate) fn cleanup(&self, p: &ConnectSpec<'_>) -> Result<(u32, u32)> {
        let f = self
            .optional()
            .cleanup
            .ok_or_else(|| self.unsupported("VixDiskLib_Cleanup"))?;
        let params = RawParams::new(self, p)?;
        let (mut cleaned, mut remaining) = (0u32, 0u32);
        let err = {
            let _guard = global_lock();
            // SAFETY: params are valid for the call, the out-pointers are
            // live locals; global lock held (it may mount and unmount).
            self.timed("VixDiskLib_Cleanup", 0, || unsafe {
                f(params.as_ptr(), &mut cleaned, &mut remaining)
            })
        };
        drop(params);
        self.check(
            "VixDiskLib_Cleanup",
            err,
            &CallContext {
                remote: p.server.is_some(),
                ..CallContext::default()
            },
        )?;
        Ok((cleaned, remaining))
    }

    fn access(
        &self,
        call: &'static str,
        f: vddk_sys::VixDiskLib_PrepareForAccessFn,
        p: &ConnectSpec<'_>,
        identity: &str,
    ) -> Result<()> {
        let f = f.ok_or_else(|| self.unsupported(call))?;
        let id = c_string("identity", identity)?;
        let params = RawParams::new(self, p)?;
        let err = {
            let _guard = global_lock();
            // SAFETY: params and identity are valid for the call; global lock held.
            self.timed(call, 0, || unsafe { f(params.as_ptr(), id.as_ptr()) })
        };
        drop(params);
        self.check(
            call,
            err,
            &CallContext {
                remote: true,
                ..CallContext::default()
            },
        )
    }
}
