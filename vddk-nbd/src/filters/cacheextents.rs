//! `cacheextents`: accepted so that command lines that stack it work, and
//! passes everything through. The VDDK plugin already keeps what
//! QueryAllocatedBlocks answered (in 32 GiB windows), which is what this
//! filter exists for in nbdkit; it is deprecated there since 1.44.

use std::sync::Arc;

use super::{Filter, FilterInfo, FilterSpec, Layer};
use crate::backend::{Backend, Error};
use crate::params::{ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "cacheextents",
    description: "cache extents (a no-op here: extents are always cached)",
    params: &[],
    configure,
};

fn configure(_: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    Ok(Arc::new(CacheExtents))
}

struct CacheExtents;

impl FilterSpec for CacheExtents {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn open(&self, next: Arc<dyn Backend>, _export: &str) -> Result<Arc<dyn Backend>, Error> {
        Ok(Arc::new(Layer::new(CacheExtents, next)))
    }
}

impl Filter for CacheExtents {}
