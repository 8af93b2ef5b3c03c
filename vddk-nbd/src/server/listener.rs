//! Listening sockets and the accept loop.
//!
//! Listeners are polled in non-blocking mode so that shutdown needs no
//! signal or self-pipe: the loop notices the flag within one poll interval.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Inner, ACCEPT_POLL};

/// A client that accepts no reply bytes for this long is treated as gone,
/// so one that stops reading cannot hold up shutdown forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// A socket to accept NBD clients on.
#[derive(Debug)]
pub enum Listener {
    /// TCP (`-p`, `-i`).
    Tcp(TcpListener),
    /// Unix domain socket (`-U`).
    Unix(UnixListener),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }
}

pub(super) fn accept_loop(inner: &Arc<Inner>, listeners: Vec<Listener>) -> io::Result<()> {
    for l in &listeners {
        l.set_nonblocking()?;
    }
    while !inner.shutdown.load(Ordering::SeqCst) {
        let mut accepted = false;
        for l in &listeners {
            match l.accept() {
                Ok(s) => {
                    accepted = true;
                    spawn(inner, s);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock
                            | ErrorKind::Interrupted
                            | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors and the like: keep serving the
                    // connections there are, and try again shortly.
                    log::error!("accept failed: {e}");
                }
            }
        }
        if !accepted {
            std::thread::sleep(ACCEPT_POLL);
        }
    }
    while inner.active.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Connections numbered from 1 in this process, as nbdkit numbers them in
/// its messages (`vddk[1]`); the number is in the thread's name.
static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The prefix of a connection thread's name; its number follows.
pub const CONNECTION_THREAD: &str = "nbd-conn-";

fn spawn(inner: &Arc<Inner>, s: Stream) {
    let inner2 = Arc::clone(inner);
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let result = std::thread::Builder::new()
        .name(format!("{CONNECTION_THREAD}{n}"))
        .spawn(move || {
            // A bug in one connection must not take the server down.
            let outcome = catch_unwind(AssertUnwindSafe(|| serve_socket(&inner2, s)));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("connection ended: {e}"),
                Err(_) => log::error!("a connection thread panicked; other connections continue"),
            }
        });
    if let Err(e) = result {
        log::error!("cannot start a thread for a new connection: {e}");
    }
}

/// A connected socket, TCP or Unix: what a connection thread needs of it.
trait Socket: Read + io::Write + Send + Sync + Sized + 'static {
    /// Changes the read timeout; it may be called while the socket is
    /// being read.
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    fn try_clone(&self) -> io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

macro_rules! impl_socket {
    ($($t:ty),*) => {$(
        impl Socket for $t {
            fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, t)
            }
            fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
                <$t>::set_write_timeout(self, t)
            }
            fn set_nonblocking(&self, on: bool) -> io::Result<()> {
                <$t>::set_nonblocking(self, on)
            }
            fn try_clone(&self) -> io::Result<Self> {
                <$t>::try_clone(self)
            }
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$t>::shutdown(self, how)
            }
        }
    )*};
}

impl_socket!(TcpStream, UnixStream);

/// The reading side of a connection, with the handshake timeout applied
/// to negotiation as a whole: a per-read timeout alone would let a client
/// that trickles a byte at a time hold its thread forever.
struct Reader<S> {
    s: S,
    /// When negotiation must be over; `None` once it is, or if unlimited.
    deadline: Option<Instant>,
    /// Set by the connection when transmission starts.
    negotiated: Arc<AtomicBool>,
}

impl<S: Socket> Read for Reader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            if self.negotiated.load(Ordering::Acquire) {
                self.deadline = None;
                self.s.set_read_timeout(None)?;
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        "the client did not finish negotiating within the handshake timeout",
                    ));
                }
                self.s.set_read_timeout(Some(left))?;
            }
        }
        self.s.read(buf)
    }
}

fn serve_socket(inner: &Arc<Inner>, s: Stream) -> io::Result<()> {
    match s {
        Stream::Tcp(s) => {
            s.set_nodelay(true)?;
            serve_connected(inner, s)
        }
        Stream::Unix(s) => serve_connected(inner, s),
    }
}

fn serve_connected<S: Socket>(inner: &Arc<Inner>, s: S) -> io::Result<()> {
    s.set_nonblocking(false)?;
    let closer = s.try_clone()?;
    let Some(_active) = inner.admit(Box::new(move || {
        let _ = closer.shutdown(Shutdown::Read);
    })) else {
        return Ok(());
    };
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let w = s.try_clone()?;
    let ending = s.try_clone()?;
    let timeout = Some(inner.config.handshake_timeout).filter(|t| !t.is_zero());
    let negotiated = Arc::new(AtomicBool::new(false));
    let r = Reader {
        s,
        deadline: timeout.map(|t| Instant::now() + t),
        negotiated: Arc::clone(&negotiated),
    };
    inner.run(r, w, move || negotiated.store(true, Ordering::Release))?;
    close_gracefully(ending);
    Ok(())
}

/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);
/// The most a closing connection reads and drops before closing anyway.
const LINGER_BYTES: usize = 16 << 20;

/// Ends a connection whose replies are all written: the write side is
/// shut down (the client sees the end after the last reply), then what
/// the client still sends (a request after NBD_CMD_DISC, the rest of a
/// refused option) is read and dropped until it closes too. Closing with
/// unread bytes instead would make a TCP stack reset the connection, and
/// a reset throws away replies still on their way to the client.
fn close_gracefully<S: Socket>(mut s: S) {
    if s.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut buf = [0u8; 64 * 1024];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => dropped += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    log::debug!("the client kept its side open after the connection ended: closing it");
}
