//! Behaviour knobs, read from the environment at InitEx (see README.md).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::ffi::{VixError, VIX_E_FAIL};
use crate::{errors, link};

/// Operations fault injection can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
    Open,
    Query,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "read" => Op::Read,
            "write" => Op::Write,
            "flush" => Op::Flush,
            "open" => Op::Open,
            "query" => Op::Query,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone)]
struct FailNth {
    op: Op,
    nth: u64,
    code: VixError,
}

#[derive(Debug, Clone)]
struct FailProb {
    op: Op,
    probability: f64,
    seed: u64,
    code: VixError,
}

/// Counters and generator state for fault injection.
#[derive(Debug, Default)]
struct FaultState {
    calls: [u64; 5],
    rng: Vec<u64>,
}

/// Every knob, parsed once.
#[derive(Debug, Default)]
pub struct Knobs {
    /// FAKE_VDDK_LATENCY_US: added to every synchronous call on a connection or disk.
    pub latency: Duration,
    /// FAKE_VDDK_ASYNC_LATENCY_US: time from an async submission to its completion.
    pub async_latency: Duration,
    /// FAKE_VDDK_MAX_IN_FLIGHT: async requests allowed in flight per handle.
    pub max_in_flight: Option<usize>,
    /// FAKE_VDDK_QUERY_COST_MS: time one QueryAllocatedBlocks call takes.
    pub query_cost: Duration,
    /// FAKE_VDDK_MAX_REQUEST: largest Read/Write in bytes.
    pub max_request: Option<u64>,
    /// FAKE_VDDK_STATS: where Exit writes the call statistics.
    pub stats_path: Option<PathBuf>,
    /// FAKE_VDDK_STRICT=1: rule breaches abort.
    pub strict: bool,
    /// FAKE_VDDK_SAME_THREAD=1: Close on another thread than Open is a breach.
    pub same_thread: bool,
    /// FAKE_VDDK_BANDWIDTH and the other link settings, which replace the
    /// inventory's for every server.
    pub link: link::Overrides,
    fail_nth: Vec<FailNth>,
    fail_prob: Vec<FailProb>,
    faults: Mutex<FaultState>,
}

impl Knobs {
    /// Parses the knobs from `get` (the environment in production).
    ///
    /// # Errors
    /// A message naming the variable and what a valid value looks like.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Knobs, String> {
        let num = |name: &str| -> Result<Option<u64>, String> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                    format!("{name}={v:?} is not a whole number; set it to e.g. 1000 or unset it")
                }),
            }
        };
        let flag = |name: &str| {
            matches!(
                get(name).as_deref().map(str::trim),
                Some("1" | "yes" | "true")
            )
        };
        let mut knobs = Knobs {
            latency: Duration::from_micros(num("FAKE_VDDK_LATENCY_US")?.unwrap_or(0)),
            async_latency: Duration::from_micros(num("FAKE_VDDK_ASYNC_LATENCY_US")?.unwrap_or(0)),
            max_in_flight: num("FAKE_VDDK_MAX_IN_FLIGHT")?.map(|n| n as usize),
            query_cost: Duration::from_millis(num("FAKE_VDDK_QUERY_COST_MS")?.unwrap_or(0)),
            max_request: num("FAKE_VDDK_MAX_REQUEST")?,
            stats_path: get("FAKE_VDDK_STATS")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            strict: flag("FAKE_VDDK_STRICT"),
            same_thread: flag("FAKE_VDDK_SAME_THREAD"),
            link: link::Overrides::parse(&get)?,
            ..Knobs::default()
        };
        if let Some(spec) = get("FAKE_VDDK_FAIL") {
            knobs.fail_nth = parse_fail(&spec)?;
        }
        if let Some(spec) = get("FAKE_VDDK_FAIL_PROB") {
            knobs.fail_prob = parse_fail_prob(&spec)?;
        }
        let seeds = knobs.fail_prob.iter().map(|f| f.seed).collect();
        knobs.faults = Mutex::new(FaultState {
            calls: [0; 5],
            rng: seeds,
        });
        Ok(knobs)
    }

    /// The knobs that differ from the defaults, for the InitEx log line.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.latency.is_zero() {
            parts.push(format!("latency={:?}", self.latency));
        }
        if !self.async_latency.is_zero() {
            parts.push(format!("async latency={:?}", self.async_latency));
        }
        if let Some(n) = self.max_in_flight {
            parts.push(format!("max in flight={n}"));
        }
        if !self.query_cost.is_zero() {
            parts.push(format!("query cost={:?}", self.query_cost));
        }
        if let Some(n) = self.max_request {
            parts.push(format!("max request={n} bytes"));
        }
        for f in &self.fail_nth {
            parts.push(format!(
                "fail {:?} call #{} with {}",
                f.op,
                f.nth,
                errors::name(f.code)
            ));
        }
        for f in &self.fail_prob {
            parts.push(format!(
                "fail {:?} with p={} (seed {}) with {}",
                f.op,
                f.probability,
                f.seed,
                errors::name(f.code)
            ));
        }
        if let Some(p) = &self.stats_path {
            parts.push(format!("stats to {}", p.display()));
        }
        if self.strict {
            parts.push("strict".into());
        }
        if self.same_thread {
            parts.push("same-thread Open/Close".into());
        }
        parts.extend(self.link.summary());
        if parts.is_empty() {
            "no knobs set".into()
        } else {
            parts.join(", ")
        }
    }

    /// Counts one call of `op` and says whether fault injection fails it.
    pub fn inject(&self, op: Op) -> Option<VixError> {
        if self.fail_nth.is_empty() && self.fail_prob.is_empty() {
            return None;
        }
        let mut state = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        state.calls[op.index()] += 1;
        let n = state.calls[op.index()];
        let mut result = self
            .fail_nth
            .iter()
            .find(|f| f.op == op && f.nth == n)
            .map(|f| f.code);
        for (i, f) in self.fail_prob.iter().enumerate() {
            if f.op != op {
                continue;
            }
            let draw = next_random(&mut state.rng[i]);
            if result.is_none() && draw < f.probability {
                result = Some(f.code);
            }
        }
        result
    }
}

