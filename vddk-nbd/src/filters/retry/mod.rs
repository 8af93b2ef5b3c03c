//! `retry`: when a request fails, waits, asks the layers below to reopen
//! (for VDDK: close the handle, disconnect, connect and open again), and
//! tries the request again, up to `retries` times (default 5), waiting
//! `retry-delay` seconds (default 2) before the first retry and twice as
//! long before each next one with `retry-exponential` (the default). A
//! reopen that fails counts as a try. With `retry-readonly`, after the
//! first failure writes are refused as if the export were read-only.
//!
//! Over the vddk plugin, a lost connection is handled below this layer:
//! the disk driver reconnects with this filter's tries and waits and
//! issues the requests in flight again ([`vddk::Reconnect`]).
//!
//! Requests that cannot succeed by trying again (outside the disk,
//! read-only, unsupported) fail at once. Retries run on one thread per
//! server, one at a time, as nbdkit serialises requests under this filter;
//! a reopen happens once for every request that failed before it. A write
//! keeps a copy of its data for as long as it may be retried, so what the
//! client is told was written is what the reopened disk holds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Filter, FilterInfo, FilterSpec, Layer, Next, ParamHelp};
use crate::backend::{Backend, Done, Error, Extent, ZeroFlags};
use crate::params::{ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "retry",
    description: "reopen connection on error",
    params: &[
        ParamHelp {
            key: "retries",
            usage: "retries=<N>",
            help: "Number of retries (default: 5).",
        },
        ParamHelp {
            key: "retry-delay",
            usage: "retry-delay=<N>",
            help: "Seconds to wait before retry (default: 2).",
        },
        ParamHelp {
            key: "retry-exponential",
            usage: "retry-exponential=yes|no",
            help: "Exponential back-off (default: yes).",
        },
        ParamHelp {
            key: "retry-readonly",
            usage: "retry-readonly=yes|no",
            help: "Force read-only on failure (default: no).",
        },
    ],
    configure,
};

/// `retry-delay=`: seconds, or nbdkit's `500ms`, `2s` forms.
fn parse_delay(v: &str) -> Result<Duration, ParamError> {
    let bad = || {
        ParamError(format!(
            "retry-delay={v}: expected seconds, e.g. 2, 0.5 or 500ms"
        ))
    };
    let d = if let Some(ms) = v.strip_suffix("ms") {
        Duration::from_millis(ms.trim().parse().map_err(|_| bad())?)
    } else {
        let s: f64 = v.trim_end_matches('s').trim().parse().map_err(|_| bad())?;
        if !s.is_finite() || s < 0.0 {
            return Err(bad());
        }
        Duration::from_secs_f64(s)
    };
    if d.is_zero() {
        return Err(ParamError("retry-delay cannot be 0".into()));
    }
    Ok(d)
}

fn configure(p: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    let retries = p.number("retries")?.unwrap_or(5) as u32;
    let delay = p
        .get("retry-delay")
        .map(parse_delay)
        .transpose()?
        .unwrap_or(Duration::from_secs(2));
    let policy = Policy {
        retries,
        delay,
        exponential: p.bool("retry-exponential", true)?,
        readonly: p.bool("retry-readonly", false)?,
    };
    Ok(Arc::new(Retry {
        shared: Arc::new(Shared {
            policy,
            worker: Mutex::new(None),
            generation: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            reopens: AtomicU64::new(0),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
        }),
    }))
}

#[derive(Debug, Clone, Copy)]
struct Policy {
    retries: u32,
    delay: Duration,
    exponential: bool,
    readonly: bool,
}

impl Policy {
    /// How long to wait before try `n` (from 1).
    fn delay(&self, n: u32) -> Duration {
        if self.exponential {
            self.delay.saturating_mul(1 << (n - 1).min(16))
        } else {
            self.delay
        }
    }
}

/// A request that can be made again.
enum Op {
    Read {
        offset: u64,
        len: u32,
        done: Done<Vec<u8>>,
    },
    Write {
        offset: u64,
        data: Vec<u8>,
        fua: bool,
        done: Done<Vec<u8>>,
    },
    Zero {
        offset: u64,
        len: u64,
        flags: ZeroFlags,
        done: Done<()>,
    },
    Trim {
        offset: u64,
        len: u64,
        fua: bool,
        done: Done<()>,
    },
    Flush {
        done: Done<()>,
    },
    Extents {
        offset: u64,
        len: u64,
        done: Done<Vec<Extent>>,
    },
}

