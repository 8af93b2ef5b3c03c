//! Turning an allocated-blocks request into QueryAllocatedBlocks calls that
//! VDDK accepts, and its answers back into clipped, merged extents.

use crate::SECTOR_SIZE;

/// A run of bytes, `[offset, offset + length)`, that holds data.
///
/// # Examples
///
/// What [`Disk::allocated_blocks`](crate::Disk::allocated_blocks) returns,
/// sorted and merged; the holes lie between them:
///
/// ```
/// use vddk::Extent;
///
/// let extents = [
///     Extent { offset: 0, length: 1 << 20 },
///     Extent { offset: 8 << 20, length: 64 << 10 },
/// ];
/// assert_eq!(extents[1].end(), (8 << 20) + (64 << 10));
/// let data: u64 = extents.iter().map(|e| e.length).sum();
/// assert_eq!(data, (1 << 20) + (64 << 10));
/// let holes: Vec<_> = extents.windows(2).map(|w| w[0].end()..w[1].offset).collect();
/// assert_eq!(holes, [(1 << 20)..(8 << 20)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Extent {
    /// Byte offset of the first byte.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// The smallest chunk VDDK accepts, in bytes (128 sectors, 64 KiB).
pub const MIN_CHUNK: u64 = vddk_sys::VIXDISKLIB_MIN_CHUNK_SIZE as u64 * SECTOR_SIZE;
/// The most chunks one QueryAllocatedBlocks call may cover.
pub const MAX_CHUNKS_PER_CALL: u64 = vddk_sys::VIXDISKLIB_MAX_CHUNK_NUMBER as u64;

/// The smallest chunk, in sectors.
const MIN_CHUNK_SECTORS: u64 = vddk_sys::VIXDISKLIB_MIN_CHUNK_SIZE as u64;

/// A run of sectors, `[start, start + length)`: what VDDK speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Run {
    pub start: u64,
    pub length: u64,
}

impl Run {
    fn end(&self) -> u64 {
        self.start + self.length
    }
}

/// One QueryAllocatedBlocks call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call {
    pub start: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Chunk size in sectors.
    pub chunk: u64,
    pub calls: Vec<Call>,
    /// The end of the range that lies in a partial chunk at the end of the disk.
    pub tail: Option<Run>,
}

/// Plans the calls for sectors `[start, start + count)` on a disk of
/// `capacity` sectors, with chunks of at least `chunk` sectors. The range
/// must lie inside the disk (callers check it).
pub(crate) fn plan(start: u64, count: u64, chunk: u64, capacity: u64) -> Plan {
    let chunk = chunk.max(MIN_CHUNK_SECTORS).div_ceil(MIN_CHUNK_SECTORS) * MIN_CHUNK_SECTORS;
    let end = start.saturating_add(count).min(capacity);
    let mut plan = Plan {
        chunk,
        calls: Vec::new(),
        tail: None,
    };
    if start >= end {
        return plan;
    }
    let aligned_start = start / chunk * chunk;
    let whole_end = capacity / chunk * chunk;
    let query_end = end.div_ceil(chunk).saturating_mul(chunk).min(whole_end);
    // Saturating: on a disk of 2^45 sectors or more a chunk can be so big
    // that the most one call may cover does not fit in u64 (wrapped, it
    // made calls of part of a chunk, or of none, looping for ever).
    let per_call = MAX_CHUNKS_PER_CALL.saturating_mul(chunk);
    let mut at = aligned_start;
    while at < query_end {
        let n = (query_end - at).min(per_call);
        plan.calls.push(Call {
            start: at,
            count: n,
        });
        at += n;
    }
    if end > query_end {
        let tail_start = query_end.max(start);
        plan.tail = Some(Run {
            start: tail_start,
            length: end - tail_start,
        });
    }
    plan
}

