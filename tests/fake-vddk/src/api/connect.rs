//! ConnectEx, Disconnect, connect-params allocation, PrepareForAccess,
//! EndAccess and Cleanup.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{malloc_string, opt_str, put, vix, VixResult};
use crate::ffi::*;
use crate::handles::{self, Allocation, Conn, OwnedParams, RemoteConn};
use crate::link::{self, ConnLink, LinkConfig};
use crate::remote::{self, Inventory, Kind, Server};
use crate::rules::{enter_global, require_init, violation};
use crate::{knobs, log};

const DEFAULT_TRANSPORTS: &str = "file:san:hotadd:nbdssl:nbd";

/// Copies the caller's ConnectParams into owned strings.
///
/// # Safety
/// `p` is non-NULL and points to a ConnectParams whose string members are
/// NULL or NUL-terminated.
unsafe fn read_params(p: *const ConnectParams) -> OwnedParams {
    // SAFETY: guaranteed by the caller.
    let p = unsafe { &*p };
    // SAFETY: string members per the caller's guarantee; the union member
    // read is the one `cred_type` selects.
    unsafe {
        let mut out = OwnedParams {
            vmx_spec: opt_str(p.vmx_spec),
            server_name: opt_str(p.server_name).filter(|s| !s.is_empty()),
            thumbprint: opt_str(p.thumb_print),
            cred_type: p.cred_type,
            port: p.port,
            nfc_port: p.nfc_host_port,
            ..OwnedParams::default()
        };
        match p.cred_type {
            CRED_UID => {
                out.user = opt_str(p.creds.uid.user_name);
                out.password = opt_str(p.creds.uid.password);
            }
            CRED_SESSIONID => {
                out.cookie = opt_str(p.creds.session_id.cookie);
                out.user = opt_str(p.creds.session_id.user_name);
                out.key = opt_str(p.creds.session_id.key);
            }
            _ => {}
        }
        out
    }
}

/// A server's link settings with the environment's overrides.
pub(crate) fn link_config(server: &Server) -> LinkConfig {
    knobs::get().link.apply(&server.link)
}

/// Why a session cookie is refused once `session_ttl_s` has passed, or
/// `None` while it is accepted. Passwords never expire: each password login
/// makes a new vSphere session, while a cookie names one session, which
/// vCenter ends (after 30 idle minutes by default; here after the TTL,
/// counted from InitEx).
pub(crate) fn cookie_expired(server: &Server, cfg: &LinkConfig) -> Option<String> {
    let ttl = cfg.session_ttl?;
    link::session_expired(Some(ttl)).then(|| {
        format!(
            "VixDiskLibVim: cannot use the session cookie for {}: The session is not authenticated. \
             (session_ttl_s = {} has passed since InitEx; log in with a user name and password, \
             or get a new cookie)",
            server.name,
            ttl.as_secs_f64()
        )
    })
}

/// The checks a login makes: server known, port open, credentials valid,
/// cookie not expired; takes the server's `connect_cost_ms`.
fn login(inv: &Inventory, params: &OwnedParams, function: &str) -> Result<Server, VixError> {
    let name = params.server_name.as_deref().unwrap_or("");
    let Some(server) = inv.server(name) else {
        log::warn(&format!(
            "VixDiskLib: {function}: cannot resolve host {name:?} (not in FAKE_VDDK_INVENTORY)"
        ));
        return Err(VIX_E_HOST_SERVER_NOT_FOUND);
    };
    let port = if params.port == 0 { 443 } else { params.port };
    if port != server.port {
        log::warn(&format!(
            "VixDiskLib: {function}: connection to {name}:{port} refused (the server listens on {})",
            server.port
        ));
        return Err(VIX_E_HOST_NETWORK_CONN_REFUSED);
    }
    let cfg = link_config(server);
    if !cfg.connect_cost.is_zero() {
        std::thread::sleep(cfg.connect_cost);
    }
    let ok = match params.cred_type {
        CRED_UID => server.users.iter().any(|(u, p)| {
            Some(u.as_str()) == params.user.as_deref()
                && Some(p.as_str()) == params.password.as_deref()
        }),
        CRED_SESSIONID => server
            .cookies
            .iter()
            .any(|c| Some(c.as_str()) == params.cookie.as_deref()),
        _ => false,
    };
    if !ok {
        log::warn(&format!(
            "VixDiskLib: {function}: cannot log in to {name}: incorrect user name, password or session cookie \
             (credential type {})",
            params.cred_type
        ));
        return Err(VIX_E_AUTHENTICATION_FAIL);
    }
    if params.cred_type == CRED_SESSIONID {
        if let Some(why) = cookie_expired(server, &cfg) {
            log::warn(&why);
            log::warn(&format!(
                "VixDiskLib: {function}: cannot log in to {name}: Error {} ({})",
                VIX_E_AUTHENTICATION_FAIL,
                crate::errors::text(VIX_E_AUTHENTICATION_FAIL)
            ));
            return Err(VIX_E_AUTHENTICATION_FAIL);
        }
    }
    Ok(server.clone())
}

