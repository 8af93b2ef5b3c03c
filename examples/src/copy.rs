//! The copy engine: a disk to a raw file, or a raw file into a disk,
//! through a [`DiskDriver`] with many requests in flight.
//!
//! Work is cut into pieces of at most one request each. Pieces complete in
//! any order, but are *retired* in order: the retired prefix is what the
//! checksum covers and what the resume state records, so a copy stopped at
//! any point (an error, a kill) restarts from a byte offset below which
//! everything is known to be in place.
//!
//! Disk to file: only the allocated extents (QueryAllocatedBlocks) are
//! read; the rest stays a hole in the output. File to disk: a piece of
//! zeroes is skipped when the disk has nothing allocated there, so a new
//! sparse disk stays sparse.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vddk::{DiskDriver, Extent, SECTOR_SIZE};

use sha2::{Digest, Sha256};

use crate::progress::Progress;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Bytes per request (a multiple of 512).
    pub request_bytes: u64,
    /// Requests in flight at once.
    pub queue_depth: usize,
    /// Start at this byte (a multiple of 512): everything below is taken
    /// as already copied.
    pub resume_from: u64,
    /// Compute the SHA-256 of the whole image (the part below
    /// `resume_from` is read back from the local file).
    pub checksum: bool,
    /// Where to keep the resume state, written as the copy goes and
    /// removed when it finishes.
    pub state: Option<StateFile>,
    /// Show progress on stderr: a bar on a terminal, a plain line now
    /// and then otherwise.
    pub progress: bool,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            request_bytes: 1 << 20,
            queue_depth: 16,
            resume_from: 0,
            checksum: false,
            state: None,
            progress: false,
        }
    }
}

/// What a finished copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The image's size in bytes.
    pub total: u64,
    /// Bytes read from or written to the disk in this run.
    pub transferred: u64,
    /// Bytes skipped as holes (or zeroes) in this run.
    pub skipped: u64,
    /// The SHA-256 of the whole image, when asked for.
    pub sha256: Option<String>,
}

/// A copy that stopped: the error, and the offset it can resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyError {
    /// What went wrong.
    pub message: String,
    /// Every byte below this offset is in place.
    pub done: u64,
    /// Whether running again with `--resume` makes sense (false for
    /// mistakes found before the copy started).
    pub resumable: bool,
}

impl CopyError {
    fn before_start(message: String, done: u64) -> CopyError {
        CopyError {
            message,
            done,
            resumable: false,
        }
    }
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.resumable {
            return f.write_str(&self.message);
        }
        write!(
            f,
            "{} (the first {} bytes are copied: run again with --resume, or --resume-from {}, \
             to continue)",
            self.message, self.done, self.done
        )
    }
}

/// The resume state kept beside a copy: which copy it is and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    /// Where it is stored.
    pub path: PathBuf,
    /// Identifies the copy: source and destination as the user gave them.
    pub id: String,
    /// The image size, which must match when resuming.
    pub total: u64,
}

impl StateFile {
    fn text(&self, done: u64) -> String {
        format!(
            "# vddk-copy resume state: delete this file to start over\ncopy={}\ntotal={}\ndone={done}\n",
            self.id, self.total
        )
    }

    /// Records that everything below `done` is copied (write, then rename,
    /// so a kill never leaves half a file).
    pub fn save(&self, done: u64) -> std::io::Result<()> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.text(done))?;
        std::fs::rename(&tmp, &self.path)
    }

    /// The offset to resume from, checking that the state is for this copy.
    ///
    /// # Errors
    /// No state file, or one written for another copy.
    pub fn load(&self) -> Result<u64, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            format!(
                "cannot read the resume state {}: {e}; without it, start the copy again without \
                 --resume (or give --resume-from BYTES)",
                self.path.display()
            )
        })?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(str::to_string)
        };
        let bad = |what: &str| {
            format!(
                "the resume state {} {what}; delete it and start the copy again",
                self.path.display()
            )
        };
        if field("copy").as_deref() != Some(self.id.as_str()) {
            return Err(bad("belongs to another copy"));
        }
        if field("total").and_then(|t| t.parse::<u64>().ok()) != Some(self.total) {
            return Err(bad("is for an image of another size"));
        }
        field("done")
            .and_then(|d| d.parse::<u64>().ok())
            .filter(|d| *d <= self.total && d % SECTOR_SIZE == 0)
            .ok_or_else(|| bad("is damaged"))
    }

    /// Removes the state after a finished copy.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The state file used by default for a copy writing or reading `local`.
