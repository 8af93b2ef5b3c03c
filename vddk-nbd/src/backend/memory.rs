//! A sparse in-memory disk, for tests and demonstrations. Storage is
//! allocated in 64 KiB clusters on first write (as VMware sparse disks
//! allocate grains), so block status has real holes to report.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::sectors::{SectorBackend, SectorDevice, SECTOR};
use super::{BackendError, Done, ErrorKind};

const CLUSTER: u64 = 64 * 1024;
const SECTORS_PER_CLUSTER: u64 = CLUSTER / SECTOR;

/// The sector device behind [`MemoryBackend`].
#[derive(Debug)]
pub struct MemoryDisk {
    sectors: u64,
    read_only: bool,
    clusters: Mutex<HashMap<u64, Vec<u8>>>,
}

impl MemoryDisk {
    fn clusters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<u8>>> {
        self.clusters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_bytes(&self, offset: u64, out: &mut [u8]) {
        let clusters = self.clusters();
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            let (c, within) = (at / CLUSTER, (at % CLUSTER) as usize);
            let n = (CLUSTER as usize - within).min(out.len() - done);
            match clusters.get(&c) {
                Some(data) => out[done..done + n].copy_from_slice(&data[within..within + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
        }
    }

    fn write_bytes(&self, offset: u64, data: &[u8]) {
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

    fn runs(&self, start: u64, count: u64) -> Vec<(u64, u64)> {
        let clusters = self.clusters();
        let end = start + count;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut c = start / SECTORS_PER_CLUSTER;
        while c * SECTORS_PER_CLUSTER < end {
            if clusters.contains_key(&c) {
                let s = (c * SECTORS_PER_CLUSTER).max(start);
                let e = ((c + 1) * SECTORS_PER_CLUSTER).min(end);
                match runs.last_mut() {
                    Some(last) if last.0 + last.1 == s => last.1 += e - s,
                    _ => runs.push((s, e - s)),
                }
            }
            c += 1;
        }
        runs
    }

    fn check(&self, start: u64, count: u64) -> Result<(), BackendError> {
        match start.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(BackendError::new(
                ErrorKind::OutOfRange,
                format!("sectors {start}+{count} are outside the disk"),
            )),
        }
    }
}

impl SectorDevice for MemoryDisk {
    fn capacity_sectors(&self) -> u64 {
        self.sectors
    }
    fn physical_sector_size(&self) -> Option<u32> {
        None
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn completes_inline(&self) -> bool {
        true
    }
    fn read(&self, start: u64, count: u64, done: Done<Vec<u8>>) {
        done(self.check(start, count).map(|()| {
            let mut out = vec![0u8; (count * SECTOR) as usize];
            self.read_bytes(start * SECTOR, &mut out);
            out
        }))
    }
    fn write(&self, start: u64, data: Vec<u8>, done: Done<()>) {
        if self.read_only {
            return done(Err(BackendError::new(
                ErrorKind::ReadOnly,
                "the disk is read-only",
            )));
        }
        let r = self
            .check(start, data.len() as u64 / SECTOR)
            .map(|()| self.write_bytes(start * SECTOR, &data));
        super::payload::give(data);
        done(r)
    }
    fn flush(&self, done: Done<()>) {
        done(Ok(()))
    }
    fn can_allocated(&self) -> bool {
        true
    }
    fn allocated(&self, start: u64, count: u64, done: Done<Vec<(u64, u64)>>) {
        done(self.check(start, count).map(|()| self.runs(start, count)))
    }
    fn known_allocated(&self, start: u64, count: u64) -> Option<Vec<(u64, u64)>> {
        Some(self.runs(start, count))
    }
    fn close(&self) -> Result<(), String> {
        Ok(())
    }
}

/// An in-memory export of a fixed size; completions run before the call
/// returns.
pub struct MemoryBackend(SectorBackend<MemoryDisk>);

impl MemoryBackend {
    /// An empty (all holes) writable disk of `size` bytes, rounded down to
    /// whole sectors.
    pub fn new(size: u64) -> MemoryBackend {
        MemoryBackend::with_options(size, false)
    }

    /// An empty disk of `size` bytes, optionally read-only.
    pub fn with_options(size: u64, read_only: bool) -> MemoryBackend {
        MemoryBackend(SectorBackend::new(MemoryDisk {
            sectors: size / SECTOR,
            read_only,
            clusters: Mutex::default(),
        }))
    }

    /// Stores `data` at `offset` directly (allocating clusters), bypassing
    /// the read-only setting; for preparing test disks.
    pub fn fill(&self, offset: u64, data: &[u8]) {
        self.0.device().write_bytes(offset, data);
    }

    /// Copies out `len` bytes at `offset`, for checking test results.
    pub fn contents(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.0.device().read_bytes(offset, &mut out);
        out
    }
}

forward_backend!(MemoryBackend);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, Extent, ReadChunk};
    use std::sync::mpsc;

    fn sync<T: Send + 'static>(f: impl FnOnce(Done<T>)) -> Result<T, BackendError> {
        let (tx, rx) = mpsc::channel();
        f(Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap()
    }

    fn flat(chunks: Vec<ReadChunk>) -> Vec<u8> {
        let mut v = Vec::new();
        for c in chunks {
            match c {
                ReadChunk::Data { data, .. } => v.extend(data),
                ReadChunk::Hole { length, .. } => {
                    v.extend(std::iter::repeat(0).take(length as usize))
                }
            }
        }
        v
    }

    #[test]
    fn unaligned_write_keeps_neighbours() {
        let b = MemoryBackend::new(1 << 20);
        b.fill(0, &[0xaa; 2048]);
        sync(|d| b.write(511, vec![1, 2, 3], false, d)).unwrap();
        let got = flat(sync(|d| b.read(509, 7, d)).unwrap());
        assert_eq!(got, [0xaa, 0xaa, 1, 2, 3, 0xaa, 0xaa]);
        sync(|d| b.zero(100, 1000, true, d)).unwrap();
        assert_eq!(
            b.contents(99, 1002),
            [&[0xaa][..], &[0; 1000], &[0xaa]].concat()
        );
    }

    #[test]
    fn holes_and_extents() {
        let b = MemoryBackend::new(1 << 20);
        b.fill(CLUSTER, &[5; 10]);
        let chunks = sync(|d| b.read(CLUSTER - 512, 1024, d)).unwrap();
        assert_eq!(
            chunks[0],
            ReadChunk::Hole {
                offset: CLUSTER - 512,
                length: 512
            }
        );
        assert!(
            matches!(&chunks[1], ReadChunk::Data { offset, data } if *offset == CLUSTER && data.len() == 512 && data[..10] == [5; 10])
        );
        let e = sync(|d| b.extents(0, 1 << 20, d)).unwrap();
        assert_eq!(
            e,
            vec![
                Extent {
                    length: CLUSTER,
                    hole: true
                },
                Extent {
                    length: CLUSTER,
                    hole: false
                },
                Extent {
                    length: (1 << 20) - 2 * CLUSTER,
                    hole: true
                }
            ]
        );
    }

    #[test]
    fn read_only_refuses() {
        let b = MemoryBackend::with_options(4096, true);
        let e = sync(|d| b.write(0, vec![0; 512], false, d)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReadOnly);
    }
}
