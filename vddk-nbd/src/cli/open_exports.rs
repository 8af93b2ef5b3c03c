//! The exports the command line asks for: one disk (`file=`), every disk
//! of a local VM (`vmx=`), or any disk matching a wildcard (`export=`),
//! each opened with its own VDDK handle and worker thread.

use std::sync::Arc;

use vddk_nbd::backend::{self, Backend};
use vddk_nbd::exports::{ExportRegistry, Wildcard};
use vddk_nbd::params::connect::{connect_params, open_flags};
use vddk_nbd::params::password::{Password, Secrets};
use vddk_nbd::params::trust;
use vddk_nbd::params::VddkParams;
use vddk_nbd::plugins::VddkDisk;
use vddk_nbd::vmx;

use super::args::Options;

/// How to connect again, for a disk that must be reopened (the retry
/// filter asks after a failure): the library and the same parameters,
/// secrets included.
#[derive(Clone)]
pub struct Reconnect {
    pub lib: vddk::Vddk,
    pub params: vddk::ConnectParams,
    /// `password=+FILE`: read again for each new connection, so that a
    /// copy that outlives a password rotation (the file rewritten, e.g. a
    /// Kubernetes Secret updated in place) logs in with the new one.
    pub password_file: Option<PasswordFile>,
}

/// What it takes to rebuild the parameters with a fresh password (a
/// user name and password login: with `cookie=`, the password is the
/// session key and is not read again).
#[derive(Clone)]
pub struct PasswordFile {
    pub source: Password,
    pub vddk: Arc<VddkParams>,
    pub read_only: bool,
}

impl Reconnect {
    /// The parameters for a new connection: with the password read from
    /// its file again when it comes from one (the old one if that fails,
    /// with a warning: the host may still take it).
    pub fn params_now(&self) -> vddk::ConnectParams {
        let Some(f) = &self.password_file else {
            return self.params.clone();
        };
        let fresh = f
            .source
            .resolve("password")
            .map_err(|e| e.to_string())
            .and_then(|password| {
                let secrets = Secrets {
                    password: Some(password),
                    cookie: None,
                };
                connect_params(&f.vddk, &secrets, f.read_only).map_err(|e| e.to_string())
            });
        match fresh {
            Ok(params) => {
                log::debug!("reconnecting with the password read again from its file");
                params
            }
            Err(e) => {
                log::warn!("reconnecting with the password read at start: {e}");
                self.params.clone()
            }
        }
    }
}

/// How to open one disk, shared by every export of the server.
#[derive(Clone)]
struct DiskOpener {
    conn: Arc<vddk::Connection>,
    reconnect: Reconnect,
    params: Arc<VddkParams>,
    read_only: bool,
    threads: Option<usize>,
    /// Reconnect by itself on a lost connection (under the retry filter).
    policy: Option<vddk::Reconnect>,
    /// `-D vddk.diskinfo=1`, `-D vddk.extents=1`.
    diskinfo: bool,
    extents: bool,
}

/// Logs what GetInfo said, as nbdkit's `-D vddk.diskinfo=1` does.
fn log_info(path: &str, i: &vddk::DiskInfo) {
    let g = |g: &vddk::Geometry| format!("C:{} H:{} S:{}", g.cylinders, g.heads, g.sectors);
    log::debug!("disk info: {path}: capacity: {} sectors", i.capacity / 512);
    log::debug!("disk info: biosGeo: {}", g(&i.bios_geometry));
    log::debug!("disk info: physGeo: {}", g(&i.physical_geometry));
    log::debug!("disk info: adapter type: {}", i.adapter.as_raw());
    log::debug!("disk info: num links: {}", i.num_links);
    if let Some(p) = &i.parent_hint {
        log::debug!("disk info: parent filename hint: {p}");
    }
    if let Some(u) = &i.uuid {
        log::debug!("disk info: uuid: {u}");
    }
    if let (Some(l), Some(p)) = (i.logical_sector_size, i.physical_sector_size) {
        log::debug!("disk info: sector size: logical {l} physical {p}");
    }
}

impl DiskOpener {
    /// Opens `path` (several times when `nfc-connections=` asks and the
    /// disk is a read-only remote one) and exports it.
    fn open(&self, path: &str) -> Result<Arc<VddkDisk>, backend::Error> {
        let driver = self.open_driver(path, true).map_err(|e| match e {
            OpenError::Params(m) | OpenError::Refused(m) => backend::Error::Failed(m),
            OpenError::Driver(e) => backend::Error::from(e),
        })?;
        log::debug!(
            "opened {path}, transport mode {}: {}",
            driver.transport(),
            match driver.mode() {
                vddk::Mode::Direct => "calls made by the serving threads",
                vddk::Mode::Pipelined => "calls pipelined on a worker thread",
            }
        );
        if self.diskinfo {
            log_info(path, driver.info());
        }
        let more = self.more_handles(path, &driver);
        let disk = Arc::new(VddkDisk::new(driver, self.read_only).log_extents(self.extents));
        if more > 0 {
            let opener = self.clone();
            let path = path.to_string();
            disk.open_more_in_background(
                more,
                Box::new(move || opener.open_driver(&path, false).map_err(|e| e.to_string())),
            );
        }
        Ok(disk)
    }

