//! The bandwidth scheduler: each open remote disk handle's virtual clock,
//! the host's bandwidth shared by its busy handles, and the byte counts at
//! which connections are lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{from_nanos, origin, to_nanos, ConnLink, Reason, NEVER, NEXT_ID};
use super::GRACE;

/// When a request's transfer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// It ends at this instant.
    Done(Instant),
    /// The connection is lost at this instant, before the transfer ends:
    /// the request fails then.
    Lost(Instant),
}

impl Transfer {
    /// The instant the request ends, either way.
    pub fn at(self) -> Instant {
        match self {
            Transfer::Done(t) | Transfer::Lost(t) => t,
        }
    }
}

/// One NFC connection: an open remote disk handle with the link model.
pub struct DiskLink {
    pub conn: Arc<ConnLink>,
    id: u64,
    released: AtomicBool,
}

impl DiskLink {
    /// Takes one of the host's NFC connections for a disk being opened;
    /// `Err((open, limit))` when the host has none left.
    pub fn admit(conn: &Arc<ConnLink>) -> Result<DiskLink, (usize, u32)> {
        let host = &conn.host;
        let mut st = host.state();
        if let Some(max) = host.max_nfc {
            if st.clocks.len() >= max as usize {
                return Err((st.clocks.len(), max));
            }
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        st.clocks.insert(id, origin());
        Ok(DiskLink {
            conn: conn.clone(),
            id,
            released: AtomicBool::new(false),
        })
    }

    /// Gives the NFC connection back (Close); idempotent.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.conn.host.state().clocks.remove(&self.id);
        }
    }

    /// Whether a booked transfer fails once it ends: a planned loss, or a
    /// loss (set since, e.g. by another disk of the connection) before the
    /// transfer's end. A transfer ending when the connection dies succeeds.
    pub fn fails(&self, transfer: Transfer) -> bool {
        match transfer {
            Transfer::Lost(_) => true,
            Transfer::Done(end) => self.conn.lost_before(end),
        }
    }

    /// Books the transfer of `bytes` submitted now.
    pub fn reserve(&self, bytes: u64) -> Transfer {
        self.reserve_at(bytes, Instant::now())
    }

    fn reserve_at(&self, bytes: u64, now: Instant) -> Transfer {
        let conn = &self.conn;
        if conn.lost_by(now) {
            return Transfer::Lost(now);
        }
        let host = &conn.host;
        let mut st = host.state();
        let free = st.clocks.get(&self.id).copied().unwrap_or(now);
        let start = free.max(now);
        let mut rate = conn.bandwidth.unwrap_or(f64::INFINITY);
        if let Some(hb) = host.bandwidth {
            let others = st
                .clocks
                .iter()
                .filter(|(id, t)| **id != self.id && **t + GRACE > now)
                .count();
            rate = rate.min(hb / (others + 1) as f64);
        }
        let secs = |n: u64| Duration::try_from_secs_f64(n as f64 / rate).unwrap_or(FOREVER);
        let conn_left = conn.drop_after_bytes.map_or(u64::MAX, |n| {
            n.saturating_sub(conn.bytes.load(Ordering::Acquire))
        });
        let host_left = if host.drop_every.is_some() {
            st.next_drop.saturating_sub(st.bytes)
        } else {
            u64::MAX
        };
        let carried = bytes.min(conn_left).min(host_left);
        conn.bytes.fetch_add(carried, Ordering::AcqRel);
        st.bytes = st.bytes.saturating_add(carried);
        if carried < bytes {
            let at = later(start, secs(carried));
            let reason = if host_left <= conn_left {
                st.next_drop = st
                    .next_drop
                    .saturating_add(host.drop_every.unwrap_or(u64::MAX));
                Reason::EveryBytes
            } else {
                Reason::AfterBytes
            };
            conn.mark_lost(at, reason);
            st.clocks.insert(self.id, at);
            return Transfer::Lost(at);
        }
        let finish = later(start, secs(bytes));
        st.clocks.insert(self.id, finish);
        let lost = conn.lost_at.load(Ordering::Acquire);
        if lost != NEVER && lost <= to_nanos(finish) {
            return Transfer::Lost(from_nanos(lost).max(now));
        }
        Transfer::Done(finish)
    }
}

impl Drop for DiskLink {
    fn drop(&mut self) {
        self.release();
    }
}

