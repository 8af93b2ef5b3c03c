//! `count`: counts the bytes read, written, zeroed and trimmed by
//! successful requests on every connection, and logs the totals when the
//! server stops, as nbdkit's count filter does:
//! `count bytes: read N, written N, zeroed N, trimmed N`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Filter, FilterInfo, FilterSpec, Layer, Next};
use crate::backend::{Backend, Done, Error, ZeroFlags};
use crate::params::{ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "count",
    description: "count bytes read, written, zeroed and trimmed",
    params: &[],
    configure,
};

fn configure(_: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    Ok(Arc::new(Count::default()))
}

/// Totals over every connection.
#[derive(Default)]
pub struct Totals {
    read: AtomicU64,
    written: AtomicU64,
    zeroed: AtomicU64,
    trimmed: AtomicU64,
}

impl Totals {
    /// The line logged at the end.
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "count bytes: read {}, written {}, zeroed {}, trimmed {}",
            g(&self.read),
            g(&self.written),
            g(&self.zeroed),
            g(&self.trimmed)
        )
    }
}

#[derive(Default)]
struct Count {
    totals: Arc<Totals>,
}

impl FilterSpec for Count {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn open(&self, next: Arc<dyn Backend>, _export: &str) -> Result<Arc<dyn Backend>, Error> {
        let layer = Counting(Arc::clone(&self.totals));
        Ok(Arc::new(Layer::new(layer, next)))
    }
    fn unload(&self) {
        log::debug!("{}", self.totals.line());
    }
}

struct Counting(Arc<Totals>);

/// Adds `n` to `counter` once the request succeeded.
fn counted<T: Send + 'static>(
    totals: &Arc<Totals>,
    pick: fn(&Totals) -> &AtomicU64,
    n: u64,
    done: Done<T>,
) -> Done<T> {
    let totals = Arc::clone(totals);
    Box::new(move |r| {
        if r.is_ok() {
            pick(&totals).fetch_add(n, Ordering::Relaxed);
        }
        done(r)
    })
}

impl Filter for Counting {
    fn read(&self, next: &Next, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        next.read(
            offset,
            len,
            buf,
            counted(&self.0, |t| &t.read, u64::from(len), done),
        )
    }
    fn write(&self, next: &Next, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        let n = data.len() as u64;
        next.write(offset, data, fua, counted(&self.0, |t| &t.written, n, done))
    }
    fn zero(&self, next: &Next, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        next.zero(
            offset,
            len,
            flags,
            counted(&self.0, |t| &t.zeroed, len, done),
        )
    }
    fn trim(&self, next: &Next, offset: u64, len: u64, fua: bool, done: Done<()>) {
        next.trim(
            offset,
            len,
            fua,
            counted(&self.0, |t| &t.trimmed, len, done),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::{memory, read, wait};

    #[test]
    fn successful_requests_are_counted() {
        let spec = Count::default();
        let top = spec.open(memory(1 << 20), "").unwrap();
        read(top.as_ref(), 0, 4096);
        wait(|d| top.write(0, vec![1; 512], false, d)).unwrap();
        wait(|d| top.zero(0, 1000, ZeroFlags::default(), d)).unwrap();
        // A failed request is not counted.
        let ro = spec
            .open(
                Arc::new(crate::plugins::MemoryBackend::with_options(4096, true)),
                "",
            )
            .unwrap();
        assert!(wait(|d| ro.write(0, vec![1; 512], false, d)).is_err());
        assert_eq!(
            spec.totals.line(),
            "count bytes: read 4096, written 512, zeroed 1000, trimmed 0"
        );
    }
}