/// A failed request waiting for its next try.
struct Job {
    op: Op,
    next: Arc<dyn Backend>,
    /// Tries made so far.
    tries: u32,
    /// The reopen generation it failed in.
    generation: u64,
    /// When its last try failed: the wait counts from then, not from when
    /// the retry thread gets to it.
    failed_at: Instant,
    error: Error,
}

struct Shared {
    policy: Policy,
    worker: Mutex<Option<Sender<Job>>>,
    /// Counts reopens: a request that failed before the last reopen is
    /// tried again without another.
    generation: AtomicU64,
    /// A request has failed (for `retry-readonly`).
    failed: AtomicBool,
    reopens: AtomicU64,
    /// The server is stopping: waits end, and no request is tried again.
    stopping: Mutex<bool>,
    wake: Condvar,
}

/// Whether trying again could help. A connection the disk driver could
/// not make again with this filter's own tries and waits is not tried
/// again here: that would square the tries the user asked for.
fn transient(e: &Error) -> bool {
    !matches!(
        e,
        Error::ReadOnly | Error::OutOfRange { .. } | Error::Unsupported(_)
    ) && !matches!(
        e,
        Error::Vddk(
            vddk::Error::OutOfRange { .. }
                | vddk::Error::InvalidArgument(_)
                | vddk::Error::Disconnected(_)
        )
    )
}

impl Shared {
    /// Makes a try of `op` on `next`; a failure goes to the retry thread.
    fn attempt(self: &Arc<Self>, op: Op, next: Arc<dyn Backend>, tries: u32) {
        let generation = self.generation.load(Ordering::Acquire);
        let me = Arc::clone(self);
        let below = Arc::clone(&next);
        // The completion gets the request back to retry it: the data of a
        // write is copied, since a failed write does not return its buffer.
        macro_rules! again {
            ($done:ident, $rebuild:expr) => {{
                Box::new(move |r| match r {
                    Err(e) if transient(&e) => me.failed(Job {
                        op: $rebuild,
                        next: below,
                        tries,
                        generation,
                        failed_at: Instant::now(),
                        error: e,
                    }),
                    r => $done(r),
                })
            }};
        }
        match op {
            Op::Read { offset, len, done } => next.read(
                offset,
                len,
                Vec::new(),
                again!(done, Op::Read { offset, len, done }),
            ),
            Op::Write {
                offset,
                data,
                fua,
                done,
            } => {
                if self.policy.readonly && self.failed.load(Ordering::Acquire) {
                    return done(Err(Error::ReadOnly));
                }
                let copy = data.clone();
                next.write(
                    offset,
                    data,
                    fua,
                    again!(
                        done,
                        Op::Write {
                            offset,
                            data: copy,
                            fua,
                            done
                        }
                    ),
                )
            }
            Op::Zero {
                offset,
                len,
                flags,
                done,
            } => next.zero(
                offset,
                len,
                flags,
                again!(
                    done,
                    Op::Zero {
                        offset,
                        len,
                        flags,
                        done
                    }
                ),
            ),
            Op::Trim {
                offset,
                len,
                fua,
                done,
            } => next.trim(
                offset,
                len,
                fua,
                again!(
                    done,
                    Op::Trim {
                        offset,
                        len,
                        fua,
                        done
                    }
                ),
            ),
            Op::Flush { done } => next.flush(again!(done, Op::Flush { done })),
            Op::Extents { offset, len, done } => {
                next.extents(offset, len, again!(done, Op::Extents { offset, len, done }))
            }
        }
    }