/// splitmix64 scaled to [0, 1): deterministic per seed, good enough to
/// spread failures.
fn next_random(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn parse_code(s: Option<&str>, var: &str) -> Result<VixError, String> {
    match s {
        None => Ok(VIX_E_FAIL),
        Some(c) => errors::parse(c).ok_or_else(|| {
            format!("{var}: unknown error code {c:?}; give a number or a name such as DISK_FULL")
        }),
    }
}

fn parse_op(s: &str, var: &str) -> Result<Op, String> {
    Op::parse(s.trim()).ok_or_else(|| {
        format!("{var}: unknown operation {s:?}; use read, write, flush, open or query")
    })
}

fn parse_fail(spec: &str) -> Result<Vec<FailNth>, String> {
    const VAR: &str = "FAKE_VDDK_FAIL";
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = item.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!(
                "{VAR}: {item:?} is not op:N[:code], e.g. read:3 or write:1:DISK_FULL"
            ));
        }
        let op = parse_op(parts[0], VAR)?;
        let nth = parts[1]
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{VAR}: {item:?}: N must be a call number starting at 1"))?;
        let code = parse_code(parts.get(2).copied(), VAR)?;
        out.push(FailNth { op, nth, code });
    }
    Ok(out)
}

fn parse_fail_prob(spec: &str) -> Result<Vec<FailProb>, String> {
    const VAR: &str = "FAKE_VDDK_FAIL_PROB";
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = item.split(':').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(format!(
                "{VAR}: {item:?} is not op:p:seed[:code], e.g. read:0.1:42"
            ));
        }
        let op = parse_op(parts[0], VAR)?;
        let probability = parts[1]
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| format!("{VAR}: {item:?}: p must be a probability between 0 and 1"))?;
        let seed = parts[2]
            .parse::<u64>()
            .map_err(|_| format!("{VAR}: {item:?}: seed must be a whole number"))?;
        let code = parse_code(parts.get(3).copied(), VAR)?;
        out.push(FailProb {
            op,
            probability,
            seed,
            code,
        });
    }
    Ok(out)
}

static CURRENT: RwLock<Option<Arc<Knobs>>> = RwLock::new(None);

/// Installs the knobs parsed at InitEx.
pub fn install(knobs: Option<Knobs>) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = knobs.map(Arc::new);
}

/// The knobs in force (defaults before InitEx).
pub fn get() -> Arc<Knobs> {
    if let Some(k) = CURRENT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return k.clone();
    }
    Arc::new(Knobs::default())
}

/// Whether rule breaches abort: the knob in force, or before InitEx the
/// environment itself (so a call before InitEx is caught in strict mode).
pub fn strict() -> bool {
    if let Some(k) = CURRENT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return k.strict;
    }
    matches!(
        std::env::var("FAKE_VDDK_STRICT").as_deref().map(str::trim),
        Ok("1" | "yes" | "true")
    )
}

/// Sleeps for the per-call latency, if any.
pub fn call_latency() {
    let latency = get().latency;
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Knobs, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Knobs::parse(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_off() {
        let k = parse(&[]).unwrap();
        assert!(k.latency.is_zero() && k.max_in_flight.is_none() && !k.strict);
        assert_eq!(k.inject(Op::Read), None);
    }

    #[test]
    fn nth_failures_count_per_operation() {
        let k = parse(&[("FAKE_VDDK_FAIL", "read:2, write:1:DISK_FULL,read:4:36")]).unwrap();
        assert_eq!(k.inject(Op::Read), None);
        assert_eq!(k.inject(Op::Write), Some(VIX_E_DISK_FULL));
        assert_eq!(k.inject(Op::Read), Some(VIX_E_FAIL));
        assert_eq!(k.inject(Op::Read), None);
        assert_eq!(k.inject(Op::Read), Some(VIX_E_HOST_CONNECTION_LOST));
        assert_eq!(k.inject(Op::Write), None);
    }

    #[test]
    fn probability_is_deterministic_and_roughly_right() {
        let run = || {
            let k = parse(&[("FAKE_VDDK_FAIL_PROB", "read:0.25:7:FILE_ERROR")]).unwrap();
            (0..4000).map(|_| k.inject(Op::Read)).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let failed = a.iter().filter(|r| **r == Some(VIX_E_FILE_ERROR)).count();
        assert!(
            (800..1200).contains(&failed),
            "{failed} failures of 4000 at p=0.25"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert!(parse(&[("FAKE_VDDK_LATENCY_US", "fast")])
            .unwrap_err()
            .contains("FAKE_VDDK_LATENCY_US"));
        assert!(parse(&[("FAKE_VDDK_FAIL", "seek:1")])
            .unwrap_err()
            .contains("seek"));
        assert!(parse(&[("FAKE_VDDK_FAIL", "read:0")]).is_err());
        assert!(parse(&[("FAKE_VDDK_FAIL_PROB", "read:1.5:1")]).is_err());
        assert!(parse(&[("FAKE_VDDK_FAIL", "read:1:NOPE")]).is_err());
    }
}