    /// How many handles beyond the first `nfc-connections=N` asks for:
    /// only a read-only disk reached through the network has them (a local
    /// file gains nothing, and VDDK locks a disk opened for writing).
    fn more_handles(&self, path: &str, first: &vddk::DiskDriver<backend::Error>) -> usize {
        let wanted = usize::from(self.params.nfc_connections.max(1));
        if wanted == 1 {
            return 0;
        }
        if !self.read_only {
            log::warn!(
                "nfc-connections={wanted}: a disk opened for writing is served through one \
                 connection; add --readonly (-r) to spread reads over {wanted}"
            );
            return 0;
        }
        if first.mode() == vddk::Mode::Direct {
            log::debug!(
                "nfc-connections={wanted}: {path} is reached by the {} transport, one handle \
                 serves it",
                first.transport()
            );
            return 0;
        }
        wanted - 1
    }

    /// One handle on `path` with its driver. The `first` that fails gets
    /// hints on what to check; for another, the thumbprint and
    /// credentials have been good already, so VDDK's own words are best.
    fn open_driver(&self, path: &str, first: bool) -> Result<Driver, OpenError> {
        let flags = open_flags(&self.params, self.read_only)
            .map_err(|e| OpenError::Params(e.to_string()))?;
        let disk = self.conn.open(path, flags).map_err(|e| {
            OpenError::Refused(if first {
                trust::open_error(&self.params, path, &e)
            } else {
                e.to_string()
            })
        })?;
        let reconnect = self.reconnect.clone();
        let reopen_path = path.to_string();
        let mut opts = vddk::DriverOptions::new().reopen_with(Arc::new(move || {
            let conn = vddk::Connection::connect(&reconnect.lib, &reconnect.params_now())?;
            conn.open(&reopen_path, flags)
        }));
        if let Some(mode) = self.params.io.mode() {
            opts = opts.mode(mode);
        }
        if let Some(n) = self.threads {
            opts = opts.max_in_flight(n);
        }
        if let Some(policy) = self.policy {
            opts = opts.reconnect(policy);
        }
        vddk::DiskDriver::new(disk, opts).map_err(OpenError::Driver)
    }
}

type Driver = vddk::DiskDriver<backend::Error>;

/// Why a handle could not be had.
enum OpenError {
    /// The parameters make no open flags.
    Params(String),
    /// VDDK's Open failed; the message says what to check.
    Refused(String),
    /// The driver did not start (GetInfo failed, no thread).
    Driver(vddk::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Params(m) | OpenError::Refused(m) => f.write_str(m),
            OpenError::Driver(e) => e.fmt(f),
        }
    }
}

/// Opens what `p` asks for on `conn` (the `vmx=` disks and `file=` at
/// once, wildcard matches when a client names them).
pub fn open(
    conn: &Arc<vddk::Connection>,
    reconnect: Reconnect,
    opts: &Options,
    p: &VddkParams,
    read_only: bool,
    policy: Option<vddk::Reconnect>,
) -> Result<Arc<ExportRegistry>, String> {
    let opener = DiskOpener {
        policy,
        conn: Arc::clone(conn),
        reconnect,
        params: Arc::new(p.clone()),
        read_only,
        threads: opts.threads.map(|n| n as usize),
        diskinfo: flag(opts, "diskinfo"),
        extents: flag(opts, "extents"),
    };
    if let Some(path) = &p.vmx {
        let mut reg = ExportRegistry::new();
        for d in vmx::read(path).map_err(|e| e.to_string())? {
            let path = d.path.to_string_lossy();
            let backend = opener
                .open(&path)
                .map_err(|e| format!("{} ({}): {e}", d.device, d.file_name))?;
            let description = format!("{} ({})", d.file_name, human_size(backend.caps().size));
            log::debug!("export {}: {description}", d.device);
            reg.add(d.device, Some(description), backend);
        }
        return Ok(Arc::new(reg));
    }
    let Some(pattern) = &p.export else {
        let file = p.file.clone().unwrap_or_default();
        let backend = opener.open(&file).map_err(|e| e.to_string())?;
        return Ok(Arc::new(ExportRegistry::single(
            opts.export_name.clone(),
            Some(file),
            backend,
        )));
    };
    let mut reg = ExportRegistry::new();
    if let Some(file) = &p.file {
        // The default export, for clients that ask for no name.
        let backend = opener.open(file).map_err(|e| e.to_string())?;
        reg.add(file.clone(), Some("the default export".into()), backend);
    }
    let wildcard = Wildcard::new(pattern).map_err(|e| e.to_string())?;
    reg.set_wildcard(
        wildcard,
        Box::new(
            move |path: &str| -> Result<Arc<dyn Backend>, backend::Error> {
                let b: Arc<dyn Backend> = opener.open(path)?;
                Ok(b)
            },
        ),
    );
    Ok(Arc::new(reg))
}

/// Whether `-D vddk.NAME=` is set to something other than 0.
fn flag(opts: &Options, name: &str) -> bool {
    opts.debug_flags
        .iter()
        .rev()
        .find(|f| f.scope == "vddk" && f.name == name)
        .is_some_and(|f| f.value != "0")
}

/// `10 GiB`, `512 MiB`, `1.5 GiB`, `4096 bytes`: sizes as users read them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
