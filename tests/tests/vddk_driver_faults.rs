//! Injected faults reach `DiskDriver` callers as proper errors, strict
//! mode: a failed async read (through the callback), a failed write with
//! its own code, an oversized request refused at submission with the NFC
//! hint, and a library that holds fewer requests than asked. One test: the
//! fault counters are per process.

use std::sync::mpsc;
use std::time::Duration;

use vddk::{ConnectParams, Connection, DiskDriver, DriverOptions, Mode, OpenFlags, VixCode};
use vddk_tests::images::vmdk_image;
use vddk_tests::library::{fake_vddk, wait};

#[test]
fn injected_faults_surface_as_errors_and_the_driver_goes_on() {
    let v = fake_vddk(&[
        ("FAKE_VDDK_ASYNC_LATENCY_US", "1000"),
        ("FAKE_VDDK_FAIL", "read:3,write:2:DISK_FULL"),
        ("FAKE_VDDK_MAX_REQUEST", "1048576"),
        ("FAKE_VDDK_MAX_IN_FLIGHT", "2"),
    ]);
    let (_dir, vmdk, bytes) = vmdk_image("vddk-faults", 8192, 31, "monolithicSparse");
    let conn = Connection::connect(&v, &ConnectParams::local()).unwrap();
    let disk = conn.open(&vmdk, OpenFlags::empty()).unwrap();
    // One in flight: the fault counters then match submission order.
    let opts = DriverOptions::new().mode(Mode::Pipelined).max_in_flight(1);
    let d: DiskDriver = DiskDriver::new(disk, opts).unwrap();

    let (tx, rx) = mpsc::channel();
    for i in 0..5u64 {
        let tx = tx.clone();
        d.read(
            i * 4096,
            4096,
            Vec::new(),
            Box::new(move |r| tx.send((i, r)).unwrap()),
        );
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
                (f.call(), f.code()),
                ("VixDiskLib_ReadAsync", VixCode::FAIL),
                "{err}"
            );
        } else {
            let data = r.unwrap_or_else(|e| panic!("read {i}: {e}"));
            let at = i as usize * 4096;
            assert_eq!(data[..], bytes[at..at + 4096]);
        }
    }

    let (tx, rx) = mpsc::channel();
    for i in 0..3u64 {
        let tx = tx.clone();
        d.write(
            i * 4096,
            vec![0x42; 4096],
            Box::new(move |r| tx.send((i, r)).unwrap()),
        );
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
        err.vix().map(|f| (f.call(), f.code())),
        Some(("VixDiskLib_WriteAsync", VixCode::DISK_FULL))
    );

    // 2 MiB is over the simulated NFC limit: refused by the submit call itself.
    let err = wait(|f| d.read(0, 2 << 20, Vec::new(), f)).expect_err("over the request limit");
    assert_eq!(err.vix_code(), Some(VixCode::OUT_OF_MEMORY), "{err}");
    assert!(
        err.hint().is_some_and(|h| h.contains("smaller requests")),
        "{err}"
    );

    // The driver still works after all that.
    let data = wait(|f| d.read(100 * 512, 4096, Vec::new(), f)).unwrap();
    assert_eq!(data[..], bytes[100 * 512..108 * 512]);
    d.close().unwrap();

    // The library takes 2 requests at a time on a handle; a driver allowed
    // 8 has its extra submissions refused as busy, and retries them.
    let disk = conn.open(&vmdk, OpenFlags::READ_ONLY).unwrap();
    let opts = DriverOptions::new().mode(Mode::Pipelined).max_in_flight(8);
    let d: DiskDriver = DiskDriver::new(disk, opts).unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 0..32u64 {
        let tx = tx.clone();
        d.read(
            (1000 + i * 8) * 512,
            4096,
            Vec::new(),
            Box::new(move |r| tx.send((i, r)).unwrap()),
        );
    }
    for _ in 0..32 {
        let (i, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let at = ((1000 + i * 8) * 512) as usize;
        let data = r.unwrap_or_else(|e| panic!("read {i} despite the busy library: {e}"));
        assert_eq!(data[..], bytes[at..at + 4096]);
    }
}
