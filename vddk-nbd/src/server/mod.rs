//! The server: configuration, listeners, connection threads and shutdown.

mod budget;
mod deadline;
mod inflight;
mod listener;
mod negotiate;
mod output;
mod payload;
mod socket;
mod tls_stream;
mod transmit;
mod warn_limit;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::backend::Backend;
use crate::exports::{ExportRegistry, Resolved};
use crate::filters::Stack;
use crate::proto::export::{ExportDesc, Exports, NoSuchExport};
use crate::proto::request::Limits;
use crate::tls::Tls;

use budget::Budget;
use deadline::Clock;
pub use listener::{Listener, CONNECTION_THREAD, SHUTDOWN_GRACE};

/// How the export is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Name listed by NBD_OPT_LIST and sent as NBD_INFO_NAME (`-e`); any
    /// name a client asks for is served, as with nbdkit. Only used by
    /// [`Server::new`]; with [`Server::with_exports`] each export has its own.
    pub export_name: String,
    /// NBD_INFO_DESCRIPTION, if any (as `export_name`).
    pub description: Option<String>,
    /// Refuse writes even if the backend could do them (`-r`).
    pub read_only: bool,
    /// Connections beyond this many are closed on accept.
    pub max_connections: Option<usize>,
    /// A client that has not finished negotiating by then is dropped
    /// (sockets only; `serve_stream` has no timeout). Zero disables it.
    /// It covers the TLS handshake too.
    pub handshake_timeout: Duration,
    /// TLS offered through NBD_OPT_STARTTLS; `None` refuses it.
    pub tls: Option<Tls>,
    /// The oldstyle handshake (`-o`): the default export's size and flags
    /// at once, no options (so no export names, TLS or structured replies).
    pub oldstyle: bool,
    /// Bytes of read and write data all connections together may hold
    /// (`--request-memory`); connections wait to read requests beyond it.
    /// Write payloads still arriving may hold half of it. The default,
    /// [`default_request_memory`], follows the machine's memory.
    pub request_memory: usize,
    /// A write payload must arrive whole within this time, or its
    /// connection is closed (sockets only). Zero disables it.
    pub payload_timeout: Duration,
    /// A reply (or batch of replies written together) must be taken by
    /// the client whole within this time, or its connection is closed
    /// (sockets only). Zero disables it.
    pub write_timeout: Duration,
}

/// The default of [`ServerConfig::request_memory`]: a sixteenth of the
/// memory this process may use (the machine's, or its cgroup's limit),
/// between 64 MiB and 1 GiB.
pub fn default_request_memory() -> usize {
    budget::default_for(budget::memory_limit())
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            export_name: String::new(),
            description: None,
            read_only: false,
            max_connections: None,
            handshake_timeout: Duration::from_secs(60),
            tls: None,
            oldstyle: false,
            request_memory: default_request_memory(),
            payload_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(120),
        }
    }
}

/// Shuts one connection's socket down: its reading side ends it
/// gracefully, both sides end it at once.
type Closer = Box<dyn Fn(std::net::Shutdown) + Send + Sync>;

struct Inner {
    exports: Arc<ExportRegistry>,
    filters: Stack,
    config: ServerConfig,
    budget: Arc<Budget>,
    shutdown: AtomicBool,
    active: AtomicUsize,
    next_id: AtomicU64,
    // Lock order: `closers` is a leaf lock, never held while taking another.
    closers: Mutex<HashMap<u64, Closer>>,
}

/// An NBD server for one export, or several chosen by name.
pub struct Server {
    inner: Arc<Inner>,
}

/// Stops a running [`Server`] from any thread.
///
/// It does not keep the server alive: a signal handler that holds one must
/// not keep the exports (and through them the library) open after serving.
#[derive(Clone)]
pub struct ShutdownHandle {
    inner: Weak<Inner>,
}

impl ShutdownHandle {
    /// Stops accepting, stops reading new requests, lets requests in flight
    /// finish and be answered, then closes every connection. `serve`
    /// returns once all connections are gone.
    pub fn shutdown(&self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        inner.shutdown.store(true, Ordering::SeqCst);
        inner.budget.close();
        inner.close_all(std::net::Shutdown::Read);
    }
}

