//! The pipeline under both copies: work cut into pieces of at most one
//! request, submitted up to a queue depth, retired in order (checksum and
//! resume state cover the retired prefix).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vddk::Extent;

use super::state::StateFile;
use super::{CopyError, CopyOptions};
use crate::progress::Progress;

#[derive(Debug, Clone, Copy)]
pub(super) struct Piece {
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) data: bool,
}

/// Cuts `[from, to)` into pieces of at most `max` bytes, marking those
/// inside `extents` (byte ranges, sorted) as data.
pub(super) fn plan(from: u64, to: u64, extents: &[(u64, u64)], max: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut push = |start: u64, end: u64, data: bool| {
        let mut s = start;
        while s < end {
            let len = (end - s).min(if data { max } else { u64::MAX });
            out.push(Piece {
                start: s,
                len,
                data,
            });
            s += len;
        }
    };
    let mut pos = from;
    for &(s, e) in extents {
        let (s, e) = (s.max(from), e.min(to));
        if s >= e || e <= pos {
            continue;
        }
        let s = s.max(pos);
        push(pos, s, false);
        push(s, e, true);
        pos = e;
    }
    push(pos, to, false);
    out
}

pub(super) fn ranges(extents: &[Extent]) -> Vec<(u64, u64)> {
    extents.iter().map(|e| (e.offset, e.end())).collect()
}

/// Hashes `[0, len)` of a local file (the part of the image an earlier
/// run copied).
pub(super) fn hash_prefix(file: &File, len: u64, hash: &mut Sha256) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)
            .map_err(|e| format!("cannot read back the first {len} bytes to checksum them: {e}"))?;
        hash.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// Feeds `n` zero bytes (a hole of the image) to the hash.
pub(super) fn hash_zeroes(hash: &mut Sha256, mut n: u64) {
    static ZEROES: [u8; 64 << 10] = [0; 64 << 10];
    while n > 0 {
        let k = n.min(ZEROES.len() as u64) as usize;
        hash.update(&ZEROES[..k]);
        n -= k as u64;
    }
}

/// The digest in lower-case hex, as `sha256sum` prints it.
pub(super) fn hex(hash: Sha256) -> String {
    format!("{:x}", hash.finalize())
}

pub(super) type Done = (usize, Result<Option<Vec<u8>>, String>);

/// The in-order retirement of pieces: checksum, state, progress.
pub(super) struct Retire<'a> {
    pub(super) pieces: &'a [Piece],
    pub(super) next: usize,
    pub(super) finished: BTreeMap<usize, Option<Vec<u8>>>,
    pub(super) hash: Option<Sha256>,
    pub(super) state: Option<&'a StateFile>,
    pub(super) last_save: Instant,
    pub(super) progress: Progress,
    pub(super) sync: Box<dyn Fn() -> Result<(), String> + 'a>,
}

impl<'a> Retire<'a> {
    /// Retirement of `pieces`, a copy of `total` bytes resumed as `opts`
    /// says. With a checksum, the part an earlier run copied is read back
    /// from `local` first (the error is that read's). `sync` makes the
    /// retired data durable before the state claims it.
    pub(super) fn new(
        pieces: &'a [Piece],
        total: u64,
        opts: &'a CopyOptions,
        local: &File,
        sync: Box<dyn Fn() -> Result<(), String> + 'a>,
    ) -> Result<Retire<'a>, String> {
        let mut hash = opts.checksum.then(Sha256::new);
        if let Some(h) = &mut hash {
            hash_prefix(local, opts.resume_from, h)?;
        }
        Ok(Retire {
            pieces,
            next: 0,
            finished: BTreeMap::new(),
            hash,
            state: opts.state.as_ref(),
            last_save: Instant::now(),
            progress: Progress::new(total, opts.resume_from, opts.progress),
            sync,
        })
    }

    fn done_bytes(&self, total: u64) -> u64 {
        self.pieces.get(self.next).map_or(total, |p| p.start)
    }

    fn complete(&mut self, index: usize, data: Option<Vec<u8>>, total: u64) -> Result<(), String> {
        self.finished.insert(index, data);
        while let Some(data) = self.finished.remove(&self.next) {
            let p = self.pieces[self.next];
            if let Some(h) = &mut self.hash {
                match &data {
                    Some(d) => h.update(&d[..p.len.min(d.len() as u64) as usize]),
                    None => hash_zeroes(h, p.len),
                }
            }
            self.next += 1;
        }
        let done = self.done_bytes(total);
        self.progress.update(done);
        if self.last_save.elapsed() >= Duration::from_millis(250) {
            self.save(total)?;
        }
        Ok(())
    }

    fn save(&mut self, total: u64) -> Result<(), String> {
        self.last_save = Instant::now();
        if let Some(state) = self.state {
            // The state may only claim what is on stable storage.
            (self.sync)()?;
            state.save(self.done_bytes(total)).map_err(|e| {
                format!(
                    "cannot write the resume state {}: {e}",
                    state.path.display()
                )
            })?;
        }
        Ok(())
    }
}

