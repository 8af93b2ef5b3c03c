//! `DiskDriver` against the fake with 20 ms of async latency, strict mode:
//! pipelining, ordering of overlapping requests, any byte alignment, flush
//! and query barriers, close semantics, panicking completions, and the same
//! requests in direct mode.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vddk::{ConnectParams, Connection, DiskDriver, DriverOptions, Error, Mode, OpenFlags, Vddk};
use vddk_tests::images::{assert_same_as_raw, qemu_raw, vmdk_image};
use vddk_tests::library::{fake_vddk, wait};

const LATENCY: Duration = Duration::from_millis(20);
const CHUNK: usize = 64 * 1024;

fn vddk() -> Vddk {
    fake_vddk(&[
        ("FAKE_VDDK_ASYNC_LATENCY_US", "20000"),
        ("FAKE_VDDK_MAX_IN_FLIGHT", "64"),
    ])
}

fn driver_in(mode: Mode, vmdk: &Path, flags: OpenFlags, max: usize) -> DiskDriver {
    let conn = Connection::connect(&vddk(), &ConnectParams::local()).unwrap();
    let disk = conn.open(vmdk, flags).unwrap();
    let opts = DriverOptions::new().mode(mode).max_in_flight(max);
    DiskDriver::new(disk, opts).unwrap()
}

fn driver(vmdk: &Path, flags: OpenFlags, max: usize) -> DiskDriver {
    driver_in(Mode::Pipelined, vmdk, flags, max)
}

/// Reads the disk in `n` requests of 64 KiB, all submitted at once.
fn read_pipelined(d: &DiskDriver, n: u64) -> (Vec<u8>, Duration) {
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    for i in 0..n {
        let tx = tx.clone();
        d.read(
            i * CHUNK as u64,
            CHUNK,
            Vec::new(),
            Box::new(move |r| tx.send((i, r)).unwrap()),
        );
    }
    let mut out = vec![0u8; n as usize * CHUNK];
    for _ in 0..n {
        let (i, r) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("completion");
        let data = r.expect("read");
        out[i as usize * CHUNK..(i as usize + 1) * CHUNK].copy_from_slice(&data);
    }
    (out, t.elapsed())
}

#[test]
fn pipelined_reads_are_correct_and_overlap_in_time() {
    let (_dir, vmdk, bytes) = vmdk_image("vddk-driver-pipe", 128 * 48, 21, "monolithicSparse");
    let d16 = driver(&vmdk, OpenFlags::READ_ONLY, 16);
    assert_eq!(d16.capacity(), 128 * 48 * 512);
    assert_eq!(d16.mode(), Mode::Pipelined);
    let (data16, t16) = read_pipelined(&d16, 48);
    assert!(data16 == bytes, "pipelined reads differ from the image");
    d16.close().unwrap();

    let d1 = driver(&vmdk, OpenFlags::READ_ONLY, 1);
    let (data1, t1) = read_pipelined(&d1, 48);
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
    let (dir, vmdk, mut expect) = vmdk_image("vddk-driver-order", 2048, 22, "monolithicSparse");
    let d = driver(&vmdk, OpenFlags::empty(), 32);
    let (tx, rx) = mpsc::channel();
    let send = |name: &'static str| {
        let tx = tx.clone();
        Box::new(move |r: vddk::Result<Vec<u8>>| tx.send((name, r)).unwrap())
    };
    // Write A, then an overlapping B, then read the union: B wins where they overlap.
    d.write(100 * 512, vec![0xAA; 16 * 512], send("a"));
    d.write(108 * 512, vec![0xBB; 16 * 512], send("b"));
    d.read(100 * 512, 24 * 512, Vec::new(), send("read"));
    // A write overlapping an in-flight read waits for it too.
    d.write(120 * 512, vec![0xCC; 8 * 512], send("c"));
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
    assert_eq!(results["a"].len(), 16 * 512, "a write's buffer comes back");
    d.close().unwrap();

    expect[100 * 512..108 * 512].fill(0xAA);
    expect[108 * 512..120 * 512].fill(0xBB);
    expect[120 * 512..128 * 512].fill(0xCC);
    let raw = dir.join("expect.raw");
    std::fs::write(&raw, &expect).unwrap();
    assert_same_as_raw(&raw, &vmdk);
}

