//! A sparse in-memory disk, for tests and demonstrations. Storage is
//! allocated in 64 KiB clusters on first write (as VMware sparse disks
//! allocate grains), so block status has real holes to report, and
//! zeroing whole clusters gives them back.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::backend::{Backend, BlockSizes, Caps, Done, Error, Extent, Features, Known, ZeroFlags};

const CLUSTER: u64 = 64 * 1024;

/// An in-memory export of a fixed size; requests complete before the
/// call returns.
#[derive(Debug)]
pub struct MemoryBackend {
    size: u64,
    read_only: bool,
    /// The minimum block size advertised.
    minimum: u32,
    clusters: Mutex<HashMap<u64, Vec<u8>>>,
}

impl MemoryBackend {
    /// An empty (all holes) writable disk of `size` bytes.
    pub fn new(size: u64) -> MemoryBackend {
        MemoryBackend::with_options(size, false)
    }

    /// An empty disk of `size` bytes, optionally read-only.
    pub fn with_options(size: u64, read_only: bool) -> MemoryBackend {
        MemoryBackend {
            size,
            read_only,
            minimum: 512,
            clusters: Mutex::default(),
        }
    }

    /// Advertises `minimum` as the minimum block size instead of 512 (a
    /// VDDK disk's sector, which tests that stand this disk in for one
    /// rely on). Any range is served whatever it says.
    pub fn min_block(mut self, minimum: u32) -> MemoryBackend {
        self.minimum = minimum;
        self
    }

    fn clusters(&self) -> MutexGuard<'_, HashMap<u64, Vec<u8>>> {
        // Copies in and out cannot leave a cluster half-made: sound when poisoned.
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `data` at `offset` directly (allocating clusters), bypassing
    /// the read-only setting; for preparing test disks.
    pub fn fill(&self, offset: u64, data: &[u8]) {
        let mut clusters = self.clusters();
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (c, within) = (at / CLUSTER, (at % CLUSTER) as usize);
            let n = (CLUSTER as usize - within).min(data.len() - done);
            let cluster = clusters
                .entry(c)
                .or_insert_with(|| vec![0u8; CLUSTER as usize]);
            cluster[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Copies out `len` bytes at `offset`, for checking test results.
    pub fn contents(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        self.copy_out(offset, len, &mut out);
        out
    }

    fn copy_out(&self, offset: u64, len: usize, out: &mut Vec<u8>) {
        let clusters = self.clusters();
        let mut done = 0usize;
        while done < len {
            let at = offset + done as u64;
            let (c, within) = (at / CLUSTER, (at % CLUSTER) as usize);
            let n = (CLUSTER as usize - within).min(len - done);
            match clusters.get(&c) {
                Some(data) => out.extend_from_slice(&data[within..within + n]),
                None => out.resize(out.len() + n, 0),
            }
            done += n;
        }
    }

    /// Zeroes a range: whole clusters are dropped, partial ones cleared.
    fn zero_range(&self, offset: u64, len: u64) {
        let mut clusters = self.clusters();
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let c = at / CLUSTER;
            let (start, stop) = (at - c * CLUSTER, (end - c * CLUSTER).min(CLUSTER));
            if start == 0 && stop == CLUSTER {
                clusters.remove(&c);
            } else if let Some(data) = clusters.get_mut(&c) {
                data[start as usize..stop as usize].fill(0);
            }
            at = (c + 1) * CLUSTER;
        }
    }

    fn runs(&self, offset: u64, len: u64) -> Vec<Extent> {
        let clusters = self.clusters();
        let end = offset + len;
        let mut out: Vec<Extent> = Vec::new();
        let mut at = offset;
        while at < end {
            let c = at / CLUSTER;
            let next = ((c + 1) * CLUSTER).min(end);
            let hole = !clusters.contains_key(&c);
            match out.last_mut() {
                Some(last) if last.hole == hole => last.length += next - at,
                _ => out.push(Extent {
                    length: next - at,
                    hole,
                }),
            }
            at = next;
        }
        out
    }

    fn writable(&self) -> Result<(), Error> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }
}

