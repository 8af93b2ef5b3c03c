//! Where a connection's replies go: written at once by the thread that
//! completes them (backends that complete on the reader's own thread), or
//! handed to a writer thread that batches them (backends that complete on
//! threads of their own). Either way a reply goes out whole, and its
//! request's in-flight share is given back only once it is written.

use std::io::{self, IoSlice, Write};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::deadline::Clock;
use super::payload;
use crate::proto::reply::Reply;

use super::inflight::Slot;

/// What a reply's deadline is about, in the error once it passes.
const REPLY: &str = "taking its replies";

/// The end of a connection that broke while replying: the client is gone,
/// or (a timeout) stopped taking its replies.
fn lost(e: &io::Error, clock: &Clock) {
    if e.kind() == io::ErrorKind::TimedOut {
        super::warn_limit::STALLED.warn(format_args!(
            "closing a connection: the client did not take a reply within {} s",
            clock.write_timeout.as_secs()
        ));
    } else {
        log::debug!("client connection lost while replying: {e}");
    }
}

/// A reply and its request's share of the in-flight bound.
pub(crate) struct Message {
    pub reply: Reply,
    pub slot: Option<Slot>,
}

/// The connection's output, written by whichever thread completes a
/// request.
pub(crate) struct Output {
    w: Box<dyn Write + Send>,
    /// Set at the first failed write: the client is gone, and any later
    /// reply could only go out partially after a lost one.
    broken: bool,
    clock: Arc<Clock>,
}

impl Output {
    pub(crate) fn new(w: Box<dyn Write + Send>, clock: Arc<Clock>) -> Output {
        Output {
            w,
            broken: false,
            clock,
        }
    }
}

/// Where replies go.
#[derive(Clone)]
pub(crate) enum Sink {
    /// To the writer thread, which batches them.
    Queue(Sender<Message>),
    /// Straight to the socket.
    Direct(Arc<Mutex<Output>>),
}

impl Sink {
    pub(crate) fn send(&self, m: Message) {
        match self {
            // The writer is gone only when the client is; nothing to tell.
            Sink::Queue(tx) => {
                let _ = tx.send(m);
            }
            Sink::Direct(out) => {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                if !out.broken {
                    out.clock.write.set(out.clock.write_timeout, REPLY);
                    let r = write_pieces(&mut out.w, m.reply.pieces()).and_then(|()| out.w.flush());
                    out.clock.write.clear();
                    if let Err(e) = r {
                        lost(&e, &out.clock);
                        out.broken = true;
                    }
                }
                drop(out);
                retire(m);
            }
        }
    }
}

/// A written reply: its buffer goes back for reuse, then its share.
fn retire(m: Message) {
    payload::give(m.reply.into_data());
    drop(m.slot);
}

/// Replies at least this big go out with one vectored write (headers and
/// data together) instead of through the buffer: copying them would cost
/// more than the system call it saves.
const DIRECT_REPLY: usize = 64 * 1024;

/// The writer thread of a connection whose backend completes elsewhere.
pub(crate) fn writer_loop<W: Write>(w: W, rx: Receiver<Message>, clock: &Clock) {
    let mut w = io::BufWriter::with_capacity(256 * 1024, w);
    let mut broken = false;
    let write = |w: &mut io::BufWriter<W>, m: Message, broken: &mut bool| {
        if !*broken {
            let r = if m.reply.len() >= DIRECT_REPLY {
                w.flush()
                    .and_then(|()| write_pieces(w.get_mut(), m.reply.pieces()))
            } else {
                m.reply.pieces().try_for_each(|p| w.write_all(p))
            };
            if let Err(e) = r {
                lost(&e, clock);
                *broken = true;
            }
        }
        retire(m);
    };
    while let Ok(m) = rx.recv() {
        // The batch, whatever it holds, must go out within the timeout.
        clock.write.set(clock.write_timeout, REPLY);
        write(&mut w, m, &mut broken);
        // Batch whatever else is ready into the same flush.
        while let Ok(m) = rx.try_recv() {
            write(&mut w, m, &mut broken);
        }
        if !broken {
            if let Err(e) = w.flush() {
                lost(&e, clock);
                broken = true;
            }
        }
        clock.write.clear();
    }
}

/// How many pieces one vectored write takes at most.
const BATCH: usize = 16;

/// Writes `pieces` in order with as few system calls as `w` allows.
pub(crate) fn write_pieces<'a, W: Write + ?Sized>(
    w: &mut W,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> io::Result<()> {
    let mut pieces = pieces.filter(|p| !p.is_empty());
    let mut batch: [&[u8]; BATCH] = [&[]; BATCH];
    loop {
        let mut n = 0;
        for p in pieces.by_ref().take(BATCH) {
            batch[n] = p;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        write_batch(w, &mut batch[..n])?;
    }
}

/// Writes every byte of `parts`, resuming after partial writes.
fn write_batch<W: Write + ?Sized>(w: &mut W, parts: &mut [&[u8]]) -> io::Result<()> {
    let mut i = 0;
    while i < parts.len() {
        let mut slices = [IoSlice::new(&[]); BATCH];
        for (s, p) in slices.iter_mut().zip(&parts[i..]) {
            *s = IoSlice::new(p);
        }
        let mut n = match w.write_vectored(&slices[..parts.len() - i]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            if n >= parts[i].len() {
                n -= parts[i].len();
                i += 1;
            } else {
                parts[i] = &parts[i][n..];
                n = 0;
            }
        }
    }
    Ok(())
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
        let parts: Vec<Vec<u8>> = vec![vec![1u8; 16], Vec::new(), vec![2u8; 1000], vec![3u8; 5]];
        let want: Vec<u8> = parts.concat();
        for max in [1, 7, 16, 17, 500, 1021, 4096] {
            let mut t = Trickle {
                out: Vec::new(),
                max,
                calls: 0,
            };
            write_pieces(&mut t, parts.iter().map(Vec::as_slice)).unwrap();
            assert_eq!(t.out, want, "max {max}");
            assert_eq!(t.calls, want.len().div_ceil(max), "max {max}");
        }
        // More pieces than one vectored write takes.
        let many: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3]).collect();
        let mut t = Trickle {
            out: Vec::new(),
            max: 1 << 20,
            calls: 0,
        };
        write_pieces(&mut t, many.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(t.out, many.concat());
        assert_eq!(t.calls, 3);
        let mut zero = Trickle {
            out: Vec::new(),
            max: 0,
            calls: 0,
        };
        assert_eq!(
            write_pieces(&mut zero, parts.iter().map(Vec::as_slice))
                .unwrap_err()
                .kind(),
            io::ErrorKind::WriteZero
        );
    }
}
