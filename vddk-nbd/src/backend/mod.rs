//! What the server exports: a stack of [`Backend`] layers. The server
//! talks to the top one; each layer above the bottom wraps the one below
//! (this is where nbdkit-style filters sit); a plugin is the bottom layer
//! that holds the data (a VMware disk through VDDK, memory, ...).
//!
//! Requests reach a backend validated (in bounds, nonzero, at most the
//! advertised maximum for reads and writes), at any byte alignment. Each
//! completes by calling its [`Done`] exactly once, on whichever thread
//! learned the outcome; a completion must be short and must not block.

mod error;

pub use crate::proto::export::Features;
pub use crate::proto::reply::{Extent, Known};
pub use error::Error;

/// A completion: called exactly once with the outcome.
pub type Done<T> = Box<dyn FnOnce(Result<T, Error>) + Send + 'static>;

/// Sizes the export advertises in NBD_INFO_BLOCK_SIZE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Smallest request a client should send.
    pub minimum: u32,
    /// Size a client should use for efficiency.
    pub preferred: u32,
    /// Largest READ/WRITE payload accepted.
    pub maximum: u32,
}

impl BlockSizes {
    /// The sizes of an export that can serve any range itself (file, null,
    /// memory): clients are asked to align to `minimum` only, a page is the
    /// efficient size, and requests may be as large as the server takes.
    pub const fn paged(minimum: u32) -> BlockSizes {
        BlockSizes {
            minimum,
            preferred: 4096,
            maximum: MAX_PAYLOAD,
        }
    }
}

/// Largest READ/WRITE payload: 32 MiB, enough for nbdcopy and qemu's
/// largest requests while bounding the memory a single request can pin.
pub const MAX_PAYLOAD: u32 = 32 * 1024 * 1024;

/// What a layer can do, computed once when it is made (from the layer
/// below, for a filter) and then only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Size in bytes.
    pub size: u64,
    /// The NBD features it offers.
    pub features: Features,
    /// Whether [`Backend::extents`] gives real allocation information.
    pub extents: bool,
    /// Block sizes to advertise.
    pub block_sizes: BlockSizes,
    /// Whether requests complete in short synchronous calls on the
    /// caller's thread (a local disk, memory): the server then writes each
    /// reply from the completing thread instead of handing it to a writer
    /// thread. Only speed depends on it: a completion from another thread
    /// is written all the same.
    pub inline: bool,
}

/// One layer of an export. Methods return quickly; results arrive through
/// the completion.
pub trait Backend: Send + Sync + 'static {
    /// What this layer can do.
    fn caps(&self) -> Caps;
    /// Reads `len` bytes at `offset` into `buf` (cleared first; its
    /// capacity is reused) and hands it to `done`.
    fn read(&self, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>);
    /// Writes `data` at `offset`, durably before `done` with `fua`; `done`
    /// gets the buffer back for reuse.
    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>);
    /// Makes `len` bytes at `offset` read as zeroes: only if that is fast
    /// with `fast` (else [`Error::Unsupported`]), possibly by discarding
    /// them with `may_trim`.
    fn zero(&self, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>);
    /// Discards `len` bytes at `offset` (only called when the features
    /// offer trim).
    fn trim(&self, offset: u64, len: u64, fua: bool, done: Done<()>) {
        let _ = (offset, len, fua);
        done(Err(Error::Unsupported("trim")))
    }
    /// Makes every completed write durable.
    fn flush(&self, done: Done<()>);
    /// Allocation from `offset` on, for up to `len` bytes (may stop early,
    /// never an empty list on success).
    fn extents(&self, offset: u64, len: u64, done: Done<Vec<Extent>>);
    /// What is known of the allocation under a read, without I/O.
    fn known(&self, offset: u64, len: u64) -> Known {
        let _ = (offset, len);
        Known::Unknown
    }
    /// Closes the data source and opens it again (a new VDDK connection
    /// and handle, say), for the retry filter; requests in flight finish
    /// first. Layers that hold nothing to reopen pass it down.
    fn reopen(&self) -> Result<(), Error> {
        Err(Error::Unsupported("reopen"))
    }
    /// Flushes and closes; called once, after the last connection.
    fn close(&self) -> Result<(), Error>;
}

/// How a zeroing request may be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZeroFlags {
    /// Durable before completion.
    pub fua: bool,
    /// Only if faster than writing zeroes.
    pub fast: bool,
    /// The range may be discarded rather than written.
    pub may_trim: bool,
}
