//! One client connection: the handshake driven over a byte stream, then
//! transmission with a reader (this thread) and, for backends that
//! complete on threads of their own, a writer thread.
//!
//! The reader decodes and validates each request and hands it to the
//! backend with a completion; completions encode their reply and pass it
//! to the writer through a channel, so replies go out whole, in the order
//! requests complete. A backend that serves requests in short calls on the
//! reader's own thread (a local disk) has its replies written at once, by
//! the completing thread under the connection's output lock: a hand-off to
//! a writer thread would cost more than the request. Requests in flight are
//! bounded in number and bytes from the moment they are read until their
//! reply has been written, which is the back-pressure on a client that
//! pipelines faster than the disk answers, or reads its replies slower
//! than the disk produces them.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::backend::{payload, Backend, BackendError, ErrorKind, Extent, ReadChunk};
use crate::proto::consts::{cmd, REPLY_FLAG_DONE, REQUEST_LEN, STATE_HOLE, STATE_ZERO};
use crate::proto::errno::{nbd_errno, Failure};
use crate::proto::handshake::{Exports, Handshake, Negotiated, Step, TlsMode};
use crate::proto::request::{validate, Command, Limits};
use crate::proto::wire::{self, WireError};
use crate::tls::Tls;

use super::tls_stream::{self, TlsReader, TlsWriter};

/// Most requests in flight on one connection.
const MAX_IN_FLIGHT: usize = 64;
/// Read/write payload bytes in flight, shared out equally between the
/// connections in transmission in this process: each may have its share in
/// flight (one request larger than that still runs, alone). 8 MiB keeps a
/// disk busy (a VDDK handle pipelines 16 requests, 4 MiB at nbdcopy's
/// size) while bounding what clients that read their replies slowly make
/// the server hold, whether they open one connection or four, and when
/// many servers run side by side. Each connection checks only its own
/// share, so a stalled client never holds up another.
const IN_FLIGHT_BYTES_TOTAL: usize = 8 << 20;
/// The smallest share, however many connections there are.
const MIN_IN_FLIGHT_BYTES: usize = 1 << 20;

/// Connections in transmission in this process.
static TRANSMITTING: AtomicUsize = AtomicUsize::new(0);

/// This connection's share of [`IN_FLIGHT_BYTES_TOTAL`].
fn byte_share() -> usize {
    share_of(TRANSMITTING.load(Ordering::Relaxed))
}

/// One share when `connections` connections transmit.
fn share_of(connections: usize) -> usize {
    (IN_FLIGHT_BYTES_TOTAL / connections.max(1)).max(MIN_IN_FLIGHT_BYTES)
}

/// Counts a connection in [`TRANSMITTING`] while it lives.
struct Transmitting;

impl Transmitting {
    fn enter() -> Transmitting {
        TRANSMITTING.fetch_add(1, Ordering::Relaxed);
        Transmitting
    }
}

impl Drop for Transmitting {
    fn drop(&mut self) {
        TRANSMITTING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's byte stream: plain, or upgraded by NBD_OPT_STARTTLS.
pub(crate) enum Link<R, W> {
    /// The socket (or stdin/stdout) as it is.
    Plain(R, W),
    /// A TLS session over it.
    Tls(TlsReader<R, W>, TlsWriter<W>),
}

impl<R: Read, W: Write> Link<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(r, _) => r.read(buf),
            Link::Tls(r, _) => r.read(buf),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Plain(_, w) => {
                w.write_all(bytes)?;
                w.flush()
            }
            Link::Tls(_, w) => w.write_all(bytes),
        }
    }

    /// Ends a TLS session cleanly; nothing to do in plain text.
    fn close(&self) {
        if let Link::Tls(_, w) = self {
            w.close();
        }
    }

    /// Runs the TLS handshake over the plain stream.
    fn upgrade(self, tls: Option<&Tls>) -> io::Result<Link<R, W>> {
        let (Link::Plain(r, w), Some(tls)) = (self, tls) else {
            // The handshake machine accepts STARTTLS only once, and only
            // when the server offers TLS.
            return Err(io::Error::other("STARTTLS accepted where TLS cannot start"));
        };
        let (r, w) = tls_stream::accept(r, w, tls.config())?;
        Ok(Link::Tls(r, w))
    }
}

