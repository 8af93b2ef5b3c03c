//! [`AsyncDisk`] and [`AsyncDiskStream`] (feature `tokio`): a disk for
//! async code, as futures with bounded submission, and as tokio's
//! `AsyncRead`, `AsyncWrite` and `AsyncSeek` with read-ahead and
//! write-behind.
//!
//! Both sit on a [`DiskDriver`] and need no runtime of their own: a
//! completion wakes the task that waits for it, from whichever thread
//! learned the outcome. In [`Mode::Pipelined`](crate::Mode) every VDDK
//! call runs on the driver's or VDDK's threads. In
//! [`Mode::Direct`](crate::Mode) (what [`DriverOptions`](crate::DriverOptions)
//! picks for local files) the call is made on the polling thread and is
//! done when the poll returns: microseconds for a local file, but a
//! blocking call all the same; choose `Mode::Pipelined` to keep every VDDK
//! call off the runtime's threads.
//!
//! # Cancellation
//!
//! VDDK cannot cancel a request once issued. Dropping a future before its
//! request is submitted (while it waits for a slot) cancels it cleanly.
//! Dropped after, the request still runs to its end and keeps its slot
//! until then; its result, and its buffer, are dropped. A dropped write
//! may or may not have reached the disk, as with any write that was not
//! answered.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, Semaphore};

use crate::blocks::Extent;
use crate::driver::{DiskDriver, Done};
use crate::error::{Error, Result};
use crate::stream::{seek_target, STREAM_CHUNK};

/// A disk for async code: each call is a future that submits one request
/// and resolves with its outcome.
///
/// At most `max_outstanding` requests made through it are submitted at
/// once; the next call waits for a slot (backpressure, not an unbounded
/// queue). Buffers go in and come back, so a loop can reuse them.
/// Clones share the disk and the slots.
///
/// # Examples
///
/// ```no_run
/// use vddk::{AsyncDisk, Connection, ConnectParams, Credentials, DiskDriver, DriverOptions,
///            InitOptions, OpenFlags, Secret, Vddk};
///
/// # async fn run() -> vddk::Result<()> {
/// let vddk = Vddk::init(InitOptions::new())?;
/// let params = ConnectParams::remote("esx1.example.com")
///     .credentials(Credentials::UserPassword {
///         user: "root".into(),
///         password: Secret::new("secret".into()),
///     })
///     .thumbprint("12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78".parse()?)
///     .vm("moref=42".parse()?)
///     .read_only(true);
/// let conn = Connection::connect(&vddk, &params)?;
/// let disk = conn.open("[datastore1] web/web.vmdk", OpenFlags::READ_ONLY)?;
/// let disk = AsyncDisk::new(DiskDriver::new(disk, DriverOptions::new())?, 16);
///
/// // 16 reads of 1 MiB in flight, each buffer reused by the next read.
/// let mut reads = Vec::new();
/// for i in 0..16u64 {
///     let d = disk.clone();
///     reads.push(async move { d.read_at(i << 20, 1 << 20, Vec::new()).await });
/// }
/// for r in futures_join_all(reads).await {
///     let buf = r?;
///     assert_eq!(buf.len(), 1 << 20);
/// }
/// disk.close().await?;
/// # Ok(())
/// # }
/// # async fn futures_join_all<F: std::future::Future>(v: Vec<F>) -> Vec<F::Output> {
/// #     let mut out = Vec::new();
/// #     for f in v { out.push(f.await); }
/// #     out
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncDisk {
    driver: DiskDriver,
    slots: Arc<Semaphore>,
    max: usize,
}

