//! `DiskWorker` against the fake with 20 ms of async latency, strict mode:
//! pipelining, ordering of overlapping requests, flush and query barriers,
//! close semantics, panicking callbacks.

#[path = "vddk_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pattern_raw, qemu_raw, run, s, scratch, vmdk_from_raw};
use vddk::{ConnectParams, Connection, DiskWorker, Error, OpenFlags, Vddk, WorkerOptions};

const LATENCY: Duration = Duration::from_millis(20);

fn vddk() -> Vddk {
    common::vddk(&[
        ("FAKE_VDDK_ASYNC_LATENCY_US", "20000"),
        ("FAKE_VDDK_MAX_IN_FLIGHT", "64"),
    ])
}

/// A sparse image and its bytes.
fn image(name: &str, sectors: u64, seed: u64) -> (PathBuf, PathBuf, Vec<u8>) {
    let dir = scratch(name);
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    let bytes = pattern_raw(&raw, sectors, seed);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    (dir, vmdk, bytes)
}

fn worker(vmdk: &Path, flags: OpenFlags, max: usize) -> DiskWorker {
    let conn = Connection::connect(&vddk(), &ConnectParams::local()).unwrap();
    let disk = conn.open(s(vmdk), flags).unwrap();
    DiskWorker::spawn(disk, WorkerOptions::new().max_in_flight(max)).unwrap()
}

/// Reads the disk in `n` requests of 128 sectors, all submitted at once.
fn read_pipelined(w: &DiskWorker, n: u64) -> (Vec<u8>, Duration) {
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    for i in 0..n {
        let tx = tx.clone();
        w.read(i * 128, 128, move |r| tx.send((i, r)).unwrap());
    }
    let mut out = vec![0u8; (n * 128 * 512) as usize];
    for _ in 0..n {
        let (i, r) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("completion");
        let data = r.expect("read");
        out[(i * 65536) as usize..((i + 1) * 65536) as usize].copy_from_slice(&data);
    }
    (out, t.elapsed())
}

#[test]
fn pipelined_reads_are_correct_and_overlap_in_time() {
    let (_dir, vmdk, bytes) = image("vddk-async-pipe", 128 * 48, 21);
    let w16 = worker(&vmdk, OpenFlags::READ_ONLY, 16);
    assert_eq!(w16.info().capacity_sectors, 128 * 48);
    let (data16, t16) = read_pipelined(&w16, 48);
    assert!(data16 == bytes, "pipelined reads differ from the image");
    w16.close().unwrap();

    let w1 = worker(&vmdk, OpenFlags::READ_ONLY, 1);
    let (data1, t1) = read_pipelined(&w1, 48);
    assert!(data1 == bytes);
    // One at a time costs at least 48 latencies; 16 in flight, about 3.
    assert!(t1 >= LATENCY * 48, "serial run took {t1:?}");
    assert!(
        t16 * 4 < t1,
        "16 in flight took {t16:?}, 1 in flight {t1:?}"
    );
}

#[test]
fn overlapping_requests_take_effect_in_submission_order() {
    let (dir, vmdk, mut expect) = image("vddk-async-order", 2048, 22);
    let w = worker(&vmdk, OpenFlags::empty(), 32);
    let (tx, rx) = mpsc::channel();
    // Write A, then an overlapping B, then read the union: B wins where they overlap.
    let a = vec![0xAAu8; 16 * 512];
    let b = vec![0xBBu8; 16 * 512];
    let tx1 = tx.clone();
    w.write(100, a, move |r| {
        tx1.send(("a", r.map(|()| Vec::new()))).unwrap()
    });
    let tx2 = tx.clone();
    w.write(108, b, move |r| {
        tx2.send(("b", r.map(|()| Vec::new()))).unwrap()
    });
    let tx3 = tx.clone();
    w.read(100, 24, move |r| tx3.send(("read", r)).unwrap());
    // A write overlapping an in-flight read waits for it too.
    let tx4 = tx.clone();
    w.write(120, vec![0xCCu8; 8 * 512], move |r| {
        tx4.send(("c", r.map(|()| Vec::new()))).unwrap()
    });
    let mut results = std::collections::HashMap::new();
    for _ in 0..4 {
        let (k, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        results.insert(k, r.expect(k));
    }
    let read = &results["read"];
    assert!(read[..8 * 512].iter().all(|&x| x == 0xAA));
    assert!(
        read[8 * 512..].iter().all(|&x| x == 0xBB),
        "the read saw C or lost B"
    );
    w.close().unwrap();

    expect[100 * 512..108 * 512].fill(0xAA);
    expect[108 * 512..120 * 512].fill(0xBB);
    expect[120 * 512..128 * 512].fill(0xCC);
    let raw = dir.join("expect.raw");
    std::fs::write(&raw, &expect).unwrap();
    run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "vmdk", s(&raw), s(&vmdk)],
    );
    run("qemu-img", &["check", s(&vmdk)]);
}

