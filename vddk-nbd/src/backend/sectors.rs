//! Byte requests over a whole-sector device.
//!
//! Reads are widened to whole sectors and trimmed. Writes that start or
//! end inside a sector read that sector first (read-modify-write). Every
//! write holds a [`RangeLock`] over its sectors from before the read until
//! the write completes, so two writes sharing a sector cannot lose each
//! other's bytes, whatever order the device completes them in.

use std::sync::mpsc;
use std::sync::Arc;

use super::rangelock::RangeLock;
use super::{Backend, BackendError, BlockSizes, Done, ErrorKind, Extent, ReadChunk, MAX_PAYLOAD};

/// Bytes per sector.
pub const SECTOR: u64 = 512;

/// How much a WRITE_ZEROES writes per device request.
const ZERO_CHUNK: u64 = 4 << 20;

/// A disk addressed in 512-byte sectors with asynchronous completions.
/// Requests overlapping earlier ones take effect in submission order.
pub trait SectorDevice: Send + Sync + 'static {
    /// Capacity in sectors.
    fn capacity_sectors(&self) -> u64;
    /// Physical sector size, if the disk reports one.
    fn physical_sector_size(&self) -> Option<u32>;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Whether calls complete on the caller's thread before returning
    /// (see [`Backend::completes_inline`]).
    fn completes_inline(&self) -> bool {
        false
    }
    /// Reads `count` sectors at `start`.
    fn read(&self, start: u64, count: u64, done: Done<Vec<u8>>);
    /// Writes whole sectors at `start`.
    fn write(&self, start: u64, data: Vec<u8>, done: Done<()>);
    /// Makes completed writes durable.
    fn flush(&self, done: Done<()>);
    /// Whether [`SectorDevice::allocated`] works.
    fn can_allocated(&self) -> bool;
    /// Allocated runs `(start, count)` in sectors within `[start, start+count)`.
    fn allocated(&self, start: u64, count: u64, done: Done<Vec<(u64, u64)>>);
    /// Allocated runs if known without I/O (for hole chunks in reads).
    fn known_allocated(&self, start: u64, count: u64) -> Option<Vec<(u64, u64)>>;
    /// Flushes and closes.
    fn close(&self) -> Result<(), String>;
}

/// A [`Backend`] over a [`SectorDevice`].
pub struct SectorBackend<D: SectorDevice> {
    device: Arc<D>,
    locks: Arc<RangeLock>,
}

