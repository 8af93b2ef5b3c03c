//! Safe Rust API for VMware's VDDK (`libvixDiskLib`): read and write
//! VMware virtual disks, local files or disks of VMs on vSphere.
//!
//! # Layers
//!
//! 1. `vddk-sys`: the C ABI, loaded at run time.
//! 2. A private FFI layer (`raw`) that owns every C object and frees it
//!    with the library's own function; it is the only `unsafe` code here.
//! 3. The types below, which encode VDDK's rules:
//!    - [`Vddk`] is the initialised library: InitEx runs once per process,
//!      Exit only after every [`Connection`] and [`Disk`] is gone (each
//!      holds the library).
//!    - Open, Close, ConnectEx, Disconnect, Create, Grow and Clone are
//!      serialised by one process-wide lock.
//!    - A [`Disk`] is `Send` but not `Sync`: no two threads call VDDK on one
//!      handle at once. [`DiskDriver`] gives many threads access to one
//!      disk, at any byte alignment (see [`driver`] for the model).
//!    - VDDK's log, warning and panic messages go to the `log` facade under
//!      the target `vddk::library` (debug, warn, error), formatted by a
//!      small C shim.
//!    - Secrets ([`Secret`]) are zeroed on drop and never printed.
//!
//! Offsets and lengths are in bytes everywhere; sectors appear only inside
//! the FFI layer. [`Disk`], the thin synchronous API, takes whole sectors;
//! [`DiskDriver`] takes any alignment.
//!
//! # Errors
//!
//! Every call returns [`Result`]. A failure VDDK reported is
//! [`Error::Vix`], whose [`VixFailure`] carries the function, the
//! [`VixCode`] (match it against its constants), VDDK's own text and, for
//! the failures users commonly meet, a hint.
//!
//! # Driving a disk from many threads
//!
//! [`DiskDriver`] serves local files with synchronous calls on the
//! caller's thread ([`Mode::Direct`]) and remote disks with async requests
//! pipelined by a thread of its own ([`Mode::Pipelined`]), chosen by the
//! transport. Overlapping requests take effect in submission order; each
//! completes by calling its `done` exactly once.
//!
//! # Setting up a program
//!
//! VDDK loads the libraries it bundles by bare name, so `libdir/lib64`
//! must be on `LD_LIBRARY_PATH` when the process starts:
//! [`library_path::reexec_if_needed`] re-executes the program once with
//! it there (call it first thing in `main`), or start the program with the
//! variable set.
//!
//! VDDK's own log lines (and this crate's) go to the [`log`] facade: they
//! appear only once the program installs a logger, such as `env_logger`
//! (`RUST_LOG=vddk=debug`) or one of its own:
//!
//! ```
//! struct Stderr;
//! impl log::Log for Stderr {
//!     fn enabled(&self, m: &log::Metadata) -> bool {
//!         m.level() <= log::Level::Info
//!     }
//!     fn log(&self, r: &log::Record) {
//!         if self.enabled(r.metadata()) {
//!             eprintln!("{}: {}", r.target(), r.args());
//!         }
//!     }
//!     fn flush(&self) {}
//! }
//! static LOGGER: Stderr = Stderr;
//! log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Info))?;
//! // VDDK's messages now arrive under the target `vddk::library`.
//! # Ok::<(), log::SetLoggerError>(())
//! ```
//!
//! # Streams and async code
//!
//! [`DiskStream`] is a disk as `std::io::{Read, Write, Seek}`, one request
//! at a time, for copy loops and hashers. With the `tokio` feature,
//! `AsyncDisk` gives `async fn read_at`/`write_at`/`flush`/`allocated`
//! with a bound on the requests submitted at once (the next call waits for
//! a slot) and buffers handed back for reuse, and `AsyncDiskStream` is
//! tokio's `AsyncRead + AsyncWrite + AsyncSeek` with read-ahead and
//! write-behind, for `tokio::io::copy`. VDDK cannot cancel an issued
//! request: a future dropped after submitting runs its request to the
//! end, and its result is dropped (see the `async_disk` docs). With the
//! feature on, the last section below is a whole async remote copy.
//!
//! # Example
//!
//! ```no_run
//! use vddk::{ConnectParams, Connection, Credentials, InitOptions, OpenFlags, Secret, Vddk};
//!
//! let vddk = Vddk::init(InitOptions::new().libdir("/opt/vmware-vix-disklib-distrib"))?;
//! println!("VDDK {} supports {}", vddk.major_version(), vddk.transport_modes());
//!
//! let params = ConnectParams::remote("vcenter.example.com")
//!     .credentials(Credentials::UserPassword {
//!         user: "administrator@vsphere.local".into(),
//!         password: Secret::new(std::env::var("PASSWORD").unwrap_or_default()),
//!     })
//!     .thumbprint("B2:31:BD:0A:7D:5B:1E:8C:A2:9F:2C:44:11:3E:6A:C0:D4:57:91:8F".parse()?)
//!     .vm("vm-16".parse()?)
//!     .transports("nbdssl:nbd".parse()?)
//!     .read_only(true);
//! let conn = Connection::connect(&vddk, &params)?;
//! let disk = conn.open("[datastore1] vm/vm.vmdk", OpenFlags::READ_ONLY)?;
//! let info = disk.info()?;
//! let mut first = vec![0u8; 512];
//! disk.read_at(0, &mut first)?;
//! for extent in disk.allocated_blocks(0, info.capacity, vddk::MIN_CHUNK)? {
//!     println!("data at bytes {}..{}", extent.offset, extent.end());
//! }
//! # Ok::<(), vddk::Error>(())
//! ```
#![cfg_attr(feature = "tokio", doc = include_str!("async_copy.md"))]
#![warn(missing_docs)]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

