//! Injected faults reach `DiskWorker` callers as proper errors, strict
//! mode: a failed async read (via the callback), a failed write with its
//! own code, and an oversized request refused at submission with the NFC
//! hint. One test: the fault counters are per process.

#[path = "vddk_common/mod.rs"]
mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{pattern_raw, s, scratch, vmdk_from_raw};
use vddk::{ConnectParams, Connection, DiskWorker, OpenFlags, WorkerOptions};

#[test]
fn injected_faults_surface_as_errors_and_the_worker_goes_on() {
    let v = common::vddk(&[
        ("FAKE_VDDK_ASYNC_LATENCY_US", "1000"),
        ("FAKE_VDDK_FAIL", "read:3,write:2:DISK_FULL"),
        ("FAKE_VDDK_MAX_REQUEST", "1048576"),
        ("FAKE_VDDK_MAX_IN_FLIGHT", "2"),
    ]);
    let dir = scratch("vddk-faults");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    let bytes = pattern_raw(&raw, 8192, 31);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    let conn = Connection::connect(&v, &ConnectParams::local()).unwrap();
    let disk = conn.open(s(&vmdk), OpenFlags::empty()).unwrap();
    // One in flight: the fault counters then match submission order.
    let w = DiskWorker::spawn(disk, WorkerOptions::new().max_in_flight(1)).unwrap();

    let (tx, rx) = mpsc::channel();
    for i in 0..5u64 {
        let tx = tx.clone();
        w.read(i * 8, 8, move |r| tx.send((i, r)).unwrap());
    }
    let mut outcomes: Vec<_> = (0..5)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    outcomes.sort_by_key(|(i, _)| *i);
    for (i, r) in outcomes {
        if i == 2 {
            let err = r.expect_err("the third read is injected to fail");
            let f = err.vix().expect("a VIX error");
            assert_eq!(
                (f.call, f.name),
                ("VixDiskLib_ReadAsync", "VIX_E_FAIL"),
                "{err}"
            );
        } else {
            let data = r.unwrap_or_else(|e| panic!("read {i}: {e}"));
            assert_eq!(
                data[..],
                bytes[(i * 8 * 512) as usize..((i + 1) * 8 * 512) as usize]
            );
        }
    }

    let (tx, rx) = mpsc::channel();
    for i in 0..3u64 {
        let tx = tx.clone();
        w.write(i * 8, vec![0x42; 8 * 512], move |r| {
            tx.send((i, r)).unwrap()
        });
    }
    let mut outcomes: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    outcomes.sort_by_key(|(i, _)| *i);
    assert!(
        outcomes[0].1.is_ok() && outcomes[2].1.is_ok(),
        "{outcomes:?}"
    );
    let err = outcomes[1]
        .1
        .as_ref()
        .expect_err("the second write is injected to fail");
    assert_eq!(
        err.vix().map(|f| (f.call, f.name)),
        Some(("VixDiskLib_WriteAsync", "VIX_E_DISK_FULL"))
    );

    // 2 MiB is over the simulated NFC limit: refused by the submit call itself.
    let (tx, rx) = mpsc::channel();
    w.read(0, 4096, move |r| tx.send(r.map(|_| ())).unwrap());
    let err = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .expect_err("over the request limit");
    assert_eq!(
        err.vix().map(|f| f.name),
        Some("VIX_E_OUT_OF_MEMORY"),
        "{err}"
    );
    assert!(
        err.hint().is_some_and(|h| h.contains("smaller requests")),
        "{err}"
    );

    // The worker still works after all that.
    let (tx, rx) = mpsc::channel();
    w.read(100, 8, move |r| tx.send(r).unwrap());
    let data = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(data[..], bytes[100 * 512..108 * 512]);
    w.close().unwrap();

    // The library takes 2 requests at a time on a handle; a worker allowed
    // 8 has its extra submissions refused as busy, and retries them.
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    let w = DiskWorker::spawn(disk, WorkerOptions::new().max_in_flight(8)).unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 0..32u64 {
        let tx = tx.clone();
        w.read(1000 + i * 8, 8, move |r| tx.send((i, r)).unwrap());
    }
    for _ in 0..32 {
        let (i, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let at = ((1000 + i * 8) * 512) as usize;
        let data = r.unwrap_or_else(|e| panic!("read {i} despite the busy library: {e}"));
        assert_eq!(data[..], bytes[at..at + 4096]);
    }
}
