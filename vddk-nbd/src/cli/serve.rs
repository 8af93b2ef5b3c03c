//! Wiring the parsed command line to the `vddk` crate and the NBD server:
//! initialise VDDK, connect, (create,) open, listen, serve until a signal
//! or the `--run` command ends, then flush and close in order.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use vddk_nbd::exports::ExportRegistry;
use vddk_nbd::filters::Stack;
use vddk_nbd::tls::{Tls, TlsMode};
use vddk_nbd::{Listener, Server, ServerConfig};

use super::args::Options;
use super::daemon::Readiness;
use super::listen::{self, Bound};
use super::privileges::Identity;
use super::{run, signals, stats};
use vddk_nbd::params::connect::{connect_params, create_params, init_options};
use vddk_nbd::params::password::Password;
use vddk_nbd::params::{Secrets, VddkParams};

/// Where the exports come from.
pub enum Source<'a> {
    /// The vddk plugin: VDDK is initialised and the disks opened here.
    Vddk {
        params: &'a VddkParams,
        secrets: &'a Secrets,
    },
    /// Another plugin, its exports already made.
    Local(Arc<ExportRegistry>),
}

/// Opens the exports, listens, and serves until told to stop; returns the
/// exit status.
pub fn run(
    opts: &Options,
    source: Source<'_>,
    filters: Stack,
    tls: Option<Tls>,
    identity: Option<&Identity>,
    readiness: Readiness,
) -> Result<i32, String> {
    let termination = signals::Termination::install()?;
    if opts.exit_with_parent {
        termination.exit_with_parent()?;
    }
    // The library, when there is one, outlives the exports.
    let mut vddk_state = None;
    let (exports, description) = match source {
        Source::Local(exports) => (exports, None),
        Source::Vddk { params, secrets } => {
            let opened = open_vddk(opts, params, secrets, &filters)?;
            let description = params.file.clone();
            let exports = Arc::clone(&opened.exports);
            vddk_state = Some(opened);
            (exports, description)
        }
    };

    let config = ServerConfig {
        export_name: opts.export_name.clone(),
        description,
        read_only: opts.read_only,
        tls,
        oldstyle: opts.oldstyle,
        request_memory: opts
            .request_memory
            .map_or_else(vddk_nbd::server::default_request_memory, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        ..ServerConfig::default()
    };
    log::debug!(
        "clients may have the server hold {} MiB of request data at once",
        config.request_memory >> 20
    );
    let server = Server::with_filters(Arc::clone(&exports), filters.clone(), config);
    let handle = server.shutdown_handle();
    let stdin_socket = if opts.single { stdin_as_socket() } else { None };
    let stopping = filters.clone();
    termination.on_signal(move || {
        handle.shutdown();
        stopping.shutdown();
        // A blocked read on stdin would otherwise wait for the client's
        // next request; shutting down our side of the socket ends it now.
        if let Some(s) = &stdin_socket {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    });

    // Dropped last, after the disk is closed: a pid file that has gone
    // means the data is on disk.
    let mut cleanup = listen::Cleanup::default();
    let result = if opts.single {
        serve_stdio(&server, opts, identity, readiness, &mut cleanup)
    } else {
        serve_sockets(&server, opts, identity, readiness, &mut cleanup)
    };
    drop(server);
    let closed = exports.close_all();
    drop(exports);
    filters.unload();
    if let Some(v) = vddk_state {
        v.finish();
    }
    drop(cleanup);
    closed.map_err(|e| e.to_string())?;
    result
}

/// VDDK and what was opened through it.
struct VddkState {
    exports: Arc<ExportRegistry>,
    conn: Arc<vddk::Connection>,
    lib: vddk::Vddk,
    stats: Option<vddk::Stats>,
}

impl VddkState {
    /// Closes the connection and exits the library, then prints the call
    /// statistics (which then include Exit, as nbdkit's do).
    fn finish(self) {
        drop(self.exports);
        drop(self.conn);
        drop(self.lib);
        if let Some(v) = self.stats {
            stats::print(&v.snapshot());
        }
    }
}

/// Initialises VDDK, connects, creates the disk if asked, and opens the
/// exports (read-only when a filter, such as cow, never writes below).
fn open_vddk(
    opts: &Options,
    p: &VddkParams,
    secrets: &Secrets,
    filters: &Stack,
) -> Result<VddkState, String> {
    let file = p.file.clone().unwrap_or_default();
    let read_only = opts.read_only || filters.read_only_below();
    // Fetched before VDDK starts, so a server that cannot be reached is
    // reported before anything else happens.
    let mut p = p.clone();
    vddk_nbd::params::trust::resolve_thumbprint(&mut p).map_err(|e| e.to_string())?;
    let p = &p;

    let want_stats = stats::requested(&opts.debug_flags);
    let lib =
        vddk::Vddk::init(init_options(p).collect_stats(want_stats)).map_err(|e| e.to_string())?;
    // Kept apart from the library so that the table, printed after Exit,
    // includes Exit as nbdkit's does.
    let stats = lib.stats_handle();
    log::debug!(
        "loaded {} (VDDK {}), found {}",
        lib.library_path().display(),
        lib.major_version(),
        lib.found_by()
    );
    if *lib.found_by() == vddk::FoundBy::DynamicLinker {
        let searched = match &p.libdir {
            Some(d) => std::path::PathBuf::from(d),
            None => vddk::LoadOptions::default().resolve_dir().0,
        };
        log::warn!(
            "VDDK was not in the libdir ({}); using {} from the dynamic linker's search \
             path: set libdir= to its distribution directory if transports misbehave",
            searched.display(),
            lib.library_path().display()
        );
    }

    let params = connect_params(p, secrets, read_only).map_err(|e| e.to_string())?;
    let conn = vddk::Connection::connect(&lib, &params).map_err(|e| e.to_string())?;
    if let Some(c) = &p.create {
        conn.create(&file, &create_params(c))
            .map_err(|e| format!("cannot create {file}: {e}"))?;
        log::debug!("created {file} ({} bytes)", c.size);
    }
    let conn = Arc::new(conn);
    let password_file = match &p.password {
        Some(source @ Password::File(_)) if p.cookie.is_none() => {
            Some(super::open_exports::PasswordFile {
                source: source.clone(),
                vddk: Arc::new(p.clone()),
                read_only,
            })
        }
        _ => None,
    };
    let reconnect = super::open_exports::Reconnect {
        lib: lib.clone(),
        params,
        password_file,
    };
    // The disks are opened now, for every connection to come; what VDDK
    // says while opening is told as nbdkit tells it, for the first one.
    let exports = super::logger::as_connection(1, || {
        super::open_exports::open(
            &conn,
            reconnect,
            opts,
            p,
            read_only,
            filters.reconnect_below(),
        )
    })?;
    Ok(VddkState {
        exports,
        conn,
        lib,
        stats,
    })
}

/// Stdin as a socket (as with inetd or a client's socketpair), so that
/// shutdown can interrupt a read on it; `None` when it is something else.
fn stdin_as_socket() -> Option<UnixStream> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let sock = UnixStream::from(fd);
    // A non-socket descriptor fails here, and is then left alone.
    sock.local_addr().ok()?;
    Some(sock)
}

fn write_pidfile(opts: &Options, cleanup: &mut listen::Cleanup) -> Result<(), String> {
    if let Some(path) = &opts.pidfile {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))?;
        cleanup.file(path.clone());
    }
    Ok(())
}

