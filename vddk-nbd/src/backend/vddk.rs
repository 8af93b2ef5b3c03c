//! The export over a VMware disk: a [`SectorDevice`] on a VDDK handle,
//! driven either by a [`vddk::DiskWorker`], which pipelines VDDK's async
//! reads and writes on the handle's own thread (remote disks), or by
//! synchronous calls from the serving thread (local files); see
//! [`super::engine`].
//!
//! Allocation comes from QueryAllocatedBlocks, which costs about a second
//! per call on remote disks, so it is asked for in 32 GiB windows and
//! cached. Writes only ever allocate, so a write marks its sectors
//! allocated in the cache instead of throwing the window away; a query
//! that was in flight across a write is answered but not cached.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::engine::{Direct, Engine};
use super::sectors::{SectorBackend, SectorDevice};
use super::{BackendError, Done, ErrorKind};

/// Sectors per cached allocation window (32 GiB).
const WINDOW: u64 = 1 << 26;

/// Cached allocation: window index -> allocated runs (sorted, disjoint).
#[derive(Default)]
struct Cache {
    windows: BTreeMap<u64, Vec<(u64, u64)>>,
    generation: u64,
}

impl Cache {
    fn runs_within(&self, start: u64, end: u64) -> Option<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for w in start / WINDOW..end.div_ceil(WINDOW) {
            for &(s, n) in self.windows.get(&w)? {
                let (a, b) = (s.max(start), (s + n).min(end));
                if a < b {
                    out.push((a, b - a));
                }
            }
        }
        Some(out)
    }

    fn mark_allocated(&mut self, start: u64, end: u64) {
        self.generation += 1;
        for w in start / WINDOW..end.div_ceil(WINDOW) {
            if let Some(runs) = self.windows.get_mut(&w) {
                let (a, b) = (start.max(w * WINDOW), end.min((w + 1) * WINDOW));
                runs.push((a, b - a));
                *runs = merge(std::mem::take(runs));
            }
        }
    }
}

/// Sorts and merges overlapping or touching runs.
fn merge(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (s, n) in runs {
        match out.last_mut() {
            Some(last) if s <= last.0 + last.1 => {
                let end = (last.0 + last.1).max(s + n);
                last.1 = end - last.0;
            }
            _ => out.push((s, n)),
        }
    }
    out
}

/// Maps a VDDK error to a backend error, logging its full text once.
fn backend_error(e: vddk::Error) -> BackendError {
    let text = e.to_string();
    log::warn!("VDDK: {text}");
    let kind = match &e {
        vddk::Error::Vix(f) => match f.name {
            "VIX_E_FILE_READ_ONLY" => ErrorKind::ReadOnly,
            "VIX_E_DISK_FULL" => ErrorKind::NoSpace,
            "VIX_E_DISK_OUTOFRANGE" => ErrorKind::OutOfRange,
            _ => ErrorKind::Io,
        },
        vddk::Error::InvalidArgument(_) => ErrorKind::OutOfRange,
        _ => ErrorKind::Io,
    };
    BackendError::new(kind, text)
}

fn adapt<T>(done: Done<T>) -> impl FnOnce(vddk::Result<T>) + Send + 'static
where
    T: Send + 'static,
{
    move |r| done(r.map_err(backend_error))
}

/// The sector device behind [`VddkBackend`].
pub struct VddkDisk {
    engine: Engine,
    read_only: bool,
    cache: Arc<Mutex<Cache>>,
}

impl VddkDisk {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SectorDevice for VddkDisk {
    fn capacity_sectors(&self) -> u64 {
        self.engine.info().capacity_sectors
    }

