//! `cow`: copy-on-write. Writes, zeroes and trims go to a private overlay
//! (an unlinked temporary file in `$TMPDIR`, else `/var/tmp`, gone when the
//! server exits); the layer below is opened read-only and never written,
//! even without `-r`. One overlay per export name, shared by every
//! connection to that export.
//!
//! The overlay tracks each block (`cow-block-size`, default 64K) as below
//! (never written here), data (in the overlay) or zero (zeroed or trimmed
//! here). A write covering part of a block that is still below reads that
//! block first; writes to the overlay are serialised by one lock. Reads
//! that touch overlay blocks read the layer below for the whole range and
//! patch the overlay's blocks in; reads of blocks all in the overlay do no
//! I/O below. With `cow-on-read=true` (or `/PATH`, which means true while
//! that path exists) the whole blocks a read fetched from below are kept
//! in the overlay too. `cow-on-cache` is accepted; NBD_CMD_CACHE is only a
//! hint here and is not passed to layers.

mod overlay;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use self::overlay::{Overlay, State};
use super::{Filter, FilterInfo, FilterSpec, Layer, Next, ParamHelp};
use crate::backend::{Backend, Caps, Done, Error, Extent, Features, Known, ZeroFlags};
use crate::params::{ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "cow",
    description: "nbdkit copy-on-write (COW) filter",
    params: &[
        ParamHelp {
            key: "cow-block-size",
            usage: "cow-block-size=<N>",
            help: "Set COW block size.",
        },
        ParamHelp {
            key: "cow-on-cache",
            usage: "cow-on-cache=<BOOL>",
            help: "Copy cache (prefetch) requests to the overlay.",
        },
        ParamHelp {
            key: "cow-on-read",
            usage: "cow-on-read=<BOOL>|/PATH",
            help: "Copy read requests to the overlay.",
        },
    ],
    configure,
};

/// When reads are copied into the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OnRead {
    Never,
    Always,
    /// While this path exists.
    WhileExists(PathBuf),
}

impl OnRead {
    fn active(&self) -> bool {
        match self {
            OnRead::Never => false,
            OnRead::Always => true,
            OnRead::WhileExists(p) => p.exists(),
        }
    }
}

fn configure(p: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    let block = p.size("cow-block-size")?.unwrap_or(64 << 10);
    if !block.is_power_of_two() || block < 4096 {
        return Err(ParamError(format!(
            "cow-block-size={block}: the block size must be a power of 2, at least 4096"
        )));
    }
    let on_read = match p.get("cow-on-read") {
        None => OnRead::Never,
        Some(v) if v.starts_with('/') => OnRead::WhileExists(PathBuf::from(v)),
        Some(_) if p.bool("cow-on-read", false)? => OnRead::Always,
        Some(_) => OnRead::Never,
    };
    p.bool("cow-on-cache", false)?;
    Ok(Arc::new(Cow {
        block,
        on_read: Arc::new(on_read),
        overlays: Mutex::default(),
    }))
}

struct Cow {
    block: u64,
    on_read: Arc<OnRead>,
    overlays: Mutex<HashMap<String, Arc<Overlay>>>,
}

impl FilterSpec for Cow {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn open(&self, next: Arc<dyn Backend>, export: &str) -> Result<Arc<dyn Backend>, Error> {
        let overlay = {
            let mut all = self.overlays.lock().unwrap_or_else(|e| e.into_inner());
            match all.get(export) {
                Some(o) => Arc::clone(o),
                None => {
                    let o = Arc::new(Overlay::create(next.caps().size, self.block)?);
                    all.insert(export.to_string(), Arc::clone(&o));
                    o
                }
            }
        };
        let layer = CowLayer {
            overlay,
            on_read: Arc::clone(&self.on_read),
        };
        Ok(Arc::new(Layer::new(layer, next)))
    }

    fn read_only_below(&self) -> bool {
        true
    }
}

struct CowLayer {
    overlay: Arc<Overlay>,
    on_read: Arc<OnRead>,
}

/// Waits for a request to the layer below (only writes that cover part of
/// a block not yet in the overlay do).
fn wait_below<T: Send + 'static>(f: impl FnOnce(Done<T>)) -> Result<T, Error> {
    let (tx, rx) = mpsc::sync_channel(1);
    f(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv()
        .unwrap_or_else(|_| Err(Error::Failed("the layer below dropped a request".into())))
}

