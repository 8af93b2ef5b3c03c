//! Plans an allocated-blocks query as `Disk::allocated_blocks` does, answers
//! each planned QueryAllocatedBlocks call from a simulated disk, and merges
//! the answers back into byte extents.
//!
//! Input (read through `Unstructured`, edge values favoured): the disk's
//! capacity, the chunk and the range, all in bytes and turned into sectors
//! as `allocated_blocks` does after its checks (whole sectors, inside the
//! disk); up to 16 allocated runs of the simulated disk; whether answers
//! keep VDDK's promises; and, per call, how the answer is arranged (split,
//! reversed, repeated) plus, for answers that break the promises, extra
//! runs anywhere (unaligned, outside the call, past the disk, overflowing).
//!
//! Checked: no panic or overflow; every call is what VDDK accepts (whole
//! chunks of the planned size, which is a multiple of the minimum and at
//! least the one asked for, at most `MAX_CHUNKS_PER_CALL` of them, inside
//! the disk), calls ascend without overlap, each touches the range, and
//! calls plus tail cover the range; the tail lies in the partial chunk at
//! the end of the disk. The extents are whole sectors, non-empty, sorted,
//! apart (touching runs are merged), inside the range and the disk, and
//! exactly the sectors of the range that some answer or the tail claims.
//! With answers that keep the promises, every allocated sector of the
//! range is reported, and nothing beyond the chunks holding data and the
//! tail.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vddk::fuzzing::blocks::{finish, plan, Extent, MAX_CHUNKS_PER_CALL, MIN_CHUNK_SECTORS};

const SECTOR: u64 = 512;
/// Keeps one input fast: a range needing more calls is shortened.
const MAX_CALLS: u128 = 1024;
const MAX_TRUTH: usize = 16;

/// Half-open sector intervals in u128, so no sum overflows.
type Iv = (u128, u128);

/// A u64 that is often an edge value.
fn edge(u: &mut Unstructured) -> Result<u64> {
    const EDGES: &[u64] = &[
        0,
        1,
        127,
        128,
        129,
        255,
        256,
        511,
        512,
        513,
        65536,
        65536 * 128,
        MAX_CHUNKS_PER_CALL * 128,
        MAX_CHUNKS_PER_CALL * 128 * 512,
        1 << 45,
        (1 << 45) + 128,
        1 << 46,
        1 << 54,
        1 << 55,
        u64::MAX / 512,
        u64::MAX / 512 / 128 * 128,
        u64::MAX - 511,
        u64::MAX - 1,
        u64::MAX,
    ];
    Ok(match u.int_in_range(0..=3u8)? {
        0 => *u.choose(EDGES)?,
        1 => u64::from(u.arbitrary::<u16>()?),
        2 => {
            let p = 1u64 << u.int_in_range(0..=63u32)?;
            let d = u64::from(u.arbitrary::<u8>()?);
            if u.arbitrary()? {
                p.wrapping_add(d)
            } else {
                p.wrapping_sub(d)
            }
        }
        _ => u.arbitrary()?,
    })
}

/// A value in `0..=max`, often 0, `max` or near them.
fn upto(u: &mut Unstructured, max: u64) -> Result<u64> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => 0,
        1 => max,
        2 => max.saturating_sub(u64::from(u.arbitrary::<u16>()?)),
        3 => u64::from(u.arbitrary::<u16>()?).min(max),
        _ => match max.checked_add(1) {
            Some(m) => edge(u)? % m,
            None => edge(u)?,
        },
    })
}