impl AsyncDisk {
    /// Async calls on `driver`'s disk, at most `max_outstanding` (at least
    /// 1) submitted at once.
    pub fn new(driver: DiskDriver, max_outstanding: usize) -> AsyncDisk {
        let max = max_outstanding.max(1);
        AsyncDisk {
            driver,
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Requests submitted through this disk (and its clones) that have not
    /// completed yet, those of dropped futures included.
    pub fn outstanding(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// The driver underneath.
    pub fn driver(&self) -> &DiskDriver {
        &self.driver
    }

    /// The disk's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.driver.capacity()
    }

    /// Reads `len` bytes at `offset` into `buf` (cleared first; its
    /// capacity is reused) and returns it.
    ///
    /// # Errors
    /// As [`DiskDriver::read`]: [`Error::OutOfRange`] past the end, the
    /// VDDK failure, [`Error::Closed`] after [`close`](Self::close).
    pub async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.call(|d, done| d.read(offset, len, buf, done)).await
    }

    /// Writes `data` at `offset` and returns the buffer, to reuse.
    ///
    /// # Errors
    /// As [`DiskDriver::write`].
    pub async fn write_at(&self, offset: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.call(|d, done| d.write(offset, data, done)).await
    }

    /// Makes every write completed before this call durable.
    ///
    /// # Errors
    /// VDDK's Flush failure.
    pub async fn flush(&self) -> Result<()> {
        self.call(|d, done| d.flush(done)).await
    }

    /// The allocated extents in `[offset, offset + length)` (whole
    /// sectors), as [`DiskDriver::allocated`] gives them.
    ///
    /// # Errors
    /// As [`DiskDriver::allocated`].
    pub async fn allocated(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        self.call(|d, done| d.allocated(offset, length, done)).await
    }

    /// Finishes what was submitted, flushes if anything was written and
    /// closes the disk, on a thread of its own so that no runtime thread
    /// waits; later calls fail with [`Error::Closed`].
    ///
    /// # Errors
    /// As [`DiskDriver::close`].
    pub async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let driver = self.driver.clone();
        std::thread::Builder::new()
            .name("vddk-close".into())
            .spawn(move || {
                let _ = tx.send(driver.close());
            })?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// A stream over the disk at position 0 (see [`AsyncDiskStream`]).
    pub fn stream(&self) -> AsyncDiskStream {
        AsyncDiskStream::new(self.driver.clone())
    }

    /// Waits for a slot, submits through `submit` and waits for the
    /// outcome; the slot is given back when the request completes, even
    /// if this future was dropped meanwhile.
    async fn call<T: Send + 'static>(
        &self,
        submit: impl FnOnce(&DiskDriver, Done<T>),
    ) -> Result<T> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let (tx, rx) = oneshot::channel();
        submit(
            &self.driver,
            Box::new(move |r| {
                drop(slot);
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap_or(Err(Error::Closed))
    }
}

/// A request submitted by a stream, resolving with its buffer.
type Pending<T> = oneshot::Receiver<Result<T>>;

/// A disk as tokio's `AsyncRead + AsyncWrite + AsyncSeek`, like
/// `tokio::fs::File`.
///
/// Reads go ahead of the position: up to `depth` requests of
/// [`STREAM_CHUNK`] bytes in flight, so a sequential copy keeps a remote
/// disk busy. Writes go behind it: `poll_write` copies the bytes,
/// submits them and returns at once, with up to `depth` writes in
/// flight; an error of one is returned by a later write or by `flush`.
/// Call `flush` (or `shutdown`) before dropping the stream: it waits for
/// every write and makes them durable; writes still in flight when the
/// stream is dropped run to their end, but their errors go unseen.
/// A seek or a write drops the reads gone ahead (their requests finish
/// and are discarded). The disk's size is fixed: reads at the end give
/// nothing, writes there return 0.
///
/// # Examples
///
/// ```no_run
/// use tokio::io::AsyncWriteExt;
/// # async fn run(disk: vddk::AsyncDisk) -> std::io::Result<()> {
/// let mut out = tokio::fs::File::create("/tmp/web.raw").await?;
/// let mut stream = disk.stream();
/// tokio::io::copy(&mut stream, &mut out).await?;
/// out.flush().await?;
/// # Ok(())
/// # }
/// ```
pub struct AsyncDiskStream {
    driver: DiskDriver,
    pos: u64,
    depth: usize,
    /// Reads ahead, in order of offset, the first at `pos` or before it.
    ahead: VecDeque<(u64, Pending<Vec<u8>>)>,
    /// Where the next read ahead starts.
    next: u64,
    /// The read being consumed: its offset and bytes.
    current: Option<(u64, Vec<u8>)>,
    writes: VecDeque<Pending<Vec<u8>>>,
    flush: Option<Pending<()>>,
    /// Buffers that came back, for the next requests.
    spare: Vec<Vec<u8>>,
}

impl AsyncDiskStream {
    /// A stream at position 0 over `driver`'s disk, 8 requests deep.
    pub fn new(driver: DiskDriver) -> AsyncDiskStream {
        AsyncDiskStream {
            driver,
            pos: 0,
            depth: 8,
            ahead: VecDeque::new(),
            next: 0,
            current: None,
            writes: VecDeque::new(),
            flush: None,
            spare: Vec::new(),
        }
    }

    /// Requests in flight at most, for reads ahead and for writes behind
    /// (at least 1).
    pub fn depth(mut self, n: usize) -> AsyncDiskStream {
        self.depth = n.max(1);
        self
    }

    /// The position the next read or write starts at.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn capacity(&self) -> u64 {
        self.driver.capacity()
    }

    fn spare_buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Forgets what was read ahead (after a seek or a write).
    fn drop_ahead(&mut self) {
        self.ahead.clear();
        if let Some((_, buf)) = self.current.take() {
            self.spare.push(buf);
        }
    }

    /// Keeps `depth` reads in flight from the position on.
    fn read_ahead(&mut self) {
        if self.ahead.front().map_or(true, |(at, _)| *at > self.pos) {
            self.ahead.clear();
            self.next = self.pos;
        }
        let end = self.capacity();
        while self.ahead.len() < self.depth && self.next < end {
            let len = (end - self.next).min(STREAM_CHUNK as u64) as usize;
            let (tx, rx) = oneshot::channel();
            let buf = self.spare_buffer();
            self.driver.read(
                self.next,
                len,
                buf,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            self.ahead.push_back((self.next, rx));
            self.next += len as u64;
        }
    }

    /// Collects the writes that have completed; the first error ends it.
    fn poll_writes_done(&mut self, cx: &mut Context<'_>, all: bool) -> Poll<io::Result<()>> {
        loop {
            let must_wait = all || self.writes.len() >= self.depth;
            let Some(w) = self.writes.front_mut() else {
                break;
            };
            let outcome = if must_wait {
                ready!(Pin::new(w).poll(cx))
            } else {
                match Pin::new(w).poll(cx) {
                    Poll::Ready(r) => r,
                    Poll::Pending => return Poll::Ready(Ok(())),
                }
            };
            self.writes.pop_front();
            let buf = outcome.unwrap_or(Err(Error::Closed))?;
            self.spare.push(buf);
        }
        Poll::Ready(Ok(()))
    }
}

/// The bytes of `current` from `pos` on, if it holds `pos`.
fn unread(current: &Option<(u64, Vec<u8>)>, pos: u64) -> Option<&[u8]> {
    let (at, buf) = current.as_ref()?;
    let skip = usize::try_from(pos.checked_sub(*at)?).ok()?;
    buf.get(skip..).filter(|rest| !rest.is_empty())
}

impl AsyncRead for AsyncDiskStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(rest) = unread(&this.current, this.pos) {
                let n = rest.len().min(out.remaining());
                out.put_slice(&rest[..n]);
                this.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
            if this.pos >= this.capacity() || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Reads see the writes submitted before them (the driver
            // orders requests that overlap), so none need waiting for.
            this.read_ahead();
            let Some((at, first)) = this.ahead.front_mut() else {
                return Poll::Ready(Ok(()));
            };
            let at = *at;
            let outcome = ready!(Pin::new(first).poll(cx));
            this.ahead.pop_front();
            let buf = outcome.unwrap_or(Err(Error::Closed))?;
            if let Some((_, old)) = this.current.replace((at, buf)) {
                this.spare.push(old);
            }
        }
    }
}

impl AsyncWrite for AsyncDiskStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_writes_done(cx, false))?;
        let left = this.capacity().saturating_sub(this.pos);
        let n = data
            .len()
            .min(STREAM_CHUNK)
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        this.drop_ahead();
        let mut buf = this.spare_buffer();
        buf.clear();
        buf.extend_from_slice(&data[..n]);
        let (tx, rx) = oneshot::channel();
        this.driver.write(
            this.pos,
            buf,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        this.writes.push_back(rx);
        this.pos += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_writes_done(cx, true))?;
        if this.flush.is_none() {
            let (tx, rx) = oneshot::channel();
            this.driver.flush(Box::new(move |r| {
                let _ = tx.send(r);
            }));
            this.flush = Some(rx);
        }
        let Some(f) = this.flush.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let outcome = ready!(Pin::new(f).poll(cx));
        this.flush = None;
        Poll::Ready(Ok(outcome.unwrap_or(Err(Error::Closed))?))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncSeek for AsyncDiskStream {
    fn start_seek(mut self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let target = seek_target(self.pos, self.capacity(), to)?;
        if target != self.pos {
            self.pos = target;
            // Reads ahead that do not hold the new position are of no use.
            if unread(&self.current, target).is_none() {
                self.drop_ahead();
            }
        }
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
