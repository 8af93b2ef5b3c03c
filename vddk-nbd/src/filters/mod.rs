//! nbdkit-style filters: layers between the server and the plugin.
//!
//! A [`Filter`] is one connection's view of a filter: each method gets the
//! layer below (`next`) and by default passes the request on unchanged, so
//! a filter overrides only what it changes. [`Layer`] makes a filter a
//! [`Backend`] over the next layer, computing its [`Caps`] once.
//!
//! A [`FilterSpec`] is a filter as the command line configured it: its
//! parameters and whatever its connections share (cow's overlay, rate's
//! bucket, count's totals). The server asks it for a layer per connection
//! ([`FilterSpec::open`]), stacking them in nbdkit's order: the first
//! `--filter` on the command line is nearest the client.
//!
//! Every filter declares its parameters once ([`FilterInfo`]); the command
//! line, `--help` and the probes read that one table.

pub mod blocksize;
pub mod cacheextents;
pub mod count;
pub mod cow;
pub mod multi_conn;
pub mod noextents;
pub mod rate;
pub mod retry;
pub mod trace;

use std::sync::Arc;

use crate::backend::{Backend, Caps, Done, Error, Extent, Known, ZeroFlags};
pub use crate::params::ParamHelp;
use crate::params::{ParamError, Params};

/// The layer below a filter.
pub type Next = Arc<dyn Backend>;

/// One connection's filter layer. Every method has a default that passes
/// the request to `next` unchanged.
#[allow(unused_variables)]
pub trait Filter: Send + Sync + 'static {
    /// This layer's capabilities, given those of the layer below.
    fn caps(&self, below: Caps) -> Caps {
        below
    }
    /// See [`Backend::read`].
    fn read(&self, next: &Next, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        next.read(offset, len, buf, done)
    }
    /// See [`Backend::write`].
    fn write(&self, next: &Next, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        next.write(offset, data, fua, done)
    }
    /// See [`Backend::zero`].
    fn zero(&self, next: &Next, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        next.zero(offset, len, flags, done)
    }
    /// See [`Backend::trim`].
    fn trim(&self, next: &Next, offset: u64, len: u64, fua: bool, done: Done<()>) {
        next.trim(offset, len, fua, done)
    }
    /// See [`Backend::flush`].
    fn flush(&self, next: &Next, done: Done<()>) {
        next.flush(done)
    }
    /// See [`Backend::extents`].
    fn extents(&self, next: &Next, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        next.extents(offset, len, done)
    }
    /// See [`Backend::known`]. Filters that change data must not pass this
    /// through; the default does.
    fn known(&self, next: &Next, offset: u64, len: u64) -> Known {
        next.known(offset, len)
    }
    /// See [`Backend::reopen`].
    fn reopen(&self, next: &Next) -> Result<(), Error> {
        next.reopen()
    }
}

/// A filter over the next layer, as a [`Backend`].
pub struct Layer<F> {
    filter: F,
    next: Arc<dyn Backend>,
    caps: Caps,
}

impl<F: Filter> Layer<F> {
    /// Stacks `filter` over `next`.
    pub fn new(filter: F, next: Arc<dyn Backend>) -> Layer<F> {
        let caps = filter.caps(next.caps());
        Layer { filter, next, caps }
    }
}

impl<F: Filter> Backend for Layer<F> {
    fn caps(&self) -> Caps {
        self.caps
    }
    fn read(&self, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        self.filter.read(&self.next, offset, len, buf, done)
    }
    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        self.filter.write(&self.next, offset, data, fua, done)
    }
    fn zero(&self, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        self.filter.zero(&self.next, offset, len, flags, done)
    }
    fn trim(&self, offset: u64, len: u64, fua: bool, done: Done<()>) {
        self.filter.trim(&self.next, offset, len, fua, done)
    }
    fn flush(&self, done: Done<()>) {
        self.filter.flush(&self.next, done)
    }
    fn extents(&self, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        self.filter.extents(&self.next, offset, len, done)
    }
    fn known(&self, offset: u64, len: u64) -> Known {
        self.filter.known(&self.next, offset, len)
    }
    fn reopen(&self) -> Result<(), Error> {
        self.filter.reopen(&self.next)
    }
    /// A connection's layer closes nothing: the plugin below is shared and
    /// closed by the server once, after the last connection.
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// A filter as configured: its parameters and what its connections share.
pub trait FilterSpec: Send + Sync + 'static {
    /// The filter's name (`cow`).
    fn name(&self) -> &'static str;
    /// One connection's layer over `next`, for the export `export`.
    ///
    /// # Errors
    /// When the layer cannot be made (an overlay file, say).
    fn open(&self, next: Arc<dyn Backend>, export: &str) -> Result<Arc<dyn Backend>, Error>;
    /// Whether the layers below must be opened read-only (cow never writes
    /// to them).
    fn read_only_below(&self) -> bool {
        false
    }
    /// How the plugin below should reconnect by itself when its
    /// connection to the host is lost (retry asks for its own policy).
    fn reconnect_below(&self) -> Option<vddk::Reconnect> {
        None
    }
    /// Called as soon as the server begins to stop (a signal): a filter
    /// that waits (retry's delays) stops waiting, so that the requests it
    /// holds end and the exit stays bounded.
    fn shutdown(&self) {}
    /// Called once as the server stops, after the last connection.
    fn unload(&self) {}
}

/// What the command line and the probes know of a filter.
pub struct FilterInfo {
    /// Its name, as `--filter=` takes it.
    pub name: &'static str,
    /// What it does, as `--help` shows it.
    pub description: &'static str,
    /// The parameters it takes.
    pub params: &'static [ParamHelp],
    /// Builds it from its parameters (only the keys it declares).
    pub configure: fn(&Params) -> Result<Arc<dyn FilterSpec>, ParamError>,
}