/// Unaligned writes read their edge sectors first; overlapping ones, even
/// within one sector, keep submission order, in both modes.
fn unaligned_requests_in(mode: Mode) {
    let name = format!("vddk-driver-unaligned-{mode:?}");
    let (dir, vmdk, mut expect) = vmdk_image(&name, 256, 23, "monolithicSparse");
    let d = driver_in(mode, &vmdk, OpenFlags::empty(), 8);
    let writes: &[(u64, usize, u8)] = &[
        (100, 10, 1),    // inside one sector
        (500, 24, 2),    // across a sector boundary
        (1024, 1536, 3), // aligned start, unaligned end
        (1030, 3000, 4), // overlaps the previous one
        (7000, 512, 5),  // a sector's worth, unaligned
        (105, 2, 6),     // inside the first write
        (4096, 4096, 7), // aligned, between others
        (130_000, 1, 8), // a single byte near the end
    ];
    let (tx, rx) = mpsc::channel();
    for &(off, len, byte) in writes {
        let tx = tx.clone();
        d.write(
            off,
            vec![byte; len],
            Box::new(move |r| tx.send(r.map(|b| b.len())).unwrap()),
        );
        expect[off as usize..off as usize + len].fill(byte);
    }
    for _ in writes {
        rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    }
    // Unaligned reads see the merged bytes.
    for &(off, len) in &[(99u64, 14usize), (510, 30), (1000, 5000), (131_071, 1)] {
        let got = wait(|done| d.read(off, len, Vec::with_capacity(7), done)).unwrap();
        assert!(
            got[..] == expect[off as usize..off as usize + len],
            "{mode:?}: read of {len} at {off}"
        );
    }
    d.close().unwrap();
    let raw = dir.join("expect.raw");
    std::fs::write(&raw, &expect).unwrap();
    assert_same_as_raw(&raw, &vmdk);
}

#[test]
fn unaligned_requests_pipelined() {
    unaligned_requests_in(Mode::Pipelined);
}

#[test]
fn unaligned_requests_direct() {
    unaligned_requests_in(Mode::Direct);
}

#[test]
fn flush_and_queries_wait_for_earlier_writes() {
    let (_dir, vmdk, _) = vmdk_image("vddk-driver-barrier", 128 * 16, 23, "monolithicSparse");
    let d = driver(&vmdk, OpenFlags::empty(), 8);
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..12u64 {
        let done = done.clone();
        d.write(
            i * CHUNK as u64,
            vec![i as u8 + 1; CHUNK],
            Box::new(move |r| {
                r.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }),
        );
    }
    let seen = done.clone();
    let flushed = wait(|f| {
        d.flush(Box::new(
            move |r| f(r.map(|()| seen.load(Ordering::SeqCst))),
        ))
    });
    assert_eq!(
        flushed.unwrap(),
        12,
        "flush ran before the writes completed"
    );
    let seen = done.clone();
    let blocks = wait(|f| {
        d.allocated(
            0,
            16 * CHUNK as u64,
            Box::new(move |r| {
                let allocated: u64 = r.unwrap().iter().map(|e| e.length).sum();
                f(Ok((seen.load(Ordering::SeqCst), allocated)))
            }),
        )
    })
    .unwrap();
    assert_eq!(blocks.0, 12, "the query ran before the writes completed");
    // Every one of the 12 written chunks is allocated now, whatever the image had.
    assert!(blocks.1 >= 12 * CHUNK as u64, "{blocks:?}");
}

#[test]
fn close_drains_and_later_requests_get_closed() {
    let (dir, vmdk, mut expect) = vmdk_image("vddk-driver-close", 1024, 24, "monolithicSparse");
    let d = driver(&vmdk, OpenFlags::empty(), 4);
    let clone = d.clone();
    let (tx, rx) = mpsc::channel();
    for i in 0..8usize {
        let tx = tx.clone();
        let at = i * 64 * 512;
        clone.write(
            at as u64,
            vec![0x5A; 64 * 512],
            Box::new(move |r| tx.send(r).unwrap()),
        );
        expect[at..at + 64 * 512].fill(0x5A);
    }
    d.close().expect("close");
    assert!(d.is_closed() && clone.is_closed());
    for _ in 0..8 {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("write drained before close");
    }
    let r = wait(|f| clone.read(0, 512, Vec::new(), f));
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    d.close().expect("closing twice is fine");
    let raw = dir.join("expect.raw");
    std::fs::write(&raw, &expect).unwrap();
    assert_same_as_raw(&raw, &vmdk);
}

#[test]
fn dropping_the_last_clone_flushes_and_closes() {
    for mode in [Mode::Pipelined, Mode::Direct] {
        let name = format!("vddk-driver-drop-{mode:?}");
        let (_dir, vmdk, mut expect) = vmdk_image(&name, 1024, 25, "monolithicSparse");
        let d = driver_in(mode, &vmdk, OpenFlags::empty(), 4);
        d.write(
            10 * 512,
            vec![0x77; 512 * 3],
            Box::new(|r| drop(r.unwrap())),
        );
        let d2 = d.clone();
        drop(d);
        d2.write(500 * 512, vec![0x66; 512], Box::new(|r| drop(r.unwrap())));
        drop(d2);
        expect[10 * 512..13 * 512].fill(0x77);
        expect[500 * 512..501 * 512].fill(0x66);
        assert!(
            qemu_raw(&vmdk) == expect,
            "{mode:?}: writes were lost when the driver was dropped"
        );
    }
}