/// What a successful negotiation hands to transmission.
pub(crate) struct Negotiation<R, W> {
    /// The options agreed.
    pub negotiated: Negotiated,
    /// Bytes (plaintext) already received past the end of negotiation.
    pub leftover: Vec<u8>,
    /// The stream transmission goes on over.
    pub link: Link<R, W>,
}

/// Runs the handshake, upgrading to TLS if the client asks and `tls`
/// allows. Returns `None` when the client left or was refused.
pub(crate) fn negotiate<R: Read, W: Write>(
    r: R,
    w: W,
    exports: Box<dyn Exports>,
    tls: Option<&Tls>,
) -> io::Result<Option<Negotiation<R, W>>> {
    let mode = tls.map_or(TlsMode::Off, Tls::mode);
    let mut hs = Handshake::with_exports(exports).with_tls(mode);
    let mut link = Link::Plain(r, w);
    let mut out = Vec::new();
    hs.greeting(&mut out);
    link.send(&out)?;
    let mut input: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        out.clear();
        let (used, step) = hs.receive(&input, &mut out);
        input.drain(..used);
        if !out.is_empty() {
            link.send(&out)?;
        }
        match step {
            Step::Continue => {}
            Step::NeedMore => {
                let n = link.read(&mut buf)?;
                if n == 0 {
                    log::debug!("client left during negotiation");
                    return Ok(None);
                }
                input.extend_from_slice(&buf[..n]);
            }
            Step::StartTls => {
                link = match link.upgrade(tls) {
                    Ok(l) => l,
                    Err(e) => {
                        log::warn!("TLS handshake with a client failed: {e}");
                        return Ok(None);
                    }
                };
                log::debug!("client upgraded to TLS");
            }
            Step::Transmission(negotiated) => {
                return Ok(Some(Negotiation {
                    negotiated,
                    leftover: input,
                    link,
                }))
            }
            Step::Close(why) => {
                log::debug!("negotiation ended: {why}");
                link.close();
                return Ok(None);
            }
        }
    }
}

/// Counts requests in flight and blocks the reader when there are too many.
#[derive(Default)]
struct InFlight {
    state: Mutex<Count>,
    changed: Condvar,
}

#[derive(Default)]
struct Count {
    requests: usize,
    bytes: usize,
    /// Threads waiting on `changed`: a release wakes them only if there
    /// are any, since a wake-up is a system call even with no one to wake.
    waiting: usize,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Count> {
        // The counts are updated with no code that can panic in between.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, mut s: MutexGuard<'a, Count>) -> MutexGuard<'a, Count> {
        s.waiting += 1;
        let mut s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        s.waiting -= 1;
        s
    }

    fn acquire(&self, bytes: usize) {
        let mut s = self.lock();
        while s.requests >= MAX_IN_FLIGHT || (s.requests > 0 && s.bytes + bytes > byte_share()) {
            s = self.wait(s);
        }
        s.requests += 1;
        s.bytes += bytes;
    }

    fn release(&self, bytes: usize) {
        let mut s = self.lock();
        s.requests -= 1;
        s.bytes -= bytes;
        let waiting = s.waiting > 0;
        drop(s);
        if waiting {
            self.changed.notify_all();
        }
    }

    /// Waits until every request has been answered.
    fn drain(&self) {
        let mut s = self.lock();
        while s.requests > 0 {
            s = self.wait(s);
        }
    }
}

/// The connection's output, written by whichever thread completes a
/// request.
struct Output {
    w: Box<dyn Write + Send>,
    /// Set at the first failed write: the client is gone, and any later
    /// reply could only go out partially after a lost one.
    broken: bool,
}

/// Where replies go.
#[derive(Clone)]
enum Sink {
    /// To the writer thread, which batches them (completions on backend threads).
    Queue(Sender<Message>),
    /// Straight to the socket (completions on the reader's thread).
    Direct(Arc<Mutex<Output>>),
}

