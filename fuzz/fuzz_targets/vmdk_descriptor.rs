//! Opens arbitrary text as a VMDK descriptor file through
//! `VmdkDisk::open`, the public entry point of the descriptor parser.
//!
//! The scratch directory holds a sparse and a flat disk (`base.vmdk`,
//! `flat.vmdk` with `flat-flat.vmdk`) that fuzzed extent lines and
//! `parentFileNameHint` can name.
//!
//! Checked: no panic; reads and allocation queries on a disk that opened
//! stay within its capacity; and the descriptor round-trips: after
//! `metadata_set` rewrites it, a reopened disk has the same capacity,
//! parent hint and metadata, plus the new key.
#![no_main]

#[path = "common/vmdk_fixture.rs"]
mod fixture;

use vddk_fake::vmdk::VmdkDisk;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fuzzRoundTrip";
const VALUE: &str = "a value, with spaces";

fn metadata(d: &VmdkDisk) -> Vec<(String, Option<String>)> {
    d.metadata_keys()
        .into_iter()
        .map(|k| {
            let v = d.metadata_get(&k);
            (k, v)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if !fixture::stays_inside(data) {
        return;
    }
    let path = fixture::put("disk.vmdk", data, false);
    let Ok(mut d) = VmdkDisk::open(&path, true, false) else {
        return;
    };
    let info = d.info();
    assert_eq!(info.capacity, d.capacity());
    assert!(info.num_links >= 1);
    let probe = data
        .iter()
        .fold(0u64, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    fixture::probe_reads(&mut d, probe);
    let before = metadata(&d);
    let capacity = d.capacity();
    drop(d);

    // The round trip: only the top link's descriptor is rewritten.
    let Ok(mut w) = VmdkDisk::open(&path, false, true) else {
        return;
    };
    if w.metadata_set(KEY, VALUE).is_err() {
        return;
    }
    drop(w);
    let again = match VmdkDisk::open(&path, true, true) {
        Ok(d) => d,
        Err(e) => panic!(
            "a descriptor we rewrote no longer opens: {e:?}\n{}",
            String::from_utf8_lossy(data)
        ),
    };
    assert_eq!(again.capacity(), capacity, "capacity changed by a rewrite");
    assert_eq!(
        again.info().parent_hint,
        info.parent_hint,
        "parent hint changed by a rewrite"
    );
    let mut expected = before;
    match expected.iter_mut().find(|(k, _)| k == KEY) {
        Some(e) => e.1 = Some(VALUE.into()),
        None => expected.push((KEY.into(), Some(VALUE.into()))),
    }
    assert_eq!(metadata(&again), expected, "metadata changed by a rewrite");
});