#[test]
fn flush_and_queries_wait_for_earlier_writes() {
    let (_dir, vmdk, _) = image("vddk-async-barrier", 128 * 16, 23);
    let w = worker(&vmdk, OpenFlags::empty(), 8);
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..12u64 {
        let done = done.clone();
        w.write(i * 128, vec![i as u8 + 1; 128 * 512], move |r| {
            r.unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    let (tx, rx) = mpsc::channel();
    let seen = done.clone();
    let txf = tx.clone();
    w.flush(move |r| {
        txf.send(("flush", r.map(|()| seen.load(Ordering::SeqCst))))
            .unwrap()
    });
    let seen = done.clone();
    w.allocated_blocks(0, 128 * 16, 128, move |r| {
        let allocated: u64 = r.unwrap().iter().map(|e| e.length).sum();
        let writes_done = seen.load(Ordering::SeqCst);
        tx.send(("blocks", Ok(writes_done * 1_000_000 + allocated as usize)))
            .unwrap();
    });
    let (k, flushed) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (k, flushed.unwrap()),
        ("flush", 12),
        "flush ran before the writes completed"
    );
    let (k, blocks) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let blocks = blocks.unwrap();
    assert_eq!(k, "blocks");
    assert_eq!(
        blocks / 1_000_000,
        12,
        "the query ran before the writes completed"
    );
    // Every one of the 12 written chunks is allocated now, whatever the image had.
    assert!(blocks % 1_000_000 >= 12 * 128);
}

#[test]
fn close_drains_and_later_requests_get_closed() {
    let (dir, vmdk, mut expect) = image("vddk-async-close", 1024, 24);
    let w = worker(&vmdk, OpenFlags::empty(), 4);
    let clone = w.clone();
    let (tx, rx) = mpsc::channel();
    for i in 0..8u64 {
        let tx = tx.clone();
        clone.write(i * 64, vec![0x5A; 64 * 512], move |r| tx.send(r).unwrap());
        expect[(i * 64 * 512) as usize..((i + 1) * 64 * 512) as usize].fill(0x5A);
    }
    w.close().expect("close");
    assert!(w.is_closed() && clone.is_closed());
    for _ in 0..8 {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("write drained before close");
    }
    let (tx, rx) = mpsc::channel();
    clone.read(0, 1, move |r| tx.send(r).unwrap());
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Err(Error::Closed)
    ));
    w.close().expect("closing twice is fine");
    let raw = dir.join("expect.raw");
    std::fs::write(&raw, &expect).unwrap();
    run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "vmdk", s(&raw), s(&vmdk)],
    );
}

#[test]
fn dropping_the_last_clone_flushes_and_closes() {
    let (dir, vmdk, mut expect) = image("vddk-async-drop", 1024, 25);
    let w = worker(&vmdk, OpenFlags::empty(), 4);
    w.write(10, vec![0x77; 512 * 3], |r| r.unwrap());
    let w2 = w.clone();
    drop(w);
    w2.write(500, vec![0x66; 512], |r| r.unwrap());
    drop(w2);
    expect[10 * 512..13 * 512].fill(0x77);
    expect[500 * 512..501 * 512].fill(0x66);
    assert!(
        qemu_raw(&vmdk, &dir) == expect,
        "writes were lost when the worker was dropped"
    );
}

