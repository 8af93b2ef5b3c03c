//! [`DiskStream`]: a disk as a byte stream with a position, for code that
//! works with `std::io::{Read, Write, Seek}` (copy loops, hashers,
//! `io::copy` into a file).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc;

use crate::driver::{DiskDriver, Done};
use crate::error::{Error, Result};

/// The most one read or write asks of the driver: large enough to keep a
/// remote disk busy, small enough to stay under any request limit.
pub const STREAM_CHUNK: usize = 1 << 20;

/// A disk read and written at a position, like a file.
///
/// Each `read` or `write` makes one request of at most [`STREAM_CHUNK`]
/// bytes, at any alignment, and waits for it; the buffer it uses is kept
/// from one call to the next. The disk's size is fixed: reads at its end
/// return 0, and writes there return 0 (so `write_all` fails with
/// [`io::ErrorKind::WriteZero`]). `flush` makes VDDK flush, so what was
/// written is durable when it returns.
///
/// For throughput over the network, keep many requests in flight with the
/// [`DiskDriver`] itself or the `tokio` feature's `AsyncDiskStream`, which
/// reads ahead; this type makes one request at a time.
///
/// # Examples
///
/// ```no_run
/// use std::io::{Read, Seek, SeekFrom};
/// use vddk::{Connection, ConnectParams, DiskDriver, DiskStream, DriverOptions, InitOptions,
///            OpenFlags, Vddk};
///
/// let vddk = Vddk::init(InitOptions::new())?;
/// let conn = Connection::connect(&vddk, &ConnectParams::local())?;
/// let disk = conn.open("/vms/web.vmdk", OpenFlags::READ_ONLY)?;
/// let mut stream = DiskStream::new(DiskDriver::new(disk, DriverOptions::new())?);
/// stream.seek(SeekFrom::Start(510))?;
/// let mut signature = [0u8; 2];
/// stream.read_exact(&mut signature)?;
/// println!("boot signature {:02x}{:02x}", signature[0], signature[1]);
/// // Or copy the whole disk into a raw file:
/// stream.rewind()?;
/// let mut out = std::fs::File::create("/tmp/web.raw")?;
/// std::io::copy(&mut stream, &mut out)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DiskStream {
    driver: DiskDriver,
    pos: u64,
    spare: Vec<u8>,
}

impl DiskStream {
    /// A stream at position 0 over `driver`'s disk.
    pub fn new(driver: DiskDriver) -> DiskStream {
        DiskStream {
            driver,
            pos: 0,
            spare: Vec::new(),
        }
    }

    /// The position the next read or write starts at, in bytes.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The disk's size in bytes.
    pub fn len(&self) -> u64 {
        self.driver.capacity()
    }

    /// Whether the disk has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The driver underneath, for requests of its own (allocation maps,
    /// several in flight).
    pub fn driver(&self) -> &DiskDriver {
        &self.driver
    }

    /// The driver back, with the stream's position forgotten.
    pub fn into_driver(self) -> DiskDriver {
        self.driver
    }

    /// How much of `want` fits between the position and the end.
    fn span(&self, want: usize) -> usize {
        let left = self.len().saturating_sub(self.pos);
        want.min(STREAM_CHUNK)
            .min(usize::try_from(left).unwrap_or(usize::MAX))
    }
}

/// Submits a request through `submit` and waits for its completion.
fn wait<T: Send + 'static>(submit: impl FnOnce(Done<T>)) -> Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    submit(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv().unwrap_or(Err(Error::Closed))
}

impl Read for DiskStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.span(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let spare = std::mem::take(&mut self.spare);
        let got = wait(|done| self.driver.read(self.pos, n, spare, done))?;
        buf[..n].copy_from_slice(&got[..n]);
        self.spare = got;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for DiskStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.span(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let mut data = std::mem::take(&mut self.spare);
        data.clear();
        data.extend_from_slice(&buf[..n]);
        self.spare = wait(|done| self.driver.write(self.pos, data, done))?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(wait(|done| self.driver.flush(done))?)
    }
}

impl Seek for DiskStream {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = seek_target(self.pos, self.len(), to)?;
        Ok(self.pos)
    }
}

/// Where `to` leads from `pos` on a disk of `len` bytes: anywhere from 0
/// on, past the end included (as for files; reads there return 0).
pub(crate) fn seek_target(pos: u64, len: u64, to: SeekFrom) -> io::Result<u64> {
    let target = match to {
        SeekFrom::Start(p) => Some(p),
        SeekFrom::End(d) => len.checked_add_signed(d),
        SeekFrom::Current(d) => pos.checked_add_signed(d),
    };
    target.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("seek to {to:?} from {pos} leaves the disk's range (0 to 2^64-1)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeks_stay_in_range() {
        assert_eq!(seek_target(10, 100, SeekFrom::Current(-10)).unwrap(), 0);
        assert_eq!(seek_target(10, 100, SeekFrom::End(-1)).unwrap(), 99);
        assert_eq!(seek_target(10, 100, SeekFrom::End(5)).unwrap(), 105);
        let e = seek_target(10, 100, SeekFrom::Current(-11)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(seek_target(u64::MAX, 100, SeekFrom::Current(1)).is_err());
    }
}
