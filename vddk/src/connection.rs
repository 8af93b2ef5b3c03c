//! [`Connection`]: local files or a server, and what can be done on one
//! without opening a disk (create, grow, clone).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::connect_params::{
    ConnectParams, Credentials, Secret, SnapshotRef, Thumbprint, TransportList, VmRef,
};
use crate::create::CreateParams;
use crate::disk::Disk;
use crate::error::Result;
use crate::library::Vddk;
use crate::open_flags::OpenFlags;
use crate::raw::{RawConnection, ReportedCreds};

/// A VDDK connection (ConnectEx). Dropping it disconnects, once every
/// [`Disk`] opened through it is gone too (each disk holds the connection).
///
/// # Examples
///
/// Local files (the [crate-level example](crate#example) connects to
/// vSphere):
///
/// ```no_run
/// use vddk::{ConnectParams, Connection, CreateParams, DiskType, InitOptions, OpenFlags, Vddk};
///
/// let vddk = Vddk::init(InitOptions::new())?;
/// let local = Connection::connect(&vddk, &ConnectParams::local())?;
/// assert!(!local.is_remote());
/// local.create("/vms/scratch.vmdk", &CreateParams::new(DiskType::MonolithicSparse, 1 << 30))?;
/// let disk = local.open("/vms/scratch.vmdk", OpenFlags::empty())?;
/// disk.write_at(0, &[0xaa; 512])?;
/// disk.close()?;
/// local.grow("/vms/scratch.vmdk", 2 << 30, false)?;
/// # Ok::<(), vddk::Error>(())
/// ```
pub struct Connection {
    raw: Arc<RawConnection>,
    remote: bool,
    /// ConnectEx's arguments beside the parameters struct, which
    /// GetConnectParams does not report.
    snapshot: Option<SnapshotRef>,
    transports: Option<TransportList>,
    read_only: bool,
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
            snapshot: params.snapshot.clone(),
            transports: params.transports.clone(),
            read_only: params.read_only,
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