/// A transfer that would not end in a century.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86400);

/// `t + d`, capped at a century from `t`.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(FOREVER)).unwrap_or(t)
}

/// Sleeps until `t` (no-op if it has passed).
pub fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Key, LinkConfig};

    /// Now, after the time origin (which InitEx sets in real use).
    fn now() -> Instant {
        origin();
        Instant::now()
    }

    fn test_conn(cfg: &LinkConfig, host_name: &str) -> Arc<ConnLink> {
        Arc::new(ConnLink::new(host_name, 0, cfg, cfg))
    }

    #[test]
    fn transfers_take_size_over_rate_and_serialise_per_connection() {
        let mut cfg = LinkConfig::default();
        cfg.set(Key::Bandwidth, "1M").unwrap();
        let conn = test_conn(&cfg, "unit-serial");
        let disk = DiskLink::admit(&conn).unwrap();
        let t0 = now();
        let a = disk.reserve_at(1 << 20, t0).at();
        let b = disk.reserve_at(1 << 19, t0).at();
        assert_eq!(a - t0, Duration::from_secs(1));
        assert_eq!(
            b - t0,
            Duration::from_millis(1500),
            "queued behind the first"
        );
    }

    #[test]
    fn host_bandwidth_is_shared_by_busy_handles() {
        let mut cfg = LinkConfig::default();
        cfg.set(Key::HostBandwidth, "1M").unwrap();
        let conn = test_conn(&cfg, "unit-share");
        let (a, b) = (
            DiskLink::admit(&conn).unwrap(),
            DiskLink::admit(&conn).unwrap(),
        );
        let t0 = now() + Duration::from_secs(1);
        assert_eq!(a.reserve_at(1 << 20, t0).at() - t0, Duration::from_secs(1));
        assert_eq!(
            b.reserve_at(1 << 20, t0).at() - t0,
            Duration::from_secs(2),
            "a is busy, so b gets half"
        );
    }

    #[test]
    fn losses_are_sticky_and_fail_later_requests() {
        let mut cfg = LinkConfig::default();
        cfg.set(Key::DropAfterBytes, "1000").unwrap();
        let conn = test_conn(&cfg, "unit-drop");
        let disk = DiskLink::admit(&conn).unwrap();
        let t0 = now();
        assert_eq!(disk.reserve_at(600, t0), Transfer::Done(t0));
        assert_eq!(disk.reserve_at(600, t0), Transfer::Lost(t0));
        assert!(conn.lost_by(t0));
        assert_eq!(disk.reserve_at(1, t0), Transfer::Lost(t0));
        let other = DiskLink::admit(&conn).unwrap();
        assert_eq!(
            other.reserve_at(1, t0),
            Transfer::Lost(t0),
            "every disk of it"
        );
    }

    #[test]
    fn every_n_bytes_of_a_host_drops_the_carrying_connection() {
        let mut cfg = LinkConfig::default();
        cfg.set(Key::DropEveryBytes, "1000").unwrap();
        let t0 = now();
        let c1 = test_conn(&cfg, "unit-every");
        let d1 = DiskLink::admit(&c1).unwrap();
        assert_eq!(d1.reserve_at(700, t0), Transfer::Done(t0));
        let c2 = test_conn(&cfg, "unit-every");
        let d2 = DiskLink::admit(&c2).unwrap();
        assert_eq!(d2.reserve_at(700, t0), Transfer::Lost(t0), "byte 1001");
        assert!(!c1.lost_by(t0), "only the carrying connection");
        assert_eq!(
            d1.reserve_at(1000, t0),
            Transfer::Done(t0),
            "bytes 1001..=2000"
        );
        assert_eq!(d1.reserve_at(1, t0), Transfer::Lost(t0), "byte 2001");
    }

    #[test]
    fn the_nfc_limit_counts_open_handles_per_host() {
        let mut cfg = LinkConfig::default();
        cfg.set(Key::MaxNfc, "2").unwrap();
        let conn = test_conn(&cfg, "unit-limit");
        let a = DiskLink::admit(&conn).unwrap();
        let _b = DiskLink::admit(&conn).unwrap();
        assert_eq!(DiskLink::admit(&conn).err(), Some((2, 2)));
        a.release();
        a.release();
        assert!(DiskLink::admit(&conn).is_ok());
    }
}
