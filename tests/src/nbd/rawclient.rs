//! A byte-level NBD client for hostile, fault and durability tests: it
//! sends exactly what a test says, including what no well-behaved client
//! would, and reports a close by the server as a value instead of a panic.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_MAGIC: u32 = 0x668e_33ef;

pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META: u32 = 9;
pub const OPT_SET_META: u32 = 10;

pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META: u32 = 4;
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const REP_ERR_POLICY: u32 = (1 << 31) + 2;
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
pub const REP_ERR_TOO_BIG: u32 = (1 << 31) + 9;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

pub const F_FUA: u16 = 1;
pub const F_NO_HOLE: u16 = 1 << 1;
pub const F_DF: u16 = 1 << 2;
pub const F_REQ_ONE: u16 = 1 << 3;
pub const F_FAST_ZERO: u16 = 1 << 4;

pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;

pub const CHUNK_NONE: u16 = 0;
pub const CHUNK_DATA: u16 = 1;
pub const CHUNK_BLOCK_STATUS: u16 = 5;
pub const CHUNK_ERROR: u16 = 0x8001;

/// How long any single read waits before the test calls the server hung.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One option reply: (option, reply type, payload).
pub type OptReply = (u32, u32, Vec<u8>);

/// One structured reply chunk: (flags, type, cookie, payload).
pub type Chunk = (u16, u16, u64, Vec<u8>);

/// A connected socket a [`Raw`] client can run over.
pub trait Stream: Read + Write + Sized {
    /// As the standard sockets' method of the same name.
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Stream for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
}

impl Stream for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
}

/// A raw connection to the server: over a Unix socket unless made over
/// TCP ([`Raw::go_tcp`]), where a close with unread data resets the
/// connection and loses what was still on its way.
pub struct Raw<S = UnixStream> {
    /// The socket, for tests that need to shut down one direction.
    pub s: S,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl Raw {
    /// Connects without reading anything.
    pub fn bare(socket: &Path) -> Raw {
        Raw::over(UnixStream::connect(socket).expect("connect to the server socket"))
    }

    /// Connects and checks the greeting (fixed newstyle, no zeroes).
    pub fn connect(socket: &Path) -> Raw {
        Raw::bare(socket).greeted()
    }

    /// Connects and sends the client flags fixed newstyle + no zeroes.
    pub fn start(socket: &Path) -> Raw {
        Raw::connect(socket).flags_sent()
    }

    /// Negotiates with GO; optionally structured replies and base:allocation.
    pub fn go(socket: &Path, structured: bool, meta: bool) -> Raw {
        Raw::start(socket).negotiated(structured, meta)
    }

    /// An option header with a length of the caller's choosing.
    pub fn option_header(opt: u32, length: u32) -> Vec<u8> {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b
    }

    /// INFO/GO payload.
    pub fn info_payload(name: &[u8], requests: &[u16]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name);
        p.extend_from_slice(&(requests.len() as u16).to_be_bytes());
        for r in requests {
            p.extend_from_slice(&r.to_be_bytes());
        }
        p
    }

    /// LIST/SET_META_CONTEXT payload.
    pub fn meta_payload(name: &str, queries: &[&[u8]]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(&(queries.len() as u32).to_be_bytes());
        for q in queries {
            p.extend_from_slice(&(q.len() as u32).to_be_bytes());
            p.extend_from_slice(q);
        }
        p
    }
}

impl Raw<TcpStream> {
    /// As [`Raw::go`], to 127.0.0.1:`port`.
    pub fn go_tcp(port: u16, structured: bool, meta: bool) -> Raw<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server port");
        Raw::over(s)
            .greeted()
            .flags_sent()
            .negotiated(structured, meta)
    }
}

impl<S: Stream> Raw<S> {
    /// A client over a stream already connected.
    pub fn over(s: S) -> Raw<S> {
        s.set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        Raw { s }
    }

    /// Checks the greeting (fixed newstyle, no zeroes).
    fn greeted(mut self) -> Raw<S> {
        let g = self.recv(18);
        assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT", "greeting magic");
        assert_eq!(&g[16..], &[0, 3], "handshake flags");
        self
    }

    /// Sends the client flags fixed newstyle + no zeroes.
    fn flags_sent(mut self) -> Raw<S> {
        self.send(&3u32.to_be_bytes());
        self
    }

    fn negotiated(mut self, structured: bool, meta: bool) -> Raw<S> {
        if structured {
            self.option(OPT_STRUCTURED_REPLY, &[]);
            assert_eq!(self.opt_reply(), (OPT_STRUCTURED_REPLY, REP_ACK, vec![]));
        }
        if meta {
            self.option(OPT_SET_META, &Raw::meta_payload("", &[b"base:allocation"]));
            let r = self.opt_replies();
            assert_eq!(
                r.iter().map(|r| r.1).collect::<Vec<_>>(),
                [REP_META, REP_ACK]
            );
        }
        self.go_now();
        self
    }

