//! The fake VDDK's link model on transfers: bandwidth per NFC connection
//! and per host, and lost connections (after bytes, after time, every N
//! bytes of a host). Each scenario runs in a child process (fresh library
//! state) with its environment. Timings are checked as lower bounds only,
//! with margin.

mod fake_support;

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake_support::link_world::*;
use fake_support::*;
use vddk_sys::*;

static DONE: AtomicUsize = AtomicUsize::new(0);
static OK: AtomicUsize = AtomicUsize::new(0);
static LAST_ERR: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn on_done(_data: *mut c_void, result: VixError) {
    if code(result) == VIX_OK {
        OK.fetch_add(1, Ordering::SeqCst);
    } else {
        LAST_ERR.store(result, Ordering::SeqCst);
    }
    DONE.fetch_add(1, Ordering::SeqCst);
}

/// ReadAsync into `buf`, completing through [`on_done`].
fn submit_read(h: VixDiskLibHandle, start: u64, buf: &mut [u8]) -> VixError {
    read_async(h, start, buf, Some(on_done), std::ptr::null_mut())
}

#[test]
fn bandwidth_makes_a_transfer_take_size_over_rate() {
    let env = [
        ("FAKE_VDDK_BANDWIDTH", "8M"),
        ("FAKE_VDDK_ASYNC_LATENCY_US", "100000"),
    ];
    in_world(
        "bandwidth_makes_a_transfer_take_size_over_rate",
        &[],
        "esx7.example.com",
        &env,
        || {
            init_ok();
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            let took = read_all(h, 4 * MIB, 0x11);
            assert!(
                took >= Duration::from_millis(450),
                "4 MiB at 8 MiB/s took {took:?}"
            );

            // Pipelined async reads: the latency overlaps, the transfers follow
            // each other: 2 MiB at 8 MiB/s plus one latency.
            let mut bufs = vec![vec![0u8; 256 * 1024]; 8];
            let t = Instant::now();
            for (i, b) in bufs.iter_mut().enumerate() {
                assert_eq!(code(submit_read(h, i as u64 * 512, b)), VIX_ASYNC);
            }
            wait(h);
            let took = t.elapsed();
            assert_eq!(OK.load(Ordering::SeqCst), 8);
            for (i, b) in bufs.iter().enumerate() {
                let fill = if i < 4 { 0x11 } else { 0 };
                assert!(b.iter().all(|x| *x == fill), "request {i}");
            }
            assert!(
                took >= Duration::from_millis(300),
                "2 MiB pipelined at 8 MiB/s + 100 ms latency took {took:?}"
            );
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);
            exit();
            let log = captured();
            assert!(log.contains("bandwidth=8388608 B/s"), "{log}");
            assert!(!log.contains("RULE VIOLATION"), "{log}");
        },
    );
}

