//! The cow filter's overlay: a sparse temporary file and the state of each
//! block.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::{Error, Extent};

/// Where a block's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// In the layer below (never written here).
    Below = 0,
    /// In the overlay file.
    Data = 1,
    /// Zeroes (zeroed or trimmed here).
    Zero = 2,
}

/// Blocks per page of the state map.
const PAGE: u64 = 1 << 16;

/// One byte of state per block, in pages made on first write, so a large
/// disk with few writes costs little.
#[derive(Default)]
struct States(HashMap<u64, Box<[u8]>>);

impl States {
    fn get(&self, b: u64) -> State {
        match self.0.get(&(b / PAGE)).map(|p| p[(b % PAGE) as usize]) {
            Some(1) => State::Data,
            Some(2) => State::Zero,
            _ => State::Below,
        }
    }

    fn set(&mut self, b: u64, s: State) {
        let page = self
            .0
            .entry(b / PAGE)
            .or_insert_with(|| vec![0u8; PAGE as usize].into_boxed_slice());
        page[(b % PAGE) as usize] = s as u8;
    }
}

pub(super) struct Overlay {
    file: File,
    size: u64,
    block: u64,
    states: Mutex<States>,
    /// Held while blocks are written, so a read-modify-write of a block
    /// cannot interleave with another write.
    writes: Mutex<()>,
}

/// The directory overlays go in: `$TMPDIR`, else `/var/tmp` (nbdkit's
/// choice: overlays can be as large as the disk, too large for a tmpfs).
fn overlay_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from)
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("cow overlay: {what}: {e}"),
    ))
}

impl Overlay {
    /// A new overlay for a disk of `size` bytes, in blocks of `block`.
    pub(super) fn create(size: u64, block: u64) -> Result<Overlay, Error> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = overlay_dir();
        let path = dir.join(format!(
            ".vddk-nbd-cow-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io(&format!("cannot create it in {}", dir.display()), e))?;
        // Unlinked at once: the overlay goes away with the process, however
        // it ends.
        std::fs::remove_file(&path).map_err(|e| io("cannot unlink it", e))?;
        file.set_len(size).map_err(|e| io("cannot size it", e))?;
        log::debug!(
            "cow: overlay of {size} bytes in {} (blocks of {block})",
            dir.display()
        );
        Ok(Overlay {
            file,
            size,
            block,
            states: Mutex::default(),
            writes: Mutex::new(()),
        })
    }

    fn states(&self) -> MutexGuard<'_, States> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn writing(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The blocks `[offset, offset + len)` touches.
    pub(super) fn blocks(&self, offset: u64, len: u64) -> Range<u64> {
        offset / self.block..(offset + len).div_ceil(self.block)
    }

    /// Block `b`'s bytes: `(offset, length)`; the last may be short.
    pub(super) fn block_range(&self, b: u64) -> (u64, u64) {
        let at = b * self.block;
        (at, self.block.min(self.size - at))
    }

    pub(super) fn state(&self, b: u64) -> State {
        self.states().get(b)
    }

    pub(super) fn set(&self, b: u64, s: State) {
        self.states().set(b, s)
    }

    /// Whether some of the range is below, and whether some is here.
    pub(super) fn census(&self, offset: u64, len: u64) -> (bool, bool) {
        let states = self.states();
        let (mut below, mut ours) = (false, false);
        for b in self.blocks(offset, len) {
            match states.get(b) {
                State::Below => below = true,
                _ => ours = true,
            }
            if below && ours {
                break;
            }
        }
        (below, ours)
    }

    pub(super) fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut v = vec![0u8; len];
        self.file
            .read_exact_at(&mut v, offset)
            .map_err(|e| io("read", e))?;
        Ok(v)
    }

    pub(super) fn write(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| io("write", e))
    }

    /// Makes the bytes read as zeroes, giving the space back when it can.
    pub(super) fn discard(&self, offset: u64, len: u64) -> Result<(), Error> {
        use nix::fcntl::{fallocate, FallocateFlags};
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if fallocate(&self.file, flags, offset as i64, len as i64).is_ok() {
            return Ok(());
        }
        self.write(offset, &vec![0u8; len as usize])
    }

    /// Puts the overlay's blocks into `data` (read from below at `offset`);
    /// with `keep`, stores the whole blocks that are still below. Called
    /// from a completion, so it never waits for the write lock: a block
    /// that cannot be kept now is simply read from below again next time.
    pub(super) fn patch(&self, offset: u64, data: &mut [u8], keep: bool) -> Result<(), Error> {
        let end = offset + data.len() as u64;
        let writing = if keep {
            self.writes.try_lock().ok()
        } else {
            None
        };
        for b in self.blocks(offset, data.len() as u64) {
            let (bs, blen) = self.block_range(b);
            let (from, to) = (offset.max(bs), end.min(bs + blen));
            let slice = &mut data[(from - offset) as usize..(to - offset) as usize];
            match self.state(b) {
                State::Data => self
                    .file
                    .read_exact_at(slice, from)
                    .map_err(|e| io("read", e))?,
                State::Zero => slice.fill(0),
                State::Below if writing.is_some() && from == bs && to == bs + blen => {
                    self.write(bs, slice)?;
                    self.set(b, State::Data);
                }
                State::Below => {}
            }
        }
        Ok(())
    }

    /// Extents of `[offset, offset + len)`: the overlay's blocks as data or
    /// holes, the rest as `below` (extents from `offset`) says.
    pub(super) fn extents(&self, offset: u64, len: u64, below: &[Extent]) -> Vec<Extent> {
        let end = offset + len;
        // Below's runs as absolute (start, end, hole).
        let mut runs = Vec::with_capacity(below.len());
        let mut at = offset;
        for e in below {
            runs.push((at, at + e.length, e.hole));
            at += e.length;
        }
        let below_at = |pos: u64| -> (u64, bool) {
            runs.iter()
                .find(|(s, e, _)| *s <= pos && pos < *e)
                .map_or((end, false), |&(_, e, h)| (e, h))
        };
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |n: u64, hole: bool| match out.last_mut() {
            Some(l) if l.hole == hole => l.length += n,
            _ => out.push(Extent { length: n, hole }),
        };
        let mut pos = offset;
        while pos < end {
            let b = pos / self.block;
            let (bs, blen) = self.block_range(b);
            let block_end = (bs + blen).min(end);
            match self.state(b) {
                State::Data => push(block_end - pos, false),
                State::Zero => push(block_end - pos, true),
                State::Below => {
                    let (run_end, hole) = below_at(pos);
                    let step = run_end.min(block_end).max(pos + 1);
                    push(step - pos, hole);
                    pos = step;
                    continue;
                }
            }
            pos = block_end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_default_to_below_and_pages_are_made_on_demand() {
        let mut s = States::default();
        assert_eq!(s.get(12_345_678), State::Below);
        s.set(12_345_678, State::Zero);
        s.set(3, State::Data);
        assert_eq!((s.get(3), s.get(12_345_678)), (State::Data, State::Zero));
        assert_eq!(s.0.len(), 2);
    }

    #[test]
    fn the_last_block_may_be_short() {
        let o = Overlay::create(10_000, 4096).unwrap();
        assert_eq!(o.blocks(0, 10_000), 0..3);
        assert_eq!(o.block_range(2), (8192, 1808));
        o.write(9000, b"end").unwrap();
        assert_eq!(o.read(9000, 3).unwrap(), b"end");
    }
}