impl Sink {
    fn send(&self, m: Message) {
        match self {
            // The writer is gone only when the client is; nothing to tell.
            Sink::Queue(tx) => {
                let _ = tx.send(m);
            }
            Sink::Direct(out) => {
                let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
                if out.broken {
                    return;
                }
                if let Err(e) = write_parts(&mut out.w, &m.parts).and_then(|()| out.w.flush()) {
                    log::debug!("client connection lost while replying: {e}");
                    out.broken = true;
                }
                // `m`, and with it the request's in-flight share, is
                // released only once the reply is out.
                drop(out);
            }
        }
    }
}

/// A reply: the pieces to write in order (headers and data buffers), and
/// the request's share of the in-flight bounds, given back once written.
struct Message {
    parts: Vec<Vec<u8>>,
    _slot: Option<Slot>,
}

/// One request's share of [`InFlight`], released when dropped.
struct Slot {
    inflight: Arc<InFlight>,
    bytes: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inflight.release(self.bytes);
    }
}

/// The right to answer one request. Dropping it without answering sends
/// EIO, so a backend that loses a completion cannot leave a client waiting.
struct Replier {
    tx: Option<Sink>,
    slot: Option<Slot>,
    cookie: u64,
    structured: bool,
}

impl Replier {
    fn send(mut self, parts: Vec<Vec<u8>>) {
        if let Some(tx) = self.tx.take() {
            tx.send(Message {
                parts,
                _slot: self.slot.take(),
            });
        }
    }

    /// Ends a request without a reply (NBD_CMD_DISC).
    fn silent(mut self) {
        self.tx = None;
    }

    fn ok(self) {
        let mut h = Vec::with_capacity(16);
        wire::encode_simple_reply(&mut h, 0, self.cookie);
        self.send(vec![h]);
    }

    fn error(self, failure: Failure, message: &str) {
        let errno = nbd_errno(failure, self.structured);
        let mut h = Vec::new();
        if self.structured {
            wire::encode_error_chunk(&mut h, self.cookie, errno, message);
        } else {
            wire::encode_simple_reply(&mut h, errno, self.cookie);
        }
        self.send(vec![h]);
    }

    fn backend_error(self, e: &BackendError, writing: bool) {
        // Backends log their own failures with full detail; logging the
        // message here too would report every failure twice.
        let failure = match e.kind {
            ErrorKind::ReadOnly => Failure::ReadOnly,
            ErrorKind::NoSpace => Failure::NoSpace,
            ErrorKind::OutOfRange if writing => Failure::NoSpace,
            ErrorKind::OutOfRange | ErrorKind::Unsupported => Failure::Invalid,
            _ => Failure::Io,
        };
        self.error(failure, &e.message);
    }

    fn done(self, r: Result<(), BackendError>, writing: bool) {
        match r {
            Ok(()) => self.ok(),
            Err(e) => self.backend_error(&e, writing),
        }
    }