impl<D: SectorDevice> SectorBackend<D> {
    /// Wraps `device`.
    pub fn new(device: D) -> SectorBackend<D> {
        SectorBackend {
            device: Arc::new(device),
            locks: Arc::default(),
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }
}

/// Runs an asynchronous call and waits for its completion.
fn wait<T: Send + 'static>(call: impl FnOnce(Done<T>)) -> Result<T, BackendError> {
    let (tx, rx) = mpsc::sync_channel(1);
    call(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv().unwrap_or_else(|_| {
        Err(BackendError::new(
            ErrorKind::Io,
            "the disk dropped a request without completing it",
        ))
    })
}

/// Sector range `[first, end)` covering bytes `[offset, offset+len)`.
fn sector_span(offset: u64, len: u64) -> (u64, u64) {
    (offset / SECTOR, (offset + len).div_ceil(SECTOR))
}

/// Splits the read of `[offset, offset+len)` into data and hole chunks,
/// given allocated sector runs.
fn read_chunks(offset: u64, data: Vec<u8>, allocated: Option<&[(u64, u64)]>) -> Vec<ReadChunk> {
    let Some(allocated) = allocated else {
        return vec![ReadChunk::Data { offset, data }];
    };
    let end = offset + data.len() as u64;
    // (from, to, hole) spans first, so that the common case, a read wholly
    // inside allocated data, hands its buffer on without copying it.
    let mut spans: Vec<(u64, u64, bool)> = Vec::new();
    let mut at = offset;
    let mut push = |from: u64, to: u64, hole: bool| {
        if from < to {
            spans.push((from, to, hole));
        }
    };
    for &(s, n) in allocated {
        let a_start = (s * SECTOR).max(at);
        let a_end = ((s + n) * SECTOR).min(end);
        if a_end <= a_start {
            continue;
        }
        push(at, a_start, true);
        push(a_start, a_end, false);
        at = a_end;
    }
    push(at, end, true);
    if let [(_, _, false)] = spans.as_slice() {
        return vec![ReadChunk::Data { offset, data }];
    }
    spans
        .into_iter()
        .map(|(from, to, hole)| {
            if hole {
                ReadChunk::Hole {
                    offset: from,
                    length: (to - from) as u32,
                }
            } else {
                let s = (from - offset) as usize;
                let e = (to - offset) as usize;
                ReadChunk::Data {
                    offset: from,
                    data: data[s..e].to_vec(),
                }
            }
        })
        .collect()
}

/// Converts allocated sector runs within `[first, end)` into byte extents
/// starting at `offset` and ending at `offset + len`.
fn byte_extents(offset: u64, len: u64, allocated: &[(u64, u64)]) -> Vec<Extent> {
    let end = offset + len;
    let mut out: Vec<Extent> = Vec::new();
    let mut push = |length: u64, hole: bool| {
        if length == 0 {
            return;
        }
        match out.last_mut() {
            Some(last) if last.hole == hole => last.length += length,
            _ => out.push(Extent { length, hole }),
        }
    };
    let mut at = offset;
    for &(s, n) in allocated {
        let a_start = (s * SECTOR).max(at);
        let a_end = ((s + n) * SECTOR).min(end);
        if a_end <= a_start {
            continue;
        }
        push(a_start - at, true);
        push(a_end - a_start, false);
        at = a_end;
    }
    push(end - at, true);
    out
}

impl<D: SectorDevice> SectorBackend<D> {
    /// Writes bytes at any offset, synchronously building the whole-sector
    /// buffer; the device write itself completes through `done`.
    fn write_bytes(&self, offset: u64, data: Vec<u8>, done: Done<()>) {
        let (first, end) = sector_span(offset, data.len() as u64);
        let guard = self.locks.lock(first, end);
        let head = offset % SECTOR;
        let tail = (offset + data.len() as u64) % SECTOR;
        let buffer = if head == 0 && tail == 0 {
            data
        } else {
            let mut buf = vec![0u8; ((end - first) * SECTOR) as usize];
            let last = end - 1;
            let edges: &[u64] = if head != 0 && tail != 0 && first != last {
                &[first, last]
            } else if head != 0 {
                &[first]
            } else {
                &[last]
            };
            for &sector in edges {
                match wait(|d| self.device.read(sector, 1, d)) {
                    Ok(old) if old.len() as u64 == SECTOR => {
                        let at = ((sector - first) * SECTOR) as usize;
                        buf[at..at + SECTOR as usize].copy_from_slice(&old);
                    }
                    Ok(_) => {
                        return done(Err(BackendError::new(
                            ErrorKind::Io,
                            "the disk returned a short sector read",
                        )));
                    }
                    Err(e) => return done(Err(e)),
                }
            }
            let at = (offset - first * SECTOR) as usize;
            buf[at..at + data.len()].copy_from_slice(&data);
            buf
        };
        self.device.write(
            first,
            buffer,
            Box::new(move |r| {
                drop(guard);
                done(r)
            }),
        );
    }
}

impl<D: SectorDevice> Backend for SectorBackend<D> {
    fn size(&self) -> u64 {
        self.device.capacity_sectors() * SECTOR
    }

    fn read_only(&self) -> bool {
        self.device.read_only()
    }

    fn can_extents(&self) -> bool {
        self.device.can_allocated()
    }

    fn completes_inline(&self) -> bool {
        self.device.completes_inline()
    }

    fn block_sizes(&self) -> BlockSizes {
        let physical = self.device.physical_sector_size().unwrap_or(0);
        BlockSizes {
            minimum: SECTOR as u32,
            preferred: physical.clamp(4096, 1 << 20),
            maximum: MAX_PAYLOAD,
        }
    }