/// Filters are the same when their names are.
impl PartialEq for FilterInfo {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for FilterInfo {}

impl std::fmt::Debug for FilterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every filter this server has.
pub const FILTERS: &[&FilterInfo] = &[
    &blocksize::INFO,
    &cacheextents::INFO,
    &count::INFO,
    &cow::INFO,
    &multi_conn::INFO,
    &noextents::INFO,
    &rate::INFO,
    &retry::INFO,
];

/// The filter called `name`.
pub fn find(name: &str) -> Option<&'static FilterInfo> {
    FILTERS.iter().copied().find(|f| f.name == name)
}

/// The filters of one server, in command-line order (outermost first).
#[derive(Default, Clone)]
pub struct Stack {
    filters: Vec<Arc<dyn FilterSpec>>,
    /// Log requests at the top (`-D nbdkit.backend.datapath=1`) and over
    /// the plugin (`-D PLUGIN.datapath=1`).
    trace_top: bool,
    trace_plugin: Option<&'static str>,
}

impl Stack {
    /// The filters, outermost first.
    pub fn new(filters: Vec<Arc<dyn FilterSpec>>) -> Stack {
        Stack {
            filters,
            ..Stack::default()
        }
    }

    /// Logs every request as the client sent it (`nbdkit.backend.datapath`).
    pub fn trace_requests(mut self, on: bool) -> Stack {
        self.trace_top = on;
        self
    }

    /// Logs every request as it reaches the plugin `name`.
    pub fn trace_plugin(mut self, name: Option<&'static str>) -> Stack {
        self.trace_plugin = name;
        self
    }

    /// No filters at all.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether some filter needs the plugin opened read-only.
    pub fn read_only_below(&self) -> bool {
        self.filters.iter().any(|f| f.read_only_below())
    }

    /// The reconnection policy a filter asks of the plugin, if any.
    pub fn reconnect_below(&self) -> Option<vddk::Reconnect> {
        self.filters.iter().find_map(|f| f.reconnect_below())
    }

    /// One connection's stack over `plugin` for `export`, built from the
    /// bottom up.
    ///
    /// # Errors
    /// The first filter that cannot open.
    pub fn open(&self, plugin: Arc<dyn Backend>, export: &str) -> Result<Arc<dyn Backend>, Error> {
        let mut top = plugin;
        if let Some(name) = self.trace_plugin {
            top = trace::Trace::over(name, top);
        }
        for f in self.filters.iter().rev() {
            top = f.open(top, export)?;
        }
        if self.trace_top {
            top = trace::Trace::over("backend", top);
        }
        Ok(top)
    }

    /// Tells every filter the server has begun to stop.
    pub fn shutdown(&self) {
        for f in &self.filters {
            f.shutdown();
        }
    }

    /// Tells every filter the server is stopping, outermost first.
    pub fn unload(&self) {
        for f in &self.filters {
            f.unload();
        }
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.filters.iter().map(|x| x.name()))
            .finish()
    }
}

/// Joins `n` completions into `done`: the first error wins, else `Ok`
/// with the value `finish` makes from the parts in order.
pub(crate) struct Join<T, R> {
    state: std::sync::Mutex<JoinState<T, R>>,
}

struct JoinState<T, R> {
    parts: Vec<Option<T>>,
    left: usize,
    error: Option<Error>,
    finish: Option<Box<dyn FnOnce(Vec<T>) -> R + Send>>,
    done: Option<Done<R>>,
}

impl<T: Send + 'static, R: Send + 'static> Join<T, R> {
    /// A join of `n` parts (at least one).
    pub(crate) fn new(
        n: usize,
        finish: impl FnOnce(Vec<T>) -> R + Send + 'static,
        done: Done<R>,
    ) -> Arc<Join<T, R>> {
        Arc::new(Join {
            state: std::sync::Mutex::new(JoinState {
                parts: (0..n).map(|_| None).collect(),
                left: n,
                error: None,
                finish: Some(Box::new(finish)),
                done: Some(done),
            }),
        })
    }

    /// A completion for part `i`.
    pub(crate) fn part(self: &Arc<Self>, i: usize) -> Done<T> {
        let me = Arc::clone(self);
        Box::new(move |r| me.complete(i, r))
    }

    fn complete(&self, i: usize, r: Result<T, Error>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(v) => s.parts[i] = Some(v),
            Err(e) => {
                s.error.get_or_insert(e);
            }
        }
        s.left -= 1;
        if s.left > 0 {
            return;
        }
        let (Some(done), Some(finish)) = (s.done.take(), s.finish.take()) else {
            return;
        };
        let result = match s.error.take() {
            Some(e) => Err(e),
            None => Ok(finish(s.parts.drain(..).flatten().collect())),
        };
        drop(s);
        done(result);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A memory disk, parameters and a way to wait for completions, for
    //! filter tests.

    use std::sync::{mpsc, Arc};

    use crate::backend::{Backend, Done, Error};
    use crate::params::Params;
    use crate::plugins::MemoryBackend;

    pub(crate) fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    pub(crate) fn memory(size: u64) -> Arc<MemoryBackend> {
        Arc::new(MemoryBackend::new(size))
    }

    pub(crate) fn wait<T: Send + 'static>(f: impl FnOnce(Done<T>)) -> Result<T, Error> {
        let (tx, rx) = mpsc::channel();
        f(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("completed")
    }

    pub(crate) fn read(b: &dyn Backend, offset: u64, len: u32) -> Vec<u8> {
        wait(|d| b.read(offset, len, Vec::new(), d)).expect("read")
    }
}
