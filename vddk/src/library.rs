//! The initialised library: [`Vddk`] and [`InitOptions`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::connect_params::ConnectParams;
use crate::error::{Error, Result};
use crate::raw::Lib;
use crate::stats::{CallStats, Stats};
use crate::{Capabilities, FoundBy, LoadOptions};

/// How to load and initialise VDDK.
///
/// # Examples
///
/// ```no_run
/// use vddk::{InitOptions, LoadOptions, Vddk};
///
/// let opts = InitOptions::new()
///     .libdir("/opt/vmware-vix-disklib-distrib")
///     .config_file("/etc/vddk.conf")
///     .collect_stats(true);
/// // Or this directory's library and no other (no `$VDDK_LIBDIR`, no dynamic linker):
/// let strict = InitOptions::new().load_options(
///     LoadOptions::default().libdir("/opt/vmware-vix-disklib-distrib").dynamic_linker(false),
/// );
/// # let _ = strict;
/// let vddk = Vddk::init(opts)?;
/// # let _ = vddk;
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    load: LoadOptions,
    config_file: Option<PathBuf>,
    collect_stats: bool,
}

impl InitOptions {
    /// Defaults: the library is searched in `$VDDK_LIBDIR`, else
    /// [`DEFAULT_LIBDIR`](crate::DEFAULT_LIBDIR).
    pub fn new() -> InitOptions {
        InitOptions::default()
    }

    /// The VDDK directory (the unpacked `vmware-vix-disklib-distrib`, holding
    /// `lib64/libvixDiskLib.so.N`). Also passed to InitEx.
    pub fn libdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.load = self.load.libdir(dir);
        self
    }

    /// A VDDK configuration file (`key=value` lines), passed to InitEx.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Counts calls, bytes and time per VDDK function (what nbdkit's
    /// `-D vddk.stats=1` shows); read them with [`Vddk::stats`] or
    /// [`Vddk::stats_handle`]. Off by default: it costs two clock reads
    /// per call.
    pub fn collect_stats(mut self, on: bool) -> Self {
        self.collect_stats = on;
        self
    }

    /// Full control over the library search (e.g. to ignore `$VDDK_LIBDIR`).
    pub fn load_options(mut self, load: LoadOptions) -> Self {
        self.load = load;
        self
    }
}

/// The initialised VDDK library. Cheap to clone (an `Arc` inside).
///
/// There is at most one per process: [`Vddk::init`] calls InitEx, which
/// VDDK allows once. Exit runs when the last clone *and* every
/// [`Connection`](crate::Connection) and [`Disk`](crate::Disk) made from it
/// are gone, since each of them holds the library too.
///
/// # Examples
///
/// ```no_run
/// use vddk::{Error, InitOptions, Vddk};
///
/// let vddk = Vddk::init(InitOptions::new())?;
/// println!("{} (found {})", vddk.library_path().display(), vddk.found_by());
/// if !vddk.capabilities().has_clone() {
///     eprintln!("VDDK {} cannot clone disks", vddk.major_version());
/// }
/// // One per process: threads take clones.
/// let worker = std::thread::spawn({
///     let vddk = vddk.clone();
///     move || vddk.transport_modes()
/// });
/// println!("transports: {}", worker.join().expect("no panic"));
/// assert!(matches!(Vddk::init(InitOptions::new()), Err(Error::AlreadyInitialized)));
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Clone)]
pub struct Vddk {
    pub(crate) lib: Arc<Lib>,
}

impl Vddk {
    /// Loads the library and calls InitEx, routing VDDK's messages to the
    /// `log` facade (target `vddk::library`).
    ///
    /// Call it from the main thread, after any `fork`, before starting
    /// threads that will use VDDK.
    ///
    /// # Errors
    /// [`Error::AlreadyInitialized`] on a second call while a [`Vddk`]
    /// lives, [`Error::Exited`] after the library has exited (VDDK allows
    /// one InitEx per process),
    /// [`Error::Load`] when the library cannot be found (the message lists
    /// every path tried), [`Error::Vix`] when InitEx fails.
    pub fn init(opts: InitOptions) -> Result<Vddk> {
        let stats = opts.collect_stats.then(Stats::default);
        let lib = Lib::init(&opts.load, opts.config_file.as_deref(), stats)?;
        Ok(Vddk { lib: Arc::new(lib) })
    }

    /// Per-function call statistics so far, the most time first; empty
    /// unless [`InitOptions::collect_stats`] was set.
    pub fn stats(&self) -> Vec<CallStats> {
        self.lib.stats().map(Stats::snapshot).unwrap_or_default()
    }

    /// A view of the statistics that stays readable after the library has
    /// exited, so that the totals include Exit; `None` unless
    /// [`InitOptions::collect_stats`] was set.
    pub fn stats_handle(&self) -> Option<Stats> {
        self.lib.stats().cloned()
    }

    /// The shared object that was loaded.
    pub fn library_path(&self) -> &Path {
        self.lib.sys().path()
    }

    /// How it was found: in the libdir (and which one), or by the dynamic
    /// linker's search path when the libdir did not hold it.
    pub fn found_by(&self) -> &FoundBy {
        self.lib.sys().found_by()
    }

    /// The VDDK major version, from the soname of the file that loaded
    /// (after following links).
    pub fn major_version(&self) -> u32 {
        self.lib.sys().major_version()
    }