    /// Deletes a local disk: its descriptor and every extent file
    /// (Unlink). The disk must not be open.
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) without Unlink;
    /// [`Error::Vix`](crate::Error::Vix) from it.
    pub fn delete_disk(&self, path: impl AsRef<Path>) -> Result<()> {
        self.raw.unlink(path.as_ref())
    }

    /// Checks the metadata of a closed disk (CheckRepair), and repairs
    /// what it can when `repair` is true; `Ok` means the disk is sound
    /// (or was made so).
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) without
    /// CheckRepair; [`Error::Vix`](crate::Error::Vix) when the disk is
    /// damaged beyond what was asked.
    pub fn check_repair(&self, path: impl AsRef<Path>, repair: bool) -> Result<()> {
        self.raw.check_repair(path.as_ref(), repair)
    }

    /// Grows a closed local disk to `capacity` bytes, a whole number of
    /// sectors (Grow, when the library has it).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a size
    /// that is not whole sectors; [`Error::Unsupported`](crate::Error::Unsupported)
    /// without Grow; [`Error::Vix`](crate::Error::Vix) from it.
    pub fn grow(&self, path: impl AsRef<Path>, capacity: u64, update_geometry: bool) -> Result<()> {
        self.grow_with_progress(path, capacity, update_geometry, |_| true)
    }

    /// [`grow`](Self::grow), calling `progress` with the percentage done
    /// as VDDK reports it; returning false from it stops the operation
    /// with [`Error::Cancelled`](crate::Error::Cancelled).
    ///
    /// `progress` runs while this process holds the lock that serialises
    /// VDDK's Open, Close, ConnectEx and Disconnect (VDDK's rule for the
    /// calls that open disks, as Grow and Clone do inside): it must not
    /// open, close or connect anything itself, or it waits for ever. A
    /// panic in it stops the operation and resumes after VDDK returns.
    ///
    /// ```no_run
    /// # fn demo(conn: &vddk::Connection) -> vddk::Result<()> {
    /// conn.grow_with_progress("/vms/data.vmdk", 64 << 30, false, |percent| {
    ///     eprint!("\rgrowing: {percent}%");
    ///     true
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`grow`](Self::grow), and [`Error::Cancelled`](crate::Error::Cancelled).
    pub fn grow_with_progress(
        &self,
        path: impl AsRef<Path>,
        capacity: u64,
        update_geometry: bool,
        mut progress: impl FnMut(u8) -> bool,
    ) -> Result<()> {
        crate::disk::check_aligned(0, capacity)?;
        self.raw.grow(
            path.as_ref(),
            capacity / crate::SECTOR_SIZE,
            update_geometry,
            &mut progress,
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
        self.clone_disk_with_progress(dst_path, src, src_path, params, overwrite, |_| true)
    }

    /// [`clone_disk`](Self::clone_disk), calling `progress` with the
    /// percentage copied; returning false stops the copy with
    /// [`Error::Cancelled`](crate::Error::Cancelled) and leaves a partial
    /// destination, which [`delete_disk`](Self::delete_disk) removes. The
    /// rules of [`grow_with_progress`](Self::grow_with_progress) apply to
    /// `progress`.
    ///
    /// ```no_run
    /// # fn demo(vddk: &vddk::Vddk, remote: &vddk::Connection) -> vddk::Result<()> {
    /// use std::time::{Duration, Instant};
    /// use vddk::{ConnectParams, Connection, CreateParams, DiskType};
    /// let local = Connection::connect(vddk, &ConnectParams::local())?;
    /// let deadline = Instant::now() + Duration::from_secs(3600);
    /// let params = CreateParams::new(DiskType::MonolithicSparse, 0);
    /// local.clone_disk_with_progress(
    ///     "/backup/web.vmdk", remote, "[datastore1] web/web.vmdk", &params, false,
    ///     |percent| { eprint!("\r{percent}%"); Instant::now() < deadline },
    /// )?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`clone_disk`](Self::clone_disk), and
    /// [`Error::Cancelled`](crate::Error::Cancelled).
    pub fn clone_disk_with_progress(
        &self,
        dst_path: impl AsRef<Path>,
        src: &Connection,
        src_path: impl AsRef<Path>,
        params: &CreateParams,
        overwrite: bool,
        mut progress: impl FnMut(u8) -> bool,
    ) -> Result<()> {
        self.raw.clone_disk(
            dst_path.as_ref(),
            &src.raw,
            src_path.as_ref(),
            &params.to_raw()?,
            overwrite,
            &mut progress,
        )
    }

    /// The parameters this connection was made with, as VDDK holds them
    /// (GetConnectParams): server, ports, thumbprint, VM and credentials,
    /// with the snapshot, transports and read-only flag it was connected
    /// with. [`Connection::connect`] with them makes an equal connection,
    /// so code handed only a connection can make another (for a second
    /// NFC connection, or after the first was lost).
    ///
    /// The credentials come back as VDDK reports them, secrets included
    /// (kept in [`Secret`]s, never printed); a secret the library leaves
    /// out comes back empty, so set the credentials again
    /// ([`ConnectParams::credentials`]) before connecting with them. A
    /// session cookie is only good as long as its session: connecting
    /// again with it after the session has ended fails.
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) from a library
    /// without GetConnectParams (before VDDK 6.7);
    /// [`Error::Vix`](crate::Error::Vix) from the call;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when what
    /// VDDK reports does not parse (a VM or thumbprint in a form this
    /// crate does not take).
    ///
    /// # Examples
    /// ```no_run
    /// # fn main() -> vddk::Result<()> {
    /// use vddk::{Connection, ConnectParams, Credentials, InitOptions, OpenFlags, Vddk};
    ///
    /// let lib = Vddk::init(InitOptions::new().libdir("/opt/vmware-vix-disklib-distrib"))?;
    /// let params = ConnectParams::remote("esxi.example.com")
    ///     .credentials(Credentials::UserPassword {
    ///         user: "root".into(),
    ///         password: "secret".into(),
    ///     })
    ///     .thumbprint("B2:31:BD:3A:0B:7C:9E:E4:1A:2F:55:61:7D:C9:02:8E:33:D4:A6:8F".parse()?)
    ///     .vm("moref=42".parse()?);
    /// let first = Connection::connect(&lib, &params)?;
    /// // Elsewhere, with only the connection at hand:
    /// let second = Connection::connect(&lib, &first.connect_params()?)?;
    /// let disk = second.open("[datastore1] vm/vm.vmdk", OpenFlags::READ_ONLY)?;
    /// # drop(disk);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_params(&self) -> Result<ConnectParams> {
        let r = self.raw.connect_params()?;
        let mut p = match &r.server {
            Some(server) => ConnectParams::remote(server),
            None => ConnectParams::local(),
        };
        // 0 is the library's default, which `None` stands for.
        if let Ok(port @ 1..) = u16::try_from(r.port) {
            p = p.port(port);
        }
        if let Ok(port @ 1..) = u16::try_from(r.nfc_host_port) {
            p = p.nfc_host_port(port);
        }
        if let Some(t) = r.thumbprint.as_deref().filter(|t| !t.is_empty()) {
            p = p.thumbprint(t.parse::<Thumbprint>()?);
        }
        if let Some(v) = r.vmx_spec.as_deref().filter(|v| !v.is_empty()) {
            p = p.vm(v.parse::<VmRef>()?);
        }
        if let Some(c) = r.creds {
            p = p.credentials(match c {
                ReportedCreds::UserPassword { user, password } => Credentials::UserPassword {
                    user,
                    password: Secret::new(password.to_string()),
                },
                ReportedCreds::SessionCookie { cookie, user, key } => Credentials::SessionCookie {
                    cookie: Secret::new(cookie.to_string()),
                    user,
                    key: key.map(|k| Secret::new(k.to_string())),
                },
            });
        }
        if let Some(s) = &self.snapshot {
            p = p.snapshot(s.clone());
        }
        if let Some(t) = &self.transports {
            p = p.transports(t.clone());
        }
        Ok(p.read_only(self.read_only))
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