/// Counts a connection as active for as long as it lives.
struct Active {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.inner
            .closers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        self.inner.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's stack over an export, once negotiation has built it.
type Opened = Arc<Mutex<Option<(String, Arc<dyn Backend>)>>>;

/// What negotiation sees of the registry: exports are opened, and the
/// connection's filter layers stacked over them, when a client asks.
struct Lookup {
    exports: Arc<ExportRegistry>,
    filters: Stack,
    read_only: bool,
    opened: Opened,
}

impl Lookup {
    fn desc(&self, r: &Resolved, top: &Arc<dyn Backend>) -> ExportDesc {
        let caps = top.caps();
        let sizes = caps.block_sizes;
        ExportDesc {
            name: r.name.clone(),
            description: r.description.clone(),
            size: caps.size,
            block_sizes: (sizes.minimum, sizes.preferred, sizes.maximum),
            features: if self.read_only {
                caps.features.read_only()
            } else {
                caps.features
            },
        }
    }
}

impl Exports for Lookup {
    fn list(&self) -> Vec<(String, Option<String>)> {
        self.exports.list()
    }

    fn lookup(&mut self, name: &str) -> Result<ExportDesc, NoSuchExport> {
        let refuse = |e: &dyn std::fmt::Display| {
            warn_limit::UNKNOWN_EXPORT
                .warn(format_args!("a client asked for export {name:?}: {e}"));
            NoSuchExport(e.to_string())
        };
        let r = self.exports.resolve(name).map_err(|e| refuse(&e))?;
        let top = self
            .filters
            .open(Arc::clone(&r.backend), &r.name)
            .map_err(|e| refuse(&e))?;
        let desc = self.desc(&r, &top);
        *self.opened.lock().unwrap_or_else(PoisonError::into_inner) = Some((r.name, top));
        Ok(desc)
    }
}

impl Inner {
    /// Shuts down the sockets of every connection; returns how many.
    fn close_all(&self, how: std::net::Shutdown) -> usize {
        let closers = self.closers.lock().unwrap_or_else(PoisonError::into_inner);
        for close in closers.values() {
            close(how);
        }
        closers.len()
    }

    /// Registers a connection; `None` if over the limit or shutting down.
    fn admit(self: &Arc<Self>, closer: Closer) -> Option<Active> {
        let n = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let active = Active {
            inner: Arc::clone(self),
            id,
        };
        if self.config.max_connections.is_some_and(|max| n > max) {
            warn_limit::OVER_LIMIT.warn(format_args!(
                "refusing a connection: already serving the maximum of {}",
                n - 1
            ));
            return None;
        }
        self.closers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, closer);
        if self.shutdown.load(Ordering::SeqCst) {
            return None;
        }
        Some(active)
    }

    /// Negotiates and serves one connection to its end.
    fn run<R: Read, W: Write + Send + 'static>(
        &self,
        r: R,
        w: W,
        clock: &Arc<Clock>,
        after_handshake: impl FnOnce(),
    ) -> io::Result<()> {
        if self.config.oldstyle {
            return self.run_oldstyle(r, w, clock, after_handshake);
        }
        let opened: Opened = Arc::default();
        let lookup = Lookup {
            exports: Arc::clone(&self.exports),
            filters: self.filters.clone(),
            read_only: self.config.read_only,
            opened: Arc::clone(&opened),
        };
        let Some(negotiate::Negotiation {
            negotiated,
            leftover,
            link,
        }) = negotiate::negotiate(r, w, Box::new(lookup), self.config.tls.as_ref())?
        else {
            return Ok(());
        };
        // Negotiation stacked the connection's layers over the export it chose.
        let opened = opened.lock().unwrap_or_else(PoisonError::into_inner).take();
        let backend = match opened {
            Some((name, top)) if name == negotiated.export.name => top,
            _ => {
                let r = self
                    .exports
                    .resolve(&negotiated.export.name)
                    .map_err(io::Error::other)?;
                self.filters
                    .open(r.backend, &r.name)
                    .map_err(io::Error::other)?
            }
        };
        let export = &negotiated.export;
        after_handshake();
        let limits = Limits {
            size: export.size,
            features: export.features,
            max_payload: export.block_sizes.2,
            structured: negotiated.structured,
            base_allocation: negotiated.base_allocation,
        };
        let conn = self.transmission(clock);
        log::debug!(
            "client negotiated export {:?}, structured replies {}, block status {}, TLS {}",
            negotiated.export_name,
            negotiated.structured,
            negotiated.base_allocation.is_some(),
            matches!(link, negotiate::Link::Tls(..))
        );
        match link {
            negotiate::Link::Plain(r, w) => {
                transmit::transmit(io::Cursor::new(leftover).chain(r), w, backend, limits, conn)
            }
            negotiate::Link::Tls(r, w) => {
                let closer = w.clone();
                let r = io::Cursor::new(leftover).chain(r);
                let result = transmit::transmit(r, w, backend, limits, conn);
                if result.is_ok() {
                    closer.close();
                }
                result
            }
        }
    }
}

