//! `vddk-bench` against the fake VDDK: the table and JSON carry every
//! run's MB/s and latency percentiles, and writes need consent.

mod common;

use common::*;
use vddk_tests::cmd::run;
use vddk_tests::images::make_vmdk;
use vddk_tests::{libdir_param, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vddk-bench");

#[test]
fn table_has_a_row_per_run_with_ordered_percentiles() {
    let dir = scratch_dir("ex-bench");
    let disk = make_vmdk(
        &dir.join("b.vmdk"),
        "monolithicSparse",
        16 << 20,
        &[(0, 16 << 20, 1)],
    );
    let out = ok(example(BIN).arg(libdir_param()).arg(&disk).args([
        "-m",
        "read,randread",
        "-b",
        "4K,64K",
        "-q",
        "1,4",
        "--total",
        "1M",
    ]));
    let mut lines = out.lines();
    assert!(lines.next().unwrap().contains("transport file"), "{out}");
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["mode", "request", "depth", "ops", "MB/s", "p50(us)", "p90(us)", "p99(us)"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 8, "{out}");
    for r in &rows {
        let request = match r[1] {
            "4K" => 4096,
            "64K" => 65536,
            other => panic!("request {other}"),
        };
        assert_eq!(r[3].parse::<u64>().unwrap(), (1 << 20) / request, "{r:?}");
        assert!(r[4].parse::<f64>().unwrap() > 0.0, "{r:?}");
        let p: Vec<u64> = r[5..8].iter().map(|v| v.parse().unwrap()).collect();
        assert!(
            p[0] <= p[1] && p[1] <= p[2],
            "percentiles out of order: {r:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn latency_knob_shows_in_the_percentiles() {
    let dir = scratch_dir("ex-bench-latency");
    let disk = make_vmdk(&dir.join("b.vmdk"), "monolithicSparse", 4 << 20, &[]);
    let json = ok(example(BIN)
        .env("FAKE_VDDK_ASYNC_LATENCY_US", "5000")
        .arg(libdir_param())
        .arg(&disk)
        .arg("io=pipelined")
        .args(["--json", "-b", "64K", "-q", "4", "--total", "2M"]));
    assert_eq!(json_eval(&json, "len(d)"), "1");
    assert_eq!(json_eval(&json, "d[0]['ops']"), "32");
    assert_eq!(json_eval(&json, "d[0]['mode']"), "read");
    let p50: u64 = json_eval(&json, "d[0]['p50_us']").parse().unwrap();
    assert!(
        (5000..1_000_000).contains(&p50),
        "p50 {p50} us with 5 ms per request"
    );
    // Four in flight: about 4 x 64 KiB per 5 ms, well above one at a time.
    let mbs: f64 = json_eval(&json, "d[0]['mb_per_sec']").parse().unwrap();
    assert!(
        mbs > 64.0 * 1024.0 / 5000.0 * 1.5,
        "{mbs} MB/s: no pipelining?"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn writes_need_consent_and_write_the_disk() {
    let dir = scratch_dir("ex-bench-write");
    let disk = make_vmdk(&dir.join("w.vmdk"), "monolithicSparse", 4 << 20, &[]);
    let err = fails(
        example(BIN)
            .arg(libdir_param())
            .arg(&disk)
            .args(["-m", "write"]),
        1,
    );
    assert!(err.contains("--allow-writes"), "{err}");
    let map = run("qemu-img", ["map", "--output=json", disk.to_str().unwrap()]);
    assert_eq!(json_eval(&map, "any(e['data'] for e in d)"), "false");

    ok(example(BIN).arg(libdir_param()).arg(&disk).args([
        "-m",
        "write",
        "--allow-writes",
        "-b",
        "64K",
        "-q",
        "2",
        "--total",
        "1M",
    ]));
    run("qemu-img", ["check", "-q", disk.to_str().unwrap()]);
    let map = run("qemu-img", ["map", "--output=json", disk.to_str().unwrap()]);
    assert_eq!(
        json_eval(&map, "sum(e['length'] for e in d if e['data'])"),
        (1 << 20).to_string()
    );
    let err = fails(
        example(BIN)
            .arg(libdir_param())
            .arg(&disk)
            .args(["-m", "seq"]),
        1,
    );
    assert!(err.contains("randwrite"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
