//! Opening the sockets the server listens on: TCP (`-p`, `-i`), a Unix
//! socket (`-U PATH`, `-U -`), or sockets handed over by systemd; and the
//! URI a client (`--run`) uses to reach them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::args::{IpFamily, Options, UnixSocket, DEFAULT_PORT};
use super::privileges::Identity;

/// A bound, listening socket.
#[derive(Debug)]
pub enum Bound {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain.
    Unix(UnixListener),
}

/// The sockets, where they are, and what must be removed afterwards.
#[derive(Debug)]
pub struct Listening {
    /// The listening sockets.
    pub sockets: Vec<Bound>,
    /// The TCP port, when listening on TCP.
    pub port: Option<u16>,
    /// The host part for URIs, when listening on TCP.
    pub host: Option<String>,
    /// The Unix socket's path, when listening on one.
    pub unix_path: Option<PathBuf>,
    /// Listening on every network interface (no `-i`, or a wildcard one).
    pub all_interfaces: bool,
    /// Files and directories to remove at exit (sockets we created).
    pub cleanup: Cleanup,
}

/// Removes the paths it holds when dropped (sockets, the private socket
/// directory, the pid file), so every way out of the server cleans up.
#[derive(Debug, Default)]
pub struct Cleanup {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Cleanup {
    /// Removes `path` at exit.
    pub fn file(&mut self, path: PathBuf) {
        self.files.push(path);
    }

    /// Removes the (then empty) directory `path` at exit, after the files.
    pub fn dir(&mut self, path: PathBuf) {
        self.dirs.push(path);
    }

    /// Takes over what `other` would remove, so it happens when `self` goes.
    pub fn take_from(&mut self, other: &mut Cleanup) {
        self.files.append(&mut other.files);
        self.dirs.append(&mut other.dirs);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for f in self.files.drain(..) {
            if let Err(e) = std::fs::remove_file(&f) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("cannot remove {}: {e}", f.display());
                }
            }
        }
        for d in self.dirs.drain(..) {
            if let Err(e) = std::fs::remove_dir(&d) {
                log::warn!("cannot remove {}: {e}", d.display());
            }
        }
    }
}

/// Whether systemd passed us sockets (LISTEN_FDS for our pid).
pub fn socket_activated() -> bool {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    pid_matches && fds > 0
}

/// Opens the sockets `opts` asks for. Unix sockets are owner-only
/// (mode 0600) and, with `-u`/`-g`, belong to `owner`.
pub fn open(opts: &Options, owner: Option<&Identity>) -> Result<Listening, String> {
    super::selinux::with_label(opts.selinux_label.as_deref(), || {
        open_unlabelled(opts, owner)
    })
}

fn open_unlabelled(opts: &Options, owner: Option<&Identity>) -> Result<Listening, String> {
    if socket_activated() {
        return from_systemd(opts);
    }
    let mut cleanup = Cleanup::default();
    match &opts.unix {
        Some(which) => {
            let (path, listener) = match which {
                UnixSocket::Path(p) => (p.clone(), bind_owner_only(p, owner)?),
                UnixSocket::Private => {
                    let dir = private_dir(&temp_base(), "vddk-nbd", "-U -")?;
                    cleanup.dir(dir.clone());
                    if let Some(o) = owner {
                        o.chown(&dir)?;
                    }
                    let path = dir.join("socket");
                    let listener = bind_private(&path, owner)?;
                    (path, listener)
                }
            };
            cleanup.file(path.clone());
            log::debug!("listening on Unix socket {}", path.display());
            Ok(Listening {
                sockets: vec![Bound::Unix(listener)],
                port: None,
                host: None,
                unix_path: Some(path),
                all_interfaces: false,
                cleanup,
            })
        }
        None => {
            let port = opts.port.unwrap_or(DEFAULT_PORT);
            let (sockets, port) = bind_tcp(opts.ipaddr.as_deref(), opts.ip_family, port)?;
            let host = match opts.ipaddr.as_deref() {
                Some(a) if a.contains(':') => format!("[{a}]"),
                Some(a) => a.to_string(),
                None => "localhost".to_string(),
            };
            let all_interfaces = sockets.iter().any(|s| match s {
                Bound::Tcp(l) => l.local_addr().is_ok_and(|a| a.ip().is_unspecified()),
                Bound::Unix(_) => false,
            });
            Ok(Listening {
                sockets,
                port: Some(port),
                host: Some(host),
                unix_path: None,
                all_interfaces,
                cleanup,
            })
        }
    }
}