impl Backend for MemoryBackend {
    fn caps(&self) -> Caps {
        // Trim is implemented but not offered to clients, so that this
        // export behaves like a VDDK disk, which cannot discard.
        let features = Features::WRITABLE;
        Caps {
            size: self.size,
            features: if self.read_only {
                features.read_only()
            } else {
                features
            },
            extents: true,
            block_sizes: BlockSizes::paged(self.minimum),
            inline: true,
        }
    }

    fn read(&self, offset: u64, len: u32, mut buf: Vec<u8>, done: Done<Vec<u8>>) {
        buf.clear();
        self.copy_out(offset, len as usize, &mut buf);
        done(Ok(buf))
    }

    fn write(&self, offset: u64, data: Vec<u8>, _fua: bool, done: Done<Vec<u8>>) {
        let r = self.writable().map(|()| {
            self.fill(offset, &data);
            data
        });
        done(r)
    }

    fn zero(&self, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        if flags.fast {
            // As a VDDK disk answers: zeroing is never promised to be fast.
            return done(Err(Error::Unsupported("fast zeroing")));
        }
        done(self.writable().map(|()| self.zero_range(offset, len)))
    }

    fn trim(&self, offset: u64, len: u64, _fua: bool, done: Done<()>) {
        done(self.writable().map(|()| self.zero_range(offset, len)))
    }

    fn flush(&self, done: Done<()>) {
        done(Ok(()))
    }

    fn extents(&self, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        done(Ok(self.runs(offset, len)))
    }

    fn known(&self, offset: u64, len: u64) -> Known {
        Known::Runs(self.runs(offset, len))
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn sync<T: Send + 'static>(f: impl FnOnce(Done<T>)) -> Result<T, Error> {
        let (tx, rx) = mpsc::channel();
        f(Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap()
    }

    #[test]
    fn unaligned_writes_and_zeroes_keep_neighbours() {
        let b = MemoryBackend::new(1 << 20);
        b.fill(0, &[0xaa; 2048]);
        sync(|d| b.write(511, vec![1, 2, 3], false, d)).unwrap();
        let got = sync(|d| b.read(509, 7, Vec::new(), d)).unwrap();
        assert_eq!(got, [0xaa, 0xaa, 1, 2, 3, 0xaa, 0xaa]);
        sync(|d| b.zero(100, 1000, ZeroFlags::default(), d)).unwrap();
        assert_eq!(
            b.contents(99, 1002),
            [&[0xaa][..], &[0; 1000], &[0xaa]].concat()
        );
    }

    #[test]
    fn holes_extents_and_trim() {
        let b = MemoryBackend::new(1 << 20);
        b.fill(CLUSTER, &[5; 10]);
        let e = sync(|d| b.extents(0, 1 << 20, d)).unwrap();
        let ext = |length, hole| Extent { length, hole };
        assert_eq!(
            e,
            vec![
                ext(CLUSTER, true),
                ext(CLUSTER, false),
                ext((1 << 20) - 2 * CLUSTER, true)
            ]
        );
        assert_eq!(
            b.known(CLUSTER - 512, 1024),
            Known::Runs(vec![ext(512, true), ext(512, false)])
        );
        sync(|d| b.trim(CLUSTER, CLUSTER, false, d)).unwrap();
        let e = sync(|d| b.extents(0, 1 << 20, d)).unwrap();
        assert_eq!(
            e,
            vec![ext(1 << 20, true)],
            "a trimmed cluster is a hole again"
        );
    }

    #[test]
    fn read_only_refuses() {
        let b = MemoryBackend::with_options(4096, true);
        let e = sync(|d| b.write(0, vec![0; 512], false, d)).unwrap_err();
        assert!(matches!(e, Error::ReadOnly));
        assert!(b.caps().features.read_only);
    }
}
