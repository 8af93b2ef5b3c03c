//! The measuring part of `vddk-bench`: keep a number of requests in
//! flight against a [`DiskDriver`] (with completions) or a
//! [`vddk::AsyncDisk`] (with tasks) and record each one's latency.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use vddk::{DiskDriver, SECTOR_SIZE};

/// What one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Reads at random aligned offsets.
    RandRead,
    /// Writes at random aligned offsets.
    RandWrite,
}

impl Mode {
    /// Parses `read`, `write`, `randread`, `randwrite`.
    ///
    /// # Errors
    /// A message listing the modes.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "read" => Ok(Mode::Read),
            "write" => Ok(Mode::Write),
            "randread" => Ok(Mode::RandRead),
            "randwrite" => Ok(Mode::RandWrite),
            _ => Err(format!(
                "unknown mode {s:?}: use read, write, randread or randwrite"
            )),
        }
    }

    /// The name [`Mode::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
            Mode::RandRead => "randread",
            Mode::RandWrite => "randwrite",
        }
    }

    /// Whether the run writes to the disk.
    pub fn writes(self) -> bool {
        matches!(self, Mode::Write | Mode::RandWrite)
    }

    fn random(self) -> bool {
        matches!(self, Mode::RandRead | Mode::RandWrite)
    }
}

/// One run's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// What to do.
    pub mode: Mode,
    /// Bytes per request (a multiple of 512, at most the disk's size).
    pub request: u64,
    /// Requests in flight.
    pub depth: usize,
    /// Stop after this many bytes ...
    pub total: u64,
    /// ... or this long, whichever comes first.
    pub duration: Duration,
    /// Seed of the random offsets.
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Requests completed.
    pub ops: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time, including the final flush of a write run.
    pub elapsed: Duration,
    /// Every request's latency, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    /// Throughput in MB/s (10^6 bytes per second).
    pub fn mb_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.bytes as f64 / s / 1e6
        } else {
            0.0
        }
    }

    /// The latency below which `p` percent of requests completed
    /// (nearest rank).
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// Nearest-rank percentile of sorted samples (zero when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// xorshift64*: random enough to scatter offsets, and repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced, as xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The offsets a run visits: in order, or at random, request-aligned.
struct Offsets {
    random: bool,
    request: u64,
    slots: u64,
    rng: Rng,
    seq: u64,
}

impl Offsets {
    /// Checks the request size against the disk's `capacity`.
    fn new(r: &Run, capacity: u64) -> Result<Offsets, String> {
        if r.request == 0 || r.request % SECTOR_SIZE != 0 || r.request > capacity {
            return Err(format!(
                "request size {} must be a multiple of 512 and at most the disk's size \
                 ({capacity})",
                r.request
            ));
        }
        Ok(Offsets {
            random: r.mode.random(),
            request: r.request,
            slots: capacity / r.request,
            rng: Rng::new(r.seed),
            seq: 0,
        })
    }

    fn next(&mut self) -> u64 {
        let slot = if self.random {
            self.rng.next_u64() % self.slots
        } else {
            let s = self.seq % self.slots;
            self.seq += 1;
            s
        };
        slot * self.request
    }
}

/// The bytes a write run writes (never all zero).
fn pattern(r: &Run) -> Vec<u8> {
    (0..r.request).map(|i| (i % 251) as u8 | 1).collect()
}

fn outcome(r: &Run, started: Instant, mut latencies: Vec<Duration>) -> Outcome {
    let elapsed = started.elapsed();
    latencies.sort();
    Outcome {
        ops: latencies.len() as u64,
        bytes: latencies.len() as u64 * r.request,
        elapsed,
        latencies,
    }
}

/// Runs one benchmark on the driver's disk, with completions.
///
/// # Errors
/// The first failed request (the run stops there).
pub fn run(driver: &DiskDriver, r: &Run) -> Result<Outcome, String> {
    let mut offsets = Offsets::new(r, driver.capacity())?;
    let pattern = pattern(r);
    let (tx, rx) = mpsc::channel::<Result<Duration, String>>();
    let started = Instant::now();
    let mut submitted = 0u64;
    let mut in_flight = 0usize;
    let mut latencies = Vec::new();
    let mut failure = None;
    loop {
        while failure.is_none()
            && in_flight < r.depth.max(1)
            && submitted < r.total
            && started.elapsed() < r.duration
        {
            let offset = offsets.next();
            let tx = tx.clone();
            let t0 = Instant::now();
            let done: vddk::driver::Done<Vec<u8>> = Box::new(move |res| {
                let _ = tx.send(res.map(|_| t0.elapsed()).map_err(|e| e.to_string()));
            });
            if r.mode.writes() {
                driver.write(offset, pattern.clone(), done);
            } else {
                driver.read(offset, r.request as usize, Vec::new(), done);
            }
            submitted += r.request;
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        match rx.recv() {
            Ok(Ok(lat)) => latencies.push(lat),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => break,
        }
        in_flight -= 1;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if r.mode.writes() {
        crate::copy::flush(driver).map_err(|e| format!("flush after writing: {e}"))?;
    }
    Ok(outcome(r, started, latencies))
}

/// Runs one benchmark through [`vddk::AsyncDisk`]: `depth` tasks on a
/// single-threaded tokio runtime, each awaiting one request after
/// another and reusing its buffer.
///
/// # Errors
/// The first failed request (the run stops there).
pub fn run_async(disk: &vddk::AsyncDisk, r: &Run) -> Result<Outcome, String> {
    let offsets = std::sync::Mutex::new(Offsets::new(r, disk.capacity())?);
    let budget = std::sync::atomic::AtomicU64::new(r.total);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let started = Instant::now();
    // Claims the next request's offset while bytes and time are left.
    let claim = || -> Option<u64> {
        let left = budget.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |b| b.checked_sub(r.request).or((b > 0).then_some(0)),
        );
        if left.is_err() || started.elapsed() >= r.duration {
            return None;
        }
        // Sound when poisoned: the generator has no invariant to break.
        Some(offsets.lock().unwrap_or_else(|e| e.into_inner()).next())
    };
    let worker = || async {
        let mut latencies = Vec::new();
        let mut buf = if r.mode.writes() {
            pattern(r)
        } else {
            Vec::new()
        };
        while let Some(offset) = claim() {
            let t0 = Instant::now();
            buf = if r.mode.writes() {
                disk.write_at(offset, buf).await
            } else {
                disk.read_at(offset, r.request as usize, buf).await
            }
            .map_err(|e| e.to_string())?;
            latencies.push(t0.elapsed());
        }
        Ok::<_, String>(latencies)
    };
    let all = rt.block_on(async {
        let mut workers = Vec::new();
        for _ in 0..r.depth.max(1) {
            workers.push(worker());
        }
        let mut all = Vec::new();
        for w in join_all(workers).await {
            all.extend(w?);
        }
        if r.mode.writes() {
            disk.flush()
                .await
                .map_err(|e| format!("flush after writing: {e}"))?;
        }
        Ok::<_, String>(all)
    })?;
    Ok(outcome(r, started, all))
}

/// Polls every future until all are done (their requests run together).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&ms, 90.0), Duration::from_millis(90));
        assert_eq!(percentile(&ms, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&ms[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn modes_and_rng() {
        for m in ["read", "write", "randread", "randwrite"] {
            assert_eq!(Mode::parse(m).unwrap().name(), m);
        }
        assert!(Mode::parse("seq").unwrap_err().contains("randwrite"));
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] != w[1]));
    }
}