pub fn default_state_path(local: &Path) -> PathBuf {
    let mut name = local.as_os_str().to_owned();
    name.push(".vddk-copy-state");
    PathBuf::from(name)
}

/// Allocated extents of the driver's disk in `[offset, offset + len)`,
/// waiting for the answer.
///
/// # Errors
/// QueryAllocatedBlocks' failure.
pub fn allocated(driver: &DiskDriver, offset: u64, len: u64) -> vddk::Result<Vec<Extent>> {
    let (tx, rx) = mpsc::channel();
    driver.allocated(
        offset,
        len,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap_or(Err(vddk::Error::Closed))
}

/// Flushes the worker's disk, waiting for the answer.
///
/// # Errors
/// Flush's failure.
pub fn flush(driver: &DiskDriver) -> vddk::Result<()> {
    let (tx, rx) = mpsc::channel();
    driver.flush(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv().unwrap_or(Err(vddk::Error::Closed))
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    start: u64,
    len: u64,
    data: bool,
}

/// Cuts `[from, to)` into pieces of at most `max` bytes, marking those
/// inside `extents` (byte ranges, sorted) as data.
fn plan(from: u64, to: u64, extents: &[(u64, u64)], max: u64) -> Vec<Piece> {
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

fn ranges(extents: &[Extent]) -> Vec<(u64, u64)> {
    extents.iter().map(|e| (e.offset, e.end())).collect()
}

/// Hashes `[0, len)` of a local file (the part of the image an earlier
/// run copied).
fn hash_prefix(file: &File, len: u64, hash: &mut Sha256) -> Result<(), String> {
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
fn hash_zeroes(hash: &mut Sha256, mut n: u64) {
    static ZEROES: [u8; 64 << 10] = [0; 64 << 10];
    while n > 0 {
        let k = n.min(ZEROES.len() as u64) as usize;
        hash.update(&ZEROES[..k]);
        n -= k as u64;
    }
}

/// The digest in lower-case hex, as `sha256sum` prints it.
fn hex(hash: Sha256) -> String {
    format!("{:x}", hash.finalize())
}

type Done = (usize, Result<Option<Vec<u8>>, String>);

/// The in-order retirement of pieces: checksum, state, progress.
struct Retire<'a> {
    pieces: &'a [Piece],
    next: usize,
    finished: BTreeMap<usize, Option<Vec<u8>>>,
    hash: Option<Sha256>,
    state: Option<&'a StateFile>,
    last_save: Instant,
    progress: Progress,
    sync: Box<dyn Fn() -> Result<(), String> + 'a>,
}

impl Retire<'_> {
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
type Submit<'a> = dyn FnMut(usize, Piece, mpsc::Sender<Done>) -> Result<bool, String> + 'a;

/// Runs the pieces through `submit` with at most `depth` outstanding.
/// `submit` returns `Ok(false)` when it completed the piece itself without I/O.
fn pipeline(
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

fn check_opts(opts: &CopyOptions, total: u64) -> Result<(), CopyError> {
    let err = |m: String| CopyError::before_start(m, opts.resume_from.min(total));
    if opts.request_bytes == 0 || opts.request_bytes % SECTOR_SIZE != 0 {
        return Err(err(format!(
            "request size {} is not a non-zero multiple of 512 bytes",
            opts.request_bytes
        )));
    }
    if opts.resume_from % SECTOR_SIZE != 0 || opts.resume_from > total {
        return Err(err(format!(
            "resume offset {} must be a multiple of 512 and at most the size ({total})",
            opts.resume_from
        )));
    }
    Ok(())
}

/// A final sync failed: nothing this run wrote can be trusted, so the
/// state goes back to where the run started.
fn unsynced(opts: &CopyOptions, message: String) -> CopyError {
    if let Some(s) = &opts.state {
        let _ = s.save(opts.resume_from);
    }
    CopyError {
        message,
        done: opts.resume_from,
        resumable: true,
    }
}

fn finish_state(opts: &CopyOptions) {
    if let Some(s) = &opts.state {
        s.remove();
    }
}

/// Copies the driver's disk into `out` as a raw image; unallocated ranges
/// are left as holes. `out` should be opened read-write (it is extended to
/// the disk's size, never truncated, so a resumed copy keeps what it had).
///
/// # Errors
/// The first failure, with the offset a resumed copy can start from.
pub fn disk_to_file(
    driver: &DiskDriver,
    out: &File,
    opts: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let total = driver.capacity();
    check_opts(opts, total)?;
    let fail = |m: String| CopyError::before_start(m, opts.resume_from);
    out.set_len(total)
        .map_err(|e| fail(format!("cannot size the output file to {total} bytes: {e}")))?;
    let count = total - opts.resume_from;
    let extents = if count == 0 {
        Vec::new()
    } else {
        match allocated(driver, opts.resume_from, count) {
            Ok(e) => ranges(&e),
            Err(e) => {
                log::warn!("cannot tell which blocks are allocated ({e}); copying every block");
                vec![(opts.resume_from, total)]
            }
        }
    };
    let pieces = plan(opts.resume_from, total, &extents, opts.request_bytes);
    let mut hash = opts.checksum.then(Sha256::new);
    if let Some(h) = &mut hash {
        hash_prefix(out, opts.resume_from, h).map_err(fail)?;
    }
    let mut retire = Retire {
        pieces: &pieces,
        next: 0,
        finished: BTreeMap::new(),
        hash,
        state: opts.state.as_ref(),
        last_save: Instant::now(),
        progress: Progress::new(total, opts.resume_from, opts.progress),
        sync: Box::new(|| {
            out.sync_data()
                .map_err(|e| format!("cannot sync the output: {e}"))
        }),
    };
    let keep = opts.checksum;
    let mut transferred = 0u64;
    let mut skipped = 0u64;
    let (wtx, wrx) = mpsc::channel::<(Piece, Vec<u8>, mpsc::Sender<Done>, usize)>();
    // Reads complete on the driver's or VDDK's threads; the file write
    // happens on a writer thread of ours, so completions never block on disk.
    let result = std::thread::scope(|scope| {
        scope.spawn(move || {
            for (p, data, tx, i) in wrx {
                let r = out
                    .write_all_at(&data, p.start)
                    .map(|()| keep.then_some(data))
                    .map_err(|e| format!("cannot write the output file: {e}"));
                let _ = tx.send((i, r));
            }
        });
        let mut submit = |i: usize, p: Piece, tx: mpsc::Sender<Done>| -> Result<bool, String> {
            if !p.data {
                skipped += p.len;
                return Ok(false);
            }
            transferred += p.len;
            let wtx = wtx.clone();
            driver.read(
                p.start,
                p.len as usize,
                Vec::new(),
                Box::new(move |r| match r {
                    Ok(data) => {
                        let _ = wtx.send((p, data, tx, i));
                    }
                    Err(e) => {
                        let _ = tx.send((i, Err(e.to_string())));
                    }
                }),
            );
            Ok(true)
        };
        let r = pipeline(&pieces, total, opts.queue_depth, &mut retire, &mut submit);
        drop(wtx);
        r
    });
    let sha = retire.hash.take().map(hex);
    result?;
    out.sync_all()
        .map_err(|e| unsynced(opts, format!("cannot sync the output file: {e}")))?;
    finish_state(opts);
    Ok(CopyReport {
        total,
        transferred,
        skipped,
        sha256: sha,
    })
}

/// Copies the raw image `input` (`len` bytes) into the driver's disk,
/// which must be at least as large. A last partial sector is padded with
/// zeroes.
///
/// # Errors
/// The first failure, with the offset a resumed copy can start from.
pub fn file_to_disk(
    driver: &DiskDriver,
    input: &File,
    len: u64,
    opts: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let capacity = driver.capacity();
    let fail = |m: String| CopyError::before_start(m, opts.resume_from);
    if len > capacity {
        return Err(fail(format!(
            "the raw image ({len} bytes) is larger than the disk ({capacity} bytes): create a \
             larger disk (vddk-create --size {len}) or grow this one"
        )));
    }
    let padded = len.div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    check_opts(opts, padded)?;
    let count = padded - opts.resume_from;
    // Where the disk already has data, zeroes must be written too.
    let on_disk = if count == 0 {
        Vec::new()
    } else {
        match allocated(driver, opts.resume_from, count) {
            Ok(e) => ranges(&e),
            Err(_) => vec![(opts.resume_from, padded)],
        }
    };
    let pieces = plan(
        opts.resume_from,
        padded,
        &[(opts.resume_from, padded)],
        opts.request_bytes,
    );
    let mut hash = opts.checksum.then(Sha256::new);
    if let Some(h) = &mut hash {
        hash_prefix(input, opts.resume_from, h).map_err(fail)?;
    }
    let mut retire = Retire {
        pieces: &pieces,
        next: 0,
        finished: BTreeMap::new(),
        hash,
        state: opts.state.as_ref(),
        last_save: Instant::now(),
        progress: Progress::new(padded, opts.resume_from, opts.progress),
        sync: Box::new(|| flush(driver).map_err(|e| format!("cannot flush the disk: {e}"))),
    };
    let keep = opts.checksum;
    let mut transferred = 0u64;
    let mut skipped = 0u64;
    let mut submit = |i: usize, p: Piece, tx: mpsc::Sender<Done>| -> Result<bool, String> {
        let mut buf = vec![0u8; p.len as usize];
        let real = len.saturating_sub(p.start).min(p.len) as usize;
        input
            .read_exact_at(&mut buf[..real], p.start)
            .map_err(|e| format!("cannot read the raw image: {e}"))?;
        let allocated = on_disk
            .iter()
            .any(|&(s, e)| s < p.start + p.len && p.start < e);
        if !allocated && buf.iter().all(|b| *b == 0) {
            skipped += p.len;
            return Ok(false);
        }
        transferred += p.len;
        let hashed = keep.then(|| buf[..real].to_vec());
        driver.write(
            p.start,
            buf,
            Box::new(move |r| {
                let _ = tx.send((i, r.map(|_| hashed).map_err(|e| e.to_string())));
            }),
        );
        Ok(true)
    };
    let result = pipeline(&pieces, padded, opts.queue_depth, &mut retire, &mut submit);
    let sha = retire.hash.take().map(|mut h| {
        // Retire hashed whole pieces; a padded tail added zeroes that are
        // not in the input, so rebuild the hash in that case.
        if padded != len {
            h = Sha256::new();
            let _ = hash_prefix(input, len, &mut h);
        }
        hex(h)
    });
    result?;
    flush(driver).map_err(|e| unsynced(opts, format!("cannot flush the disk: {e}")))?;
    finish_state(opts);
    Ok(CopyReport {
        total: len,
        transferred,
        skipped,
        sha256: sha,
    })
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

    #[test]
    fn state_round_trip_and_mismatch() {
        let dir = std::env::temp_dir().join(format!("vddk-copy-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = StateFile {
            path: dir.join("s"),
            id: "a -> b".into(),
            total: 4096,
        };
        assert!(s.load().unwrap_err().contains("without it"));
        s.save(1024).unwrap();
        assert_eq!(s.load(), Ok(1024));
        let other = StateFile {
            id: "c -> d".into(),
            ..s.clone()
        };
        assert!(other.load().unwrap_err().contains("another copy"));
        let bigger = StateFile {
            total: 8192,
            ..s.clone()
        };
        assert!(bigger.load().unwrap_err().contains("another size"));
        s.remove();
        assert!(s.load().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
