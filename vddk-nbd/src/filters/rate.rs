//! `rate`: limits bandwidth, for the whole server (`rate=`) and per
//! connection (`connection-rate=`), in bits per second (`10M` is 10 × 2²⁰
//! bits per second, as nbdkit reads it). Reads and writes have separate
//! token buckets holding `burstiness` seconds' worth; a request waits, in
//! the thread that submits it, until its bytes are covered. `rate-file=` and
//! `connection-rate-file=` name files holding the limit, read again at
//! most once a second, so the limit can change while the server runs; a
//! file that is missing leaves the last limit (or the one given) in force.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Filter, FilterInfo, FilterSpec, Layer, Next, ParamHelp};
use crate::backend::{Backend, Done, Error};
use crate::params::{parse_size, ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "rate",
    description: "limit bandwidth by connection or server",
    params: &[
        ParamHelp {
            key: "rate",
            usage: "rate=BITSPERSEC",
            help: "Limit total bandwidth.",
        },
        ParamHelp {
            key: "connection-rate",
            usage: "connection-rate=BITSPERSEC",
            help: "Limit per-connection bandwidth.",
        },
        ParamHelp {
            key: "rate-file",
            usage: "rate-file=FILENAME",
            help: "Dynamically adjust total bandwidth.",
        },
        ParamHelp {
            key: "connection-rate-file",
            usage: "connection-rate-file=FILENAME",
            help: "Dynamically adjust per-connection bandwidth.",
        },
        ParamHelp {
            key: "burstiness",
            usage: "burstiness=SECS",
            help: "Seconds of bandwidth a bucket holds (default 2.0).",
        },
    ],
    configure,
};

/// How often a rate file is read again.
const REREAD: Duration = Duration::from_secs(1);

fn bits(key: &str, v: &str) -> Result<u64, ParamError> {
    match parse_size(v) {
        Ok(0) => Err(ParamError(format!("{key}={v}: the rate cannot be 0"))),
        Ok(n) => Ok(n),
        Err(e) => Err(ParamError(format!("{key}={v}: {e}"))),
    }
}

fn configure(p: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    let rate = p.get("rate").map(|v| bits("rate", v)).transpose()?;
    let connection_rate = p
        .get("connection-rate")
        .map(|v| bits("connection-rate", v))
        .transpose()?;
    let burstiness = match p.get("burstiness") {
        None => 2.0,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|b| *b > 0.0 && b.is_finite())
            .ok_or_else(|| ParamError(format!("burstiness={v}: expected seconds (> 0)")))?,
    };
    let limit = |given: Option<u64>, file: Option<&str>| Limit {
        given,
        file: file.map(PathBuf::from),
    };
    Ok(Arc::new(Rate {
        total: Arc::new(Buckets::new(limit(rate, p.get("rate-file")), burstiness)),
        per_connection: limit(connection_rate, p.get("connection-rate-file")),
        burstiness,
    }))
}

/// Where a limit comes from.
#[derive(Clone, Debug)]
struct Limit {
    given: Option<u64>,
    file: Option<PathBuf>,
}

impl Limit {
    fn is_set(&self) -> bool {
        self.given.is_some() || self.file.is_some()
    }
}

/// A token bucket over bits.
struct Bucket {
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Takes `bits`; returns how long the caller must wait for them.
    fn take(&mut self, bits: f64, burstiness: f64) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let rate = rate as f64;
        let now = Instant::now();
        let capacity = rate * burstiness;
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.last = now;
        self.tokens -= bits;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// A read and a write bucket under one limit.
struct Buckets {
    limit: Limit,
    burstiness: f64,
    state: Mutex<(Bucket, Bucket, Option<Instant>)>,
}

impl Buckets {
    fn new(limit: Limit, burstiness: f64) -> Buckets {
        let bucket = || Bucket {
            rate: limit.given,
            tokens: 0.0,
            last: Instant::now(),
        };
        Buckets {
            state: Mutex::new((bucket(), bucket(), None)),
            limit,
            burstiness,
        }
    }