    fn physical_sector_size(&self) -> Option<u32> {
        self.engine.info().physical_sector_size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn completes_inline(&self) -> bool {
        self.engine.inline()
    }

    fn read(&self, start: u64, count: u64, done: Done<Vec<u8>>) {
        self.engine.read(start, count, adapt(done));
    }

    fn write(&self, start: u64, data: Vec<u8>, done: Done<()>) {
        let end = start + data.len() as u64 / super::SECTOR;
        self.cache().mark_allocated(start, end);
        self.engine.write(start, data, adapt(done));
    }

    fn flush(&self, done: Done<()>) {
        self.engine.flush(adapt(done));
    }

    fn can_allocated(&self) -> bool {
        true
    }

    fn allocated(&self, start: u64, count: u64, done: Done<Vec<(u64, u64)>>) {
        let end = start + count;
        let (missing, generation) = {
            let cache = self.cache();
            if let Some(runs) = cache.runs_within(start, end) {
                drop(cache);
                return done(Ok(runs));
            }
            let missing: Vec<u64> = (start / WINDOW..end.div_ceil(WINDOW))
                .filter(|w| !cache.windows.contains_key(w))
                .collect();
            (missing, cache.generation)
        };
        // Query the missing windows one after another; the last completion
        // answers from the cache, or from what it fetched if a write raced.
        let capacity = self.capacity_sectors();
        let state = Arc::new(Mutex::new((
            missing.len(),
            Vec::new(),
            None::<BackendError>,
            Some(done),
        )));
        for w in missing {
            let (ws, we) = (w * WINDOW, ((w + 1) * WINDOW).min(capacity));
            let cache = Arc::clone(&self.cache);
            let state = Arc::clone(&state);
            self.engine
                .allocated_blocks(ws, we - ws, vddk::MIN_CHUNK, move |r| {
                    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                    match r {
                        Ok(extents) => {
                            let runs: Vec<(u64, u64)> =
                                extents.iter().map(|e| (e.start, e.length)).collect();
                            let mut c = cache.lock().unwrap_or_else(PoisonError::into_inner);
                            if c.generation == generation {
                                c.windows.insert(w, merge(runs.clone()));
                            }
                            st.1.extend(runs);
                        }
                        Err(e) => {
                            st.2.get_or_insert(backend_error(e));
                        }
                    }
                    st.0 -= 1;
                    if st.0 > 0 {
                        return;
                    }
                    let Some(done) = st.3.take() else { return };
                    let result = match st.2.take() {
                        Some(e) => Err(e),
                        None => {
                            let runs = merge(std::mem::take(&mut st.1));
                            Ok(runs
                                .into_iter()
                                .filter_map(|(s, n)| {
                                    let (a, b) = (s.max(start), (s + n).min(end));
                                    (a < b).then_some((a, b - a))
                                })
                                .collect())
                        }
                    };
                    drop(st);
                    done(result);
                });
        }
    }

    fn known_allocated(&self, start: u64, count: u64) -> Option<Vec<(u64, u64)>> {
        self.cache().runs_within(start, start + count)
    }

    fn close(&self) -> Result<(), String> {
        self.engine.close().map_err(|e| e.to_string())
    }
}

/// An export over a VMware disk opened with VDDK.
pub struct VddkBackend(SectorBackend<VddkDisk>);

impl VddkBackend {
    /// Exports the disk `worker` drives, with its requests pipelined: the
    /// way for remote disks. `read_only` refuses writes (open the disk
    /// read-only too, so VDDK enforces it as well).
    pub fn new(worker: vddk::DiskWorker, read_only: bool) -> VddkBackend {
        VddkBackend::with_engine(Engine::Pipelined(worker), read_only)
    }

    /// Exports `disk` with synchronous calls from the threads serving
    /// requests, one at a time: the way for local files, where a call
    /// takes microseconds and a hand-off to a worker thread costs more.
    ///
    /// # Errors
    /// GetInfo's.
    pub fn direct(disk: vddk::Disk, read_only: bool) -> vddk::Result<VddkBackend> {
        Ok(VddkBackend::with_engine(
            Engine::Direct(Direct::new(disk)?),
            read_only,
        ))
    }

    fn with_engine(engine: Engine, read_only: bool) -> VddkBackend {
        VddkBackend(SectorBackend::new(VddkDisk {
            engine,
            read_only,
            cache: Arc::default(),
        }))
    }
}

forward_backend!(VddkBackend);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_mark() {
        assert_eq!(
            merge(vec![(10, 5), (0, 3), (3, 2), (14, 10)]),
            vec![(0, 5), (10, 14)]
        );
        let mut c = Cache::default();
        c.windows.insert(0, vec![(100, 10)]);
        assert_eq!(c.runs_within(0, 200), Some(vec![(100, 10)]));
        assert_eq!(
            c.runs_within(WINDOW - 1, WINDOW + 1),
            None,
            "second window not cached"
        );
        c.mark_allocated(105, 120);
        assert_eq!(c.runs_within(0, 200), Some(vec![(100, 20)]));
        assert_eq!(c.generation, 1);
        // Writes into uncached windows change nothing cached.
        c.mark_allocated(WINDOW + 5, WINDOW + 6);
        assert_eq!(c.windows.len(), 1);
    }
}
