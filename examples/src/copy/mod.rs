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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use vddk::{DiskDriver, Extent, SECTOR_SIZE};

use sha2::{Digest, Sha256};

mod pipeline;
mod state;

use pipeline::{hash_prefix, hex, pipeline, plan, ranges, Done, Piece, Retire};
pub use state::{default_state_path, StateFile};

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
    let sync = Box::new(|| {
        out.sync_data()
            .map_err(|e| format!("cannot sync the output: {e}"))
    });
    let mut retire = Retire::new(&pieces, total, opts, out, sync).map_err(fail)?;
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
    let sync = Box::new(|| flush(driver).map_err(|e| format!("cannot flush the disk: {e}")));
    let mut retire = Retire::new(&pieces, padded, opts, input, sync).map_err(fail)?;
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