/// Submits one piece; its completion arrives on the channel.
pub(super) type Submit<'a> =
    dyn FnMut(usize, Piece, mpsc::Sender<Done>) -> Result<bool, String> + 'a;

/// Runs the pieces through `submit` with at most `depth` outstanding.
/// `submit` returns `Ok(false)` when it completed the piece itself without I/O.
pub(super) fn pipeline(
    pieces: &[Piece],
    total: u64,
    depth: usize,
    retire: &mut Retire<'_>,
    submit: &mut Submit<'_>,
) -> Result<(), CopyError> {
    let (tx, rx) = mpsc::channel::<Done>();
    let mut next = 0;
    let mut in_flight = 0usize;
    let mut failure: Option<String> = None;
    loop {
        while failure.is_none() && in_flight < depth.max(1) && next < pieces.len() {
            match submit(next, pieces[next], tx.clone()) {
                Ok(true) => in_flight += 1,
                Ok(false) => {
                    if let Err(e) = retire.complete(next, None, total) {
                        failure = Some(e);
                    }
                }
                Err(e) => failure = Some(e),
            }
            next += 1;
        }
        if in_flight == 0 {
            break;
        }
        let Ok((i, result)) = rx.recv() else { break };
        in_flight -= 1;
        match result {
            // Pieces that finish after a failure are in place too: they
            // still count, so a resumed copy need not redo them.
            Ok(data) => {
                if let Err(e) = retire.complete(i, data, total) {
                    failure.get_or_insert(e);
                }
            }
            Err(e) => {
                let p = pieces[i];
                failure.get_or_insert(format!("at bytes {}..{}: {e}", p.start, p.start + p.len));
            }
        }
    }
    let done = retire.done_bytes(total);
    retire.progress.finish();
    let saved = retire.save(total);
    let stopped = |message| CopyError {
        message,
        done,
        resumable: true,
    };
    match failure {
        Some(message) => Err(stopped(message)),
        None => saved.map_err(stopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_data_and_keeps_holes_whole() {
        let p = plan(0, 10_240, &[(1024, 4096), (8192, 9216)], 1024);
        let v: Vec<(u64, u64, bool)> = p.iter().map(|p| (p.start, p.len, p.data)).collect();
        assert_eq!(
            v,
            vec![
                (0, 1024, false),
                (1024, 1024, true),
                (2048, 1024, true),
                (3072, 1024, true),
                (4096, 4096, false),
                (8192, 1024, true),
                (9216, 1024, false),
            ]
        );
        // Resuming inside an extent starts there.
        let p = plan(2048, 4096, &[(1024, 4096)], 4096);
        assert_eq!((p[0].start, p[0].len, p[0].data), (2048, 2048, true));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn holes_hash_like_written_zeroes() {
        let mut h = Sha256::new();
        h.update(b"x");
        hash_zeroes(&mut h, 200_000);
        let mut plain = vec![b'x'];
        plain.resize(200_001, 0);
        assert_eq!(hex(h), hex(Sha256::new_with_prefix(&plain)));
        assert_eq!(
            hex(Sha256::new()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