/// The moref in a vmxSpec such as `moref=vm-42`.
fn moref(vmx_spec: &str) -> Option<&str> {
    vmx_spec
        .split(['&', '?'])
        .find_map(|part| part.trim().strip_prefix("moref="))
}

fn connect_remote(
    params: &OwnedParams,
    snapshot: Option<String>,
    transports: &str,
) -> Result<RemoteConn, VixError> {
    let inv = remote::inventory();
    let server = login(&inv, params, "VixDiskLib_ConnectEx")?;
    let vm = match params.vmx_spec.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(spec) => {
            let Some(id) = moref(spec) else {
                log::warn(&format!(
                    "VixDiskLib: ConnectEx: vmxSpec {spec:?} has no moref=; pass e.g. moref=vm-42"
                ));
                return Err(VIX_E_INVALID_ARG);
            };
            match inv.vm(&server.name, id) {
                Some(vm) => Some(vm.clone()),
                None => {
                    log::warn(&format!(
                        "VixDiskLib: ConnectEx: no VM with moref {id} on {}",
                        server.name
                    ));
                    return Err(VIX_E_VM_NOT_FOUND);
                }
            }
        }
    };
    if let Some(snap) = &snapshot {
        if !vm.as_ref().is_some_and(|vm| vm.has_snapshot(snap)) {
            log::warn(&format!(
                "VixDiskLib: ConnectEx: snapshot {snap} not found on the VM"
            ));
            return Err(VIX_E_SNAPSHOT_NOTFOUND);
        }
    }
    let transports = transports
        .split(':')
        .filter(|t| *t != "file" && server.transports.iter().any(|s| s == t))
        .map(str::to_string)
        .collect();
    let nfc_host = vm
        .as_ref()
        .and_then(|vm| vm.esx_host.clone())
        .unwrap_or_else(|| server.name.clone());
    let link = link_config(&server);
    Ok(RemoteConn {
        server,
        vm,
        snapshot,
        transports,
        link,
        nfc_host,
    })
}

/// The link model of a new remote connection, when its server has link
/// settings. The host's shared settings (`host_bandwidth`,
/// `drop_every_bytes`, `max_nfc_connections`) come from the ESXi host's
/// own `[server]` section when the inventory has one, else from the server
/// connected to.
fn conn_link(rc: &RemoteConn, nfc_port: u32) -> Option<Arc<ConnLink>> {
    let host_cfg = remote::inventory()
        .server(&rc.nfc_host)
        .map(link_config)
        .unwrap_or_else(|| rc.link.clone());
    if !(rc.link.per_io() || host_cfg.per_io()) {
        return None;
    }
    log::info(&format!(
        "VixDiskLib: fake-vddk link model: {} (NFC host {}): {}; host: {}",
        rc.server.name,
        rc.nfc_host,
        link::describe(&rc.link),
        link::describe(&host_cfg)
    ));
    Some(Arc::new(ConnLink::new(
        &rc.nfc_host,
        nfc_port,
        &rc.link,
        &host_cfg,
    )))
}

/// Connects to the local host (serverName NULL or empty) or a simulated server.
#[no_mangle]
pub extern "C" fn VixDiskLib_ConnectEx(
    params: *const ConnectParams,
    read_only: Bool,
    snapshot_ref: *const c_char,
    transport_modes: *const c_char,
    connection: *mut Connection,
) -> VixError {
    vix("VixDiskLib_ConnectEx", |_| -> VixResult {
        require_init("VixDiskLib_ConnectEx")?;
        let _global = enter_global("VixDiskLib_ConnectEx")?;
        if params.is_null() || connection.is_null() {
            return Err(VIX_E_INVALID_ARG);
        }
        knobs::call_latency();
        // SAFETY: non-NULL; the ABI says it points to ConnectParams.
        let owned = unsafe { read_params(params) };
        // SAFETY: NULL or NUL-terminated strings from the caller.
        let (snapshot, modes) = unsafe { (opt_str(snapshot_ref), opt_str(transport_modes)) };
        let snapshot = snapshot.filter(|s| !s.is_empty());
        let modes = modes
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_TRANSPORTS.into());
        let remote = match owned.server_name {
            None => None,
            Some(_) => Some(connect_remote(&owned, snapshot, &modes)?),
        };
        let link = remote.as_ref().and_then(|rc| conn_link(rc, owned.nfc_port));
        let conn = Arc::new(Conn {
            read_only: read_only != 0,
            params: owned,
            remote,
            open_disks: Default::default(),
            link,
        });
        let handle = handles::add_conn(conn);
        // SAFETY: checked non-NULL above; the caller provides the out slot.
        unsafe { put(connection, handle) }?;
        Ok(VIX_OK)
    })
}

