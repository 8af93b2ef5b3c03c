//! Turning an allocated-blocks request into QueryAllocatedBlocks calls that
//! VDDK accepts, and its answers back into clipped, merged extents.

use crate::error::{Error, Result};

/// A run of sectors: `[start, start + length)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Extent {
    /// First sector.
    pub start: u64,
    /// Number of sectors.
    pub length: u64,
}

impl Extent {
    /// One past the last sector.
    pub fn end(&self) -> u64 {
        self.start + self.length
    }
}

/// The smallest chunk VDDK accepts, in sectors.
pub const MIN_CHUNK: u64 = vddk_sys::VIXDISKLIB_MIN_CHUNK_SIZE as u64;
/// The most chunks one QueryAllocatedBlocks call may cover.
pub const MAX_CHUNKS_PER_CALL: u64 = vddk_sys::VIXDISKLIB_MAX_CHUNK_NUMBER as u64;

/// One QueryAllocatedBlocks call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call {
    pub start: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub chunk: u64,
    pub calls: Vec<Call>,
    /// The end of the range that lies in a partial chunk at the end of the disk.
    pub tail: Option<Extent>,
}

/// Plans the calls for `[start, start + count)` on a disk of `capacity` sectors.
pub(crate) fn plan(start: u64, count: u64, chunk: u64, capacity: u64) -> Result<Plan> {
    let chunk = chunk.max(MIN_CHUNK).div_ceil(MIN_CHUNK) * MIN_CHUNK;
    let end = start
        .checked_add(count)
        .filter(|e| *e <= capacity)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "sectors {start}+{count} go past the end of the disk ({capacity} sectors)"
            ))
        })?;
    let mut plan = Plan {
        chunk,
        calls: Vec::new(),
        tail: None,
    };
    if count == 0 {
        return Ok(plan);
    }
    let aligned_start = start / chunk * chunk;
    let whole_end = capacity / chunk * chunk;
    let query_end = end.div_ceil(chunk).saturating_mul(chunk).min(whole_end);
    let mut at = aligned_start;
    while at < query_end {
        let n = (query_end - at).min(MAX_CHUNKS_PER_CALL * chunk);
        plan.calls.push(Call {
            start: at,
            count: n,
        });
        at += n;
    }
    if end > query_end {
        let tail_start = query_end.max(start);
        plan.tail = Some(Extent {
            start: tail_start,
            length: end - tail_start,
        });
    }
    Ok(plan)
}

/// Clips `found` to the requested range, adds the tail, sorts and merges.
pub(crate) fn finish(
    found: Vec<Extent>,
    tail: Option<Extent>,
    start: u64,
    count: u64,
) -> Vec<Extent> {
    let end = start + count;
    let mut v: Vec<Extent> = found
        .into_iter()
        .chain(tail)
        .filter_map(|e| {
            let s = e.start.max(start);
            let t = e.start.saturating_add(e.length).min(end);
            (s < t).then_some(Extent {
                start: s,
                length: t - s,
            })
        })
        .collect();
    v.sort_unstable();
    let mut out: Vec<Extent> = Vec::with_capacity(v.len());
    for e in v {
        match out.last_mut() {
            Some(last) if e.start <= last.end() => {
                let new_end = last.end().max(e.end());
                last.length = new_end - last.start;
            }
            _ => out.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_range_is_one_call_without_tail() {
        let p = plan(0, 1024, 128, 2048).unwrap();
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
        let p = plan(100, 200, 128, 4096).unwrap();
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
        let p = plan(0, 1000, 128, 1000).unwrap();
        assert_eq!(
            p.calls,
            vec![Call {
                start: 0,
                count: 896
            }]
        );
        assert_eq!(
            p.tail,
            Some(Extent {
                start: 896,
                length: 104
            })
        );
        // A range entirely inside the tail makes no call.
        let p = plan(950, 10, 128, 1000).unwrap();
        assert!(p.calls.is_empty());
        assert_eq!(
            p.tail,
            Some(Extent {
                start: 950,
                length: 10
            })
        );
    }

    #[test]
    fn disk_smaller_than_a_chunk_is_all_tail() {
        let p = plan(0, 100, 128, 100).unwrap();
        assert!(p.calls.is_empty());
        assert_eq!(
            p.tail,
            Some(Extent {
                start: 0,
                length: 100
            })
        );
    }

    #[test]
    fn big_ranges_split_at_the_chunk_limit() {
        let cap = MAX_CHUNKS_PER_CALL * 128 * 2 + 256;
        let p = plan(0, cap, 128, cap).unwrap();
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
    fn chunk_is_rounded_up_to_a_multiple_of_the_minimum() {
        assert_eq!(plan(0, 1024, 1, 1024).unwrap().chunk, 128);
        assert_eq!(plan(0, 1024, 0, 1024).unwrap().chunk, 128);
        assert_eq!(plan(0, 1024, 200, 1024).unwrap().chunk, 256);
    }

    #[test]
    fn ranges_past_the_end_are_rejected() {
        assert!(plan(1000, 100, 128, 1024).is_err());
        assert!(plan(u64::MAX, 2, 128, 1024).is_err());
        assert!(plan(1024, 0, 128, 1024).unwrap().calls.is_empty());
    }

    #[test]
    fn finish_clips_sorts_and_merges() {
        let found = vec![
            Extent {
                start: 256,
                length: 128,
            },
            Extent {
                start: 0,
                length: 128,
            },
            Extent {
                start: 128,
                length: 128,
            },
            Extent {
                start: 1024,
                length: 128,
            },
        ];
        let out = finish(
            found,
            Some(Extent {
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
                    start: 100,
                    length: 284
                },
                Extent {
                    start: 1024,
                    length: 138
                }
            ]
        );
    }
}
