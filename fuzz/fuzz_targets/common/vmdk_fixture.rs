//! A scratch directory per fuzzing process, with real disks that fuzzed
//! descriptors can name as extents or parents.
//!
//! Fuzz inputs are written into this directory and opened from there;
//! inputs that could name a file outside it (any `/`) are skipped, so a
//! fuzzed descriptor never opens, say, a FIFO that would block the run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vddk_fake::vmdk::{self, Adapter, CreateParams, DiskType, VmdkDisk};

/// Sectors in each helper disk.
pub const HELPER_SECTORS: u64 = 4096;

fn make_helpers(dir: &Path) {
    let sparse = dir.join("base.vmdk");
    let flat = dir.join("flat.vmdk");
    for (path, disk_type) in [
        (&sparse, DiskType::MonolithicSparse),
        (&flat, DiskType::MonolithicFlat),
    ] {
        let params = CreateParams {
            disk_type,
            adapter: Adapter::LsiLogic,
            hw_version: 7,
            capacity: HELPER_SECTORS,
        };
        if let Err(e) = vmdk::create(path, &params) {
            panic!("cannot create the helper disk {}: {e:?}", path.display());
        }
        let mut d = match VmdkDisk::open(path, false, true) {
            Ok(d) => d,
            Err(e) => panic!("cannot open the helper disk {}: {e:?}", path.display()),
        };
        // Data at the start, in the middle and in the last grain, so reads
        // through fuzzed extents see something other than zeroes.
        for (sector, byte) in [
            (0, 0xa5u8),
            (HELPER_SECTORS / 2, 0x5a),
            (HELPER_SECTORS - 8, 0xff),
        ] {
            if let Err(e) = d.write(sector, &[byte; 8 * 512]) {
                panic!("cannot write the helper disk {}: {e:?}", path.display());
            }
        }
    }
}

/// The scratch directory, made with its helper disks on first use.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vddk-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        make_helpers(&dir);
        dir
    })
}

/// Writes `bytes` as `name` in the scratch directory, or with `bare` in
/// a subdirectory of it that holds no helper disks (for inputs that write:
/// writing through a helper would change what later inputs see).
pub fn put(name: &str, bytes: &[u8], bare: bool) -> PathBuf {
    let dir = if bare {
        // Emptied first: growing a split disk leaves new extent files.
        let bare = scratch().join("bare");
        let _ = std::fs::remove_dir_all(&bare);
        if let Err(e) = std::fs::create_dir(&bare) {
            panic!("cannot create {}: {e}", bare.display());
        }
        bare
    } else {
        scratch().to_path_buf()
    };
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, bytes) {
        panic!("cannot write {}: {e}", path.display());
    }
    path
}

/// Reads from an open disk at a few places chosen by `probe`, checking the
/// buffer contract: reads inside the disk succeed or fail cleanly, reads
/// past the end fail.
pub fn probe_reads(d: &mut VmdkDisk, probe: u64) {
    let cap = d.capacity();
    let mut sector = [0u8; 512];
    let mut many = vec![0u8; 16 * 512];
    if cap > 0 {
        for s in 0..cap.min(16) {
            let _ = d.read(s, &mut sector);
        }
        let p = probe % cap;
        let _ = d.read(p, &mut sector);
        let _ = d.read(cap - 1, &mut sector);
        if cap >= 16 {
            let _ = d.read(p.min(cap - 16), &mut many);
        }
    }
    assert!(
        d.read(cap, &mut sector).is_err(),
        "read past the end of a {cap}-sector disk succeeded"
    );
    // Allocation over at most the first 2^20 sectors: a whole 2^55-sector
    // disk would only make the run slow, not find more.
    let chunk = 128;
    let whole = cap.div_ceil(chunk) * chunk;
    let count = whole.min(1 << 20);
    if let Ok(runs) = d.allocated(0, count, chunk) {
        let mut last_end = 0;
        for (start, len) in runs {
            assert!(len > 0, "empty allocated run");
            assert!(start >= last_end, "allocated runs overlap or are unsorted");
            assert!(
                start % chunk == 0,
                "run start {start} not on a chunk boundary"
            );
            last_end = start + len;
            assert!(last_end <= count, "allocated run past the query");
        }
    }
}

/// Any `/` could name a file outside the scratch directory.
pub fn stays_inside(bytes: &[u8]) -> bool {
    !bytes.contains(&b'/')
}