fn bind_tcp(
    ipaddr: Option<&str>,
    family: Option<IpFamily>,
    port: u16,
) -> Result<(Vec<Bound>, u16), String> {
    let wanted = |a: &SocketAddr| match family {
        Some(IpFamily::V4) => a.is_ipv4(),
        Some(IpFamily::V6) => a.is_ipv6(),
        None => true,
    };
    let addrs: Vec<SocketAddr> = match ipaddr {
        Some(host) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("-i {host}: cannot resolve the address: {e}"))?
            .filter(wanted)
            .collect(),
        // On Linux an IPv6 wildcard socket also accepts IPv4 unless the
        // system says otherwise; fall back to IPv4 where IPv6 is off.
        None => match family {
            Some(IpFamily::V4) => vec![SocketAddr::from(([0, 0, 0, 0], port))],
            Some(IpFamily::V6) => vec![SocketAddr::from(([0u16; 8], port))],
            None => vec![
                SocketAddr::from(([0u16; 8], port)),
                SocketAddr::from(([0, 0, 0, 0], port)),
            ],
        },
    };
    if addrs.is_empty() {
        return Err(format!(
            "-i {}: no address of the requested family",
            ipaddr.unwrap_or("")
        ));
    }
    let mut sockets = Vec::new();
    let mut actual_port = port;
    let mut last_err = None;
    for addr in addrs {
        // With port 0 every socket must share the port the first one got.
        let addr = SocketAddr::new(addr.ip(), actual_port);
        match TcpListener::bind(addr) {
            Ok(l) => {
                if let Ok(local) = l.local_addr() {
                    actual_port = local.port();
                }
                log::debug!("listening on {addr} (port {actual_port})");
                sockets.push(Bound::Tcp(l));
                if ipaddr.is_none() {
                    break;
                }
            }
            Err(e) => {
                log::debug!("cannot listen on {addr}: {e}");
                last_err = Some(format!("cannot listen on {addr}: {e}"));
            }
        }
    }
    if sockets.is_empty() {
        let e = last_err.unwrap_or_else(|| "no address to listen on".into());
        return Err(format!(
            "{e} (choose another port with -p, or a Unix socket with -U)"
        ));
    }
    Ok((sockets, actual_port))
}

fn from_systemd(opts: &Options) -> Result<Listening, String> {
    if opts.unix.is_some() || opts.port.is_some() || opts.ipaddr.is_some() || opts.single {
        return Err(
            "socket activation (LISTEN_FDS) cannot be combined with -p, -i, -U or -s: \
                    systemd chooses the sockets"
                .into(),
        );
    }
    let mut fds = listenfd::ListenFd::from_env();
    let mut sockets = Vec::new();
    let mut port = None;
    let mut unix_path = None;
    for i in 0..fds.len() {
        if let Ok(Some(l)) = fds.take_tcp_listener(i) {
            port = port.or_else(|| l.local_addr().ok().map(|a| a.port()));
            sockets.push(Bound::Tcp(l));
        } else if let Ok(Some(l)) = fds.take_unix_listener(i) {
            if unix_path.is_none() {
                unix_path = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf));
            }
            sockets.push(Bound::Unix(l));
        } else {
            log::warn!(
                "socket-activation descriptor {} is neither a TCP nor a Unix listener",
                i + 3
            );
        }
    }
    if sockets.is_empty() {
        return Err(
            "socket activation: none of the LISTEN_FDS descriptors is a listening socket".into(),
        );
    }
    log::debug!("socket activation: {} listening socket(s)", sockets.len());
    let host = port.map(|_| "localhost".to_string());
    // systemd chose the addresses; whether they are public is its call.
    Ok(Listening {
        sockets,
        port,
        host,
        unix_path,
        all_interfaces: false,
        cleanup: Cleanup::default(),
    })
}

fn temp_base() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into())
}

