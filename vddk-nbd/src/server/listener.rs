//! Listening sockets and the accept loop.
//!
//! Listeners are polled in non-blocking mode so that shutdown needs no
//! signal or self-pipe: the loop notices the flag within one poll interval.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadline::Clock;
use super::socket::{close_gracefully, Reader, Socket, Writer};
use super::{Inner, ACCEPT_POLL};

/// After a shutdown began, how long clients have to read the replies to
/// the requests they sent; the connections of those that have not are
/// then closed, so shutdown never waits on a client.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    let grace = Instant::now() + SHUTDOWN_GRACE;
    while inner.active.load(Ordering::SeqCst) > 0 && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = inner.close_all(Shutdown::Both);
    if left > 0 {
        log::warn!(
            "shutting down: closed {left} connections whose clients did not read their \
             replies within {} s",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    // What remains are requests already at the disk: they finish (and
    // their replies fail) before the disk is flushed and closed.
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
    let Some(_active) = inner.admit(Box::new(move |how| {
        let _ = closer.shutdown(how);
    })) else {
        return Ok(());
    };
    let clock = Arc::new(Clock {
        payload_timeout: inner.config.payload_timeout,
        write_timeout: inner.config.write_timeout,
        ..Clock::default()
    });
    clock.read.set(
        inner.config.handshake_timeout,
        "negotiation (the handshake timeout)",
    );
    let w = Writer::new(s.try_clone()?, Arc::clone(&clock));
    let ending = s.try_clone()?;
    let r = Reader::new(s, Arc::clone(&clock));
    let negotiated = Arc::clone(&clock);
    inner.run(r, w, &clock, move || negotiated.read.clear())?;
    close_gracefully(ending);
    Ok(())
}