#[test]
fn host_bandwidth_is_shared_by_two_handles() {
    let env = [("FAKE_VDDK_HOST_BANDWIDTH", "8M")];
    in_world(
        "host_bandwidth_is_shared_by_two_handles",
        &[],
        "esx7.example.com",
        &env,
        || {
            init_ok();
            let c = connect(&esx(), true, None, None).expect("login");
            let h1 = open(c, DISK, 0).expect("open disk 1");
            let h2 = open(c, DISK2, 0).expect("open disk 2");
            let alone = read_all(h1, 2 * MIB, 0x11);
            assert!(
                alone >= Duration::from_millis(220),
                "one handle alone: 2 MiB at 8 MiB/s took {alone:?}"
            );
            // Handles are pointers; each thread uses only its own.
            let (a, b) = (h1 as usize, h2 as usize);
            let t = Instant::now();
            let t1 = std::thread::spawn(move || read_all(a as VixDiskLibHandle, 2 * MIB, 0x11));
            let t2 = std::thread::spawn(move || read_all(b as VixDiskLibHandle, 2 * MIB, 0x22));
            t1.join().expect("reader 1");
            t2.join().expect("reader 2");
            let both = t.elapsed();
            assert!(
                both >= Duration::from_millis(420),
                "two handles sharing 8 MiB/s: 4 MiB took {both:?}"
            );
            assert_eq!(code(close(h1)), VIX_OK);
            assert_eq!(code(close(h2)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);
            exit();
        },
    );
}

#[test]
fn drop_after_bytes_loses_the_connection_until_reconnect() {
    let env = [
        ("FAKE_VDDK_DROP_AFTER_BYTES", "1M"),
        ("FAKE_VDDK_BANDWIDTH", "8M"),
    ];
    in_world(
        "drop_after_bytes_loses_the_connection_until_reconnect",
        &[],
        "esx7.example.com",
        &env,
        || {
            init_ok();
            let lost = VIX_E_HOST_TCP_CONN_LOST;
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            assert!(read(h, 0, 1024).is_ok(), "bytes 1..=512K");
            assert!(read(h, 1024, 1024).is_ok(), "bytes ..=1M");
            assert_eq!(code(read(h, 2048, 1).unwrap_err()), lost, "byte 1M+1");
            // It does not heal: every later call on the handle fails.
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost);
            assert_eq!(code(write(h, 0, &[0u8; 512])), lost);
            assert_eq!(code(get_info(h)), lost);
            assert_eq!(code(flush(h)), lost);
            assert_eq!(code(query(h, 0, 8192, 128)), lost);
            let mut buf = vec![0u8; 512];
            assert_eq!(code(submit_read(h, 0, &mut buf)), lost);
            assert_eq!(
                code(open(c, DISK2, 0).unwrap_err()),
                lost,
                "Open on the lost connection"
            );
            assert_eq!(code(close(h)), VIX_OK, "Close of a lost disk succeeds");
            assert_eq!(code(disconnect(c)), VIX_OK, "so does Disconnect");

            // Async requests in flight when the loss happens call back with
            // the error: 4 x 512 KiB at 8 MiB/s, the connection dies at 1 MiB.
            let c = connect(&esx(), false, None, None).expect("new login");
            let h = open(c, DISK, 0).expect("new open");
            let mut bufs = vec![vec![0u8; 512 * 1024]; 4];
            for (i, b) in bufs.iter_mut().enumerate() {
                assert_eq!(code(submit_read(h, i as u64 * 1024, b)), VIX_ASYNC);
            }
            wait(h);
            assert_eq!(DONE.load(Ordering::SeqCst), 4);
            assert_eq!(OK.load(Ordering::SeqCst), 2, "the first MiB arrives");
            assert_eq!(code(LAST_ERR.load(Ordering::SeqCst)), lost);
            assert!(bufs[0].iter().all(|b| *b == 0x11));
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost);
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);

            // A new ConnectEx and Open work again, with the right bytes.
            let c = connect(&esx(), false, None, None).expect("login again");
            let h = open(c, DISK, 0).expect("open again");
            assert!(read(h, 0, 8).unwrap().iter().all(|b| *b == 0x11));
            assert!(read(h, 2048, 8).unwrap().iter().all(|b| *b == 0));
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);
            exit();
            let log = captured();
            assert!(log.contains("[NFC ERROR]NfcNetTcpRead: bRead: -1"), "{log}");
            assert!(log.contains("Error 14011"), "{log}");
            assert!(log.contains("drop_after_bytes"), "{log}");
            assert!(!log.contains("RULE VIOLATION"), "{log}");
        },
    );
}

#[test]
fn drop_after_ms_and_drop_every_bytes_lose_connections() {
    let env = [("FAKE_VDDK_DROP_AFTER_MS", "400")];
    let extra = [("drop_every_bytes", "1M")];
    in_world(
        "drop_after_ms_and_drop_every_bytes_lose_connections",
        &extra,
        "esx7.example.com",
        &env,
        || {
            init_ok();
            let lost = VIX_E_HOST_TCP_CONN_LOST;
            // Each connection carries one MiB of the host's, then dies; the
            // one after the second runs out of time instead.
            for (mib, byte) in [("first", "1M+1"), ("second", "2M+1")] {
                let c = connect(&esx(), false, None, None).expect("login");
                let h = open(c, DISK, 0).expect("open");
                assert!(read(h, 0, 2048).is_ok(), "the host's {mib} MiB");
                assert_eq!(code(read(h, 0, 1).unwrap_err()), lost, "byte {byte}");
                close(h);
                disconnect(c);
            }
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            assert!(read(h, 0, 1).is_ok());
            std::thread::sleep(Duration::from_millis(450));
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost, "after 400 ms");
            close(h);
            disconnect(c);
            exit();
            let log = captured();
            assert!(log.contains("drop_every_bytes"), "{log}");
            assert!(log.contains("drop_after_ms"), "{log}");
        },
    );
}