    fn read(self, r: Result<Vec<ReadChunk>, BackendError>, length: u32, df: bool) {
        let chunks = match r {
            Ok(c) => c,
            Err(e) => return self.backend_error(&e, false),
        };
        let total: u64 = chunks
            .iter()
            .map(|c| match c {
                ReadChunk::Data { data, .. } => data.len() as u64,
                ReadChunk::Hole { length, .. } => u64::from(*length),
            })
            .sum();
        if total != u64::from(length) {
            // Sending it would desynchronise the client.
            log::error!("the disk returned {total} bytes for a read of {length}");
            return self.error(Failure::Io, "the disk returned a read of the wrong length");
        }
        if !self.structured
            || df
            || chunks.len() == 1 && matches!(chunks[0], ReadChunk::Data { .. })
        {
            let offset = match chunks.first() {
                Some(ReadChunk::Data { offset, .. } | ReadChunk::Hole { offset, .. }) => *offset,
                None => 0,
            };
            let data = flatten(chunks);
            let mut h = Vec::with_capacity(32);
            if self.structured {
                wire::encode_data_chunk_header(
                    &mut h,
                    REPLY_FLAG_DONE,
                    self.cookie,
                    offset,
                    data.len() as u32,
                );
            } else {
                wire::encode_simple_reply(&mut h, 0, self.cookie);
            }
            return self.send(vec![h, data]);
        }
        let mut m = Vec::with_capacity(chunks.len() * 2);
        let last = chunks.len().saturating_sub(1);
        for (i, c) in chunks.into_iter().enumerate() {
            let flags = if i == last { REPLY_FLAG_DONE } else { 0 };
            let mut h = Vec::with_capacity(32);
            match c {
                ReadChunk::Data { offset, data } => {
                    wire::encode_data_chunk_header(
                        &mut h,
                        flags,
                        self.cookie,
                        offset,
                        data.len() as u32,
                    );
                    m.push(h);
                    m.push(data);
                }
                ReadChunk::Hole { offset, length } => {
                    wire::encode_hole_chunk(&mut h, flags, self.cookie, offset, length);
                    m.push(h);
                }
            }
        }
        self.send(m);
    }

    fn block_status(
        self,
        r: Result<Vec<Extent>, BackendError>,
        length: u32,
        req_one: bool,
        context: u32,
    ) {
        let extents = match r {
            Ok(e) => e,
            Err(e) => return self.backend_error(&e, false),
        };
        let descriptors = descriptors(&extents, length, req_one);
        if descriptors.is_empty() {
            return self.error(Failure::Io, "the disk returned no allocation information");
        }
        let mut h = Vec::with_capacity(24 + 8 * descriptors.len());
        wire::encode_block_status_chunk(&mut h, self.cookie, context, &descriptors);
        self.send(vec![h]);
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let mut h = Vec::new();
            if self.structured {
                wire::encode_error_chunk(
                    &mut h,
                    self.cookie,
                    nbd_errno(Failure::Io, true),
                    "request dropped by the disk",
                );
            } else {
                wire::encode_simple_reply(&mut h, nbd_errno(Failure::Io, false), self.cookie);
            }
            tx.send(Message {
                parts: vec![h],
                _slot: self.slot.take(),
            });
        }
    }
}

fn flatten(mut chunks: Vec<ReadChunk>) -> Vec<u8> {
    if let [ReadChunk::Data { data, .. }] = chunks.as_mut_slice() {
        return std::mem::take(data);
    }
    let mut v = Vec::new();
    for c in chunks {
        match c {
            ReadChunk::Data { data, .. } => v.extend_from_slice(&data),
            ReadChunk::Hole { length, .. } => v.resize(v.len() + length as usize, 0),
        }
    }
    v
}

/// `base:allocation` descriptors for a request of `length` bytes: adjacent
/// runs merged, the total clipped to the request, one only with REQ_ONE.
fn descriptors(extents: &[Extent], length: u32, req_one: bool) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut left = u64::from(length);
    for e in extents {
        if left == 0 {
            break;
        }
        let n = e.length.min(left);
        if n == 0 {
            continue;
        }
        left -= n;
        let flags = if e.hole { STATE_HOLE | STATE_ZERO } else { 0 };
        match out.last_mut() {
            Some(last) if last.1 == flags => last.0 += n as u32,
            _ => out.push((n as u32, flags)),
        }
    }
    if req_one {
        out.truncate(1);
    }
    out
}

/// Replies at least this big go out with one vectored write (header and
/// data together) instead of through the buffer: copying them would cost
/// more than the system call it saves.
const DIRECT_REPLY: usize = 64 * 1024;

