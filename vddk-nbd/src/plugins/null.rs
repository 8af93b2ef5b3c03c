//! The `null` plugin: a disk of `size` bytes that reads as zeroes and
//! forgets what is written, as nbdkit's null plugin (the base of the
//! probes callers run: `nbdkit null --filter=cow --version`).

use crate::backend::{Backend, BlockSizes, Caps, Done, Error, Extent, Features, Known, ZeroFlags};

/// An export of `size` bytes of nothing.
#[derive(Debug, Clone, Copy)]
pub struct NullBackend {
    size: u64,
}

impl NullBackend {
    /// A null disk of `size` bytes.
    pub fn new(size: u64) -> NullBackend {
        NullBackend { size }
    }
}

impl Backend for NullBackend {
    fn caps(&self) -> Caps {
        Caps {
            size: self.size,
            features: Features {
                trim: true,
                ..Features::WRITABLE
            },
            extents: true,
            block_sizes: BlockSizes::paged(1),
            inline: true,
        }
    }
    fn read(&self, _offset: u64, len: u32, mut buf: Vec<u8>, done: Done<Vec<u8>>) {
        buf.clear();
        buf.resize(len as usize, 0);
        done(Ok(buf))
    }
    fn write(&self, _offset: u64, data: Vec<u8>, _fua: bool, done: Done<Vec<u8>>) {
        done(Ok(data))
    }
    fn zero(&self, _offset: u64, _len: u64, _flags: ZeroFlags, done: Done<()>) {
        done(Ok(()))
    }
    fn trim(&self, _offset: u64, _len: u64, _fua: bool, done: Done<()>) {
        done(Ok(()))
    }
    fn flush(&self, done: Done<()>) {
        done(Ok(()))
    }
    fn extents(&self, _offset: u64, len: u64, done: Done<Vec<Extent>>) {
        done(Ok(vec![Extent {
            length: len,
            hole: true,
        }]))
    }
    fn known(&self, _offset: u64, _len: u64) -> Known {
        Known::Hole
    }
    fn reopen(&self) -> Result<(), Error> {
        Ok(())
    }
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}