impl CowLayer {
    /// Reads the whole block `b` as it reads now (overlay or below).
    fn block(&self, next: &Next, b: u64) -> Result<Vec<u8>, Error> {
        let o = &self.overlay;
        let (at, len) = o.block_range(b);
        match o.state(b) {
            State::Below => wait_below(|d| next.read(at, len as u32, Vec::new(), d)),
            State::Data | State::Zero => o.read(at, len as usize),
        }
    }

    /// Writes `data` at `offset` into the overlay, merging partial blocks.
    fn put(&self, next: &Next, offset: u64, data: &[u8]) -> Result<(), Error> {
        let o = &self.overlay;
        let _writing = o.writing();
        let end = offset + data.len() as u64;
        for b in o.blocks(offset, data.len() as u64) {
            let (bs, blen) = o.block_range(b);
            let (from, to) = (offset.max(bs), end.min(bs + blen));
            let piece = &data[(from - offset) as usize..(to - offset) as usize];
            if from == bs && to == bs + blen {
                o.write(bs, piece)?;
            } else {
                let mut whole = self.block(next, b)?;
                whole[(from - bs) as usize..(to - bs) as usize].copy_from_slice(piece);
                o.write(bs, &whole)?;
            }
            o.set(b, State::Data);
        }
        Ok(())
    }

    /// Makes `[offset, offset + len)` read as zeroes in the overlay.
    fn zeroes(&self, next: &Next, offset: u64, len: u64) -> Result<(), Error> {
        let o = &self.overlay;
        let end = offset + len;
        let mut partial = Vec::new();
        {
            let _writing = o.writing();
            for b in o.blocks(offset, len) {
                let (bs, blen) = o.block_range(b);
                if offset <= bs && bs + blen <= end {
                    o.discard(bs, blen)?;
                    o.set(b, State::Zero);
                } else {
                    partial.push(b);
                }
            }
        }
        for b in partial {
            let (bs, blen) = o.block_range(b);
            let (from, to) = (offset.max(bs), end.min(bs + blen));
            self.put(next, from, &vec![0u8; (to - from) as usize])?;
        }
        Ok(())
    }
}

impl Filter for CowLayer {
    fn caps(&self, below: Caps) -> Caps {
        Caps {
            features: Features {
                trim: true,
                fast_zero: true,
                multi_conn: below.features.multi_conn,
                ..Features::WRITABLE
            },
            extents: true,
            ..below
        }
    }

    fn read(&self, next: &Next, offset: u64, len: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        let o = &self.overlay;
        let (below, ours) = o.census(offset, u64::from(len));
        let keep = self.on_read.active();
        if !ours && !keep {
            return next.read(offset, len, buf, done);
        }
        if !below {
            return done(o.read(offset, len as usize));
        }
        let overlay = Arc::clone(o);
        next.read(
            offset,
            len,
            buf,
            Box::new(move |r| {
                done(r.and_then(|mut data| {
                    overlay.patch(offset, &mut data, keep)?;
                    Ok(data)
                }))
            }),
        );
    }

    fn write(&self, next: &Next, offset: u64, data: Vec<u8>, _fua: bool, done: Done<Vec<u8>>) {
        // The overlay is thrown away at exit: FUA asks for nothing more.
        let r = self.put(next, offset, &data).map(|()| data);
        done(r)
    }

    fn zero(&self, next: &Next, offset: u64, len: u64, _flags: ZeroFlags, done: Done<()>) {
        done(self.zeroes(next, offset, len))
    }

    fn trim(&self, next: &Next, offset: u64, len: u64, _fua: bool, done: Done<()>) {
        done(self.zeroes(next, offset, len))
    }

    fn flush(&self, _next: &Next, done: Done<()>) {
        done(Ok(()))
    }

    fn extents(&self, next: &Next, offset: u64, len: u64, done: Done<Vec<Extent>>) {
        let o = &self.overlay;
        let (below, _) = o.census(offset, len);
        if !below {
            return done(Ok(o.extents(offset, len, &[])));
        }
        let overlay = Arc::clone(o);
        next.extents(
            offset,
            len,
            Box::new(move |r| {
                done(r.map(|below| {
                    let covered: u64 = below.iter().map(|e| e.length).sum();
                    overlay.extents(offset, covered.min(len), &below)
                }))
            }),
        );
    }

