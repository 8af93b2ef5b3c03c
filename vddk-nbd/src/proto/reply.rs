//! Transmission replies as they go on the wire, decided in one place:
//! simple or structured, one data chunk or data and hole chunks, block
//! status descriptors, errors. No I/O: a [`Reply`] is a list of byte
//! pieces for the server to write in order.

use std::ops::Range;

use super::consts::{REPLY_FLAG_DONE, STATE_HOLE, STATE_ZERO};
use super::wire::{self, Put};

/// One run of an export's allocation, consecutive from a request's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes.
    pub length: u64,
    /// Not allocated: reads as zeroes.
    pub hole: bool,
}

/// What is known, without I/O, of the allocation under a read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Known {
    /// Nothing: the read is sent as data.
    #[default]
    Unknown,
    /// All of it holds data.
    Data,
    /// None of it is allocated.
    Hole,
    /// Runs from the read's offset on, covering at least its length.
    Runs(Vec<Extent>),
}

/// A header of up to 32 bytes, kept inline so that a reply allocates
/// nothing but its data.
#[derive(Clone, Copy)]
pub struct Head {
    bytes: [u8; 32],
    len: u8,
}

impl Head {
    const fn new() -> Head {
        Head {
            bytes: [0; 32],
            len: 0,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Put for Head {
    fn put(&mut self, b: &[u8]) {
        // Every header encoded here fits: 16 (simple), 28 (data), 32 (hole).
        let at = usize::from(self.len);
        let n = b.len().min(self.bytes.len() - at);
        self.bytes[at..at + n].copy_from_slice(&b[..n]);
        self.len += n as u8;
    }
}

/// The bytes a reply writes before and between pieces of its data.
enum Lead {
    Inline(Head),
    Heap(Vec<u8>),
}

impl Lead {
    fn as_slice(&self) -> &[u8] {
        match self {
            Lead::Inline(h) => h.as_slice(),
            Lead::Heap(v) => v,
        }
    }
}

/// Which bytes of the data buffer go out.
enum Plan {
    /// All of it, after the lead.
    All,
    /// None (a hole, or no data at all).
    Nothing,
    /// After the lead, each header followed by its range of the data.
    Chunks(Vec<(Head, Range<usize>)>),
}

/// A reply ready to be written: [`Reply::pieces`] in order.
pub struct Reply {
    lead: Lead,
    data: Vec<u8>,
    plan: Plan,
}

impl Reply {
    fn inline(f: impl FnOnce(&mut Head)) -> Reply {
        let mut h = Head::new();
        f(&mut h);
        Reply {
            lead: Lead::Inline(h),
            data: Vec::new(),
            plan: Plan::Nothing,
        }
    }

    /// The byte pieces to write, in order (some may be empty).
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let first = std::iter::once(self.lead.as_slice());
        let all = matches!(self.plan, Plan::All).then_some(&self.data[..]);
        let chunks = match &self.plan {
            Plan::Chunks(c) => &c[..],
            _ => &[],
        };
        first.chain(all).chain(
            chunks
                .iter()
                .flat_map(|(h, r)| [h.as_slice(), &self.data[r.clone()]]),
        )
    }

    /// Total bytes to write.
    pub fn len(&self) -> usize {
        self.pieces().map(<[u8]>::len).sum()
    }

    /// Whether nothing is to be written (never true of a real reply).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data buffer, once written, for reuse.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

/// Success without data.
pub fn ok(cookie: u64) -> Reply {
    Reply::inline(|h| wire::encode_simple_reply(h, 0, cookie))
}

/// A failure: a simple reply with `errno`, or, with structured replies, an
/// error chunk that also carries `message`.
pub fn error(cookie: u64, structured: bool, errno: u32, message: &str) -> Reply {
    if !structured {
        return Reply::inline(|h| wire::encode_simple_reply(h, errno, cookie));
    }
    let mut v = Vec::with_capacity(32 + message.len());
    wire::encode_error_chunk(&mut v, cookie, errno, message);
    Reply {
        lead: Lead::Heap(v),
        data: Vec::new(),
        plan: Plan::Nothing,
    }
}

/// The answer to a read of `data.len()` bytes at `offset`. With structured
/// replies (and without DF), ranges `known` to be unallocated go out as
/// hole chunks instead of zeroes.
pub fn read(
    cookie: u64,
    structured: bool,
    df: bool,
    offset: u64,
    data: Vec<u8>,
    known: &Known,
) -> Reply {
    if !structured {
        return with_data(data, |h| wire::encode_simple_reply(h, 0, cookie));
    }
    let len = data.len();
    let spans = match known {
        _ if df => None,
        Known::Unknown | Known::Data => None,
        Known::Hole => Some(vec![(0..len, true)]),
        Known::Runs(runs) => Some(spans(runs, len)),
    };
    let Some(spans) = spans.filter(|s| s.iter().any(|(_, hole)| *hole)) else {
        return with_data(data, |h| {
            wire::encode_data_chunk_header(h, REPLY_FLAG_DONE, cookie, offset, len as u32)
        });
    };
    let last = spans.len() - 1;
    let mut chunks = Vec::with_capacity(spans.len());
    for (i, (range, hole)) in spans.into_iter().enumerate() {
        let flags = if i == last { REPLY_FLAG_DONE } else { 0 };
        let at = offset + range.start as u64;
        let n = range.len() as u32;
        let mut h = Head::new();
        if hole {
            wire::encode_hole_chunk(&mut h, flags, cookie, at, n);
            chunks.push((h, 0..0));
        } else {
            wire::encode_data_chunk_header(&mut h, flags, cookie, at, n);
            chunks.push((h, range));
        }
    }
    Reply {
        lead: Lead::Inline(Head::new()),
        data,
        plan: Plan::Chunks(chunks),
    }
}

fn with_data(data: Vec<u8>, head: impl FnOnce(&mut Head)) -> Reply {
    let mut r = Reply::inline(head);
    r.data = data;
    r.plan = Plan::All;
    r
}

/// Merged (range, hole) spans of `runs` over `[0, len)`; the part `runs`
/// does not cover is data.
fn spans(runs: &[Extent], len: usize) -> Vec<(Range<usize>, bool)> {
    let mut out: Vec<(Range<usize>, bool)> = Vec::new();
    let mut at = 0usize;
    let mut push = |n: usize, hole: bool, at: &mut usize| {
        if n == 0 {
            return;
        }
        match out.last_mut() {
            Some((r, h)) if *h == hole => r.end += n,
            _ => out.push((*at..*at + n, hole)),
        }
        *at += n;
    };
    for e in runs {
        let n = usize::try_from(e.length)
            .unwrap_or(usize::MAX)
            .min(len - at);
        push(n, e.hole, &mut at);
        if at == len {
            break;
        }
    }
    push(len - at, false, &mut at);
    out
}

/// `base:allocation` descriptors for a request of `length` bytes:
/// adjacent runs merged, the total clipped to the request, one only with
/// REQ_ONE.
pub fn descriptors(extents: &[Extent], length: u32, req_one: bool) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut left = u64::from(length);
    for e in extents {
        if left == 0 {
            break;
        }
        let n = e.length.min(left);
        if n == 0 {
            continue;
        }
        left -= n;
        let flags = if e.hole { STATE_HOLE | STATE_ZERO } else { 0 };
        match out.last_mut() {
            Some(last) if last.1 == flags => last.0 += n as u32,
            _ => out.push((n as u32, flags)),
        }
    }
    if req_one {
        out.truncate(1);
    }
    out
}

/// The answer to a block status request, or `None` when `extents` say
/// nothing about the range (the caller answers with an error).
pub fn block_status(
    cookie: u64,
    context: u32,
    extents: &[Extent],
    length: u32,
    req_one: bool,
) -> Option<Reply> {
    let d = descriptors(extents, length, req_one);
    if d.is_empty() {
        return None;
    }
    let mut v = Vec::with_capacity(24 + 8 * d.len());
    wire::encode_block_status_chunk(&mut v, cookie, context, &d);
    Some(Reply {
        lead: Lead::Heap(v),
        data: Vec::new(),
        plan: Plan::Nothing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::consts::{chunk, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC};

    fn bytes(r: &Reply) -> Vec<u8> {
        r.pieces().flatten().copied().collect()
    }

    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes(b[..4].try_into().unwrap())
    }

    fn chunk_type(b: &[u8]) -> u16 {
        u16::from_be_bytes([b[6], b[7]])
    }

    #[test]
    fn simple_replies_carry_data_after_the_header() {
        let r = read(7, false, false, 0, vec![1, 2, 3], &Known::Hole);
        let b = bytes(&r);
        assert_eq!(be32(&b), SIMPLE_REPLY_MAGIC);
        assert_eq!(b.len(), 16 + 3);
        assert_eq!(&b[16..], &[1, 2, 3]);
        assert_eq!(r.into_data(), vec![1, 2, 3]);
        assert_eq!(bytes(&ok(9)).len(), 16);
        assert_eq!(bytes(&error(9, false, 5, "ignored")).len(), 16);
    }

    #[test]
    fn structured_reads_turn_known_holes_into_hole_chunks() {
        let data = vec![7u8; 2048];
        let runs = Known::Runs(vec![
            Extent {
                length: 512,
                hole: true,
            },
            Extent {
                length: 1024,
                hole: false,
            },
            Extent {
                length: 4096,
                hole: true,
            },
        ]);
        let r = read(1, true, false, 512, data.clone(), &runs);
        let b = bytes(&r);
        // hole (32) + data header (28) + 1024 bytes + hole (32)
        assert_eq!(b.len(), 32 + 28 + 1024 + 32);
        assert_eq!(chunk_type(&b), chunk::OFFSET_HOLE);
        assert_eq!(chunk_type(&b[32..]), chunk::OFFSET_DATA);
        assert_eq!(chunk_type(&b[32 + 28 + 1024..]), chunk::OFFSET_HOLE);
        // Only the last chunk is marked done.
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 0);
        assert_eq!(u16::from_be_bytes([b[b.len() - 28], b[b.len() - 27]]), 1);
        // DF, or nothing known, or all data: one data chunk.
        for (df, known) in [
            (true, &runs),
            (false, &Known::Unknown),
            (false, &Known::Data),
        ] {
            let b = bytes(&read(1, true, df, 0, data.clone(), known));
            assert_eq!(be32(&b), STRUCTURED_REPLY_MAGIC);
            assert_eq!(chunk_type(&b), chunk::OFFSET_DATA);
            assert_eq!(b.len(), 28 + 2048);
        }
        let b = bytes(&read(1, true, false, 0, data, &Known::Hole));
        assert_eq!((chunk_type(&b), b.len()), (chunk::OFFSET_HOLE, 32));
    }

    #[test]
    fn spans_merge_and_fill_the_uncovered_tail_with_data() {
        let e = |length, hole| Extent { length, hole };
        assert_eq!(
            spans(&[e(10, true), e(10, true), e(5, false)], 40),
            vec![(0..20, true), (20..40, false)]
        );
        assert_eq!(spans(&[e(100, true)], 30), vec![(0..30, true)]);
    }

    #[test]
    fn descriptors_clip_merge_and_req_one() {
        let e = [
            Extent {
                length: 1000,
                hole: false,
            },
            Extent {
                length: 24,
                hole: false,
            },
            Extent {
                length: 4096,
                hole: true,
            },
        ];
        assert_eq!(descriptors(&e, 2048, false), vec![(1024, 0), (1024, 3)]);
        assert_eq!(descriptors(&e, 2048, true), vec![(1024, 0)]);
        assert_eq!(descriptors(&e, 512, false), vec![(512, 0)]);
        assert!(block_status(1, 1, &[], 512, false).is_none());
        let r = block_status(1, 1, &e, 2048, false).unwrap();
        assert_eq!(bytes(&r).len(), 20 + 4 + 16);
    }
}
