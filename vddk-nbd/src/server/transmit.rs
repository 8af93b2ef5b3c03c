//! Transmission: the reader (this thread) decodes and validates each
//! request and hands it to the backend with a completion, which shapes
//! the reply ([`crate::proto::reply`]) and sends it to the connection's
//! output ([`super::output`]). Replies go out in the order requests
//! complete.

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Error, Extent, Known, ZeroFlags};
use crate::proto::consts::{cmd, REQUEST_LEN};
use crate::proto::errno::{nbd_errno, Failure};
use crate::proto::reply::{self, Reply};
use crate::proto::request::{validate, Command, Limits};
use crate::proto::wire::{self, WireError};

use super::budget::Budget;
use super::deadline::Clock;
use super::inflight::{InFlight, Slot, Transmitting};
use super::output::{writer_loop, Message, Output, Sink};
use super::payload;
use super::warn_limit;

/// What a connection in transmission shares with its server and socket.
pub(crate) struct Conn {
    /// The server's budget for request data.
    pub budget: Arc<Budget>,
    /// The connection's deadlines.
    pub clock: Arc<Clock>,
}

/// The right to answer one request. Dropping it without answering sends
/// EIO, so a backend that loses a completion cannot leave a client waiting.
struct Replier {
    sink: Option<Sink>,
    slot: Option<Slot>,
    cookie: u64,
    structured: bool,
}

impl Replier {
    fn send(mut self, reply: Reply) {
        if let Some(sink) = self.sink.take() {
            sink.send(Message {
                reply,
                slot: self.slot.take(),
            });
        }
    }

    /// Ends a request without a reply (NBD_CMD_DISC).
    fn silent(mut self) {
        self.sink = None;
    }

    fn ok(self) {
        let cookie = self.cookie;
        self.send(reply::ok(cookie));
    }

    fn error(self, failure: Failure, message: &str) {
        let errno = nbd_errno(failure, self.structured);
        let r = reply::error(self.cookie, self.structured, errno, message);
        self.send(r);
    }

    fn failed(self, e: &Error, writing: bool) {
        // The one place a backend failure is logged: layers pass their
        // errors up without logging them.
        let text = e.to_string();
        log::warn!("{text}");
        self.error(e.failure(writing), &text);
    }

    fn done(self, r: Result<(), Error>, writing: bool) {
        match r {
            Ok(()) => self.ok(),
            Err(e) => self.failed(&e, writing),
        }
    }

    fn written(self, r: Result<Vec<u8>, Error>) {
        match r {
            Ok(buf) => {
                payload::give(buf);
                self.ok()
            }
            Err(e) => self.failed(&e, true),
        }
    }

    fn read(self, r: Result<Vec<u8>, Error>, length: u32, df: bool, offset: u64, known: &Known) {
        let data = match r {
            Ok(d) => d,
            Err(e) => return self.failed(&e, false),
        };
        if data.len() != length as usize {
            // Sending it would desynchronise the client.
            log::error!(
                "the disk returned {} bytes for a read of {length}",
                data.len()
            );
            return self.error(Failure::Io, "the disk returned a read of the wrong length");
        }
        let r = reply::read(self.cookie, self.structured, df, offset, data, known);
        self.send(r);
    }

