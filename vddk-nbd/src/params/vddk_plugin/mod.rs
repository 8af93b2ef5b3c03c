//! The `nbdkit vddk` plugin parameters: `key=value` pairs turned into a
//! typed configuration, validated as nbdkit's plugin does.
//!
//! Values the `vddk` crate parses itself (thumbprint, moref, snapshot,
//! transports) stay strings here and are converted when the connection
//! parameters are built, so one parser owns each syntax.

use std::fmt;
use std::path::PathBuf;

use super::password::Password;
use super::size::parse_size;
use super::uri::{self, EsxUri};
use super::value::{err, lookup, parse_bool, parse_port, typed, ParamError};
use super::ParamHelp;
use crate::datastore::DatastorePath;

/// Every key accepted, with its `--help` line: those of `nbdkit vddk`,
/// plus `uri`, `export`, `vmx` and `io`, in alphabetical order after `file`.
pub const PARAMS: &[ParamHelp] = &[
    ParamHelp {
        key: "file",
        usage: "[file=]<FILENAME>",
        help: "The filename (eg. VMDK file) to serve.",
    },
    ParamHelp {
        key: "compression",
        usage: "compression=<TYPE>",
        help: "none, zlib, fastlz or skipz (NBD transports).",
    },
    ParamHelp {
        key: "config",
        usage: "config=<FILENAME>",
        help: "VDDK configuration file.",
    },
    ParamHelp {
        key: "cookie",
        usage: "cookie=<COOKIE>",
        help: "Session cookie (or -, +FILE, -FD, as password).",
    },
    ParamHelp {
        key: "create",
        usage: "create=true",
        help: "Create the local disk first.",
    },
    ParamHelp {
        key: "create-adapter-type",
        usage: "create-adapter-type=<TYPE>",
        help: "ide, scsi-buslogic or scsi-lsilogic.",
    },
    ParamHelp {
        key: "create-hwversion",
        usage: "create-hwversion=<VERSION>",
        help: "workstation4 ... esx65, or a number.",
    },
    ParamHelp {
        key: "create-size",
        usage: "create-size=<SIZE>",
        help: "Size of the disk to create.",
    },
    ParamHelp {
        key: "create-type",
        usage: "create-type=<TYPE>",
        help: "monolithic-sparse, monolithic-flat, ...",
    },
    ParamHelp {
        key: "export",
        usage: "export=<WILDCARD>",
        help: "Let client choose file matching wildcard.",
    },
    ParamHelp {
        key: "io",
        usage: "io=auto|direct|pipelined",
        help: "How requests reach VDDK (default auto).",
    },
    ParamHelp {
        key: "libdir",
        usage: "libdir=<DIRECTORY>",
        help: "VDDK library directory.",
    },
    ParamHelp {
        key: "nfc-connections",
        usage: "nfc-connections=<N>",
        help: "NFC connections for a read-only remote disk (default 1).",
    },
    ParamHelp {
        key: "nfchostport",
        usage: "nfchostport=<PORT>",
        help: "ESXi host's NFC port (default 902).",
    },
    ParamHelp {
        key: "password",
        usage: "password=<PASSWORD>",
        help: "Password, or - (prompt), +FILE, -FD.",
    },
    ParamHelp {
        key: "port",
        usage: "port=<PORT>",
        help: "Server's port (default 443).",
    },
    ParamHelp {
        key: "server",
        usage: "server=<HOSTNAME>",
        help: "vCenter or ESXi host.",
    },
    ParamHelp {
        key: "single-link",
        usage: "single-link=true",
        help: "Open only this link of a snapshot chain.",
    },
    ParamHelp {
        key: "snapshot",
        usage: "snapshot=<MOREF>",
        help: "Snapshot to read from.",
    },
    ParamHelp {
        key: "thumbprint",
        usage: "thumbprint=<THUMBPRINT>",
        help: "Server's SHA-1 thumbprint, or auto.",
    },
    ParamHelp {
        key: "transports",
        usage: "transports=<MODE>:<MODE>...",
        help: "Transport modes to try.",
    },
    ParamHelp {
        key: "unbuffered",
        usage: "unbuffered=true",
        help: "Bypass the host's page cache.",
    },
    ParamHelp {
        key: "uri",
        usage: "uri=esx://...|vpx://...",
        help: "libvirt URI giving server, port, user.",
    },
    ParamHelp {
        key: "user",
        usage: "user=<USERNAME>",
        help: "User name.",
    },
    ParamHelp {
        key: "vimapiver",
        usage: "vimapiver=<VERSION>",
        help: "Accepted and ignored.",
    },
    ParamHelp {
        key: "vm",
        usage: "vm=moref=<MOREF>",
        help: "The VM whose disk is opened.",
    },
    ParamHelp {
        key: "vmx",
        usage: "vmx=<FILENAME>",
        help: "Serve every disk of a local VM.",
    },
];

