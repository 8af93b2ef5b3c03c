//! `blocksize`: limits the requests that reach the layer below.
//!
//! Reads and writes above `maxdata` are split into pieces of at most
//! `maxdata` bytes, issued together and joined (virt-v2v and CDI use
//! `maxdata=2M`, because an ESXi host refuses larger NFC allocations);
//! zeroes and trims above `maxlen` are split the same way, and block
//! status asks for at most `maxlen` bytes at a time.
//!
//! nbdkit's filter makes requests aligned to `minblock` by reading and
//! writing around them, and so tells clients that any alignment will do.
//! Every layer below this one already serves any alignment (the VDDK
//! driver does its own read-modify-write, whole sectors reach VDDK), so
//! this one widens nothing: the minimum advertised stays the one below
//! (1), and `minblock` raises the *preferred* size, which is what makes
//! clients such as qemu send aligned requests.

use std::sync::Arc;

use super::{Filter, FilterInfo, FilterSpec, Join, Layer, Next, ParamHelp};
use crate::backend::{Backend, Caps, Done, Error, Extent, ZeroFlags, MAX_PAYLOAD};
use crate::params::{ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "blocksize",
    description: "adjust block size of requests sent to plugin",
    params: &[
        ParamHelp {
            key: "minblock",
            usage: "minblock=<SIZE>",
            help: "Minimum block size, power of 2 <= 64k (default 1).",
        },
        ParamHelp {
            key: "maxdata",
            usage: "maxdata=<SIZE>",
            help: "Maximum size for read/write (default 64M).",
        },
        ParamHelp {
            key: "maxlen",
            usage: "maxlen=<SIZE>",
            help: "Maximum size for trim/zero (default 4G-minblock).",
        },
    ],
    configure,
};

fn configure(p: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    let minblock = p.size("minblock")?;
    if let Some(m) = minblock {
        if !m.is_power_of_two() || m > 64 << 10 {
            return Err(ParamError(format!(
                "minblock={m}: the minimum block size must be a power of 2 no larger than 64K"
            )));
        }
    }
    let align = minblock.unwrap_or(1);
    let check = |key: &str, v: Option<u64>| -> Result<Option<u64>, ParamError> {
        match v {
            Some(0) => Err(ParamError(format!("{key} cannot be 0"))),
            Some(n) if n % align != 0 => Err(ParamError(format!(
                "{key}={n} must be a multiple of minblock={align}"
            ))),
            other => Ok(other),
        }
    };
    let maxdata = check("maxdata", p.size("maxdata")?)?;
    let maxlen = check("maxlen", p.size("maxlen")?)?;
    Ok(Arc::new(BlockSize {
        minblock,
        maxdata: maxdata.unwrap_or(64 << 20),
        maxlen: maxlen.unwrap_or((u64::from(u32::MAX)) / align * align),
    }))
}

#[derive(Clone, Copy)]
struct BlockSize {
    minblock: Option<u64>,
    maxdata: u64,
    maxlen: u64,
}

impl FilterSpec for BlockSize {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn open(&self, next: Arc<dyn Backend>, _export: &str) -> Result<Arc<dyn Backend>, Error> {
        Ok(Arc::new(Layer::new(*self, next)))
    }
}

/// `[offset, offset + len)` cut into pieces of at most `max`.
fn pieces(offset: u64, len: u64, max: u64) -> impl Iterator<Item = (u64, u64)> {
    let max = max.max(1);
    (0..len.div_ceil(max)).map(move |i| {
        let at = i * max;
        (offset + at, max.min(len - at))
    })
}

impl Filter for BlockSize {
    fn caps(&self, below: Caps) -> Caps {
        let mut caps = below;
        if let Some(m) = self.minblock {
            caps.block_sizes.preferred = caps.block_sizes.preferred.max(m as u32);
        }
        caps.block_sizes.maximum = MAX_PAYLOAD;
        caps
    }

    fn read(&self, next: &Next, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        if u64::from(len) <= self.maxdata {
            return next.read(offset, len, buf, done);
        }
        let parts: Vec<(u64, u64)> = pieces(offset, u64::from(len), self.maxdata).collect();
        let join = Join::new(
            parts.len(),
            move |chunks: Vec<Vec<u8>>| {
                let mut out = buf;
                out.clear();
                for c in &chunks {
                    out.extend_from_slice(c);
                }
                out
            },
            done,
        );
        for (i, (at, n)) in parts.into_iter().enumerate() {
            next.read(at, n as u32, Vec::new(), join.part(i));
        }
    }

