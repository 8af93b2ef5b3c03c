//! [`DriverOptions`]: how a [`DiskDriver`](super::DiskDriver) runs, and
//! the [`Mode`] it runs in.

use std::fmt;
use std::sync::Arc;

use super::Reconnect;
use crate::disk::Disk;
use crate::error::Result;
#[cfg(doc)]
use {super::DiskDriver, crate::error::Error};

/// How a [`DiskDriver`](super::DiskDriver) issues its VDDK calls.
///
/// # Examples
///
/// ```
/// use vddk::{DriverOptions, Mode};
///
/// assert_eq!(Mode::for_transport("file"), Mode::Direct);
/// assert_eq!(Mode::for_transport("nbdssl"), Mode::Pipelined);
/// // Keeps every VDDK call off the caller's threads, local files included.
/// let opts = DriverOptions::new().mode(Mode::Pipelined);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Synchronous calls on the caller's thread, one at a time: for disks
    /// that answer in microseconds (the `file` transport).
    Direct,
    /// Async calls from a thread per disk, many in flight: for disks that
    /// answer in milliseconds (the network transports).
    Pipelined,
}

impl Mode {
    /// The mode that suits a disk opened with `transport` (as
    /// [`Disk::transport_mode`] names it).
    pub fn for_transport(transport: &str) -> Mode {
        if transport == "file" {
            Mode::Direct
        } else {
            Mode::Pipelined
        }
    }
}

/// Opens the disk again, with a new connection: what
/// [`DiskDriver::reopen`] calls.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use vddk::driver::Opener;
/// use vddk::{ConnectParams, Connection, DiskDriver, DriverOptions, OpenFlags, Reconnect, Vddk};
///
/// # fn demo(vddk: Vddk, params: ConnectParams) -> vddk::Result<()> {
/// // A new connection each time: the old one may be what was lost.
/// let opener: Opener = Arc::new(move || {
///     Connection::connect(&vddk, &params)?.open("[datastore1] web/web.vmdk", OpenFlags::READ_ONLY)
/// });
/// let disk = opener()?;
/// let opts = DriverOptions::new().reopen_with(opener).reconnect(Reconnect::new());
/// let driver: DiskDriver = DiskDriver::new(disk, opts)?;
/// # let _ = driver;
/// # Ok(())
/// # }
/// ```
pub type Opener = Arc<dyn Fn() -> Result<Disk> + Send + Sync>;

/// How a [`DiskDriver`](super::DiskDriver) runs.
///
/// # Examples
///
/// ```
/// let opts = vddk::DriverOptions::new()
///     .mode(vddk::Mode::Pipelined)
///     .max_in_flight(32)
///     .max_request_bytes(2 << 20);
/// # let _ = opts;
/// ```
#[derive(Clone)]
pub struct DriverOptions {
    pub(super) mode: Option<Mode>,
    pub(super) max_in_flight: usize,
    pub(super) max_request_bytes: u64,
    pub(super) opener: Option<Opener>,
    pub(super) reconnect: Option<Reconnect>,
}

impl Default for DriverOptions {
    fn default() -> DriverOptions {
        DriverOptions {
            mode: None,
            max_in_flight: 16,
            max_request_bytes: 64 << 20,
            opener: None,
            reconnect: None,
        }
    }
}

impl fmt::Debug for DriverOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverOptions")
            .field("mode", &self.mode)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("reopen", &self.opener.is_some())
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

impl DriverOptions {
    /// Defaults: the mode that suits the transport, up to 16 requests in
    /// flight, requests up to 64 MiB.
    pub fn new() -> DriverOptions {
        DriverOptions::default()
    }

    /// Forces a mode instead of choosing by transport.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The most async requests in flight at once in pipelined mode (at
    /// least 1). The driver lowers it by itself if the library refuses
    /// requests as busy.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The largest read or write accepted, in bytes (at least one sector);
    /// larger ones fail with [`Error::InvalidArgument`] rather than
    /// allocating without bound. Split larger transfers yourself.
    pub fn max_request_bytes(mut self, bytes: u64) -> Self {
        self.max_request_bytes = bytes.max(crate::SECTOR_SIZE);
        self
    }

    /// How [`DiskDriver::reopen`] opens the disk again: typically a new
    /// [`Connection`](crate::Connection) with the same parameters, then
    /// Open with the same flags.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use vddk::{Connection, ConnectParams, DriverOptions, OpenFlags, Vddk};
    ///
    /// # fn demo(vddk: Vddk, params: ConnectParams) {
    /// let opts = DriverOptions::new().reopen_with(Arc::new(move || {
    ///     let conn = Connection::connect(&vddk, &params)?;
    ///     conn.open("[datastore1] vm/vm.vmdk", OpenFlags::READ_ONLY)
    /// }));
    /// # let _ = opts;
    /// # }
    /// ```
    pub fn reopen_with(mut self, opener: Opener) -> Self {
        self.opener = Some(opener);
        self
    }

    /// Reconnects by itself when the connection to the host is lost, as
    /// [`Reconnect`] describes (a local file has no connection to lose). In
    /// [`Mode::Direct`] the call that met the loss reconnects, under the
    /// lock every call takes, and is made again; the standby handle is a
    /// pipelined-mode feature. Needs [`DriverOptions::reopen_with`].
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }
}