    fn known(&self, _next: &Next, _offset: u64, _len: u64) -> Known {
        Known::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::{memory, params, read, wait};

    fn cow(pairs: &[(&str, &str)]) -> Arc<dyn FilterSpec> {
        configure(&params(pairs)).unwrap()
    }

    #[test]
    fn writes_stay_in_the_overlay_and_read_back() {
        let mem = memory(1 << 20);
        let orig: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
        mem.fill(0, &orig);
        let spec = cow(&[("cow-block-size", "4096")]);
        assert!(spec.read_only_below());
        let top = spec.open(mem.clone(), "").unwrap();
        assert!(top.caps().features.trim && !top.caps().features.read_only);
        // Partial blocks, a block boundary, a whole block.
        wait(|d| top.write(100, vec![1; 10], false, d)).unwrap();
        wait(|d| top.write(4090, vec![2; 12], false, d)).unwrap();
        wait(|d| top.write(8192, vec![3; 4096], false, d)).unwrap();
        wait(|d| top.zero(20_000, 10_000, ZeroFlags::default(), d)).unwrap();
        let mut want = orig.clone();
        want[100..110].fill(1);
        want[4090..4102].fill(2);
        want[8192..12288].fill(3);
        want[20_000..30_000].fill(0);
        assert!(read(top.as_ref(), 0, 1 << 16) == want[..1 << 16]);
        assert!(read(top.as_ref(), 4000, 200) == want[4000..4200]);
        assert!(
            mem.contents(0, 1 << 20) == orig,
            "the layer below was written"
        );
        // Another connection to the same export sees the same overlay; another export does not.
        let again = spec.open(mem.clone(), "").unwrap();
        assert_eq!(read(again.as_ref(), 100, 10), vec![1; 10]);
        let other = spec.open(mem, "other").unwrap();
        assert!(read(other.as_ref(), 100, 10) == orig[100..110]);
    }

    #[test]
    fn extents_combine_overlay_and_below() {
        let mem = memory(1 << 20);
        mem.fill(64 << 10, &[9; 100]);
        let top = cow(&[("cow-block-size", "64K")]).open(mem, "").unwrap();
        wait(|d| top.write(3 << 16, vec![7; 1 << 16], false, d)).unwrap();
        wait(|d| top.trim(1 << 16, 1 << 16, false, d)).unwrap();
        let e = wait(|d| top.extents(0, 4 << 16, d)).unwrap();
        let ext = |length, hole| Extent { length, hole };
        assert_eq!(
            e,
            vec![ext(2 << 16, true), ext(1 << 16, true), ext(1 << 16, false)]
                .into_iter()
                .fold(Vec::<Extent>::new(), |mut v, x| {
                    match v.last_mut() {
                        Some(l) if l.hole == x.hole => l.length += x.length,
                        _ => v.push(x),
                    }
                    v
                })
        );
        assert_eq!(
            read(top.as_ref(), 1 << 16, 100),
            vec![0; 100],
            "trimmed reads zero"
        );
    }

    #[test]
    fn cow_on_read_keeps_what_was_read_while_the_path_exists() {
        let dir = std::env::temp_dir().join(format!("cow-on-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag = dir.join("convert");
        let mem = memory(1 << 20);
        mem.fill(0, &[5; 8192]);
        let spec = cow(&[
            ("cow-block-size", "4096"),
            ("cow-on-read", flag.to_str().unwrap()),
        ]);
        let top = spec.open(mem.clone(), "").unwrap();
        read(top.as_ref(), 0, 4096);
        mem.fill(0, &[6; 8192]);
        assert_eq!(read(top.as_ref(), 0, 4), vec![6; 4], "not kept: no path");
        std::fs::write(&flag, "").unwrap();
        read(top.as_ref(), 0, 4096);
        mem.fill(0, &[7; 8192]);
        assert_eq!(
            read(top.as_ref(), 0, 4),
            vec![6; 4],
            "kept while the path exists"
        );
        assert_eq!(
            read(top.as_ref(), 4096, 4),
            vec![7; 4],
            "only what was read"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_block_sizes_are_refused() {
        let p = |v: &str| configure(&params(&[("cow-block-size", v)]));
        assert!(p("1000").is_err());
        assert!(p("2048").is_err());
        assert!(p("1M").is_ok());
    }
}
