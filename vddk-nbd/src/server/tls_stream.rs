//! A connection after NBD_OPT_STARTTLS: one rustls session shared by the
//! reading side (the connection thread) and the writing side (the reply
//! writer thread), each keeping its own half of the socket.
//!
//! The session sits behind a mutex that is never held across a socket
//! read or write: the reader reads ciphertext into its own buffer first,
//! and writers take ciphertext out of the session before sending it. What
//! keeps records in order on the wire is the output lock: whoever sends
//! holds it from the moment records are taken out of the session until
//! they are written, so records leave in the order they were made. The
//! reader sends too (alerts, KeyUpdate answers), through the same path.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls::ServerConnection;

/// Ciphertext read from the socket at once, at most.
const READ_CHUNK: usize = 64 * 1024;
/// Plaintext encrypted per trip through the session lock, and the most
/// ciphertext the session buffers: large replies go out in pieces of
/// this size, as they would through the plain connection's buffer.
const WRITE_CHUNK: usize = 256 * 1024;

/// The sending half: the socket and a buffer for records on their way.
struct Output<W> {
    w: W,
    records: Vec<u8>,
}

/// What both sides share.
///
/// Lock order: `output` before `session`; `session` alone may be taken
/// without `output`, but never held while taking it.
struct Shared<W> {
    output: Mutex<Output<W>>,
    session: Mutex<ServerConnection>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write> Shared<W> {
    /// Encrypts up to [`WRITE_CHUNK`] bytes of `bufs` (none: just sends
    /// what the session has queued, such as handshake messages or alerts)
    /// and writes the records; returns the plaintext bytes taken.
    fn send(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut out = lock(&self.output);
        let out = &mut *out;
        out.records.clear();
        let taken = {
            let mut s = lock(&self.session);
            let mut taken = 0;
            for b in bufs {
                if taken == WRITE_CHUNK {
                    break;
                }
                let want = b.len().min(WRITE_CHUNK - taken);
                let n = s.writer().write(&b[..want])?;
                taken += n;
                if n < want {
                    break;
                }
            }
            while s.wants_write() {
                s.write_tls(&mut out.records)?;
            }
            taken
        };
        if !out.records.is_empty() {
            out.w.write_all(&out.records)?;
            out.w.flush()?;
        }
        Ok(taken)
    }

    /// Sends whatever records the session has queued.
    fn flush_records(&self) -> io::Result<()> {
        self.send(&[]).map(|_| ())
    }
}

/// The reading side of a TLS connection.
pub(crate) struct TlsReader<R, W> {
    r: R,
    shared: Arc<Shared<W>>,
    /// Ciphertext read from `r` that the session has not taken yet:
    /// `buf[start..end]`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// The writing side of a TLS connection; clones share the session.
pub(crate) struct TlsWriter<W> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for TlsWriter<W> {
    fn clone(&self) -> TlsWriter<W> {
        TlsWriter {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Starts a TLS session over `r`/`w` and completes its handshake. Nothing
/// may have been read from `r` beyond the STARTTLS option: the caller
/// checks that.
pub(crate) fn accept<R: Read, W: Write>(
    r: R,
    w: W,
    config: &Arc<rustls::ServerConfig>,
) -> io::Result<(TlsReader<R, W>, TlsWriter<W>)> {
    let mut session = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    session.set_buffer_limit(Some(WRITE_CHUNK));
    let shared = Arc::new(Shared {
        output: Mutex::new(Output {
            w,
            records: Vec::new(),
        }),
        session: Mutex::new(session),
    });
    let mut reader = TlsReader {
        r,
        shared: Arc::clone(&shared),
        buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
        start: 0,
        end: 0,
    };
    reader.handshake()?;
    Ok((reader, TlsWriter { shared }))
}

impl<R: Read, W: Write> TlsReader<R, W> {
    fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.shared.flush_records()?;
            if !lock(&self.shared.session).is_handshaking() {
                return Ok(());
            }
            if !self.pump()? {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the client closed the connection during the TLS handshake",
                ));
            }
        }
    }

    /// Gives the session more ciphertext, from the buffer or else from one
    /// socket read, and sends any records that produces. Returns false
    /// when the session took nothing: the socket is at its end (which the
    /// session has then been told) or the client has sent close_notify.
    fn pump(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            let n = loop {
                match self.r.read(&mut self.buf) {
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            self.start = 0;
            self.end = n;
        }
        let (result, wants_write) = {
            let mut s = lock(&self.shared.session);
            let fed = s.read_tls(&mut &self.buf[self.start..self.end]);
            if let Ok(n) = fed {
                self.start += n;
            }
            let processed = fed.and_then(|n| {
                s.process_new_packets().map_err(tls_error)?;
                Ok(n > 0)
            });
            (processed, s.wants_write())
        };
        if wants_write {
            // An alert explaining a failure is worth trying to send, but
            // the failure is what the caller must hear about.
            let sent = self.shared.flush_records();
            let progress = result?;
            sent?;
            Ok(progress)
        } else {
            result
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl<R: Read, W: Write> Read for TlsReader<R, W> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        loop {
            match lock(&self.shared.session).reader().read(dst) {
                // Ok(0) is the client's close_notify: a clean end.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.pump()? {
                // Nothing more will come: the session says whether the end
                // was clean (close_notify) or not.
                return match lock(&self.shared.session).reader().read(dst) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the client closed the connection",
                    )),
                    r => r,
                };
            }
        }
    }
}

impl<W: Write> Write for TlsWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.send(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.shared.send(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        // `send` writes every record it makes before returning.
        Ok(())
    }
}

impl<W: Write> TlsWriter<W> {
    /// Ends the TLS session with close_notify, as a client that sent
    /// NBD_CMD_DISC (or NBD_OPT_ABORT) is owed. A client already gone is
    /// no error here.
    pub(crate) fn close(&self) {
        lock(&self.shared.session).send_close_notify();
        if let Err(e) = self.shared.flush_records() {
            log::debug!("could not send the TLS close_notify: {e}");
        }
    }
}