#[test]
fn a_panicking_callback_does_not_stop_the_worker() {
    let (_dir, vmdk, bytes) = image("vddk-async-panic", 1024, 26);
    let w = worker(&vmdk, OpenFlags::READ_ONLY, 4);
    w.read(0, 1, |_| {
        panic!("a callback that panics (expected in this test)")
    });
    let (tx, rx) = mpsc::channel();
    w.read(1, 1, move |r| tx.send(r).unwrap());
    let data = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(data[..], bytes[512..1024]);
}

#[test]
fn bad_requests_fail_without_reaching_vddk() {
    let (_dir, vmdk, _) = image("vddk-async-args", 1024, 27);
    let w = worker(&vmdk, OpenFlags::empty(), 4);
    let (tx, rx) = mpsc::channel();
    let t1 = tx.clone();
    w.write(0, vec![0; 511], move |r| t1.send(r).unwrap());
    let t2 = tx.clone();
    w.read(1020, 8, move |r| t2.send(r.map(|_| ())).unwrap());
    w.write(1024, vec![0; 512], move |r| tx.send(r).unwrap());
    for _ in 0..3 {
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    w.close().unwrap();

    // Requests over the worker's size limit are refused, not allocated.
    let conn = Connection::connect(&vddk(), &ConnectParams::local()).unwrap();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    let opts = WorkerOptions::new().max_request_bytes(4096);
    let w = DiskWorker::spawn(disk, opts).unwrap();
    let (tx, rx) = mpsc::channel();
    let t1 = tx.clone();
    w.read(0, 16, move |r| t1.send(r.map(|_| ())).unwrap());
    w.read(0, 8, move |r| tx.send(r.map(|_| ())).unwrap());
    let big = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(&big, Err(Error::InvalidArgument(m)) if m.contains("split")),
        "{big:?}"
    );
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("8 sectors is within the limit");
}

#[test]
fn inline_completions_run_on_the_worker_and_keep_ordering() {
    let (dir, vmdk, mut expect) = image("vddk-async-inline", 128 * 16, 28);
    let conn = Connection::connect(&vddk(), &ConnectParams::local()).unwrap();
    let disk = conn.open(s(&vmdk), OpenFlags::empty()).unwrap();
    let w = DiskWorker::spawn(
        disk,
        WorkerOptions::new()
            .max_in_flight(8)
            .inline_completions(true),
    )
    .unwrap();

    // Pipelining still overlaps: 16 reads of 20 ms latency with 8 in flight.
    let (data, t) = read_pipelined(&w, 16);
    assert!(data == expect, "inline reads differ from the image");
    assert!(t < LATENCY * 8, "16 reads with 8 in flight took {t:?}");

    // A completion runs on the worker thread, may submit more work, and
    // gets a clear error instead of a deadlock if it tries to close.
    let (tx, rx) = mpsc::channel();
    let w2 = w.clone();
    w.write(3, vec![0x5A; 512 * 2], move |r| {
        r.unwrap();
        let name = std::thread::current().name().map(str::to_owned);
        let close = w2.close();
        let tx2 = tx.clone();
        w2.read(3, 2, move |r| tx2.send(Ok(r.unwrap())).unwrap());
        tx.send(Err((name, close.err().map(|e| e.to_string()))))
            .unwrap();
    });
    let mut saw_close = false;
    let mut saw_read = false;
    for _ in 0..2 {
        match rx
            .recv_timeout(Duration::from_secs(10))
            .expect("completion")
        {
            Err((name, close_err)) => {
                assert_eq!(name.as_deref(), Some("vddk-disk"));
                let msg = close_err.expect("close from a completion must fail");
                assert!(msg.contains("inline_completions"), "{msg}");
                saw_close = true;
            }
            Ok(data) => {
                assert!(data.iter().all(|&b| b == 0x5A), "read after write");
                saw_read = true;
            }
        }
    }
    assert!(saw_close && saw_read);
    w.close().unwrap();
    expect[3 * 512..5 * 512].fill(0x5A);
    assert!(
        qemu_raw(&vmdk, &dir) == expect,
        "the inline write is not on disk"
    );
}