fn serve_stdio(
    server: &Server,
    opts: &Options,
    identity: Option<&Identity>,
    readiness: Readiness,
    cleanup: &mut listen::Cleanup,
) -> Result<i32, String> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| format!("-s: cannot use stdin/stdout: {e}"))
    };
    let input = dup(std::io::stdin().as_fd())?;
    let output = dup(std::io::stdout().as_fd())?;
    write_pidfile(opts, cleanup)?;
    if let Some(id) = identity {
        id.drop_privileges()?;
    }
    readiness.ready();
    server
        .serve_stream(input, output)
        .map_err(|e| e.to_string())?;
    Ok(0)
}

fn serve_sockets(
    server: &Server,
    opts: &Options,
    identity: Option<&Identity>,
    readiness: Readiness,
    cleanup: &mut listen::Cleanup,
) -> Result<i32, String> {
    let mut listening = listen::open(opts, identity)?;
    cleanup.take_from(&mut listening.cleanup);
    let tls_mode = super::tls_flags::mode(opts);
    if listening.all_interfaces && tls_mode != TlsMode::Require {
        log::warn!(
            "listening on all network interfaces (port {}) without --tls=require: any host \
             that can reach this one can {} the disk; listen on one address with -i \
             (e.g. -i 127.0.0.1), or require TLS with --tls=require",
            listening.port.unwrap_or_default(),
            if opts.read_only {
                "read"
            } else {
                "read and write"
            }
        );
    }
    write_pidfile(opts, cleanup)?;
    let sockets = std::mem::take(&mut listening.sockets)
        .into_iter()
        .map(|b| match b {
            Bound::Tcp(l) => Listener::Tcp(l),
            Bound::Unix(l) => Listener::Unix(l),
        })
        .collect();

    let status = Arc::new(Mutex::new(None));
    if let Some(cmd) = &opts.run {
        let mut child = run::spawn(cmd, &listening, &opts.export_name, tls_mode)?;
        let handle = server.shutdown_handle();
        let status = status.clone();
        std::thread::Builder::new()
            .name("run".into())
            .spawn(move || {
                let code = match child.wait() {
                    Ok(s) => run::exit_code(s),
                    Err(e) => {
                        log::error!("--run: lost the command: {e}");
                        1
                    }
                };
                log::debug!("--run: command exited with status {code}; shutting down");
                *status.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
                handle.shutdown();
            })
            .map_err(|e| format!("--run: cannot start the waiting thread: {e}"))?;
    }
    // After `--run` has started, so that the command runs as the user who
    // gave it; before anything is served or reported ready.
    if let Some(id) = identity {
        id.drop_privileges()?;
    }
    readiness.ready();
    server.serve(sockets).map_err(|e| e.to_string())?;
    let code = status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(0);
    Ok(code)
}