    fn write(&self, next: &Next, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        if data.len() as u64 <= self.maxdata {
            return next.write(offset, data, fua, done);
        }
        let parts: Vec<(u64, u64)> = pieces(offset, data.len() as u64, self.maxdata).collect();
        let join = Join::new(parts.len(), |_| Vec::new(), done);
        for (i, (at, n)) in parts.into_iter().enumerate() {
            let from = (at - offset) as usize;
            let piece = data[from..from + n as usize].to_vec();
            next.write(at, piece, fua, join.part(i));
        }
    }

    fn zero(&self, next: &Next, offset: u64, len: u64, flags: ZeroFlags, done: Done<()>) {
        if len <= self.maxlen {
            return next.zero(offset, len, flags, done);
        }
        let parts: Vec<(u64, u64)> = pieces(offset, len, self.maxlen).collect();
        let join = Join::new(parts.len(), |_| (), done);
        for (i, (at, n)) in parts.into_iter().enumerate() {
            next.zero(at, n, flags, join.part(i));
        }
    }

    fn trim(&self, next: &Next, offset: u64, len: u64, fua: bool, done: Done<()>) {
        if len <= self.maxlen {
            return next.trim(offset, len, fua, done);
        }
        let parts: Vec<(u64, u64)> = pieces(offset, len, self.maxlen).collect();
        let join = Join::new(parts.len(), |_| (), done);
        for (i, (at, n)) in parts.into_iter().enumerate() {
            next.trim(at, n, fua, join.part(i));
        }
    }

    fn extents(&self, next: &Next, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        // Block status may answer for less than asked: clip the question.
        next.extents(offset, len.min(self.maxlen), done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::{memory, params, read, wait};
    use std::sync::Mutex;

    /// Records the size of every request that reaches it.
    struct Sizes(Mutex<Vec<u64>>);
    impl Filter for Arc<Sizes> {
        fn read(&self, next: &Next, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
            self.0.lock().unwrap().push(u64::from(len));
            next.read(offset, len, buf, done)
        }
        fn write(&self, next: &Next, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
            self.0.lock().unwrap().push(data.len() as u64);
            next.write(offset, data, fua, done)
        }
    }

    #[test]
    fn large_requests_are_split_and_joined_in_order() {
        let mem = memory(8 << 20);
        let data: Vec<u8> = (0..(5 << 20) + 100).map(|i| (i % 251) as u8).collect();
        mem.fill(1000, &data);
        let sizes = Arc::new(Sizes(Mutex::new(Vec::new())));
        let recorder: Arc<dyn Backend> = Arc::new(Layer::new(Arc::clone(&sizes), mem.clone()));
        let spec = configure(&params(&[("minblock", "512"), ("maxdata", "2M")])).unwrap();
        let top = spec.open(recorder, "").unwrap();
        // Any alignment is still served; 512 becomes the preferred size
        // when the layer below prefers less.
        let sizes_below = mem.caps().block_sizes;
        assert_eq!(top.caps().block_sizes.minimum, sizes_below.minimum);
        assert_eq!(
            top.caps().block_sizes.preferred,
            sizes_below.preferred.max(512)
        );
        assert_eq!(top.caps().block_sizes.maximum, MAX_PAYLOAD);
        let got = read(top.as_ref(), 1000, data.len() as u32);
        assert!(got == data, "split read reassembled wrongly");
        let back: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
        wait(|d| top.write(1000, back.clone(), false, d)).unwrap();
        assert!(mem.contents(1000, back.len()) == back);
        let seen = sizes.0.lock().unwrap().clone();
        assert!(seen.iter().all(|&n| n <= 2 << 20), "{seen:?}");
        assert_eq!(seen.len(), 6, "3 pieces each way: {seen:?}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(configure(&params(&[("minblock", "1000")])).is_err());
        assert!(configure(&params(&[("minblock", "128K")])).is_err());
        assert!(configure(&params(&[("minblock", "4K"), ("maxdata", "6000")])).is_err());
        assert!(configure(&params(&[("maxlen", "0")])).is_err());
        assert_eq!(
            pieces(10, 25, 10).collect::<Vec<_>>(),
            vec![(10, 10), (20, 10), (30, 5)]
        );
    }
}
