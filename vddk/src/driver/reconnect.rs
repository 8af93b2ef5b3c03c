//! [`Reconnect`]: what a pipelined [`DiskDriver`](super::DiskDriver) does
//! when the connection to the host is lost.
//!
//! A lost NFC connection does not heal: every later call on the handle
//! fails until the handle is closed and the disk opened again through a
//! new connection. With a policy, the driver does that itself: requests
//! stop being issued, those in flight come back (failed or done), the
//! disk is reopened through the [`Opener`](super::Opener), and the failed requests are issued again ahead of those still queued,
//! so requests that overlap still take effect in submission order.
//!
//! What is safe to issue again: a read, always. A write that failed with
//! the connection was not acknowledged, so the caller has not been told it
//! happened; writing the same bytes at the same place again leaves the disk
//! as one write would. A write the old handle acknowledged was answered by
//! the host, so it is the host's, in its cache for the disk, not the
//! connection's; a flush issued after the reconnect asks the host to make
//! it durable. A flush or an allocation query that failed with the
//! connection is issued again on the new handle.
//!
//! The first try comes at once: a lost connection is most often that one
//! connection's end (a dropped stream, an NFC timeout), not the host's, and
//! over vCenter each second of waiting is a second of the copy. The delay
//! is for what follows a failed try, when the host itself is refusing.
//!
//! With [`Reconnect::standby`], a link that has lost a connection once is
//! taken to lose more: the driver then keeps a second handle, opened in
//! the background through its own connection, and the next loss switches
//! to it at once instead of paying for ConnectEx and Open (about a second
//! each over vCenter) while the copy waits; the dead handle is closed and a
//! new standby opened behind it. Only read-only disks get one: a handle
//! opened before writes made through another one is not promised to see
//! them. A standby costs one more NFC connection to the host while it
//! lasts; if the host refuses it, the driver carries on without.

use std::time::Duration;

use crate::error::Error;
use crate::VixCode;

/// How many times, and how often, to reconnect.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let policy = vddk::Reconnect::new()
///     .tries(8)
///     .delay(Duration::from_millis(500))
///     .exponential(true);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    tries: u32,
    delay: Duration,
    exponential: bool,
    standby: bool,
}

impl Default for Reconnect {
    fn default() -> Reconnect {
        Reconnect {
            tries: 5,
            delay: Duration::from_secs(1),
            exponential: true,
            standby: false,
        }
    }
}

impl Reconnect {
    /// Five tries: the first at once, the second after a second, each
    /// next one after twice as long as the one before.
    pub fn new() -> Reconnect {
        Reconnect::default()
    }

    /// Reconnections tried in a row, without a request completing in
    /// between, before the requests waiting fail (at least 1).
    pub fn tries(mut self, n: u32) -> Self {
        self.tries = n.max(1);
        self
    }

    /// The wait after the first failed try (the first try is at once).
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Whether each next wait doubles.
    pub fn exponential(mut self, on: bool) -> Self {
        self.exponential = on;
        self
    }

    /// After the first loss, keeps a standby handle for a read-only disk
    /// so that later losses switch to it at once. Off by default.
    ///
    /// A link that has lost a connection once is taken to lose more: the
    /// driver then opens a second handle in the background, through its
    /// own connection, and the next loss switches to it instead of paying
    /// for ConnectEx and Open (about a second each over vCenter) while the
    /// copy waits; the dead handle is closed and a new standby opened
    /// behind it. Only read-only disks get one: a handle opened before
    /// writes made through another one is not promised to see them. A
    /// standby costs one more NFC connection to the host while it lasts;
    /// if the host refuses it, the driver carries on without.
    pub fn standby(mut self, on: bool) -> Self {
        self.standby = on;
        self
    }

    /// Whether a standby handle is kept after the first loss.
    pub fn keeps_standby(&self) -> bool {
        self.standby
    }

    /// The most tries in a row.
    pub fn max_tries(&self) -> u32 {
        self.tries
    }

    /// The wait before try `n` (from 1): none before the first.
    pub fn wait_before(&self, n: u32) -> Duration {
        if n <= 1 {
            Duration::ZERO
        } else if self.exponential {
            self.delay.saturating_mul(1 << (n - 2).min(16))
        } else {
            self.delay
        }
    }
}

/// Whether a reconnection failed because the host refused the login,
/// which trying again will not change.
pub(crate) fn refused_login(e: &Error) -> bool {
    e.vix_code() == Some(VixCode::AUTHENTICATION_FAIL)
}

/// What the request that was reconnecting is told when the disk is
/// closed between tries.
pub(crate) const CLOSED_WHILE_RECONNECTING: &str =
    "the connection to the host was lost and the disk was closed before it could be made again";

/// What a driver that gives up after `n` failed reconnections (the last
/// with `e`) tells its callers.
pub(crate) fn give_up_message(e: &Error, n: u32) -> String {
    if refused_login(e) {
        format!(
            "the connection to the host was lost and the host no longer accepts the login \
             ({e}): a session cookie names one session, which the server ends (vCenter after \
             30 idle minutes by default), so a copy that must outlive it needs a user name and \
             password, which log in anew; a password may have been changed"
        )
    } else {
        format!(
            "the connection to the host was lost and {n} reconnections failed (the last: {e}); \
             open the disk again"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_when_exponential() {
        let p = Reconnect::new().delay(Duration::from_millis(100));
        let waits: Vec<_> = (1..=5).map(|n| p.wait_before(n).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 800]);
        let flat = p.exponential(false);
        assert_eq!(flat.wait_before(4), Duration::from_millis(100));
        assert_eq!(flat.wait_before(1), Duration::ZERO);
        assert_eq!(Reconnect::new().tries(0).max_tries(), 1);
    }
}
