//! The retry filter over a layer that fails: a transient failure retried
//! after a reopen, one that persists ending in its error, retry-readonly,
//! and the delays.

use super::*;
use crate::backend::{Caps, Known};
use crate::filters::testing::{memory, params, wait};
use crate::plugins::MemoryBackend;
use std::sync::atomic::AtomicU32;

/// Fails the first `fail` reads with a lost connection, and counts reopens.
struct Flaky {
    inner: Arc<MemoryBackend>,
    fail: AtomicU32,
    reopens: AtomicU32,
    reopen_fails: AtomicU32,
}

impl Backend for Flaky {
    fn caps(&self) -> Caps {
        self.inner.caps()
    }
    fn read(&self, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        let size = self.inner.caps().size;
        if offset >= size {
            let length = u64::from(len);
            return done(Err(Error::OutOfRange {
                offset,
                length,
                size,
            }));
        }
        if self.fail.load(Ordering::SeqCst) > 0 {
            self.fail.fetch_sub(1, Ordering::SeqCst);
            let lost = vddk::VixFailure::new(
                "VixDiskLib_ReadAsync",
                vddk::VixCode::HOST_TCP_CONN_LOST,
                None,
                None,
            );
            return done(Err(Error::Vddk(lost.into())));
        }
        self.inner.read(offset, len, buf, done)
    }
    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        self.inner.write(offset, data, fua, done)
    }
    fn zero(&self, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        self.inner.zero(offset, len, flags, done)
    }
    fn flush(&self, done: Done<()>) {
        self.inner.flush(done)
    }
    fn extents(&self, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        self.inner.extents(offset, len, done)
    }
    fn known(&self, _: u64, _: u64) -> Known {
        Known::Unknown
    }
    fn reopen(&self) -> Result<(), Error> {
        if self.reopen_fails.load(Ordering::SeqCst) > 0 {
            self.reopen_fails.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Failed("the host is still down".into()));
        }
        self.reopens.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn flaky(fail: u32, reopen_fails: u32) -> Arc<Flaky> {
    let inner = memory(1 << 20);
    inner.fill(0, b"hello");
    Arc::new(Flaky {
        inner,
        fail: AtomicU32::new(fail),
        reopens: AtomicU32::new(0),
        reopen_fails: AtomicU32::new(reopen_fails),
    })
}

fn retry(pairs: &[(&str, &str)]) -> Arc<dyn FilterSpec> {
    configure(&params(pairs)).unwrap()
}

#[test]
fn a_transient_failure_is_reopened_and_retried() {
    let below = flaky(2, 1);
    let top = retry(&[("retry-delay", "10ms")])
        .open(below.clone(), "")
        .unwrap();
    let got = wait(|d| top.read(0, 5, Vec::new(), d)).unwrap();
    assert_eq!(got, b"hello");
    // Two failed reads and one failed reopen: two reopens that worked.
    assert_eq!(below.reopens.load(Ordering::SeqCst), 2);
}

#[test]
fn a_failure_that_persists_ends_in_the_error_after_the_retries() {
    let below = flaky(100, 0);
    let top = retry(&[("retries", "3"), ("retry-delay", "1ms")])
        .open(below.clone(), "")
        .unwrap();
    let e = wait(|d| top.read(0, 5, Vec::new(), d)).unwrap_err();
    assert!(e.is_connection_lost(), "{e}");
    assert_eq!(below.reopens.load(Ordering::SeqCst), 3);
    // Errors that trying again cannot mend fail at once.
    let e = wait(|d| top.read(2 << 20, 5, Vec::new(), d)).unwrap_err();
    assert!(matches!(e, Error::OutOfRange { .. }), "{e}");
    assert_eq!(below.reopens.load(Ordering::SeqCst), 3, "no reopen for it");
}

#[test]
fn retry_readonly_refuses_writes_after_a_failure() {
    let below = flaky(1, 0);
    let top = retry(&[("retry-delay", "1ms"), ("retry-readonly", "yes")])
        .open(below, "")
        .unwrap();
    wait(|d| top.write(0, vec![1], false, d)).unwrap();
    wait(|d| top.read(0, 1, Vec::new(), d)).unwrap();
    let e = wait(|d| top.write(0, vec![1], false, d)).unwrap_err();
    assert!(matches!(e, Error::ReadOnly), "{e}");
}

#[test]
fn delays_double_and_parse() {
    let p = Policy {
        retries: 5,
        delay: Duration::from_secs(2),
        exponential: true,
        readonly: false,
    };
    let d: Vec<u64> = (1..=5).map(|n| p.delay(n).as_secs()).collect();
    assert_eq!(d, [2, 4, 8, 16, 32]);
    assert_eq!(parse_delay("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_delay("1.5").unwrap(), Duration::from_millis(1500));
    assert!(parse_delay("0").is_err());
    assert!(parse_delay("soon").is_err());
}