/// Closes a connection; its disks must be closed first.
#[no_mangle]
pub extern "C" fn VixDiskLib_Disconnect(connection: Connection) -> VixError {
    vix("VixDiskLib_Disconnect", |_| {
        require_init("VixDiskLib_Disconnect")?;
        let _global = enter_global("VixDiskLib_Disconnect")?;
        let conn = handles::conn(connection, "VixDiskLib_Disconnect")?;
        let open = conn.open_disks.load(Ordering::SeqCst);
        if open > 0 {
            return Err(violation(
                VIX_E_OBJECT_IS_BUSY,
                &format!(
                    "VixDiskLib_Disconnect with {open} disk handle(s) still open; Close them first"
                ),
            ));
        }
        handles::remove(connection);
        Ok(VIX_OK)
    })
}

/// A zeroed ConnectParams of this library's size; free with FreeConnectParams.
#[no_mangle]
pub extern "C" fn VixDiskLib_AllocateConnectParams() -> *mut ConnectParams {
    super::other(
        "VixDiskLib_AllocateConnectParams",
        std::ptr::null_mut(),
        || {
            // SAFETY: calloc of one zeroed struct; all-zero is a valid ConnectParams.
            let p = unsafe { libc::calloc(1, std::mem::size_of::<ConnectParams>()) };
            handles::track(p, Allocation::ConnectParams);
            p as *mut ConnectParams
        },
    )
}

/// Frees AllocateConnectParams/GetConnectParams results. Strings the
/// caller stored in an allocated struct stay the caller's.
#[no_mangle]
pub extern "C" fn VixDiskLib_FreeConnectParams(params: *mut ConnectParams) {
    super::other("VixDiskLib_FreeConnectParams", (), || {
        if params.is_null() {
            return;
        }
        let kinds = [
            Allocation::ConnectParams,
            Allocation::ConnectParamsWithStrings,
        ];
        let Ok(kind) = handles::untrack(
            params as *mut c_void,
            &kinds,
            "VixDiskLib_FreeConnectParams",
        ) else {
            return;
        };
        if kind == Allocation::ConnectParamsWithStrings {
            // SAFETY: this struct came from GetConnectParams, which filled
            // every string member with malloc_string (or NULL) and set the
            // union member matching cred_type.
            unsafe {
                let p = &*params;
                for s in [p.vmx_spec, p.server_name, p.thumb_print] {
                    super::free_string(s);
                }
                match p.cred_type {
                    CRED_UID => {
                        super::free_string(p.creds.uid.user_name);
                        super::free_string(p.creds.uid.password);
                    }
                    CRED_SESSIONID => {
                        super::free_string(p.creds.session_id.cookie);
                        super::free_string(p.creds.session_id.user_name);
                        super::free_string(p.creds.session_id.key);
                    }
                    _ => {}
                }
            }
        }
        // SAFETY: tracked as ours, so it came from calloc and is freed once.
        unsafe { libc::free(params as *mut c_void) };
    })
}

/// The parameters a connection was made with (strings owned by the result).
#[no_mangle]
pub extern "C" fn VixDiskLib_GetConnectParams(
    connection: Connection,
    out: *mut *mut ConnectParams,
) -> VixError {
    vix("VixDiskLib_GetConnectParams", |_| {
        require_init("VixDiskLib_GetConnectParams")?;
        let conn = handles::conn(connection, "VixDiskLib_GetConnectParams")?;
        if out.is_null() {
            return Err(VIX_E_INVALID_ARG);
        }
        let o = &conn.params;
        let s = |v: &Option<String>| v.as_deref().map_or(std::ptr::null_mut(), malloc_string);
        // SAFETY: calloc of one zeroed struct, checked for NULL.
        let p =
            unsafe { libc::calloc(1, std::mem::size_of::<ConnectParams>()) } as *mut ConnectParams;
        if p.is_null() {
            return Err(VIX_E_OUT_OF_MEMORY);
        }
        // SAFETY: `p` is a valid, zeroed ConnectParams we own.
        unsafe {
            let q = &mut *p;
            q.vmx_spec = s(&o.vmx_spec);
            q.server_name = s(&o.server_name);
            q.thumb_print = s(&o.thumbprint);
            q.cred_type = o.cred_type;
            q.port = o.port;
            q.nfc_host_port = o.nfc_port;
            match o.cred_type {
                CRED_UID => {
                    q.creds.uid = UidPasswdCreds {
                        user_name: s(&o.user),
                        password: s(&o.password),
                    }
                }
                CRED_SESSIONID => {
                    q.creds.session_id = SessionIdCreds {
                        cookie: s(&o.cookie),
                        user_name: s(&o.user),
                        key: s(&o.key),
                    }
                }
                _ => {}
            }
        }
        handles::track(p as *mut c_void, Allocation::ConnectParamsWithStrings);
        // SAFETY: checked non-NULL above.
        unsafe { put(out, p) }?;
        Ok(VIX_OK)
    })
}

