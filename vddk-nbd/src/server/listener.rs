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
use std::time::Duration;

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

fn spawn(inner: &Arc<Inner>, s: Stream) {
    let inner2 = Arc::clone(inner);
    let result = std::thread::Builder::new()
        .name("nbd-conn".into())
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
    let timeout = Some(inner.config.handshake_timeout).filter(|t| !t.is_zero());
    match s {
        Stream::Tcp(s) => {
            s.set_nonblocking(false)?;
            s.set_nodelay(true)?;
            let closer = s.try_clone()?;
            let Some(_active) = inner.admit(Box::new(move || {
                let _ = closer.shutdown(Shutdown::Read);
            })) else {
                return Ok(());
            };
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            let w = s.try_clone()?;
            let clear = s.try_clone()?;
            inner.run(s, w, move || {
                let _ = clear.set_read_timeout(None);
            })
        }
        Stream::Unix(s) => {
            s.set_nonblocking(false)?;
            let closer = s.try_clone()?;
            let Some(_active) = inner.admit(Box::new(move || {
                let _ = closer.shutdown(Shutdown::Read);
            })) else {
                return Ok(());
            };
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            let w = s.try_clone()?;
            let clear = s.try_clone()?;
            inner.run(s, w, move || {
                let _ = clear.set_read_timeout(None);
            })
        }
    }
}
