//! What the server exports: a [`Backend`] answers byte-addressed requests
//! asynchronously, calling a completion when done (possibly on another
//! thread, possibly before the call returns).
//!
//! [`SectorBackend`] turns a whole-sector device into a `Backend`, doing the
//! read-modify-write that unaligned requests need; [`MemoryBackend`] and
//! [`VddkBackend`] are built on it.

/// Implements [`Backend`] for a public newtype over a
/// [`sectors::SectorBackend`] by forwarding every method, so the device
/// type behind it stays private.
macro_rules! forward_backend {
    ($name:ident) => {
        impl $crate::backend::Backend for $name {
            fn size(&self) -> u64 {
                self.0.size()
            }
            fn read_only(&self) -> bool {
                self.0.read_only()
            }
            fn can_extents(&self) -> bool {
                self.0.can_extents()
            }
            fn block_sizes(&self) -> $crate::backend::BlockSizes {
                self.0.block_sizes()
            }
            fn completes_inline(&self) -> bool {
                self.0.completes_inline()
            }
            fn read(
                &self,
                offset: u64,
                length: u32,
                done: $crate::backend::Done<Vec<$crate::backend::ReadChunk>>,
            ) {
                self.0.read(offset, length, done)
            }
            fn write(
                &self,
                offset: u64,
                data: Vec<u8>,
                fua: bool,
                done: $crate::backend::Done<()>,
            ) {
                self.0.write(offset, data, fua, done)
            }
            fn zero(&self, offset: u64, length: u64, fua: bool, done: $crate::backend::Done<()>) {
                self.0.zero(offset, length, fua, done)
            }
            fn flush(&self, done: $crate::backend::Done<()>) {
                self.0.flush(done)
            }
            fn extents(
                &self,
                offset: u64,
                length: u64,
                done: $crate::backend::Done<Vec<$crate::backend::Extent>>,
            ) {
                self.0.extents(offset, length, done)
            }
            fn close(&self) -> Result<(), String> {
                self.0.close()
            }
        }
    };
}

mod engine;
mod memory;
pub(crate) mod payload;
mod rangelock;
mod sectors;
mod vddk;

pub use self::vddk::{VddkBackend, VddkDisk};
pub use memory::{MemoryBackend, MemoryDisk};
pub use sectors::{SectorBackend, SectorDevice, SECTOR};

/// A completion: called exactly once with the outcome.
pub type Done<T> = Box<dyn FnOnce(Result<T, BackendError>) + Send + 'static>;

/// The kind of a backend failure; the server maps it to an NBD error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The disk is read-only.
    ReadOnly,
    /// The disk or datastore is full.
    NoSpace,
    /// Outside the disk.
    OutOfRange,
    /// The operation is not available on this disk.
    Unsupported,
    /// Anything else.
    Io,
}

/// A failure with the text to log and to send in a structured error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
}

impl BackendError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {}

/// One piece of a read reply, in order, covering the request exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadChunk {
    /// Bytes starting at `offset`.
    Data {
        /// Byte offset in the export.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// `length` zero bytes at `offset` that the backend knows are unallocated.
    Hole {
        /// Byte offset in the export.
        offset: u64,
        /// Length in bytes (nonzero).
        length: u32,
    },
}

/// One run of the allocation map, consecutive from the requested offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes.
    pub length: u64,
    /// Not allocated: reads as zeroes.
    pub hole: bool,
}

/// Sizes the export advertises in NBD_INFO_BLOCK_SIZE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Smallest request a client should send (512: one sector).
    pub minimum: u32,
    /// Size a client should use for efficiency.
    pub preferred: u32,
    /// Largest READ/WRITE payload accepted.
    pub maximum: u32,
}

/// Largest READ/WRITE payload: 32 MiB, enough for nbdcopy and qemu's
/// largest requests while bounding the memory a single request can pin.
pub const MAX_PAYLOAD: u32 = 32 * 1024 * 1024;

/// An exported disk. Methods return quickly; results arrive through the
/// completion. Requests reach a backend already validated (in bounds,
/// nonzero, at most [`MAX_PAYLOAD`] for reads and writes).
pub trait Backend: Send + Sync + 'static {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Whether [`Backend::extents`] gives real allocation information.
    fn can_extents(&self) -> bool;
    /// Block sizes to advertise.
    fn block_sizes(&self) -> BlockSizes;
    /// Whether requests are served in short synchronous calls on the
    /// caller's thread (a local disk), so that completions normally run
    /// before the call returns. The server then writes each reply from the
    /// thread that completes it instead of handing it to a writer thread.
    /// The server does not rely on it: a completion that does come from
    /// another thread is written all the same, and only speed depends on
    /// this answer.
    fn completes_inline(&self) -> bool {
        false
    }
    /// Reads `length` bytes at `offset`.
    fn read(&self, offset: u64, length: u32, done: Done<Vec<ReadChunk>>);
    /// Writes `data` at `offset`; with `fua` the data is durable before `done`.
    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<()>);
    /// Makes `length` bytes at `offset` read as zeroes.
    fn zero(&self, offset: u64, length: u64, fua: bool, done: Done<()>);
    /// Makes every completed write durable.
    fn flush(&self, done: Done<()>);
    /// Allocation from `offset` on, for up to `length` bytes (may stop early,
    /// never returns an empty list on success).
    fn extents(&self, offset: u64, length: u64, done: Done<Vec<Extent>>);
    /// Flushes and closes the disk; called once after the server stops.
    fn close(&self) -> Result<(), String>;
}
