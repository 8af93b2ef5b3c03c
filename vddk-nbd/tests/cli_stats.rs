//! `-D vddk.stats=1`: the table printed at exit matches what the library
//! itself counted (the fake's `FAKE_VDDK_STATS` file is the oracle), is
//! sorted by time, and is absent without the flag.

mod nbd_common;

use std::path::{Path, PathBuf};

use nbd_common::vddk_nbd;
use vddk_tests::cmd::{run_cmd, stderr};
use vddk_tests::images::make_vmdk;
use vddk_tests::stats::FakeStats;
use vddk_tests::{libdir_param, scratch_dir};

const QUERY_COST_MS: u64 = 200;

/// A 64 MiB monolithic sparse VMDK with data in its second MiB only.
fn sample_disk(dir: &Path) -> PathBuf {
    make_vmdk(
        &dir.join("stats.vmdk"),
        "monolithicSparse",
        64 << 20,
        &[(1 << 20, 1 << 20, 0xcd)],
    )
}

/// Copies the whole disk to nothing through the server, with `io=`
/// choosing how it calls VDDK; returns stderr.
fn serve_copy(disk: &Path, fake_stats: &Path, extra: &[&str], io: &str) -> String {
    stderr(&run_cmd(
        vddk_nbd()
            .env("FAKE_VDDK_STATS", fake_stats)
            .env("FAKE_VDDK_QUERY_COST_MS", QUERY_COST_MS.to_string())
            .args(extra)
            .args(["-r", "-U", "-", "--run", "nbdcopy \"$uri\" null:", "vddk"])
            .arg(libdir_param())
            .arg(format!("file={}", disk.display()))
            .arg(format!("io={io}")),
    ))
}

/// Table rows: name -> (µs, calls, bytes), in printed order.
fn rows(stderr: &str) -> Vec<(String, u64, u64, u64)> {
    let mut lines = stderr
        .lines()
        .skip_while(|l| !l.contains("VDDK function stats"));
    assert!(lines.next().is_some(), "no stats table in:\n{stderr}");
    let header = lines.next().expect("header line");
    assert!(header.contains("VixDiskLib_...") && header.contains("calls"));
    lines
        .filter_map(|l| l.strip_prefix("vddk-nbd: debug:   "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i).map_or(0, |s| s.parse::<u64>().expect("number"));
            (f[0].to_owned(), n(1), n(2), n(3))
        })
        .collect()
}

#[test]
fn stats_table_matches_the_library_counts() {
    for (io, read) in [("direct", "Read"), ("pipelined", "ReadAsync")] {
        stats_table_matches(io, read);
    }
}

fn stats_table_matches(io: &str, read: &str) {
    let dir = scratch_dir("cli-stats");
    let disk = sample_disk(&dir);
    let fake_stats = dir.join("fake.stats");
    let stderr = serve_copy(&disk, &fake_stats, &["-D", "vddk.stats=1"], io);
    let table = rows(&stderr);
    let fake = FakeStats::read(&fake_stats);

    // Sorted by time, the most first.
    let times: Vec<u64> = table.iter().map(|r| r.1).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "{stderr}");

    let get = |name: &str| {
        table
            .iter()
            .find(|r| r.0 == name)
            .unwrap_or_else(|| panic!("no {name} row in:\n{stderr}"))
    };
    for name in ["InitEx", "ConnectEx", "Open", "Close", "Exit"] {
        assert_eq!(get(name).2, 1, "{name} calls\n{stderr}");
    }
    // The copy read the data MiB (and maybe more), never beyond the disk.
    let read_row = get(read);
    assert!(
        read_row.3 >= 1 << 20 && read_row.3 <= 64 << 20,
        "{io}: {read_row:?}"
    );
    // Each query costs QUERY_COST_MS in the library: the time is measured.
    let q = get("QueryAllocatedBlocks");
    assert!(q.1 >= q.2 * QUERY_COST_MS * 1000, "{q:?}");

    // Every function the library counted has the same calls and bytes here.
    for (name, row) in &fake.rows {
        if let Some(r) = table.iter().find(|r| &r.0 == name) {
            assert_eq!(
                (r.2, r.3),
                (row.calls, row.bytes),
                "{name}: ours vs the library's"
            );
        }
    }
    for name in [read, "QueryAllocatedBlocks", "Open", "GetInfo"] {
        assert!(
            fake.rows.contains_key(name),
            "{io}: the fake did not count {name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_table_without_the_flag() {
    let dir = scratch_dir("cli-stats-off");
    let disk = sample_disk(&dir);
    let stderr = serve_copy(
        &disk,
        &dir.join("fake.stats"),
        &["-D", "vddk.stats=0"],
        "auto",
    );
    assert!(!stderr.contains("VDDK function stats"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two clients asking for the allocation of the same range at once make
/// one QueryAllocatedBlocks call: the second waits for the first's answer
/// (each call costs about a second over vCenter).
#[test]
fn concurrent_block_status_shares_one_query() {
    let dir = scratch_dir("cli-stats-shared-query");
    let disk = sample_disk(&dir);
    let fake_stats = dir.join("fake.stats");
    let maps = dir.join("maps");
    let script = format!(
        "nbdinfo --map \"$uri\" > {m}.1 & nbdinfo --map \"$uri\" > {m}.2; wait",
        m = maps.display()
    );
    run_cmd(
        vddk_nbd()
            .env("FAKE_VDDK_STATS", &fake_stats)
            .env("FAKE_VDDK_QUERY_COST_MS", "1000")
            .args(["-r", "-U", "-", "--run", &script, "vddk"])
            .arg(libdir_param())
            .arg(format!("file={}", disk.display())),
    );
    for i in [1, 2] {
        let map = std::fs::read_to_string(format!("{}.{i}", maps.display())).expect("map");
        let rows: Vec<Vec<&str>> = map
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(
            rows.contains(&vec!["1048576", "1048576", "0", "data"]),
            "client {i}:\n{map}"
        );
    }
    let fake = FakeStats::read(&fake_stats);
    assert_eq!(
        fake.rows.get("QueryAllocatedBlocks").map(|r| r.calls),
        Some(1),
        "{}",
        fake.text
    );
}
