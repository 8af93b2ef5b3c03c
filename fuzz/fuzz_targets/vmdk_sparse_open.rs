//! Opens arbitrary bytes as a hosted sparse (or streamOptimized) VMDK
//! through `VmdkDisk::open`, reaching the sparse header, embedded
//! descriptor, grain directory and grain table parsers, then reads,
//! queries allocation, writes and grows the disk.
//!
//! Input: 8 bytes (little endian) choosing the sector to probe, then the
//! file. The scratch directory holds `base.vmdk` for embedded descriptors
//! that name a parent.
//!
//! Reads may follow an embedded descriptor anywhere (they only read);
//! writes go to a copy in a directory without helpers, and only when the
//! input holds no `/`.
//!
//! Checked: no panic (arithmetic overflow included when built with debug
//! assertions); reads and allocation queries stay within the capacity;
//! writes into the file either succeed or fail cleanly; a disk that grew
//! reopens with the capacity asked for.
#![no_main]

#[path = "common/vmdk_fixture.rs"]
mod fixture;

use vddk_fake::vmdk::{self, VmdkDisk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((probe, file)) = data.split_first_chunk::<8>() else {
        return;
    };
    if !fixture::stays_inside(file) && !file.starts_with(b"KDMV") {
        // Text with a `/` could name files outside the scratch directory; a
        // sparse file's embedded descriptor is checked by the open below.
        return;
    }
    let probe = u64::from_le_bytes(*probe);
    let path = fixture::put("s.vmdk", file, false);
    let single_link = probe & 1 != 0;
    let Ok(mut d) = VmdkDisk::open(&path, true, single_link) else {
        return;
    };
    let info = d.info();
    assert_eq!(info.capacity, d.capacity());
    fixture::probe_reads(&mut d, probe);
    drop(d);

    // Writes go only where the input cannot redirect them: into a copy in
    // a directory without helpers, never through a path with a `/`.
    if !fixture::stays_inside(file) {
        return;
    }
    let path = fixture::put("s.vmdk", file, true);
    let Ok(mut w) = VmdkDisk::open(&path, false, single_link) else {
        return;
    };
    let cap = w.capacity();
    if cap > 0 {
        let at = (probe >> 1) % cap;
        let pattern = [0x3cu8; 512];
        if w.write(at, &pattern).is_ok() {
            let mut back = [0u8; 512];
            let _ = w.read(at, &mut back);
        }
    }
    drop(w);

    // Grow by up to 8 GiB, then reopen: the descriptor that grow rewrote
    // must describe the new capacity.
    let grown = cap.saturating_add(1 + (probe >> 16) % (1 << 24));
    if vmdk::grow(&path, grown, probe & 2 != 0).is_ok() {
        if let Ok(mut g) = VmdkDisk::open(&path, true, true) {
            assert_eq!(g.capacity(), grown, "capacity after grow");
            fixture::probe_reads(&mut g, probe);
        }
    }
});
