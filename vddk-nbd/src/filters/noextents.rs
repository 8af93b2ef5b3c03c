//! `noextents`: the export appears fully allocated; block status reports
//! data everywhere and reads send no hole chunks.

use std::sync::Arc;

use super::{Filter, FilterInfo, FilterSpec, Layer, Next};
use crate::backend::{Backend, Caps, Error, Known};
use crate::params::{ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "noextents",
    description: "disable extents in the underlying plugin",
    params: &[],
    configure,
};

fn configure(_: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    Ok(Arc::new(NoExtents))
}

struct NoExtents;

impl FilterSpec for NoExtents {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn open(&self, next: Arc<dyn Backend>, _export: &str) -> Result<Arc<dyn Backend>, Error> {
        Ok(Arc::new(Layer::new(NoExtents, next)))
    }
}

impl Filter for NoExtents {
    fn caps(&self, below: Caps) -> Caps {
        Caps {
            extents: false,
            ..below
        }
    }
    fn known(&self, _next: &Next, _offset: u64, _len: u64) -> Known {
        Known::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::memory;

    #[test]
    fn extents_are_hidden() {
        let m = memory(1 << 20);
        assert!(m.caps().extents);
        let top = NoExtents.open(m, "").unwrap();
        assert!(!top.caps().extents);
        assert_eq!(top.known(0, 4096), Known::Unknown);
    }
}
