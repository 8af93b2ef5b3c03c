//! A connected socket as a connection uses it: a reader and a writer
//! that enforce the connection's deadlines ([`super::deadline`]) on every
//! system call, and the graceful close at the end.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadline::Clock;

/// A connected socket, TCP or Unix: what a connection thread needs of it.
pub(super) trait Socket: Read + Write + Send + Sync + Sized + 'static {
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

/// A socket timeout is changed only when the time left differs from it
/// by more than this, so that a stream of replies or payloads costs no
/// extra system call each: a call then times out at most this much
/// before its deadline, never after it.
const SLACK: Duration = Duration::from_secs(1);

/// Whether a socket timeout of `current` must change to enforce `left`.
fn must_change(current: Option<Duration>, left: Duration) -> bool {
    match current {
        Some(c) => left < c || left > c + SLACK,
        None => true,
    }
}

/// The reading side of a connection.
pub(super) struct Reader<S> {
    s: S,
    clock: Arc<Clock>,
    /// The timeout set on the socket, if any.
    current: Option<Duration>,
}

impl<S: Socket> Reader<S> {
    pub(super) fn new(s: S, clock: Arc<Clock>) -> Reader<S> {
        Reader {
            s,
            clock,
            current: None,
        }
    }
}

impl<S: Socket> Read for Reader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.clock.read.left()? {
                Some(left) if must_change(self.current, left) => {
                    self.s.set_read_timeout(Some(left))?;
                    self.current = Some(left);
                }
                _ => {}
            }
            match self.s.read(buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    // The deadline passed, or a timeout left from an
                    // earlier deadline expired while waiting for the next
                    // request, which has all the time it likes.
                    self.clock.read.left()?.map_or(Ok(()), |_| Err(e))?;
                    self.s.set_read_timeout(None)?;
                    self.current = None;
                }
                r => return r,
            }
        }
    }
}

/// The most bytes one write call sends: large enough that a reply of
/// the size clients read (256 KiB) is one call.
const MAX_CALL: usize = 256 << 10;
/// The most pieces one vectored write call takes.
const MAX_PIECES: usize = 16;

/// The writing side of a connection.
pub(super) struct Writer<S> {
    s: S,
    clock: Arc<Clock>,
    /// The timeout set on the socket.
    current: Option<Duration>,
}

impl<S: Socket> Writer<S> {
    pub(super) fn new(s: S, clock: Arc<Clock>) -> Writer<S> {
        Writer {
            s,
            clock,
            current: None,
        }
    }

    /// Sets the socket's timeout to the time left for the reply being
    /// written, or to the write timeout for writes outside replies
    /// (negotiation).
    fn arm(&mut self) -> io::Result<()> {
        let left = match self.clock.write.left() {
            Ok(left) => left.unwrap_or(self.clock.write_timeout),
            Err(e) => return Err(self.timed_out(e)),
        };
        if must_change(self.current, left) {
            let t = Some(left).filter(|t| !t.is_zero());
            self.s.set_write_timeout(t)?;
            self.current = Some(left);
        }
        Ok(())
    }

    fn timed_out(&self, e: io::Error) -> io::Error {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            // A client that stopped taking its replies is done with: the
            // reading side ends too, which ends the connection and gives
            // back what its requests hold.
            let _ = self.s.shutdown(Shutdown::Both);
            io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "the client did not take its reply within {} s",
                    self.clock.write_timeout.as_secs()
                ),
            )
        } else {
            e
        }
    }
}

impl<S: Socket> Write for Writer<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        let buf = &buf[..buf.len().min(MAX_CALL)];
        self.s.write(buf).map_err(|e| self.timed_out(e))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.arm()?;
        // A Unix socket waits afresh for each piece of a large send, so
        // one call could outlive the deadline for as long as the client
        // takes a piece now and then: calls are kept short instead.
        let mut pieces = [IoSlice::new(&[]); MAX_PIECES];
        let mut n = 0;
        let mut room = MAX_CALL;
        for (piece, b) in pieces.iter_mut().zip(bufs) {
            if room == 0 {
                break;
            }
            let take = b.len().min(room);
            *piece = IoSlice::new(&b[..take]);
            room -= take;
            n += 1;
        }
        self.s
            .write_vectored(&pieces[..n])
            .map_err(|e| self.timed_out(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
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
pub(super) fn close_gracefully<S: Socket>(mut s: S) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_change_only_when_they_must() {
        let s = Duration::from_secs;
        assert!(must_change(None, s(60)));
        assert!(must_change(Some(s(60)), s(59)), "a shorter time left");
        assert!(!must_change(Some(s(60)), s(60)));
        assert!(!must_change(Some(s(59)), s(60)), "within the slack");
        assert!(must_change(Some(s(5)), s(60)), "a new, longer deadline");
    }
}