/// Network compression between VDDK and the server (NBD/NBDSSL transports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression (the default).
    #[default]
    None,
    /// zlib.
    Zlib,
    /// FastLZ.
    Fastlz,
    /// skipz.
    Skipz,
}

impl Compression {
    /// The name nbdkit uses, which `vddk::Compression` parses too.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Fastlz => "fastlz",
            Compression::Skipz => "skipz",
        }
    }
}

/// `io=`: how requests reach VDDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// `direct` for the `file` transport (a local disk), `pipelined` for
    /// every other (the default).
    #[default]
    Auto,
    /// Synchronous calls from the threads serving the clients, one at a
    /// time per disk: no thread switch per request, for disks that answer
    /// in microseconds.
    Direct,
    /// Async calls from a worker thread per disk, many in flight: for
    /// disks that answer in milliseconds.
    Pipelined,
}

const IO_MODES: &[(&str, IoMode)] = &[
    ("auto", IoMode::Auto),
    ("direct", IoMode::Direct),
    ("pipelined", IoMode::Pipelined),
];

impl IoMode {
    /// The driver mode asked for; `None` lets the driver choose by transport.
    pub fn mode(self) -> Option<vddk::Mode> {
        match self {
            IoMode::Auto => None,
            IoMode::Direct => Some(vddk::Mode::Direct),
            IoMode::Pipelined => Some(vddk::Mode::Pipelined),
        }
    }
}

/// What `create=true` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// Virtual size in bytes (a multiple of 512).
    pub size: u64,
    /// VMDK variant.
    pub disk_type: vddk::DiskType,
    /// Adapter recorded in the descriptor.
    pub adapter: vddk::AdapterType,
    /// Virtual hardware version number (VDDK's numbering).
    pub hw_version: vddk::HwVersion,
}

/// The plugin parameters, typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VddkParams {
    /// `file=`: absolute local path, or `[datastore] dir/disk.vmdk` remotely.
    pub file: Option<String>,
    /// `server=`.
    pub server: Option<String>,
    /// `port=` (VDDK defaults to 443).
    pub port: Option<u16>,
    /// `nfchostport=` (VDDK defaults to 902).
    pub nfc_host_port: Option<u16>,
    /// `user=`.
    pub user: Option<String>,
    /// `password=`, unresolved.
    pub password: Option<Password>,
    /// `cookie=`, unresolved (it takes the same forms as `password=`).
    pub cookie: Option<Password>,
    /// `thumbprint=`.
    pub thumbprint: Option<String>,
    /// `vm=` (its value, e.g. `moref=vm-16`).
    pub vm: Option<String>,
    /// `snapshot=`.
    pub snapshot: Option<String>,
    /// `transports=`.
    pub transports: Option<String>,
    /// `compression=`.
    pub compression: Compression,
    /// `single-link=true`.
    pub single_link: bool,
    /// `unbuffered=true`.
    pub unbuffered: bool,
    /// `libdir=`.
    pub libdir: Option<PathBuf>,
    /// `config=`.
    pub config: Option<PathBuf>,
    /// `create=true` and its companions.
    pub create: Option<CreateOptions>,
    /// `uri=`: a libvirt ESX driver URI, already applied to `server`,
    /// `port` and `user`.
    pub uri: Option<EsxUri>,
    /// `thumbprint=auto`, or `no_verify=1` in the URI without a
    /// thumbprint: fetch the server's thumbprint at start-up and use it.
    pub fetch_thumbprint: bool,
    /// `export=`: serve any disk path matching this wildcard, by the
    /// client's export name.
    pub export: Option<String>,
    /// `vmx=`: serve every disk of this local VM, named by device.
    pub vmx: Option<PathBuf>,
    /// `io=`: how requests reach VDDK.
    pub io: IoMode,
    /// `nfc-connections=`: handles (each its own NFC connection) opened
    /// on a read-only remote disk, requests spread over them (0, the
    /// default, is 1).
    pub nfc_connections: u8,
}

/// The most `nfc-connections=` takes: ESXi hosts allow few NFC
/// connections in all (VMware documents limits of tens per host, shared
/// by every disk and every backup running against it).
pub const MAX_NFC_CONNECTIONS: u8 = 16;

impl VddkParams {
    /// Whether the disk is on a server rather than local, by nbdkit's rule:
    /// any connection parameter makes it remote.
    pub fn is_remote(&self) -> bool {
        self.server.is_some()
            || self.vm.is_some()
            || self.user.is_some()
            || self.password.is_some()
            || self.cookie.is_some()
            || self.thumbprint.is_some()
            || self.port.is_some()
            || self.nfc_host_port.is_some()
            || self.uri.is_some()
    }