    /// Writes bytes; a server that already hung up is not an error here,
    /// since the test checks for the close separately.
    pub fn send(&mut self, b: &[u8]) {
        match self.s.write_all(b) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => panic!("send failed: {e}"),
        }
    }

    /// Reads exactly `n` bytes or panics.
    pub fn recv(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).expect("receive from the server");
        b
    }

    /// Reads exactly `n` bytes, or `None` if the connection ends first.
    pub fn try_recv(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).ok().map(|()| b)
    }

    /// A simple reply header, or `None` if the connection ended.
    pub fn try_simple_reply(&mut self) -> Option<(u32, u64)> {
        let h = self.try_recv(16)?;
        assert_eq!(be32(&h), SIMPLE_MAGIC, "simple reply magic");
        Some((be32(&h[4..]), be64(&h[8..])))
    }

    /// Waits for the server to close: true on EOF or reset, false if bytes
    /// arrive instead or nothing happens within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let r = self.read_byte_within(within);
        matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }

    /// The server closes at once (within two seconds) without sending a byte.
    pub fn closed(&mut self) -> bool {
        self.closed_within(Duration::from_secs(2))
    }

    /// Nothing arrives for `quiet` and the connection stays open.
    pub fn silent_for(&mut self, quiet: Duration) -> bool {
        let r = self.read_byte_within(quiet);
        matches!(&r, Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// Tries to read one byte, waiting up to `within`.
    fn read_byte_within(&mut self, within: Duration) -> io::Result<usize> {
        self.s.set_read_timeout(Some(within)).expect("set timeout");
        let mut b = [0u8; 1];
        let r = self.s.read(&mut b);
        self.s
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set timeout");
        r
    }

    /// Sends an option with its true length.
    pub fn option(&mut self, opt: u32, payload: &[u8]) {
        let mut b = Raw::option_header(opt, payload.len() as u32);
        b.extend_from_slice(payload);
        self.send(&b);
    }

    /// Reads one option reply.
    pub fn opt_reply(&mut self) -> OptReply {
        let h = self.recv(20);
        assert_eq!(be64(&h), OPTION_REPLY_MAGIC, "option reply magic");
        let len = be32(&h[16..]) as usize;
        (be32(&h[8..]), be32(&h[12..]), self.recv(len))
    }

    /// Reads replies up to and including the first that is not SERVER,
    /// INFO or META_CONTEXT.
    pub fn opt_replies(&mut self) -> Vec<OptReply> {
        let mut v = Vec::new();
        loop {
            let r = self.opt_reply();
            let last = !matches!(r.1, REP_SERVER..=REP_META);
            v.push(r);
            if last {
                return v;
            }
        }
    }

    /// Sends GO for the default export and checks it is acknowledged.
    pub fn go_now(&mut self) {
        self.option(OPT_GO, &Raw::info_payload(b"", &[]));
        let r = self.opt_replies();
        assert_eq!(
            r.last().map(|r| r.1),
            Some(REP_ACK),
            "GO acknowledged: {r:?}"
        );
    }

    /// Reads a simple reply header: (error, cookie).
    pub fn simple_reply(&mut self) -> (u32, u64) {
        let h = self.recv(16);
        assert_eq!(be32(&h), SIMPLE_MAGIC, "simple reply magic");
        (be32(&h[4..]), be64(&h[8..]))
    }

    /// Reads `length` bytes at `offset` with simple replies: checks the
    /// reply for `cookie` carries no error and returns the data.
    pub fn simple_read(&mut self, cookie: u64, offset: u64, length: u32) -> Vec<u8> {
        self.request(CMD_READ, 0, cookie, offset, length, &[]);
        assert_eq!(self.simple_reply(), (0, cookie), "simple read reply");
        self.recv(length as usize)
    }

    /// Reads one structured chunk.
    pub fn chunk(&mut self) -> Chunk {
        let h = self.recv(20);
        assert_eq!(be32(&h), STRUCTURED_MAGIC, "structured reply magic");
        let flags = u16::from_be_bytes([h[4], h[5]]);
        let kind = u16::from_be_bytes([h[6], h[7]]);
        let len = be32(&h[16..]) as usize;
        (flags, kind, be64(&h[8..]), self.recv(len))
    }

    /// Reads a final error chunk for `cookie`: (errno, message).
    pub fn error_chunk(&mut self, cookie: u64) -> (u32, String) {
        let (flags, kind, got, p) = self.chunk();
        assert_eq!(
            (flags, kind, got),
            (1, CHUNK_ERROR, cookie),
            "final error chunk"
        );
        let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
        assert_eq!(p.len(), 6 + len, "error chunk length");
        let msg = String::from_utf8(p[6..].to_vec()).expect("UTF-8 error message");
        assert!(!msg.is_empty(), "an error chunk carries a message");
        (be32(&p), msg)
    }

    /// Reads a structured read reply made of one or more chunks and
    /// returns the data (holes as zeroes).
    pub fn read_reply(&mut self, cookie: u64, length: usize) -> Vec<u8> {
        let mut data = vec![0u8; length];
        let mut base = None;
        loop {
            let (flags, kind, got, p) = self.chunk();
            assert_eq!(got, cookie, "chunk cookie");
            match kind {
                CHUNK_DATA => {
                    let off = be64(&p);
                    let b = *base.get_or_insert(off);
                    let at = (off - b) as usize;
                    data[at..at + p.len() - 8].copy_from_slice(&p[8..]);
                }
                2 => {
                    base.get_or_insert(be64(&p));
                }
                CHUNK_NONE => {}
                other => panic!("unexpected chunk type {other:#x} in a read reply"),
            }
            if flags & 1 != 0 {
                return data;
            }
        }
    }
}

/// Where transmission requests go: a [`Raw`] connection sends each one
/// at once; a `Vec<u8>` collects them, to send several in one write or
/// over another stream (TLS).
pub trait Requests {
    /// Takes one request, header and payload, as it goes on the wire.
    fn put(&mut self, bytes: &[u8]);

    /// A request header and its payload.
    fn request(
        &mut self,
        command: u16,
        flags: u16,
        cookie: u64,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) {
        let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&command.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(payload);
        self.put(&b);
    }
}

impl<S: Stream> Requests for Raw<S> {
    fn put(&mut self, bytes: &[u8]) {
        self.send(bytes);
    }
}

impl Requests for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Proves the server still serves a well-behaved client normally: full
/// negotiation, a write with FUA, a read back, a flush and a clean
/// disconnect.
pub fn served_normally(socket: &Path) {
    let mut c = Raw::go(socket, true, true);
    let data = b"still serving".to_vec();
    c.request(CMD_WRITE, F_FUA, 901, 4096, data.len() as u32, &data);
    assert_eq!(c.simple_reply(), (0, 901), "write after a hostile client");
    c.request(CMD_READ, 0, 902, 4096, data.len() as u32, &[]);
    assert_eq!(
        c.read_reply(902, data.len()),
        data,
        "read after a hostile client"
    );
    c.request(CMD_FLUSH, 0, 903, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 903));
    c.request(CMD_DISC, 0, 904, 0, 0, &[]);
    assert!(c.closed(), "the server closes after DISC");
}