/// Creates a fresh directory in `base` that only we can enter: for
/// `-U -`, and to stage a socket before it appears at its path.
fn private_dir(base: &Path, prefix: &str, what: &str) -> Result<PathBuf, String> {
    let mut last = None;
    for _ in 0..16 {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let dir = base.join(format!("{prefix}{:012x}", h.finish() & 0xffff_ffff_ffff));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(format!(
                    "{what}: cannot create a private directory in {}: {e}",
                    base.display()
                ))
            }
        }
    }
    Err(format!(
        "{what}: cannot create a private directory in {}: {last:?}",
        base.display()
    ))
}

/// Binds a Unix socket at `path` (inside a directory only we can enter)
/// and makes it owner-only, and `owner`'s when given.
fn bind_private(path: &Path, owner: Option<&Identity>) -> Result<UnixListener, String> {
    let fail =
        |e: &dyn std::fmt::Display| format!("cannot listen on Unix socket {}: {e}", path.display());
    let listener = UnixListener::bind(path).map_err(|e| fail(&e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| fail(&e))?;
    if let Some(o) = owner {
        o.chown(path)?;
    }
    Ok(listener)
}

/// Binds the Unix socket `-U PATH` so that it is never reachable with
/// wider permissions than 0600, whatever the umask: it is bound, given
/// its mode and owner inside a fresh private directory next to `path`,
/// then hard-linked into place. Unlike a rename, the link never
/// replaces a file already at `path`.
fn bind_owner_only(path: &Path, owner: Option<&Identity>) -> Result<UnixListener, String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = private_dir(&parent, ".vddk-nbd-bind", &format!("-U {}", path.display()))?;
    let staged = staging.join("socket");
    let result = bind_private(&staged, owner).and_then(|listener| {
        std::fs::hard_link(&staged, path).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::AlreadyExists {
                " (a socket file is left there: remove it if no server uses it)"
            } else {
                ""
            };
            format!("cannot listen on Unix socket {}: {e}{hint}", path.display())
        })?;
        Ok(listener)
    });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    result
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn uri_quote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Listening {
    /// The NBD URI for `export` (as `--run`'s `$uri` gives it): `nbds`
    /// when the server requires TLS, as nbdkit writes it.
    pub fn uri(&self, export: &str, tls: bool) -> String {
        let export = uri_quote(export);
        let scheme = if tls { "nbds" } else { "nbd" };
        match (&self.unix_path, self.port) {
            (Some(path), _) => {
                format!(
                    "{scheme}+unix:///{export}?socket={}",
                    uri_quote(&path.to_string_lossy())
                )
            }
            (None, Some(port)) => {
                let host = self.host.as_deref().unwrap_or("localhost");
                if export.is_empty() {
                    format!("{scheme}://{host}:{port}")
                } else {
                    format!("{scheme}://{host}:{port}/{export}")
                }
            }
            (None, None) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening(port: Option<u16>, unix: Option<&str>) -> Listening {
        Listening {
            sockets: Vec::new(),
            port,
            host: port.map(|_| "localhost".to_string()),
            unix_path: unix.map(PathBuf::from),
            all_interfaces: false,
            cleanup: Cleanup::default(),
        }
    }

    #[test]
    fn uris() {
        assert_eq!(
            listening(Some(10809), None).uri("", false),
            "nbd://localhost:10809"
        );
        assert_eq!(
            listening(Some(1234), None).uri("a b", false),
            "nbd://localhost:1234/a%20b"
        );
        assert_eq!(
            listening(None, Some("/tmp/x y/socket")).uri("", false),
            "nbd+unix:///?socket=/tmp/x%20y/socket"
        );
        assert_eq!(
            listening(None, Some("/s")).uri("exp", false),
            "nbd+unix:///exp?socket=/s"
        );
        assert_eq!(
            listening(None, Some("/s")).uri("exp", true),
            "nbds+unix:///exp?socket=/s"
        );
        assert_eq!(
            listening(Some(1234), None).uri("", true),
            "nbds://localhost:1234"
        );
    }

    #[test]
    fn private_dir_is_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let a = private_dir(&temp_base(), "vddk-nbd", "test").unwrap();
        let b = private_dir(&temp_base(), "vddk-nbd", "test").unwrap();
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir(&a).unwrap();
        std::fs::remove_dir(&b).unwrap();
    }

    #[test]
    fn tcp_port_zero_reports_the_real_port() {
        let (s, port) = bind_tcp(Some("127.0.0.1"), None, 0).unwrap();
        assert_eq!(s.len(), 1);
        assert_ne!(port, 0);
    }
}