#[test]
fn a_panicking_completion_does_not_stop_the_driver() {
    let (_dir, vmdk, bytes) = vmdk_image("vddk-driver-panic", 1024, 26, "monolithicSparse");
    let d = driver(&vmdk, OpenFlags::READ_ONLY, 4);
    d.read(
        0,
        512,
        Vec::new(),
        Box::new(|_| panic!("a completion that panics (expected in this test)")),
    );
    let data = wait(|f| d.read(512, 512, Vec::new(), f)).unwrap();
    assert_eq!(data[..], bytes[512..1024]);
}

#[test]
fn a_completion_may_submit_more_but_not_wait_for_itself() {
    let (_dir, vmdk, _) = vmdk_image("vddk-driver-reentry", 1024, 27, "monolithicSparse");
    let d = driver(&vmdk, OpenFlags::empty(), 4);
    let (tx, rx) = mpsc::channel();
    let d2 = d.clone();
    d.write(
        3 * 512,
        vec![0x5A; 1024],
        Box::new(move |r| {
            r.unwrap();
            let close = d2.close();
            let tx2 = tx.clone();
            d2.read(
                3 * 512,
                1024,
                Vec::new(),
                Box::new(move |r| tx2.send(Ok(r.unwrap())).unwrap()),
            );
            tx.send(Err(close.err().map(|e| e.to_string()))).unwrap();
        }),
    );
    let mut saw_close = false;
    let mut saw_read = false;
    for _ in 0..2 {
        match rx
            .recv_timeout(Duration::from_secs(10))
            .expect("completion")
        {
            Err(close_err) => {
                let msg = close_err.expect("close from a completion must fail");
                assert!(msg.contains("inside a completion"), "{msg}");
                saw_close = true;
            }
            Ok(data) => {
                assert!(data.iter().all(|&b| b == 0x5A), "read after write");
                saw_read = true;
            }
        }
    }
    assert!(saw_close && saw_read);
    d.close().unwrap();
}

#[test]
fn bad_requests_fail_without_reaching_vddk() {
    let (_dir, vmdk, _) = vmdk_image("vddk-driver-args", 1024, 27, "monolithicSparse");
    let d = driver(&vmdk, OpenFlags::empty(), 4);
    let r = wait(|f| d.read(1020 * 512, 8 * 512, Vec::new(), f));
    assert!(
        matches!(r, Err(Error::OutOfRange { offset, length: 4096, capacity: 524288 }) if offset == 1020 * 512),
        "{r:?}"
    );
    let r = wait(|f| d.write(1024 * 512, vec![0; 1], f));
    assert!(matches!(r, Err(Error::OutOfRange { .. })), "{r:?}");
    let r = wait(|f| d.allocated(100, 512, f));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    d.close().unwrap();

    // Requests over the driver's size limit are refused, not allocated.
    let conn = Connection::connect(&vddk(), &ConnectParams::local()).unwrap();
    let disk = conn.open(&vmdk, OpenFlags::READ_ONLY).unwrap();
    let opts = DriverOptions::new().max_request_bytes(4096);
    let d: DiskDriver = DiskDriver::new(disk, opts).unwrap();
    let big = wait(|f| d.read(0, 8192, Vec::new(), f));
    assert!(
        matches!(&big, Err(Error::InvalidArgument(m)) if m.contains("split")),
        "{big:?}"
    );
    wait(|f| d.read(0, 4096, Vec::new(), f)).expect("4 KiB is within the limit");
}

#[test]
fn local_disks_are_served_directly_and_errors_convert_to_the_callers_type() {
    let (_dir, vmdk, bytes) = vmdk_image("vddk-driver-direct", 1024, 28, "monolithicFlat");
    let conn = Connection::connect(&vddk(), &ConnectParams::local()).unwrap();
    let disk = conn.open(&vmdk, OpenFlags::READ_ONLY).unwrap();
    let d: DiskDriver<std::io::Error> = DiskDriver::new(disk, DriverOptions::new()).unwrap();
    assert_eq!((d.mode(), d.transport()), (Mode::Direct, "file"));
    // Direct mode completes before the call returns.
    let mut got = None;
    let (tx, rx) = mpsc::channel();
    d.read(512, 100, Vec::new(), Box::new(move |r| tx.send(r).unwrap()));
    if let Ok(r) = rx.try_recv() {
        got = Some(r.unwrap());
    }
    assert_eq!(got.as_deref(), Some(&bytes[512..612]));
    let (tx, rx) = mpsc::channel();
    d.read(
        1 << 30,
        1,
        Vec::new(),
        Box::new(move |r| tx.send(r).unwrap()),
    );
    let e = rx.try_recv().unwrap().unwrap_err();
    assert!(e.to_string().contains("outside the disk"), "{e}");
}