    /// Whether a password or cookie is given, in any form.
    pub fn has_secret(&self) -> bool {
        self.password.is_some() || self.cookie.is_some()
    }

    /// Whether a password or cookie is written on the command line itself.
    pub fn has_literal_secret(&self) -> bool {
        [&self.password, &self.cookie]
            .iter()
            .any(|s| s.as_ref().is_some_and(Password::is_literal))
    }

    /// Whether several disks are served (`export=` or `vmx=`).
    pub fn multi_export(&self) -> bool {
        self.export.is_some() || self.vmx.is_some()
    }
}

fn parse_connections(key: &str, v: &str) -> Result<u8, ParamError> {
    v.parse::<u8>()
        .ok()
        .filter(|n| (1..=MAX_NFC_CONNECTIONS).contains(n))
        .ok_or_else(|| {
            err(format!(
                "cannot parse {key}: '{v}' is not a number of connections from 1 to \
                 {MAX_NFC_CONNECTIONS}"
            ))
        })
}

/// Turns the `key=value` list into [`VddkParams`] without checking that
/// the combination makes sense (see [`validate`]). Later keys override
/// earlier ones, as in nbdkit.
pub fn parse(pairs: &[(String, String)]) -> Result<VddkParams, ParamError> {
    let mut p = VddkParams::default();
    let mut create = false;
    let mut create_size = None;
    let mut create_type = vddk::DiskType::MonolithicSparse;
    let mut create_adapter = vddk::AdapterType::ScsiBusLogic;
    let mut create_hw = vddk::HwVersion::WORKSTATION_5;
    let mut create_companion = None;
    for (k, v) in pairs {
        let v = v.as_str();
        match k.as_str() {
            "file" => p.file = Some(v.to_string()),
            "server" => p.server = Some(v.to_string()),
            "port" => p.port = Some(parse_port(k, v)?),
            "nfchostport" => p.nfc_host_port = Some(parse_port(k, v)?),
            "user" => p.user = Some(v.to_string()),
            "password" => p.password = Some(Password::parse(v)),
            "cookie" => p.cookie = Some(Password::parse(v)),
            "thumbprint" if v.eq_ignore_ascii_case("auto") => {
                p.thumbprint = None;
                p.fetch_thumbprint = true;
            }
            "thumbprint" => {
                p.thumbprint = Some(v.to_string());
                p.fetch_thumbprint = false;
            }
            "uri" => p.uri = Some(uri::parse(v).map_err(|e| err(e.to_string()))?),
            "export" => p.export = Some(v.to_string()),
            "vmx" => p.vmx = Some(PathBuf::from(v)),
            "io" => p.io = lookup(k, v, IO_MODES)?,
            "nfc-connections" => p.nfc_connections = parse_connections(k, v)?,
            "vm" => p.vm = Some(v.to_string()),
            "snapshot" => p.snapshot = Some(v.to_string()),
            "transports" => p.transports = Some(v.to_string()),
            "compression" => {
                p.compression = lookup(
                    k,
                    v,
                    &[
                        ("none", Compression::None),
                        ("zlib", Compression::Zlib),
                        ("fastlz", Compression::Fastlz),
                        ("skipz", Compression::Skipz),
                    ],
                )?
            }
            "single-link" => p.single_link = parse_bool(k, v)?,
            "unbuffered" => p.unbuffered = parse_bool(k, v)?,
            "libdir" => p.libdir = Some(PathBuf::from(v)),
            "config" => p.config = Some(PathBuf::from(v)),
            "vimapiver" => log::debug!("vimapiver={v} is ignored (kept for compatibility)"),
            "create" => create = parse_bool(k, v)?,
            "create-size" => {
                let size = parse_size(v).map_err(|e| err(format!("create-size={v}: {e}")))?;
                create_size = Some(size);
                create_companion = Some(k.clone());
            }
            "create-type" => {
                create_type = typed(k, v)?;
                create_companion = Some(k.clone());
            }
            "create-adapter-type" => {
                create_adapter = typed(k, v)?;
                create_companion = Some(k.clone());
            }
            "create-hwversion" => {
                create_hw = typed(k, v)?;
                create_companion = Some(k.clone());
            }
            other => {
                return Err(err(format!(
                    "unknown parameter '{other}'; valid parameters are: {}",
                    PARAMS.iter().map(|p| p.key).collect::<Vec<_>>().join(", ")
                )))
            }
        }
    }
    if create {
        let size = create_size.ok_or_else(|| {
            err("create=true needs create-size=SIZE (for example create-size=1G)")
        })?;
        if size == 0 || size % 512 != 0 {
            return Err(err(format!(
                "create-size={size}: the size must be a non-zero multiple of 512 bytes"
            )));
        }
        p.create = Some(CreateOptions {
            size,
            disk_type: create_type,
            adapter: create_adapter,
            hw_version: create_hw,
        });
    } else if let Some(key) = create_companion {
        return Err(err(format!(
            "{key} is only used with create=true; add create=true or remove {key}"
        )));
    }
    apply_uri(&mut p)?;
    if p.is_remote() {
        if let Some(f) = p.file.as_deref().filter(|f| DatastorePath::looks_like(f)) {
            let canonical = DatastorePath::parse(f).map_err(|e| err(format!("file=: {e}")))?;
            p.file = Some(canonical.to_string());
        }
    }
    Ok(p)
}