    /// Waits until `bytes` may go, in the read or the write bucket.
    fn wait(&self, bytes: u64, write: bool) {
        if !self.limit.is_set() {
            return;
        }
        let delay = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(rate) = self.reread(&mut s.2) {
                s.0.rate = Some(rate);
                s.1.rate = Some(rate);
            }
            let b = if write { &mut s.1 } else { &mut s.0 };
            b.take(bytes as f64 * 8.0, self.burstiness)
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    /// The rate file's value, when it is due to be read and holds one.
    fn reread(&self, last: &mut Option<Instant>) -> Option<u64> {
        let file = self.limit.file.as_ref()?;
        if last.is_some_and(|t| t.elapsed() < REREAD) {
            return None;
        }
        *last = Some(Instant::now());
        let text = std::fs::read_to_string(file).ok()?;
        match bits("rate file", text.trim()) {
            Ok(rate) => Some(rate),
            Err(e) => {
                log::warn!("could not read rate file {}: {e}", file.display());
                None
            }
        }
    }
}

struct Rate {
    total: Arc<Buckets>,
    per_connection: Limit,
    burstiness: f64,
}

impl FilterSpec for Rate {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn open(&self, next: Arc<dyn Backend>, _export: &str) -> Result<Arc<dyn Backend>, Error> {
        let layer = Limited {
            total: Arc::clone(&self.total),
            connection: Buckets::new(self.per_connection.clone(), self.burstiness),
        };
        Ok(Arc::new(Layer::new(layer, next)))
    }
}

struct Limited {
    total: Arc<Buckets>,
    connection: Buckets,
}

impl Limited {
    fn wait(&self, bytes: u64, write: bool) {
        self.connection.wait(bytes, write);
        self.total.wait(bytes, write);
    }
}

impl Filter for Limited {
    fn read(&self, next: &Next, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        self.wait(u64::from(len), false);
        next.read(offset, len, buf, done)
    }
    fn write(&self, next: &Next, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        self.wait(data.len() as u64, true);
        next.write(offset, data, fua, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::params;

    #[test]
    fn a_bucket_lets_a_burst_through_then_paces() {
        let mut b = Bucket {
            rate: Some(8_000),
            tokens: 16_000.0,
            last: Instant::now(),
        };
        // 2000 bytes = 16000 bits: the full burst, no wait.
        assert!(b.take(16_000.0, 2.0) < Duration::from_millis(50));
        // The next 1000 bytes wait about a second.
        let w = b.take(8_000.0, 2.0);
        assert!(
            w > Duration::from_millis(900) && w < Duration::from_millis(1100),
            "{w:?}"
        );
        let mut free = Bucket {
            rate: None,
            tokens: 0.0,
            last: Instant::now(),
        };
        assert_eq!(free.take(1e12, 2.0), Duration::ZERO);
    }

    #[test]
    fn parameters_are_bits_per_second_and_never_zero() {
        assert_eq!(bits("rate", "10M"), Ok(10 << 20));
        assert!(bits("rate", "0").is_err());
        let p = |pairs: &[(&str, &str)]| configure(&params(pairs));
        assert!(p(&[("burstiness", "-1")]).is_err());
        assert!(p(&[("rate", "1M"), ("connection-rate", "512K")]).is_ok());
    }

    #[test]
    fn the_rate_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("rate-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rate");
        std::fs::write(&file, "1M\n").unwrap();
        let b = Buckets::new(
            Limit {
                given: None,
                file: Some(file.clone()),
            },
            2.0,
        );
        let mut last = None;
        assert_eq!(b.reread(&mut last), Some(1 << 20));
        std::fs::write(&file, "2M").unwrap();
        assert_eq!(b.reread(&mut last), None, "not again within a second");
        last = last.map(|t| t - REREAD);
        assert_eq!(b.reread(&mut last), Some(2 << 20));
        std::fs::remove_file(&file).unwrap();
        last = last.map(|t| t - REREAD);
        assert_eq!(
            b.reread(&mut last),
            None,
            "a missing file keeps the last rate"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
