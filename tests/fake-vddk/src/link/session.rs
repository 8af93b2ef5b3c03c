//! Hosts and connections: the session clock since InitEx, each ESXi host's
//! shared state, and a connection's loss (when, why, and the lines and code
//! a call on a lost connection gives).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::{LinkConfig, DEFAULT_NFC_PORT, LOST_CODE};
use crate::errors;
use crate::ffi::*;
use crate::log;

/// The process's time origin, so instants fit in atomics.
pub(super) fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

pub(super) const NEVER: u64 = u64::MAX;

pub(super) fn to_nanos(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(origin()).as_nanos()).unwrap_or(NEVER - 1)
}

pub(super) fn from_nanos(n: u64) -> Instant {
    origin() + Duration::from_nanos(n)
}

/// One ESXi host's shared state.
pub struct HostLink {
    /// The host name (lower case).
    pub name: String,
    pub(super) bandwidth: Option<f64>,
    pub(super) drop_every: Option<u64>,
    pub(super) max_nfc: Option<u32>,
    state: Mutex<HostState>,
}

#[derive(Default)]
pub(super) struct HostState {
    /// Open handles of this host: id -> when its link is free again.
    pub(super) clocks: HashMap<u64, Instant>,
    /// Bytes the host has served.
    pub(super) bytes: u64,
    /// The byte count at which the next `drop_every_bytes` loss happens.
    pub(super) next_drop: u64,
}