    /// The full version (`8.0.2`) when the file name tells it.
    pub fn version(&self) -> Option<&str> {
        self.lib.sys().version()
    }

    /// Renames a closed local disk, descriptor and extent files, from
    /// `src` to `dst` (Rename); the descriptor is rewritten to name the
    /// moved extents.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without Rename; [`Error::Vix`] from it
    /// (`VIX_E_FILE_ALREADY_EXISTS` when `dst` exists).
    pub fn rename_disk(&self, src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<()> {
        self.lib.rename(src.as_ref(), dst.as_ref())
    }

    /// Which optional functions the library has.
    pub fn capabilities(&self) -> Capabilities {
        self.lib.sys().capabilities()
    }

    /// The transport modes the library supports, colon-separated
    /// (ListTransportModes), e.g. `file:san:hotadd:nbdssl:nbd`.
    pub fn transport_modes(&self) -> String {
        self.lib.transport_modes()
    }

    /// Cleans up what an earlier run that crashed left behind for these
    /// connection parameters (Cleanup): HotAdd disks still attached to
    /// this proxy VM, SAN mounts. Run it at start-up, before connecting,
    /// when the previous run may not have ended cleanly.
    ///
    /// ```no_run
    /// # fn demo(vddk: &vddk::Vddk, params: &vddk::ConnectParams) -> vddk::Result<()> {
    /// let left = vddk.cleanup(params)?;
    /// if left.remaining > 0 {
    ///     eprintln!("{} leftovers could not be cleaned up", left.remaining);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] without Cleanup; [`Error::Vix`] from it.
    pub fn cleanup(&self, params: &ConnectParams) -> Result<Cleaned> {
        params.validate()?;
        let (cleaned, remaining) = self.lib.cleanup(&params.spec())?;
        Ok(Cleaned { cleaned, remaining })
    }

    /// Calls PrepareForAccess (vCenter only: stops the VM from being
    /// migrated while its disks are read) and returns a guard whose drop
    /// calls EndAccess. Call it before [`Connection::connect`](crate::Connection::connect)
    /// and drop it after the connection, as VMware prescribes.
    ///
    /// `identity` names the application in vCenter's tasks (at most 50 characters).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the library lacks the function,
    /// [`Error::InvalidArgument`] for a local connection or a long identity.
    pub fn prepare_for_access(
        &self,
        params: &ConnectParams,
        identity: &str,
    ) -> Result<AccessGuard> {
        if !params.is_remote() {
            return Err(Error::InvalidArgument(
                "PrepareForAccess needs a remote (vCenter) connection".into(),
            ));
        }
        if identity.is_empty() || identity.chars().count() > 50 {
            return Err(Error::InvalidArgument(format!(
                "the identity {identity:?} must be 1 to 50 characters"
            )));
        }
        params.validate()?;
        self.lib.prepare_for_access(&params.spec(), identity)?;
        Ok(AccessGuard {
            vddk: self.clone(),
            params: params.clone(),
            identity: identity.to_owned(),
            ended: false,
        })
    }
}

impl fmt::Debug for Vddk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vddk")
            .field("path", &self.library_path())
            .field("major", &self.major_version())
            .finish()
    }
}

/// What [`Vddk::cleanup`] did.
///
/// # Examples
///
/// ```no_run
/// # fn demo(vddk: &vddk::Vddk, params: &vddk::ConnectParams) -> vddk::Result<()> {
/// let vddk::Cleaned { cleaned, remaining, .. } = vddk.cleanup(params)?;
/// if cleaned > 0 {
///     println!("removed {cleaned} leftovers of an earlier run");
/// }
/// if remaining > 0 {
///     eprintln!("{remaining} leftovers could not be removed (still in use, or refused)");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cleaned {
    /// Leftovers removed.
    pub cleaned: u32,
    /// Leftovers that could not be removed (still in use, or refused).
    pub remaining: u32,
}

/// Undoes [`Vddk::prepare_for_access`] (EndAccess) when dropped.
///
/// # Examples
///
/// ```no_run
/// # fn demo(vddk: &vddk::Vddk, params: &vddk::ConnectParams) -> vddk::Result<()> {
/// use vddk::{Connection, OpenFlags};
///
/// // vCenter does not migrate the VM while the guard lives.
/// let guard = vddk.prepare_for_access(params, "nightly-backup")?;
/// let conn = Connection::connect(vddk, params)?;
/// let disk = conn.open("[datastore1] web/web.vmdk", OpenFlags::READ_ONLY)?;
/// // ... copy the disk ...
/// disk.close()?;
/// drop(conn);
/// guard.end()?; // EndAccess, with its error (a dropped guard only logs it)
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AccessGuard {
    vddk: Vddk,
    params: ConnectParams,
    identity: String,
    ended: bool,
}

impl AccessGuard {
    /// Calls EndAccess now and reports its result.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.vddk
            .lib
            .end_access(&self.params.spec(), &self.identity)
    }
}

impl Drop for AccessGuard {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let Err(e) = self
            .vddk
            .lib
            .end_access(&self.params.spec(), &self.identity)
        {
            log::warn!(target: "vddk", "EndAccess after PrepareForAccess: {e}");
        }
    }
}
