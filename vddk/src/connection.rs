//! [`Connection`]: local files or a server, and what can be done on one
//! without opening a disk (create, grow, clone).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::connect_params::ConnectParams;
use crate::create::CreateParams;
use crate::disk::{Disk, OpenFlags};
use crate::error::Result;
use crate::library::Vddk;
use crate::raw::RawConnection;

/// A VDDK connection (ConnectEx). Dropping it disconnects, once every
/// [`Disk`] opened through it is gone too (each disk holds the connection).
pub struct Connection {
    raw: Arc<RawConnection>,
    remote: bool,
}

impl Connection {
    /// Connects as `params` says. Serialised with every other
    /// Open/Close/ConnectEx/Disconnect/Create in the process.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when the
    /// parameters do not fit together; [`Error::Vix`](crate::Error::Vix)
    /// from ConnectEx (bad credentials surface here or at open).
    pub fn connect(vddk: &Vddk, params: &ConnectParams) -> Result<Connection> {
        params.validate()?;
        let raw = RawConnection::connect(Arc::clone(&vddk.lib), &params.spec())?;
        Ok(Connection {
            raw: Arc::new(raw),
            remote: params.is_remote(),
        })
    }

    /// Opens a disk: an absolute path for local files, `[datastore] vm/vm.vmdk`
    /// on a server. The disk keeps this connection (and the library) alive.
    ///
    /// # Errors
    /// [`Error::Vix`](crate::Error::Vix) from Open. A remote Open failing with
    /// `VIX_E_FAIL` is usually a wrong thumbprint; the error's hint then
    /// names the thumbprint the server presented when VDDK logged it.
    pub fn open(&self, path: impl AsRef<Path>, flags: OpenFlags) -> Result<Disk> {
        let raw = self.raw.open(path.as_ref(), flags.bits())?;
        Ok(Disk::from_raw(raw))
    }

    /// Creates a local disk (Create). Not available on remote connections.
    ///
    /// # Errors
    /// [`Error::Vix`](crate::Error::Vix) from Create, e.g.
    /// `VIX_E_FILE_ALREADY_EXISTS`.
    pub fn create(&self, path: impl AsRef<Path>, params: &CreateParams) -> Result<()> {
        self.raw.create(path.as_ref(), &params.to_raw()?)
    }

    /// Grows a closed local disk to `capacity` bytes, a whole number of
    /// sectors (Grow, when the library has it).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a size
    /// that is not whole sectors; [`Error::Unsupported`](crate::Error::Unsupported)
    /// without Grow; [`Error::Vix`](crate::Error::Vix) from it.
    pub fn grow(&self, path: impl AsRef<Path>, capacity: u64, update_geometry: bool) -> Result<()> {
        crate::disk::check_aligned(0, capacity)?;
        self.raw.grow(
            path.as_ref(),
            capacity / crate::SECTOR_SIZE,
            update_geometry,
        )
    }

    /// Copies the disk at `src_path` on `src` to `dst_path` on this
    /// connection, converting it as `params` says (Clone, when the library
    /// has it).
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) without Clone;
    /// [`Error::Vix`](crate::Error::Vix) from it.
    pub fn clone_disk(
        &self,
        dst_path: impl AsRef<Path>,
        src: &Connection,
        src_path: impl AsRef<Path>,
        params: &CreateParams,
        overwrite: bool,
    ) -> Result<()> {
        self.raw.clone_disk(
            dst_path.as_ref(),
            &src.raw,
            src_path.as_ref(),
            &params.to_raw()?,
            overwrite,
        )
    }

    /// Whether this is a connection to a server.
    pub fn is_remote(&self) -> bool {
        self.remote
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}