/// Writes `parts` in order with as few system calls as `w` allows.
fn write_parts<W: Write>(w: &mut W, parts: &[Vec<u8>]) -> io::Result<()> {
    let (mut i, mut off) = (0, 0);
    while i < parts.len() {
        let mut slices = Vec::with_capacity(parts.len() - i);
        slices.push(io::IoSlice::new(&parts[i][off..]));
        slices.extend(parts[i + 1..].iter().map(|p| io::IoSlice::new(p)));
        let mut n = match w.write_vectored(&slices) {
            Ok(0) if slices.iter().any(|s| !s.is_empty()) => {
                return Err(io::ErrorKind::WriteZero.into())
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while i < parts.len() && n >= parts[i].len() - off {
            n -= parts[i].len() - off;
            i += 1;
            off = 0;
        }
        off += n;
    }
    Ok(())
}

fn writer_loop<W: Write>(w: W, rx: Receiver<Message>) {
    let mut w = io::BufWriter::with_capacity(256 * 1024, w);
    let mut broken = false;
    let write = |w: &mut io::BufWriter<W>, m: Message, broken: &mut bool| {
        if *broken {
            return;
        }
        let size: usize = m.parts.iter().map(Vec::len).sum();
        let r = if size >= DIRECT_REPLY {
            w.flush().and_then(|()| write_parts(w.get_mut(), &m.parts))
        } else {
            m.parts.iter().try_for_each(|part| w.write_all(part))
        };
        if let Err(e) = r {
            log::debug!("client connection lost while replying: {e}");
            *broken = true;
        }
    };
    while let Ok(m) = rx.recv() {
        write(&mut w, m, &mut broken);
        // Batch whatever else is ready into the same flush.
        while let Ok(m) = rx.try_recv() {
            write(&mut w, m, &mut broken);
        }
        if !broken && w.flush().is_err() {
            broken = true;
        }
    }
}

/// Reads and throws away `n` payload bytes of a refused write, in small
/// pieces, so the connection stays in step without allocating `n`.
fn skip<R: Read>(r: &mut R, mut n: u64) -> io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Serves requests until the client disconnects or the stream ends, then
/// waits for requests in flight to be answered.
pub(crate) fn transmit<R: Read, W: Write + Send + 'static>(
    mut r: R,
    w: W,
    backend: Arc<dyn Backend>,
    limits: Limits,
) -> io::Result<()> {
    let _counted = Transmitting::enter();
    let inflight = Arc::new(InFlight::default());
    if backend.completes_inline() {
        let sink = Sink::Direct(Arc::new(Mutex::new(Output {
            w: Box::new(w),
            broken: false,
        })));
        let result = reader_loop(&mut r, &sink, &inflight, backend.as_ref(), &limits);
        // Completing inline is a promise about speed, not a guarantee: a
        // completion from another thread may still be writing its reply.
        inflight.drain();
        return result;
    }
    let (tx, rx) = mpsc::channel::<Message>();
    let writer = std::thread::Builder::new()
        .name("nbd-writer".into())
        .spawn(move || writer_loop(w, rx))?;
    let sink = Sink::Queue(tx);
    let result = reader_loop(&mut r, &sink, &inflight, backend.as_ref(), &limits);
    drop(sink);
    // The writer ends once every completion has sent its reply.
    if writer.join().is_err() {
        log::error!("the reply writer thread panicked");
    }
    result
}

fn reader_loop<R: Read>(
    r: &mut R,
    tx: &Sink,
    inflight: &Arc<InFlight>,
    backend: &dyn Backend,
    limits: &Limits,
) -> io::Result<()> {
    let mut header = [0u8; REQUEST_LEN];
    loop {
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                log::debug!("client closed the connection");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let req = match wire::decode_request(&header) {
            Ok(req) => req,
            Err(WireError::Malformed(why)) => {
                log::warn!("closing connection: {why}");
                return Ok(());
            }
            Err(WireError::NeedMore(_)) => return Ok(()),
        };
        let checked = validate(&req, limits);
        let bytes = match checked {
            Ok(Command::Read { length, .. } | Command::Write { length, .. }) => length as usize,
            _ => 0,
        };
        inflight.acquire(bytes);
        let replier = Replier {
            tx: Some(tx.clone()),
            slot: Some(Slot {
                inflight: Arc::clone(inflight),
                bytes,
            }),
            cookie: req.cookie,
            structured: limits.structured,
        };
        let command = match checked {
            Ok(c) => c,
            Err((failure, message)) => {
                if req.command == cmd::WRITE {
                    skip(r, u64::from(req.length))?;
                }
                log::debug!("refused request: {message}");
                replier.error(failure, &message);
                continue;
            }
        };
        match command {
            Command::Read { offset, length, df } => {
                backend.read(
                    offset,
                    length,
                    Box::new(move |res| replier.read(res, length, df)),
                );
            }
            Command::Write {
                offset,
                length,
                fua,
            } => {
                let mut data = payload::take(length as usize);
                if let Err(e) = r.read_exact(&mut data) {
                    replier.silent();
                    return if e.kind() == io::ErrorKind::UnexpectedEof {
                        Ok(())
                    } else {
                        Err(e)
                    };
                }
                backend.write(
                    offset,
                    data,
                    fua,
                    Box::new(move |res| replier.done(res, true)),
                );
            }
            Command::WriteZeroes {
                offset,
                length,
                fua,
            } => {
                backend.zero(
                    offset,
                    u64::from(length),
                    fua,
                    Box::new(move |res| replier.done(res, true)),
                );
            }
            Command::Flush => backend.flush(Box::new(move |res| replier.done(res, false))),
            Command::Cache => replier.ok(),
            Command::BlockStatus {
                offset,
                length,
                req_one,
                context,
            } => {
                if backend.can_extents() {
                    backend.extents(
                        offset,
                        u64::from(length),
                        Box::new(move |res| replier.block_status(res, length, req_one, context)),
                    );
                } else {
                    replier.block_status(
                        Ok(vec![Extent {
                            length: u64::from(length),
                            hole: false,
                        }]),
                        length,
                        req_one,
                        context,
                    );
                }
            }
            Command::Disconnect => {
                replier.silent();
                log::debug!("client asked to disconnect");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most `max` bytes per call, from the first slices only.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[io::IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                if n == self.max {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_replies_survive_partial_writes() {
        let parts = vec![vec![1u8; 16], Vec::new(), vec![2u8; 1000], vec![3u8; 5]];
        let want: Vec<u8> = parts.concat();
        for max in [1, 7, 16, 17, 500, 1021, 4096] {
            let mut t = Trickle {
                out: Vec::new(),
                max,
                calls: 0,
            };
            write_parts(&mut t, &parts).unwrap();
            assert_eq!(t.out, want, "max {max}");
            assert_eq!(t.calls, want.len().div_ceil(max), "max {max}");
        }
        let mut zero = Trickle {
            out: Vec::new(),
            max: 0,
            calls: 0,
        };
        assert_eq!(
            write_parts(&mut zero, &parts).unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
    }

    /// Says it completes inline, but finishes writes on another thread
    /// later.
    #[derive(Default)]
    struct Deferring {
        applied: Arc<Mutex<Vec<u64>>>,
    }

    impl Backend for Deferring {
        fn size(&self) -> u64 {
            1 << 20
        }
        fn read_only(&self) -> bool {
            false
        }
        fn can_extents(&self) -> bool {
            false
        }
        fn block_sizes(&self) -> crate::backend::BlockSizes {
            crate::backend::BlockSizes {
                minimum: 1,
                preferred: 4096,
                maximum: 1 << 20,
            }
        }
        fn completes_inline(&self) -> bool {
            true
        }
        fn read(&self, _: u64, _: u32, done: crate::backend::Done<Vec<ReadChunk>>) {
            done(Err(BackendError::new(ErrorKind::Unsupported, "no reads")));
        }
        fn write(&self, offset: u64, _: Vec<u8>, _: bool, done: crate::backend::Done<()>) {
            let applied = Arc::clone(&self.applied);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                applied.lock().unwrap().push(offset);
                done(Ok(()));
            });
        }
        fn zero(&self, _: u64, _: u64, _: bool, done: crate::backend::Done<()>) {
            done(Ok(()));
        }
        fn flush(&self, done: crate::backend::Done<()>) {
            done(Ok(()));
        }
        fn extents(&self, _: u64, _: u64, done: crate::backend::Done<Vec<Extent>>) {
            done(Err(BackendError::new(ErrorKind::Unsupported, "no extents")));
        }
        fn close(&self) -> Result<(), String> {
            Ok(())
        }
    }

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn direct_replies_wait_for_completions_on_other_threads() {
        let mut input = Vec::new();
        let req = |command, cookie, offset, length| wire::Request {
            flags: 0,
            command,
            cookie,
            offset,
            length,
        };
        for (cookie, offset) in [(1, 0), (2, 4096)] {
            wire::encode_request(&mut input, &req(cmd::WRITE, cookie, offset, 512));
            input.extend_from_slice(&[7u8; 512]);
        }
        wire::encode_request(&mut input, &req(cmd::FLUSH, 3, 0, 0));
        wire::encode_request(&mut input, &req(cmd::DISC, 4, 0, 0));
        let backend = Arc::new(Deferring::default());
        let applied = Arc::clone(&backend.applied);
        let out = Shared::default();
        let limits = Limits {
            size: 1 << 20,
            read_only: false,
            max_payload: 1 << 20,
            structured: false,
            base_allocation: None,
        };
        transmit(io::Cursor::new(input), out.clone(), backend, limits).unwrap();
        // Both writes were applied and acknowledged before transmission
        // ended (and with it, when the server stops, the disk's close).
        assert_eq!(applied.lock().unwrap().len(), 2);
        let replies = out.0.lock().unwrap().clone();
        assert_eq!(replies.len(), 3 * 16, "three simple replies");
        let mut cookies: Vec<u64> = replies
            .chunks(16)
            .map(|r| {
                assert_eq!(r[4..8], [0, 0, 0, 0], "no error");
                u64::from_be_bytes(r[8..16].try_into().unwrap())
            })
            .collect();
        // The flush completed inline, before the deferred writes.
        assert_eq!(cookies[0], 3);
        cookies.sort_unstable();
        assert_eq!(cookies, [1, 2, 3]);
    }

    #[test]
    fn a_release_wakes_the_reader_waiting_at_the_limit_and_the_drain() {
        let f = Arc::new(InFlight::default());
        for _ in 0..MAX_IN_FLIGHT {
            f.acquire(0);
        }
        let waiter = |f: &Arc<InFlight>, drain: bool| {
            let f = Arc::clone(f);
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                if drain {
                    f.drain();
                } else {
                    f.acquire(0);
                }
                tx.send(()).unwrap();
            });
            rx
        };
        let reader = waiter(&f, false);
        while f.lock().waiting == 0 {
            std::thread::yield_now();
        }
        assert!(
            reader.try_recv().is_err(),
            "the limit holds the reader back"
        );
        f.release(0);
        reader
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a release lets the waiting reader in");

        let drained = waiter(&f, true);
        while f.lock().waiting == 0 {
            std::thread::yield_now();
        }
        for _ in 0..MAX_IN_FLIGHT {
            assert!(drained.try_recv().is_err(), "requests are still in flight");
            f.release(0);
        }
        drained
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the last release ends the drain");
    }

    #[test]
    fn byte_shares_split_the_total_down_to_a_floor() {
        assert_eq!(share_of(0), 8 << 20);
        assert_eq!(share_of(1), 8 << 20);
        assert_eq!(share_of(4), 2 << 20);
        assert_eq!(share_of(8), 1 << 20);
        assert_eq!(share_of(100), 1 << 20);
    }

    #[test]
    fn descriptors_clip_merge_and_req_one() {
        let e = [
            Extent {
                length: 1000,
                hole: false,
            },
            Extent {
                length: 24,
                hole: false,
            },
            Extent {
                length: 4096,
                hole: true,
            },
        ];
        assert_eq!(descriptors(&e, 2048, false), vec![(1024, 0), (1024, 3)]);
        assert_eq!(descriptors(&e, 2048, true), vec![(1024, 0)]);
        assert_eq!(descriptors(&e, 512, false), vec![(512, 0)]);
    }
}