    fn read(&self, offset: u64, length: u32, done: Done<Vec<ReadChunk>>) {
        let (first, end) = sector_span(offset, u64::from(length));
        let allocated = self.device.known_allocated(first, end - first);
        let skip = (offset - first * SECTOR) as usize;
        let len = length as usize;
        self.device.read(
            first,
            end - first,
            Box::new(move |r| {
                done(r.and_then(|mut data| {
                    if data.len() < skip + len {
                        return Err(BackendError::new(
                            ErrorKind::Io,
                            "the disk returned a short read",
                        ));
                    }
                    if skip != 0 || data.len() != len {
                        data = data[skip..skip + len].to_vec();
                    }
                    Ok(read_chunks(offset, data, allocated.as_deref()))
                }))
            }),
        );
    }

    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<()>) {
        if self.device.read_only() {
            return done(Err(BackendError::new(
                ErrorKind::ReadOnly,
                "the disk is open read-only",
            )));
        }
        if !fua {
            return self.write_bytes(offset, data, done);
        }
        // Submitted back to back: the device orders the flush after the write.
        let join = Join::new(2, done);
        let j2 = Arc::clone(&join);
        self.write_bytes(offset, data, Box::new(move |r| join.complete(r)));
        self.device.flush(Box::new(move |r| j2.complete(r)));
    }

    fn zero(&self, offset: u64, length: u64, fua: bool, done: Done<()>) {
        if self.device.read_only() {
            return done(Err(BackendError::new(
                ErrorKind::ReadOnly,
                "the disk is open read-only",
            )));
        }
        // Zeroing is emulated by writing zeroes, a chunk at a time so a
        // multi-gigabyte request never allocates more than one chunk.
        let end = offset + length;
        let mut at = offset;
        while at < end {
            let next = ((at / ZERO_CHUNK + 1) * ZERO_CHUNK).min(end);
            let zeroes = vec![0u8; (next - at) as usize];
            if let Err(e) = wait(|d| self.write_bytes(at, zeroes, d)) {
                return done(Err(e));
            }
            at = next;
        }
        if fua {
            self.device.flush(done);
        } else {
            done(Ok(()));
        }
    }

    fn flush(&self, done: Done<()>) {
        self.device.flush(done);
    }

    fn extents(&self, offset: u64, length: u64, done: Done<Vec<Extent>>) {
        if !self.device.can_allocated() {
            return done(Ok(vec![Extent {
                length,
                hole: false,
            }]));
        }
        let (first, end) = sector_span(offset, length);
        self.device.allocated(
            first,
            end - first,
            Box::new(move |r| done(r.map(|runs| byte_extents(offset, length, &runs)))),
        );
    }

    fn close(&self) -> Result<(), String> {
        self.device.close()
    }
}

/// Completes `done` once `n` parts have completed, with the first error.
struct Join {
    state: std::sync::Mutex<(usize, Option<BackendError>, Option<Done<()>>)>,
}

impl Join {
    fn new(n: usize, done: Done<()>) -> Arc<Join> {
        Arc::new(Join {
            state: std::sync::Mutex::new((n, None, Some(done))),
        })
    }

    fn complete(&self, r: Result<(), BackendError>) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = r {
            s.1.get_or_insert(e);
        }
        s.0 -= 1;
        if s.0 == 0 {
            let err = s.1.take();
            if let Some(done) = s.2.take() {
                drop(s);
                done(err.map_or(Ok(()), Err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_on_allocation() {
        let data = vec![7u8; 2048];
        // Sectors 2..4 allocated; read bytes 512..2560.
        let c = read_chunks(512, data, Some(&[(2, 2)]));
        assert_eq!(
            c,
            vec![
                ReadChunk::Hole {
                    offset: 512,
                    length: 512
                },
                ReadChunk::Data {
                    offset: 1024,
                    data: vec![7; 1024]
                },
                ReadChunk::Hole {
                    offset: 2048,
                    length: 512
                },
            ]
        );
        let c = read_chunks(100, vec![1; 10], None);
        assert_eq!(
            c,
            vec![ReadChunk::Data {
                offset: 100,
                data: vec![1; 10]
            }]
        );
    }

    #[test]
    fn extents_clip_and_merge() {
        let e = byte_extents(100, 2000, &[(0, 1), (1, 1), (3, 10)]);
        assert_eq!(
            e,
            vec![
                Extent {
                    length: 924,
                    hole: false
                },
                Extent {
                    length: 512,
                    hole: true
                },
                Extent {
                    length: 564,
                    hole: false
                }
            ]
        );
        assert_eq!(
            byte_extents(0, 512, &[]),
            vec![Extent {
                length: 512,
                hole: true
            }]
        );
    }
}