/// PrepareForAccess calls not yet matched by EndAccess, by server and VM.
static PREPARED: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn access_key(
    function: &str,
    params: *const ConnectParams,
    identity: *const c_char,
) -> Result<String, VixError> {
    require_init(function)?;
    if params.is_null() {
        return Err(VIX_E_INVALID_ARG);
    }
    // SAFETY: NULL or a NUL-terminated string from the caller.
    let identity = unsafe { opt_str(identity) }.unwrap_or_default();
    if identity.is_empty() || identity.len() > 50 {
        log::warn(&format!(
            "VixDiskLib: {function}: identity must be 1 to 50 characters, got {}",
            identity.len()
        ));
        return Err(VIX_E_INVALID_ARG);
    }
    knobs::call_latency();
    // SAFETY: non-NULL; the ABI says it points to ConnectParams.
    let owned = unsafe { read_params(params) };
    let server = login(&remote::inventory(), &owned, function)?;
    if server.kind != Kind::Vcenter {
        log::warn(&format!(
            "VixDiskLib: {function}: {} is an ESXi host; PrepareForAccess/EndAccess need a vCenter server",
            server.name
        ));
        return Err(VIX_E_NOT_SUPPORTED);
    }
    let spec = owned.vmx_spec.unwrap_or_default();
    let id = moref(&spec).ok_or(VIX_E_INVALID_ARG)?;
    if remote::inventory().vm(&server.name, id).is_none() {
        log::warn(&format!(
            "VixDiskLib: {function}: no VM with moref {id} on {}",
            server.name
        ));
        return Err(VIX_E_VM_NOT_FOUND);
    }
    Ok(format!("{}/{id}", server.name.to_ascii_lowercase()))
}

/// Disables migration of the VM while it is backed up (vCenter only).
#[no_mangle]
pub extern "C" fn VixDiskLib_PrepareForAccess(
    params: *const ConnectParams,
    identity: *const c_char,
) -> VixError {
    vix("VixDiskLib_PrepareForAccess", |_| {
        let key = access_key("VixDiskLib_PrepareForAccess", params, identity)?;
        let mut map = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
        *map.get_or_insert_with(HashMap::new).entry(key).or_insert(0) += 1;
        Ok(VIX_OK)
    })
}

/// Re-enables what PrepareForAccess disabled; must follow it.
#[no_mangle]
pub extern "C" fn VixDiskLib_EndAccess(
    params: *const ConnectParams,
    identity: *const c_char,
) -> VixError {
    vix("VixDiskLib_EndAccess", |_| {
        let key = access_key("VixDiskLib_EndAccess", params, identity)?;
        let mut map = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
        let count = map
            .get_or_insert_with(HashMap::new)
            .entry(key.clone())
            .or_insert(0);
        if *count == 0 {
            drop(map);
            return Err(violation(
                VIX_E_INVALID_ARG,
                &format!("VixDiskLib_EndAccess for {key} without a matching PrepareForAccess"),
            ));
        }
        *count -= 1;
        Ok(VIX_OK)
    })
}

/// Cleans up after crashed backups; the simulation never leaves any.
#[no_mangle]
pub extern "C" fn VixDiskLib_Cleanup(
    params: *const ConnectParams,
    cleaned: *mut u32,
    remaining: *mut u32,
) -> VixError {
    vix("VixDiskLib_Cleanup", |_| {
        require_init("VixDiskLib_Cleanup")?;
        if params.is_null() {
            return Err(VIX_E_INVALID_ARG);
        }
        for out in [cleaned, remaining] {
            if !out.is_null() {
                // SAFETY: non-NULL out pointer from the caller.
                unsafe { out.write(0) };
            }
        }
        Ok(VIX_OK)
    })
}
