//! From connection parameters to an open disk, the way `vddk-nbd` does it:
//! load the library, read the password, connect, open.

use vddk::{Connection, Disk, Vddk};
use vddk_nbd::params::connect as cc;
use vddk_nbd::params::vddk_plugin::{self, VddkParams};

/// An open disk with the library and connection it came from.
///
/// Fields drop in order (disk, connection, library), which is the order
/// VDDK needs.
pub struct Session {
    /// The open disk.
    pub disk: Disk,
    /// Its connection.
    pub conn: Connection,
    /// The initialised library.
    pub lib: Vddk,
    /// The disk's path as given (`file=`).
    pub path: String,
    /// Opens the disk again through a new connection with the same
    /// parameters and credentials, for [`vddk::DriverOptions::reopen_with`].
    pub reopen: vddk::driver::Opener,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("disk", &self.disk)
            .field("conn", &self.conn)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Initialises VDDK from `libdir=` and `config=` (or `$VDDK_LIBDIR`).
///
/// With `libdir=`, the program first re-executes itself once with
/// `libdir/lib64` leading `LD_LIBRARY_PATH`, as VDDK needs for its
/// bundled libraries (the same mechanism as `vddk-nbd`).
///
/// # Errors
/// The loader's report, listing every path tried.
pub fn load(p: &VddkParams) -> Result<Vddk, String> {
    if let Some(dir) = &p.libdir {
        vddk::library_path::reexec_if_needed(dir).map_err(|e| e.to_string())?;
    }
    Vddk::init(cc::init_options(p)).map_err(|e| {
        let mut msg = e.to_string();
        if p.libdir.is_none() {
            msg.push_str(
                "\n(give libdir=DIR, the directory VDDK was unpacked to, or set VDDK_LIBDIR)",
            );
        }
        msg
    })
}

/// Checks the parameters for opening a disk, with `vddk-nbd`'s rules.
///
/// # Errors
/// The first mistake, as a sentence that says how to fix it.
pub fn validate(p: &VddkParams) -> Result<(), String> {
    vddk_plugin::validate(p).map_err(|e| e.to_string())?;
    cc::check(p).map_err(|e| e.to_string())
}

/// Connects (reading the password if one is needed) without opening a disk.
///
/// # Errors
/// A bad parameter, an unreadable password, or ConnectEx's failure.
pub fn connect(lib: &Vddk, p: &VddkParams, read_only: bool) -> Result<Connection, String> {
    connect_with(lib, p, &connect_params(p, read_only)?)
}

/// The connection parameters, with the secrets read once (a password
/// given as a descriptor cannot be read twice).
fn connect_params(p: &VddkParams, read_only: bool) -> Result<vddk::ConnectParams, String> {
    let secrets = vddk_nbd::params::Secrets::resolve(p).map_err(|e| e.to_string())?;
    cc::connect_params(p, &secrets, read_only).map_err(|e| e.to_string())
}

fn connect_with(
    lib: &Vddk,
    p: &VddkParams,
    cp: &vddk::ConnectParams,
) -> Result<Connection, String> {
    Connection::connect(lib, cp).map_err(|e| {
        let where_ = p.server.as_deref().unwrap_or("the local host");
        format!("cannot connect to {where_}: {e}")
    })
}

/// Validates, loads, connects and opens the disk named by `file=`.
///
/// # Errors
/// The first step that failed, with VDDK's reason and a hint.
pub fn open(p: &VddkParams, read_only: bool) -> Result<Session, String> {
    validate(p)?;
    let lib = load(p)?;
    open_with(lib, p, read_only)
}

/// How to drive the disk: the mode `io=` asks for (by default the one
/// that suits its transport) with up to `depth` requests in flight.
pub fn driver_options(p: &VddkParams, depth: usize) -> vddk::DriverOptions {
    let opts = vddk::DriverOptions::new().max_in_flight(depth);
    match p.io.mode() {
        Some(mode) => opts.mode(mode),
        None => opts,
    }
}

/// Like [`open`], with a library already initialised.
///
/// # Errors
/// As for [`open`].
pub fn open_with(lib: Vddk, p: &VddkParams, read_only: bool) -> Result<Session, String> {
    let path = p.file.clone().unwrap_or_default();
    let cp = connect_params(p, read_only)?;
    let conn = connect_with(&lib, p, &cp)?;
    let flags = cc::open_flags(p, read_only).map_err(|e| e.to_string())?;
    let disk = conn
        .open(&path, flags)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let (again_lib, again_path) = (lib.clone(), path.clone());
    let reopen: vddk::driver::Opener =
        std::sync::Arc::new(move || Connection::connect(&again_lib, &cp)?.open(&again_path, flags));
    Ok(Session {
        disk,
        conn,
        lib,
        path,
        reopen,
    })
}