/// Sorts and merges intervals; touching ones become one, empty ones go.
fn merge(mut v: Vec<Iv>) -> Vec<Iv> {
    v.retain(|&(s, e)| s < e);
    v.sort_unstable();
    let mut out: Vec<Iv> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn clip(v: &[Iv], lo: u128, hi: u128) -> Vec<Iv> {
    v.iter().map(|&(s, e)| (s.max(lo), e.min(hi))).collect()
}

/// Whether `[s, e)` lies inside the union of `within` (merged).
fn covered(within: &[Iv], (s, e): Iv) -> bool {
    s >= e || within.iter().any(|&(a, b)| a <= s && e <= b)
}

/// What a VDDK keeping its promises answers for one call: the chunks of
/// `[at, at + n)` that hold allocated sectors, as runs of whole chunks.
fn answer(truth: &[Iv], at: u64, n: u64, chunk: u64) -> Vec<(u64, u64)> {
    let (lo, hi, c) = (
        u128::from(at),
        u128::from(at) + u128::from(n),
        u128::from(chunk),
    );
    let mut runs = Vec::new();
    for &(s, e) in truth {
        let s = (s / c * c).max(lo);
        let e = e.div_ceil(c).saturating_mul(c).min(hi);
        if s < e {
            // Inside the call, which is inside the disk: fits in u64.
            runs.push((s as u64, (e - s) as u64));
        }
    }
    runs
}

/// Splits, reorders and repeats an answer without changing what it says.
fn arrange(u: &mut Unstructured, mut runs: Vec<(u64, u64)>, chunk: u64) -> Result<Vec<(u64, u64)>> {
    let how = u.arbitrary::<u8>()?;
    if how & 1 != 0 {
        // Split each run of several chunks at a chunk boundary.
        let mut split = Vec::with_capacity(runs.len() * 2);
        for (s, l) in runs {
            let chunks = l / chunk;
            if chunks > 1 {
                let k = u.int_in_range(1..=chunks - 1)? * chunk;
                split.push((s, k));
                split.push((s + k, l - k));
            } else {
                split.push((s, l));
            }
        }
        runs = split;
    }
    if how & 2 != 0 {
        runs.reverse();
    }
    if how & 4 != 0 {
        if let Some(&r) = runs.first() {
            runs.push(r);
        }
    }
    if how & 8 != 0 && !runs.is_empty() {
        let k = u.choose_index(runs.len())?;
        runs.rotate_left(k);
    }
    Ok(runs)
}

/// Runs that break VDDK's promises: anywhere near the call, any length.
fn hostile(u: &mut Unstructured, at: u64, n: u64) -> Result<Vec<(u64, u64)>> {
    let mut runs = Vec::new();
    for _ in 0..u.int_in_range(0..=4u8)? {
        let anchor = *u.choose(&[0, at, at.saturating_add(n), u64::MAX])?;
        let d = edge(u)?;
        let s = if u.arbitrary()? {
            anchor.wrapping_add(d)
        } else {
            anchor.wrapping_sub(d)
        };
        runs.push((s, edge(u)?));
    }
    Ok(runs)
}

fn run(u: &mut Unstructured) -> Result<()> {
    // As allocated_blocks: capacity and chunk in sectors from bytes; the
    // range is whole sectors inside the disk (checked before planning).
    let capacity = edge(u)? / SECTOR;
    let chunk_asked = edge(u)? / SECTOR;
    let start = upto(u, capacity)?;
    let mut count = upto(u, capacity - start)?;

    // A range needing more calls than MAX_CALLS is shortened, keeping
    // every other value (the chunk is rounded as plan rounds it).
    let c = u128::from(
        chunk_asked
            .max(MIN_CHUNK_SECTORS)
            .div_ceil(MIN_CHUNK_SECTORS),
    ) * u128::from(MIN_CHUNK_SECTORS);
    let per_call = u128::from(MAX_CHUNKS_PER_CALL) * c;
    if u128::from(count) / per_call + 2 > MAX_CALLS {
        count = ((MAX_CALLS - 2) * per_call).min(u128::from(count)) as u64;
    }
    let end = start + count;

    // The simulated disk's allocated sectors.
    let mut truth = Vec::new();
    for _ in 0..u.int_in_range(0..=MAX_TRUTH)? {
        let anchor = *u.choose(&[0, start, end, capacity])?;
        let d = edge(u)? % (capacity + 1);
        let s = if u.arbitrary()? {
            anchor.saturating_add(d)
        } else {
            anchor.saturating_sub(d)
        }
        .min(capacity);
        let len = edge(u)?.min(capacity - s);
        truth.push((u128::from(s), u128::from(s) + u128::from(len)));
    }
    let truth = merge(truth);
    let keeps_promises = u.arbitrary::<bool>()?;

    let p = plan(start, count, chunk_asked, capacity);
    let ch = p.chunk;

    // --- the plan is what VDDK accepts and covers the range ---
    assert!(
        ch >= MIN_CHUNK_SECTORS && ch % MIN_CHUNK_SECTORS == 0,
        "chunk {ch}"
    );
    assert!(
        ch >= chunk_asked,
        "chunk {ch} below the {chunk_asked} asked"
    );
    assert!(
        ch < chunk_asked.max(MIN_CHUNK_SECTORS) + MIN_CHUNK_SECTORS,
        "chunk {ch} for {chunk_asked} asked is rounded up by more than needed"
    );
    let whole_end = capacity / ch * ch;
    let mut prev_end: Option<u64> = None;
    for &(at, n) in &p.calls {
        assert!(n > 0, "empty call at {at}");
        assert_eq!(at % ch, 0, "call at {at} not on a chunk of {ch}");
        assert_eq!(n % ch, 0, "call of {n} not whole chunks of {ch}");
        assert!(n / ch <= MAX_CHUNKS_PER_CALL, "call of {} chunks", n / ch);
        let call_end = at.checked_add(n).expect("call end overflows");
        assert!(
            call_end <= capacity,
            "call {at}+{n} past the disk ({capacity})"
        );
        assert!(
            at < end && call_end > start,
            "call {at}+{n} misses {start}+{count}"
        );
        if let Some(pe) = prev_end {
            assert_eq!(at, pe, "calls not contiguous and ascending");
        }
        prev_end = Some(call_end);
    }
    if count == 0 {
        assert!(
            p.calls.is_empty() && p.tail.is_none(),
            "empty range planned {p:?}"
        );
    }
    let mut cover: Vec<Iv> = p
        .calls
        .iter()
        .map(|&(a, n)| (u128::from(a), u128::from(a) + u128::from(n)))
        .collect();
    if let Some((ts, tl)) = p.tail {
        assert!(tl > 0, "empty tail");
        let tail_end = u128::from(ts) + u128::from(tl);
        assert!(
            ts >= start && tail_end <= u128::from(end),
            "tail {ts}+{tl} outside {start}+{count}"
        );
        assert!(
            ts >= whole_end,
            "tail {ts} inside the whole chunks (to {whole_end})"
        );
        cover.push((u128::from(ts), tail_end));
    }
    assert!(
        covered(&merge(cover), (u128::from(start), u128::from(end))),
        "calls and tail do not cover {start}+{count}: {p:?}"
    );

    // --- simulated answers, then finish ---
    let mut found = Vec::new();
    for &(at, n) in &p.calls {
        let runs = arrange(u, answer(&truth, at, n, ch), ch)?;
        found.extend(runs);
        if !keeps_promises {
            found.extend(hostile(u, at, n)?);
        }
    }
    let claimed: Vec<Iv> = found
        .iter()
        .chain(&p.tail)
        .map(|&(s, l)| (u128::from(s), u128::from(s) + u128::from(l)))
        .collect();
    let out = finish(found, p.tail, start, count);

    // --- the extents ---
    let (lo, hi) = (u128::from(start), u128::from(end));
    let mut got: Vec<Iv> = Vec::with_capacity(out.len());
    for e in &out {
        let Extent { offset, length } = *e;
        assert!(length > 0, "empty extent at {offset}");
        assert!(
            offset % SECTOR == 0 && length % SECTOR == 0,
            "{e:?} not whole sectors"
        );
        let s = u128::from(offset / SECTOR);
        let t = s + u128::from(length / SECTOR);
        assert!(s >= lo && t <= hi, "{e:?} outside {start}+{count} sectors");
        assert!(t <= u128::from(capacity), "{e:?} past the disk");
        if let Some(&(_, pe)) = got.last() {
            assert!(s > pe, "extents unsorted, overlapping or touching: {out:?}");
        }
        got.push((s, t));
    }
    let want = merge(clip(&claimed, lo, hi));
    assert_eq!(got, want, "extents differ from what the answers claim");

    if keeps_promises {
        for &iv in &clip(&truth, lo, hi) {
            assert!(covered(&got, iv), "allocated {iv:?} not reported: {out:?}");
        }
        let c = u128::from(ch);
        let mut allowed: Vec<Iv> = truth
            .iter()
            .map(|&(s, e)| (s / c * c, e.div_ceil(c) * c))
            .collect();
        allowed.extend(
            p.tail
                .map(|(s, l)| (u128::from(s), u128::from(s) + u128::from(l))),
        );
        let allowed = merge(allowed);
        for &iv in &got {
            assert!(
                covered(&allowed, iv),
                "{iv:?} reported without data: {truth:?}"
            );
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // Running out of input ends the case early; that is not a finding.
    let _ = run(&mut Unstructured::new(data));
});