/// Clips `found` (sector runs) to `[start, start + count)`, adds the tail,
/// sorts and merges, and gives the result in bytes.
pub(crate) fn finish(found: Vec<Run>, tail: Option<Run>, start: u64, count: u64) -> Vec<Extent> {
    let end = start + count;
    let mut v: Vec<Run> = found
        .into_iter()
        .chain(tail)
        .filter_map(|e| {
            let s = e.start.max(start);
            let t = e.start.saturating_add(e.length).min(end);
            // Lazily: a run wholly outside the range (which a library may
            // answer against its promise) has t < s.
            (s < t).then(|| Run {
                start: s,
                length: t - s,
            })
        })
        .collect();
    v.sort_unstable();
    let mut out: Vec<Run> = Vec::with_capacity(v.len());
    for e in v {
        match out.last_mut() {
            Some(last) if e.start <= last.end() => {
                let new_end = last.end().max(e.end());
                last.length = new_end - last.start;
            }
            _ => out.push(e),
        }
    }
    out.into_iter()
        .map(|r| Extent {
            offset: r.start * SECTOR_SIZE,
            length: r.length * SECTOR_SIZE,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_range_is_one_call_without_tail() {
        let p = plan(0, 1024, 128, 2048);
        assert_eq!(
            p.calls,
            vec![Call {
                start: 0,
                count: 1024
            }]
        );
        assert_eq!(p.tail, None);
    }

    #[test]
    fn unaligned_range_is_widened_to_whole_chunks() {
        let p = plan(100, 200, 128, 4096);
        assert_eq!(
            p.calls,
            vec![Call {
                start: 0,
                count: 384
            }]
        );
        assert_eq!(p.tail, None);
    }

    #[test]
    fn tail_past_the_last_whole_chunk_is_not_queried() {
        // 1000 sectors: chunks cover 0..896, 896..1000 is the tail.
        let p = plan(0, 1000, 128, 1000);
        assert_eq!(
            p.calls,
            vec![Call {
                start: 0,
                count: 896
            }]
        );
        assert_eq!(
            p.tail,
            Some(Run {
                start: 896,
                length: 104
            })
        );
        // A range entirely inside the tail makes no call.
        let p = plan(950, 10, 128, 1000);
        assert!(p.calls.is_empty());
        assert_eq!(
            p.tail,
            Some(Run {
                start: 950,
                length: 10
            })
        );
    }

    #[test]
    fn disk_smaller_than_a_chunk_is_all_tail() {
        let p = plan(0, 100, 128, 100);
        assert!(p.calls.is_empty());
        assert_eq!(
            p.tail,
            Some(Run {
                start: 0,
                length: 100
            })
        );
    }

    #[test]
    fn big_ranges_split_at_the_chunk_limit() {
        let cap = MAX_CHUNKS_PER_CALL * 128 * 2 + 256;
        let p = plan(0, cap, 128, cap);
        let max = MAX_CHUNKS_PER_CALL * 128;
        assert_eq!(
            p.calls,
            vec![
                Call {
                    start: 0,
                    count: max
                },
                Call {
                    start: max,
                    count: max
                },
                Call {
                    start: 2 * max,
                    count: 256
                }
            ]
        );
        assert!(p
            .calls
            .iter()
            .all(|c| c.count / p.chunk <= MAX_CHUNKS_PER_CALL));
    }

    #[test]
    fn huge_chunks_on_a_huge_disk_make_whole_chunk_calls() {
        // 2^45 sectors (16 PiB) per chunk: MAX_CHUNKS_PER_CALL chunks are
        // 2^64 sectors, past u64. The largest capacity a disk can report
        // in bytes, in sectors.
        let capacity = u64::MAX / SECTOR_SIZE;
        for chunk in [1 << 45, (1 << 45) + 128, capacity / 128 * 128] {
            let p = plan(0, capacity, chunk, capacity);
            let whole = capacity / p.chunk * p.chunk;
            assert_eq!(
                p.calls,
                vec![Call {
                    start: 0,
                    count: whole
                }],
                "chunk {chunk}"
            );
            assert_eq!(
                p.tail,
                Some(Run {
                    start: whole,
                    length: capacity - whole
                })
            );
        }
    }

    #[test]
    fn chunk_is_rounded_up_to_a_multiple_of_the_minimum() {
        assert_eq!(plan(0, 1024, 1, 1024).chunk, 128);
        assert_eq!(plan(0, 1024, 0, 1024).chunk, 128);
        assert_eq!(plan(0, 1024, 200, 1024).chunk, 256);
    }

    #[test]
    fn empty_ranges_make_no_call() {
        assert!(plan(1024, 0, 128, 1024).calls.is_empty());
        assert_eq!(plan(1024, 0, 128, 1024).tail, None);
    }

    #[test]
    fn finish_drops_runs_outside_the_range() {
        // Before, after and empty outside: none of them is in 100..200.
        let found = vec![
            Run {
                start: 0,
                length: 50,
            },
            Run {
                start: 300,
                length: 10,
            },
            Run {
                start: 20,
                length: 0,
            },
            Run {
                start: u64::MAX,
                length: u64::MAX,
            },
        ];
        assert_eq!(finish(found, None, 100, 100), vec![]);
    }

    #[test]
    fn finish_clips_sorts_and_merges() {
        let found = vec![
            Run {
                start: 256,
                length: 128,
            },
            Run {
                start: 0,
                length: 128,
            },
            Run {
                start: 128,
                length: 128,
            },
            Run {
                start: 1024,
                length: 128,
            },
        ];
        let out = finish(
            found,
            Some(Run {
                start: 1152,
                length: 10,
            }),
            100,
            1062,
        );
        assert_eq!(
            out,
            vec![
                Extent {
                    offset: 100 * 512,
                    length: 284 * 512
                },
                Extent {
                    offset: 1024 * 512,
                    length: 138 * 512
                }
            ]
        );
    }
}