impl Inner {
    /// The oldstyle handshake, then transmission of the default export.
    fn run_oldstyle<R: Read, W: Write + Send + 'static>(
        &self,
        r: R,
        mut w: W,
        clock: &Arc<Clock>,
        after_handshake: impl FnOnce(),
    ) -> io::Result<()> {
        let mut lookup = Lookup {
            exports: Arc::clone(&self.exports),
            filters: self.filters.clone(),
            read_only: self.config.read_only,
            opened: Arc::default(),
        };
        let export = lookup.lookup("").map_err(io::Error::other)?;
        let Some((_, backend)) = lookup
            .opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Err(io::Error::other("the default export did not open"));
        };
        let mut out = Vec::with_capacity(152);
        crate::proto::wire::encode_oldstyle(
            &mut out,
            export.size,
            export.transmission_flags(false),
        );
        w.write_all(&out)?;
        w.flush()?;
        after_handshake();
        log::debug!("client connected with the oldstyle handshake");
        let limits = Limits {
            size: export.size,
            features: export.features,
            max_payload: export.block_sizes.2,
            structured: false,
            base_allocation: None,
        };
        transmit::transmit(r, w, backend, limits, self.transmission(clock))
    }

    /// What transmission on one connection shares with the server.
    fn transmission(&self, clock: &Arc<Clock>) -> transmit::Conn {
        transmit::Conn {
            budget: Arc::clone(&self.budget),
            clock: Arc::clone(clock),
        }
    }
}

impl Server {
    /// A server exporting `backend` under every name.
    pub fn new(backend: Arc<dyn Backend>, config: ServerConfig) -> Server {
        let exports = ExportRegistry::single(
            config.export_name.clone(),
            config.description.clone(),
            backend,
        );
        Server::with_exports(Arc::new(exports), config)
    }

    /// A server offering the exports of `exports`; clients choose by name,
    /// and the empty name selects the first.
    pub fn with_exports(exports: Arc<ExportRegistry>, config: ServerConfig) -> Server {
        Server::with_filters(exports, Stack::default(), config)
    }

    /// As [`Server::with_exports`], with `filters` stacked over each export
    /// for each connection (the first filter nearest the client).
    pub fn with_filters(
        exports: Arc<ExportRegistry>,
        filters: Stack,
        config: ServerConfig,
    ) -> Server {
        Server {
            inner: Arc::new(Inner {
                exports,
                filters,
                budget: Budget::new(config.request_memory),
                config,
                shutdown: AtomicBool::new(false),
                active: AtomicUsize::new(0),
                next_id: AtomicU64::new(0),
                closers: Mutex::default(),
            }),
        }
    }

    /// A handle that stops [`Server::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Accepts connections on every listener, a thread per connection,
    /// until shut down; then waits for connections to finish.
    pub fn serve(&self, listeners: Vec<Listener>) -> io::Result<()> {
        listener::accept_loop(&self.inner, listeners)
    }

    /// Serves a single connection over `r`/`w` (nbdkit's `-s`); returns
    /// when the client disconnects. Shutdown cannot interrupt a read on a
    /// plain stream, so it takes effect when the client next sends.
    pub fn serve_stream<R: Read + Send + 'static, W: Write + Send + 'static>(
        &self,
        r: R,
        w: W,
    ) -> io::Result<()> {
        let Some(_active) = self.inner.admit(Box::new(|_| {})) else {
            return Ok(());
        };
        // Plain streams have no timeouts: the deadlines are never enforced.
        let clock = Arc::new(Clock::default());
        self.inner.run(r, w, &clock, || {})
    }

    /// The exports this server offers (e.g. to close them after serving).
    pub fn exports(&self) -> &Arc<ExportRegistry> {
        &self.inner.exports
    }

    /// Connections currently open.
    pub fn active_connections(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Bytes of request data (payloads and read replies) held right now,
    /// out of [`ServerConfig::request_memory`].
    pub fn request_memory_held(&self) -> usize {
        self.inner.budget.held()
    }
}

/// How long the accept loop sleeps when no listener has a connection.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