// The README's examples, compiled as doctests (one of them is async, so
// with the `tokio` feature, which the workspace's test run turns on).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "tokio")]
mod async_disk;
mod blocks;
mod connect_params;
mod connection;
mod create;
mod disk;
mod disk_info;
pub mod driver;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod library;
pub mod library_path;
mod open_flags;
#[allow(unsafe_code)]
mod raw;
mod stats;
mod stream;
mod vix;

#[cfg(feature = "tokio")]
pub use async_disk::{AsyncDisk, AsyncDiskStream};
pub use blocks::{Extent, MAX_CHUNKS_PER_CALL, MIN_CHUNK};
pub use connect_params::{
    ConnectParams, Credentials, Secret, SnapshotRef, Thumbprint, TransportList, VmRef,
};
pub use connection::Connection;
pub use create::{CreateParams, DiskType, HwVersion};
pub use disk::Disk;
pub use disk_info::{AdapterType, DiskInfo, Geometry};
pub use driver::{DiskDriver, DriverOptions, Mode, Reconnect};
pub use error::{Error, Result, VixFailure};
pub use library::{AccessGuard, Cleaned, InitOptions, Vddk};
pub use open_flags::{Compression, OpenFlags};
pub use stats::{CallStats, Stats};
pub use stream::{DiskStream, STREAM_CHUNK};
/// Library search options and what the loaded library offers, from
/// `vddk-sys`: [`InitOptions::load_options`] takes the first,
/// [`Vddk::capabilities`] returns the second.
pub use vddk_sys::{Capabilities, FoundBy, LibrarySource, LoadError, LoadOptions, DEFAULT_LIBDIR};
pub use vix::VixCode;

/// Bytes per sector: every offset and length VDDK takes is in these.
pub const SECTOR_SIZE: u64 = vddk_sys::VIXDISKLIB_SECTOR_SIZE as u64;

#[cfg(test)]
mod thread_safety {
    fn send_sync<T: Send + Sync>() {}

    /// The library and connections are shared between threads (Open is
    /// serialised internally); disks are `Send` only (see `disk.rs`).
    #[test]
    fn shared_types_are_send_and_sync() {
        send_sync::<super::Vddk>();
        send_sync::<super::Connection>();
        send_sync::<super::DiskDriver>();
        send_sync::<super::Error>();
    }
}