/// The same for a read-only export: negotiation, a read, a refused
/// write, a clean disconnect.
pub fn served_read_only(socket: &Path) {
    let mut c = Raw::go(socket, true, false);
    c.request(CMD_READ, 0, 911, 0, 512, &[]);
    assert_eq!(c.read_reply(911, 512).len(), 512);
    c.request(CMD_WRITE, 0, 912, 0, 1, b"x");
    assert_eq!(c.error_chunk(912).0, EPERM);
    c.request(CMD_DISC, 0, 913, 0, 0, &[]);
    assert!(c.closed(), "the server closes after DISC");
}

/// A client stalled in the middle of a write: it sent a WRITE header and
/// all but the last byte of the payload (from its own thread, since the
/// server may stop reading), and sends nothing more until dropped.
pub struct StalledWriter {
    shut: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StalledWriter {
    /// Negotiates on `socket`, then stalls a write of `length` bytes.
    pub fn start(socket: &Path, cookie: u64, length: u32) -> StalledWriter {
        let mut c = Raw::go(socket, false, false);
        let shut = c.s.try_clone().expect("clone the socket");
        let thread = std::thread::spawn(move || {
            c.request(CMD_WRITE, 0, cookie, 0, length, &[]);
            let chunk = [0x5au8; 64 << 10];
            let mut left = length as usize - 1;
            // Ends with an error once the test shuts the socket down.
            while left > 0 {
                let n = left.min(chunk.len());
                if c.s.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n;
            }
            let _ = c.s.set_read_timeout(None);
            let _ = c.s.read(&mut [0u8; 1]);
        });
        StalledWriter {
            shut,
            thread: Some(thread),
        }
    }
}

impl Drop for StalledWriter {
    fn drop(&mut self) {
        let _ = self.shut.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