    fn block_status(self, r: Result<Vec<Extent>, Error>, length: u32, req_one: bool, context: u32) {
        let extents = match r {
            Ok(e) => e,
            Err(e) => return self.failed(&e, false),
        };
        match reply::block_status(self.cookie, context, &extents, length, req_one) {
            Some(r) => self.send(r),
            None => self.error(Failure::Io, "the disk returned no allocation information"),
        }
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            let errno = nbd_errno(Failure::Io, self.structured);
            let reply = reply::error(
                self.cookie,
                self.structured,
                errno,
                "request dropped by the disk",
            );
            sink.send(Message {
                reply,
                slot: self.slot.take(),
            });
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
    conn: Conn,
) -> io::Result<()> {
    let _counted = Transmitting::enter();
    let inflight = Arc::new(InFlight::default());
    let caps = backend.caps();
    if caps.inline {
        let output = Output::new(Box::new(w), Arc::clone(&conn.clock));
        let sink = Sink::Direct(Arc::new(Mutex::new(output)));
        let result = reader_loop(&mut r, &sink, &inflight, backend.as_ref(), &limits, &conn);
        // Completing inline is a promise about speed, not a guarantee: a
        // completion from another thread may still be writing its reply.
        inflight.drain();
        return result;
    }
    let (tx, rx) = mpsc::channel::<Message>();
    let clock = Arc::clone(&conn.clock);
    let writer = std::thread::Builder::new()
        .name("nbd-writer".into())
        .spawn(move || writer_loop(w, rx, &clock))?;
    let sink = Sink::Queue(tx);
    let result = reader_loop(&mut r, &sink, &inflight, backend.as_ref(), &limits, &conn);
    drop(sink);
    // The writer ends once every completion has sent its reply.
    if writer.join().is_err() {
        log::error!("the reply writer thread panicked");
    }
    result
}

fn reader_loop<R: Read>(
    r: &mut R,
    sink: &Sink,
    inflight: &Arc<InFlight>,
    backend: &dyn Backend,
    limits: &Limits,
    conn: &Conn,
) -> io::Result<()> {
    let extents = backend.caps().extents;
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
                super::warn_limit::MALFORMED.warn(format_args!("closing connection: {why}"));
                return Ok(());
            }
            Err(WireError::NeedMore(_)) => return Ok(()),
        };
        let checked = validate(&req, limits);
        let bytes = match checked {
            Ok(Command::Read { length, .. } | Command::Write { length, .. }) => length as usize,
            _ => 0,
        };
        let slot = inflight.acquire(bytes);
        // Taken before the buffer is allocated, and after the connection's
        // own bound: a connection waiting here holds nothing new.
        let share = if bytes > 0 {
            let arriving = matches!(checked, Ok(Command::Write { .. }));
            let Some(share) = conn.budget.take(bytes, arriving) else {
                log::debug!("shutting down: no more requests are read from this client");
                return Ok(());
            };
            Some(share)
        } else {
            None
        };
        let mut replier = Replier {
            slot: Some(slot.holding(share)),
            sink: Some(sink.clone()),
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
                let known = backend.known(offset, u64::from(length));
                let buf = payload::take_empty(length as usize);
                backend.read(
                    offset,
                    length,
                    buf,
                    Box::new(move |res| replier.read(res, length, df, offset, &known)),
                );
            }
            Command::Write {
                offset,
                length,
                fua,
            } => {
                let mut data = payload::take(length as usize);
                conn.clock
                    .read
                    .set(conn.clock.payload_timeout, "the write payload");
                let read = r.read_exact(&mut data);
                conn.clock.read.clear();
                if let Err(e) = read {
                    replier.silent();
                    return match e.kind() {
                        io::ErrorKind::UnexpectedEof => Ok(()),
                        io::ErrorKind::TimedOut => {
                            warn_limit::STALLED.warn(format_args!(
                                "closing a connection: the client sent no more of a \
                                 {length}-byte write payload within {} s",
                                conn.clock.payload_timeout.as_secs()
                            ));
                            Err(e)
                        }
                        _ => Err(e),
                    };
                }
                if let Some(slot) = replier.slot.as_mut() {
                    slot.arrived();
                }
                backend.write(offset, data, fua, Box::new(move |res| replier.written(res)));
            }
            Command::WriteZeroes {
                offset,
                length,
                fua,
                fast,
                may_trim,
            } => {
                let flags = ZeroFlags {
                    fua,
                    fast,
                    may_trim,
                };
                backend.zero(
                    offset,
                    u64::from(length),
                    flags,
                    Box::new(move |res| replier.done(res, true)),
                );
            }
            Command::Trim {
                offset,
                length,
                fua,
            } => backend.trim(
                offset,
                u64::from(length),
                fua,
                Box::new(move |res| replier.done(res, true)),
            ),
            Command::Flush => backend.flush(Box::new(move |res| replier.done(res, false))),
            Command::Cache => replier.ok(),
            Command::BlockStatus {
                offset,
                length,
                req_one,
                context,
            } => {
                if extents {
                    backend.extents(
                        offset,
                        u64::from(length),
                        Box::new(move |res| replier.block_status(res, length, req_one, context)),
                    );
                } else {
                    let all = Extent {
                        length: u64::from(length),
                        hole: false,
                    };
                    replier.block_status(Ok(vec![all]), length, req_one, context);
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
    use crate::backend::{BlockSizes, Caps, Done, Features};
    use crate::proto::consts::cmd;

    /// Says it completes inline, but finishes writes on another thread
    /// later.
    #[derive(Default)]
    struct Deferring {
        applied: Arc<Mutex<Vec<u64>>>,
    }

    impl Backend for Deferring {
        fn caps(&self) -> Caps {
            Caps {
                size: 1 << 20,
                features: Features::WRITABLE,
                extents: false,
                block_sizes: BlockSizes {
                    minimum: 1,
                    preferred: 4096,
                    maximum: 1 << 20,
                },
                inline: true,
            }
        }
        fn read(&self, _: u64, _: u32, _: Vec<u8>, done: Done<Vec<u8>>) {
            done(Err(Error::Unsupported("reads")));
        }
        fn write(&self, offset: u64, data: Vec<u8>, _: bool, done: Done<Vec<u8>>) {
            let applied = Arc::clone(&self.applied);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                applied.lock().unwrap().push(offset);
                done(Ok(data));
            });
        }
        fn zero(&self, _: u64, _: u64, _: ZeroFlags, done: Done<()>) {
            done(Ok(()));
        }
        fn flush(&self, done: Done<()>) {
            done(Ok(()));
        }
        fn extents(&self, _: u64, _: u64, done: Done<Vec<Extent>>) {
            done(Err(Error::Unsupported("extents")));
        }
        fn close(&self) -> Result<(), Error> {
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
            features: Features::WRITABLE,
            max_payload: 1 << 20,
            structured: false,
            base_allocation: None,
        };
        let conn = Conn {
            budget: Budget::new(1 << 30),
            clock: Arc::default(),
        };
        transmit(io::Cursor::new(input), out.clone(), backend, limits, conn).unwrap();
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
}