    /// Waits `d`; false when the server began to stop meanwhile.
    fn pause(&self, d: Duration) -> bool {
        let stopping = self.stopping.lock().unwrap_or_else(|e| e.into_inner());
        let (stopping, _) = self
            .wake
            .wait_timeout_while(stopping, d, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        !*stopping
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&self) {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// A try failed: hand the request to the retry thread, or give up.
    fn failed(self: &Arc<Self>, job: Job) {
        self.failed.store(true, Ordering::Release);
        if job.tries >= self.policy.retries {
            return give_up(job, self.policy.retries);
        }
        if self.is_stopping() {
            return give_up(job, 0);
        }
        let job = {
            let mut w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
            if w.is_none() {
                let (tx, rx) = mpsc::channel::<Job>();
                let me = Arc::clone(self);
                let started = std::thread::Builder::new()
                    .name("retry".into())
                    .spawn(move || {
                        for job in rx {
                            me.retry(job);
                        }
                    });
                match started {
                    Ok(_) => *w = Some(tx),
                    Err(e) => {
                        log::error!("retry: cannot start the retry thread: {e}");
                        drop(w);
                        return give_up(job, 0);
                    }
                }
            }
            // A send fails only when the retry thread has gone (it
            // panicked); the request is then answered here.
            match w.as_ref() {
                Some(tx) => match tx.send(job) {
                    Ok(()) => return,
                    Err(mpsc::SendError(job)) => job,
                },
                None => job,
            }
        };
        give_up(job, 0);
    }

    /// On the retry thread: wait, reopen if nothing has since, try again.
    /// Requests that failed together wait together: the first one's wait
    /// and reopen serve all of them, the others are tried again at once.
    fn retry(self: &Arc<Self>, mut job: Job) {
        loop {
            job.tries += 1;
            if self.generation.load(Ordering::Acquire) != job.generation {
                return self.attempt(job.op, job.next, job.tries);
            }
            let wait = self.policy.delay(job.tries);
            log::debug!(
                "retry {}: {}; waiting {:?} before retrying",
                job.tries,
                job.error,
                wait
            );
            if !self.pause(wait.saturating_sub(job.failed_at.elapsed())) {
                log::debug!("retry {}: the server is stopping; not retrying", job.tries);
                return give_up(job, 0);
            }
            if self.generation.load(Ordering::Acquire) == job.generation {
                match job.next.reopen() {
                    Ok(()) => {
                        self.reopens.fetch_add(1, Ordering::Relaxed);
                        self.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(e) => {
                        log::debug!("retry {}: reopen failed: {e}", job.tries);
                        job.error = e;
                        job.failed_at = Instant::now();
                        if job.tries >= self.policy.retries {
                            return give_up(job, self.policy.retries);
                        }
                        continue;
                    }
                }
            }
            return self.attempt(job.op, job.next, job.tries);
        }
    }
}

/// Fails the request with its last error.
fn give_up(job: Job, retries: u32) {
    if retries > 0 {
        log::warn!("could not recover after {retries} retries: {}", job.error);
    }
    let e = job.error;
    match job.op {
        Op::Read { done, .. } | Op::Write { done, .. } => done(Err(e)),
        Op::Zero { done, .. } | Op::Trim { done, .. } | Op::Flush { done } => done(Err(e)),
        Op::Extents { done, .. } => done(Err(e)),
    }
}

struct Retry {
    shared: Arc<Shared>,
}

impl FilterSpec for Retry {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn open(&self, next: Arc<dyn Backend>, _export: &str) -> Result<Arc<dyn Backend>, Error> {
        let layer = Retrying(Arc::clone(&self.shared));
        Ok(Arc::new(Layer::new(layer, next)))
    }
    /// A lost VDDK connection is made again by the disk driver: once at
    /// once, then with this filter's tries and waits, so that the requests
    /// in flight are issued again in order without reaching this layer;
    /// other failures still come here. After a first loss, a read-only
    /// disk keeps a standby handle, so that later losses on a link that
    /// drops cost no ConnectEx and Open on the copy's time.
    fn reconnect_below(&self) -> Option<vddk::Reconnect> {
        let p = self.shared.policy;
        (p.retries > 0).then(|| {
            vddk::Reconnect::new()
                .tries(p.retries.saturating_add(1))
                .delay(p.delay)
                .exponential(p.exponential)
                .standby(true)
        })
    }
    fn shutdown(&self) {
        self.shared.stop();
    }
    fn unload(&self) {
        let n = self.shared.reopens.load(Ordering::Relaxed);
        if n > 0 {
            log::debug!("retry: reopens needed: {n}");
        }
    }
}

struct Retrying(Arc<Shared>);

impl Filter for Retrying {
    fn read(&self, next: &Next, offset: u64, len: u32, _buf: Vec<u8>, done: Done<Vec<u8>>) {
        self.0
            .attempt(Op::Read { offset, len, done }, Arc::clone(next), 0)
    }
    fn write(&self, next: &Next, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        let op = Op::Write {
            offset,
            data,
            fua,
            done,
        };
        self.0.attempt(op, Arc::clone(next), 0)
    }
    fn zero(&self, next: &Next, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        let op = Op::Zero {
            offset,
            len,
            flags,
            done,
        };
        self.0.attempt(op, Arc::clone(next), 0)
    }
    fn trim(&self, next: &Next, offset: u64, len: u64, fua: bool, done: Done<()>) {
        let op = Op::Trim {
            offset,
            len,
            fua,
            done,
        };
        self.0.attempt(op, Arc::clone(next), 0)
    }
    fn flush(&self, next: &Next, done: Done<()>) {
        self.0.attempt(Op::Flush { done }, Arc::clone(next), 0)
    }
    fn extents(&self, next: &Next, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        self.0
            .attempt(Op::Extents { offset, len, done }, Arc::clone(next), 0)
    }
}

#[cfg(test)]
mod tests;
