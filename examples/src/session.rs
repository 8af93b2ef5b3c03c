//! From connection parameters to an open disk, the way `vddk-nbd` does it:
//! load the library, read the password, connect, open.

use vddk::{Connection, Disk, Vddk};
use vddk_nbd::params::connect as cc;
use vddk_nbd::params::vddk_plugin::{self, VddkParams};

/// An open disk with the library and connection it came from.
///
/// Fields drop in order (disk, connection, library), which is the order
/// VDDK needs.
#[derive(Debug)]
pub struct Session {
    /// The open disk.
    pub disk: Disk,
    /// Its connection.
    pub conn: Connection,
    /// The initialised library.
    pub lib: Vddk,
    /// The disk's path as given (`file=`).
    pub path: String,
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
        vddk_nbd::params::reexec::reexec_if_needed(dir).map_err(|e| e.to_string())?;
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
    let secrets = vddk_nbd::params::Secrets::resolve(p).map_err(|e| e.to_string())?;
    let cp = cc::connect_params(p, &secrets, read_only).map_err(|e| e.to_string())?;
    Connection::connect(lib, &cp).map_err(|e| {
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
    let conn = connect(&lib, p, read_only)?;
    let disk = conn
        .open(
            &path,
            cc::open_flags(p, read_only).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    Ok(Session {
        disk,
        conn,
        lib,
        path,
    })
}
