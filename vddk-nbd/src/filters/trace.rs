//! A layer that logs every request and its outcome at debug level: what
//! nbdkit's `-D nbdkit.backend.datapath=1` (over the whole stack) and
//! `-D vddk.datapath=1` (over the vddk plugin) show. Not a filter users
//! stack by name; the command line inserts it for those flags.

use std::sync::Arc;

use super::{Filter, Layer, Next};
use crate::backend::{Backend, Done, Extent, ZeroFlags};

/// Logs requests under `name` (the layer they are about).
pub struct Trace(pub &'static str);

impl Trace {
    /// `next` with its requests logged.
    pub fn over(name: &'static str, next: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Layer::new(Trace(name), next))
    }
}

fn logged<T: Send + 'static>(name: &'static str, what: String, done: Done<T>) -> Done<T> {
    log::debug!("{name}: {what}");
    Box::new(move |r| {
        if let Err(e) = &r {
            log::debug!("{name}: {what}: failed: {e}");
        }
        done(r)
    })
}

impl Filter for Trace {
    fn read(&self, next: &Next, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        let what = format!("pread count={len} offset={offset}");
        next.read(offset, len, buf, logged(self.0, what, done))
    }
    fn write(&self, next: &Next, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        let what = format!(
            "pwrite count={} offset={offset} fua={}",
            data.len(),
            u8::from(fua)
        );
        next.write(offset, data, fua, logged(self.0, what, done))
    }
    fn zero(&self, next: &Next, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        let what = format!(
            "zero count={len} offset={offset} may_trim={} fua={} fast={}",
            u8::from(flags.may_trim),
            u8::from(flags.fua),
            u8::from(flags.fast)
        );
        next.zero(offset, len, flags, logged(self.0, what, done))
    }
    fn trim(&self, next: &Next, offset: u64, len: u64, fua: bool, done: Done<()>) {
        let what = format!("trim count={len} offset={offset} fua={}", u8::from(fua));
        next.trim(offset, len, fua, logged(self.0, what, done))
    }
    fn flush(&self, next: &Next, done: Done<()>) {
        next.flush(logged(self.0, "flush".into(), done))
    }
    fn extents(&self, next: &Next, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        let what = format!("extents count={len} offset={offset}");
        next.extents(offset, len, logged(self.0, what, done))
    }
}