/// Fills `server`, `port` and `user` from `uri=`; a different value given
/// both ways is a mistake worth stopping for.
fn apply_uri(p: &mut VddkParams) -> Result<(), ParamError> {
    let Some(u) = p.uri.clone() else {
        return Ok(());
    };
    fn merge<T: PartialEq + fmt::Debug + Clone>(
        key: &str,
        slot: &mut Option<T>,
        from_uri: Option<T>,
    ) -> Result<(), ParamError> {
        match (&*slot, from_uri) {
            (Some(a), Some(b)) if *a != b => Err(err(format!(
                "{key}={a:?} contradicts uri= (which gives {b:?}): drop one of them"
            ))),
            (None, b) => {
                *slot = b;
                Ok(())
            }
            _ => Ok(()),
        }
    }
    merge("server", &mut p.server, Some(u.server.clone()))?;
    merge("port", &mut p.port, u.port)?;
    merge("user", &mut p.user, u.user.clone())?;
    if u.no_verify && p.thumbprint.is_none() {
        p.fetch_thumbprint = true;
    }
    Ok(())
}

/// Checks that the parameters describe a disk that can be opened, with
/// the same rules as `nbdkit vddk`.
pub fn validate(p: &VddkParams) -> Result<(), ParamError> {
    validate_exports(p)?;
    if p.multi_export() && p.file.is_none() {
        return Ok(());
    }
    let file = p.file.as_deref().ok_or_else(|| {
        err(
            "you must supply the file=<FILENAME> parameter (or a bare FILENAME) after the \
             plugin name on the command line",
        )
    })?;
    if file.is_empty() {
        return Err(err("file= is empty: give the disk's path"));
    }
    if p.is_remote() {
        let missing = |what: &str| {
            err(format!(
                "remote connection requested, missing parameter: {what}"
            ))
        };
        if p.server.is_none() {
            return Err(missing("server"));
        }
        if p.cookie.is_none() {
            if p.user.is_none() {
                return Err(missing("user"));
            }
            if p.password.is_none() {
                return Err(missing("password"));
            }
        }
        if p.vm.is_none() {
            return Err(missing("vm"));
        }
        if let Some(u) = &p.uri {
            if !u.no_verify && p.thumbprint.is_none() && !p.fetch_thumbprint {
                return Err(err(
                    "uri= without no_verify=1 needs the server's thumbprint: give thumbprint=XX:XX:... \
                     (`vddk-nbd thumbprint HOST[:PORT]` prints it), or thumbprint=auto to fetch \
                     and use it, or add ?no_verify=1 to the URI",
                ));
            }
        }
        if p.create.is_some() {
            return Err(err(
                "create=true can only create local disks: remove server= and the \
                            other remote parameters, or drop create=true",
            ));
        }
    } else if !file.starts_with('/') {
        return Err(err(format!(
            "file={file}: local disks must be given by their absolute path (e.g. $PWD/{file})"
        )));
    }
    Ok(())
}

/// The rules for `export=` and `vmx=`.
fn validate_exports(p: &VddkParams) -> Result<(), ParamError> {
    if let Some(pattern) = &p.export {
        crate::exports::Wildcard::new(pattern).map_err(|e| err(e.to_string()))?;
        if p.vmx.is_some() {
            return Err(err(
                "export= and vmx= both choose the disks to serve: give only one",
            ));
        }
        if !p.is_remote() && !pattern.starts_with('/') {
            return Err(err(format!(
                "export={pattern}: local disk patterns must be absolute paths (e.g. /vms/*.vmdk)"
            )));
        }
    }
    if let Some(vmx) = &p.vmx {
        if p.is_remote() {
            return Err(err(
                "vmx= serves the disks of a local VM: remove server=, uri= and the other remote \
                 parameters, or serve remote disks with export=\"\\[datastore\\] vm/*.vmdk\"",
            ));
        }
        if p.file.is_some() {
            return Err(err(
                "vmx= serves every disk of the VM, named scsi0:0 and so on: remove file=",
            ));
        }
        if !vmx.is_absolute() {
            return Err(err(format!(
                "vmx={}: give the absolute path of the .vmx file",
                vmx.display()
            )));
        }
    }
    if p.multi_export() && p.create.is_some() {
        return Err(err(
            "create=true creates one disk: it cannot be combined with export= or vmx=",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