impl HostLink {
    pub(super) fn state(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Registry {
    hosts: HashMap<String, Arc<HostLink>>,
    init: Instant,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
pub(super) static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets every host and starts the session clock (InitEx).
pub fn reset() {
    let now = Instant::now();
    origin();
    *registry() = Some(Registry {
        hosts: HashMap::new(),
        init: now,
    });
}

/// Time since InitEx (zero before it).
pub fn since_init() -> Duration {
    registry()
        .as_ref()
        .map_or(Duration::ZERO, |r| r.init.elapsed())
}

/// Whether a session cookie has expired under `ttl`.
pub fn session_expired(ttl: Option<Duration>) -> bool {
    ttl.is_some_and(|ttl| since_init() >= ttl)
}

/// The shared state of host `name`, made with `cfg`'s host settings on
/// first use.
fn host(name: &str, cfg: &LinkConfig) -> Arc<HostLink> {
    let key = name.to_ascii_lowercase();
    let mut reg = registry();
    let reg = reg.get_or_insert_with(|| Registry {
        hosts: HashMap::new(),
        init: Instant::now(),
    });
    reg.hosts
        .entry(key.clone())
        .or_insert_with(|| {
            Arc::new(HostLink {
                name: key,
                bandwidth: cfg.host_bandwidth,
                drop_every: cfg.drop_every_bytes,
                max_nfc: cfg.max_nfc_connections,
                state: Mutex::new(HostState {
                    next_drop: cfg.drop_every_bytes.unwrap_or(u64::MAX),
                    ..HostState::default()
                }),
            })
        })
        .clone()
}

/// Why a connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Reason {
    None = 0,
    AfterBytes = 1,
    EveryBytes = 2,
    AfterTime = 3,
}

/// The link state of one remote VixDiskLib connection (ConnectEx).
pub struct ConnLink {
    /// The ESXi host its NFC connections go to.
    pub host: Arc<HostLink>,
    /// The NFC port (`nfcHostPort`, 902 by default).
    pub nfc_port: u32,
    pub(super) bandwidth: Option<f64>,
    pub(super) drop_after_bytes: Option<u64>,
    /// When the connection is (or will be) lost, in nanoseconds since the
    /// origin; NEVER when no loss is planned.
    pub(super) lost_at: AtomicU64,
    reason: AtomicU8,
    /// Bytes carried by all the connection's disks (changed under the
    /// host's lock).
    pub(super) bytes: AtomicU64,
    /// Whether the NFC error lines of the loss were logged.
    reported: AtomicBool,
}

impl ConnLink {
    /// A connection made now to `nfc_host`; `cfg` holds the connection's
    /// settings, `host_cfg` those of the host (used if the host is new).
    pub fn new(nfc_host: &str, nfc_port: u32, cfg: &LinkConfig, host_cfg: &LinkConfig) -> ConnLink {
        let now = Instant::now();
        let (lost_at, reason) = match cfg.drop_after {
            Some(d) => (to_nanos(now + d), Reason::AfterTime),
            None => (NEVER, Reason::None),
        };
        ConnLink {
            host: host(nfc_host, host_cfg),
            nfc_port: if nfc_port == 0 {
                DEFAULT_NFC_PORT
            } else {
                nfc_port
            },
            bandwidth: cfg.bandwidth,
            drop_after_bytes: cfg.drop_after_bytes,
            lost_at: AtomicU64::new(lost_at),
            reason: AtomicU8::new(reason as u8),
            bytes: AtomicU64::new(0),
            reported: AtomicBool::new(false),
        }
    }

    /// Whether the connection is lost at `t`.
    pub fn lost_by(&self, t: Instant) -> bool {
        let at = self.lost_at.load(Ordering::Acquire);
        at != NEVER && at <= to_nanos(t)
    }

    /// Whether the connection was lost strictly before `t`.
    pub(super) fn lost_before(&self, t: Instant) -> bool {
        let at = self.lost_at.load(Ordering::Acquire);
        at != NEVER && at < to_nanos(t)
    }

    pub(super) fn mark_lost(&self, at: Instant, reason: Reason) {
        let n = to_nanos(at);
        let before = self.lost_at.fetch_min(n, Ordering::AcqRel);
        if n < before {
            self.reason.store(reason as u8, Ordering::Release);
        }
    }

    fn reason_text(&self) -> String {
        let r = self.reason.load(Ordering::Acquire);
        if r == Reason::AfterBytes as u8 {
            format!(
                "drop_after_bytes: {} bytes crossed the connection",
                self.drop_after_bytes.unwrap_or(0)
            )
        } else if r == Reason::EveryBytes as u8 {
            format!(
                "drop_every_bytes: the host drops the connection carrying every {}th byte",
                self.host.drop_every.unwrap_or(0)
            )
        } else if r == Reason::AfterTime as u8 {
            "drop_after_ms: the connection's time was up".into()
        } else {
            "the connection was lost".into()
        }
    }

    /// Logs a call failing on the lost connection (the NFC lines once per
    /// connection) and returns [`LOST_CODE`].
    pub fn fail(&self, function: &str, disk: &str) -> VixError {
        let host = &self.host.name;
        let port = self.nfc_port;
        if !self.reported.swap(true, Ordering::AcqRel) {
            // Line shapes of VDDK 7/8 NFC warnings; the texts are the
            // fake's own (unverified, see the module comment).
            log::warn("[NFC ERROR]NfcNetTcpRead: bRead: -1");
            log::warn(&format!(
                "[NFC ERROR]NfcFssrvrRecv: failed to read the reply from {host}:{port}: \
                 Connection reset by peer (NFC_NETWORK_ERROR)"
            ));
        }
        log::warn(&format!(
            "VixDiskLib: {function}: {disk}: Error {} ({}): the NFC connection to {host}:{port} \
             was lost ({}); Close the disks, Disconnect and ConnectEx again",
            LOST_CODE,
            errors::text(LOST_CODE),
            self.reason_text()
        ));
        LOST_CODE
    }

    /// Fails at once if the connection is lost.
    pub fn check(&self, function: &str, disk: &str) -> Result<(), VixError> {
        if self.lost_by(Instant::now()) {
            Err(self.fail(function, disk))
        } else {
            Ok(())
        }
    }
}

impl std::fmt::Debug for ConnLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnLink")
            .field("host", &self.host.name)
            .field("nfc_port", &self.nfc_port)
            .finish_non_exhaustive()
    }
}
