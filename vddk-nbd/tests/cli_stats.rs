//! `-D vddk.stats=1`: the table printed at exit matches what the library
//! itself counted (the fake's `FAKE_VDDK_STATS` file is the oracle), is
//! sorted by time, and is absent without the flag.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vddk_tests::{fake_libdir, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vddk-nbd");
const QUERY_COST_MS: u64 = 200;

fn check(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("spawn");
    assert!(o.status.success(), "{cmd:?} failed: {o:?}");
    o
}

/// A 64 MiB monolithic sparse VMDK with data in its second MiB only.
fn sample_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("stats.vmdk");
    check(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk"])
            .arg(&disk)
            .arg((64u64 << 20).to_string()),
    );
    check(
        Command::new("qemu-io")
            .args(["-f", "vmdk", "-c", "write -q -P 0xcd 1M 1M"])
            .arg(&disk),
    );
    disk
}

/// Copies the whole disk to nothing through the server, with `io=`
/// choosing how it calls VDDK; returns stderr.
fn serve_copy(disk: &Path, fake_stats: &Path, extra: &[&str], io: &str) -> String {
    let o = check(
        Command::new(BIN)
            .env(
                "PATH",
                format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
            )
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("FAKE_VDDK_INVENTORY")
            .env("FAKE_VDDK_STATS", fake_stats)
            .env("FAKE_VDDK_QUERY_COST_MS", QUERY_COST_MS.to_string())
            .args(extra)
            .args(["-r", "-U", "-", "--run", "nbdcopy \"$uri\" null:", "vddk"])
            .arg(format!("libdir={}", fake_libdir().display()))
            .arg(format!("file={}", disk.display()))
            .arg(format!("io={io}")),
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
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

/// The fake's own counts: VixDiskLib_X -> (calls, bytes).
fn fake_counts(path: &Path) -> HashMap<String, (u64, u64)> {
    let text = std::fs::read_to_string(path).expect("fake stats file");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f[0].strip_prefix("VixDiskLib_").unwrap_or(f[0]).to_owned();
            (name, (f[1].parse().unwrap(), f[3].parse().unwrap()))
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
    let fake = fake_counts(&fake_stats);

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
    for (name, (calls, bytes)) in &fake {
        if let Some(r) = table.iter().find(|r| &r.0 == name) {
            assert_eq!(
                (r.2, r.3),
                (*calls, *bytes),
                "{name}: ours vs the library's"
            );
        }
    }
    for name in [read, "QueryAllocatedBlocks", "Open", "GetInfo"] {
        assert!(
            fake.contains_key(name),
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
