//! The fake VDDK's knobs: latency (sync and async), the in-flight bound,
//! QueryAllocatedBlocks cost, the NFC request-size limit, fault injection
//! and the stats file. Each scenario runs in a child process with its
//! environment.

mod fake_support;

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use fake_support::*;
use vddk_sys::*;

static DONE: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);
static CALLBACK_THREAD: Mutex<Option<ThreadId>> = Mutex::new(None);

unsafe extern "C" fn on_done(_data: *mut c_void, result: VixError) {
    *CALLBACK_THREAD.lock().unwrap() = Some(std::thread::current().id());
    if code(result) != VIX_OK {
        FAILED.fetch_add(1, Ordering::SeqCst);
        LAST.store(result, Ordering::SeqCst);
    }
    DONE.fetch_add(1, Ordering::SeqCst);
}

/// ReadAsync into `buf`, completing through [`on_done`].
fn submit_read(h: VixDiskLibHandle, start: u64, buf: &mut [u8]) -> VixError {
    read_async(h, start, buf, Some(on_done), std::ptr::null_mut())
}

/// Init, a local connection and an open 4 MiB flat disk (first MiB 0x5a).
fn setup(tag: &str) -> (VixDiskLibConnection, VixDiskLibHandle) {
    let dir = vddk_tests::scratch_dir(tag);
    let path = flat_disk(&dir, "disk.vmdk", 4, 0x5a);
    init_ok();
    let conn = connect_local();
    let h = open(conn, path.to_str().unwrap(), 0).expect("open");
    (conn, h)
}

fn teardown(conn: VixDiskLibConnection, h: VixDiskLibHandle) {
    assert_eq!(code(close(h)), VIX_OK);
    assert_eq!(code(disconnect(conn)), VIX_OK);
    exit();
}

#[test]
fn pipelined_async_requests_overlap_their_latency() {
    scenario(
        "pipelined_async_requests_overlap_their_latency",
        &[("FAKE_VDDK_ASYNC_LATENCY_US", "50000")],
        || {
            let (conn, h) = setup("fake-knob-async");
            let mut bufs = vec![vec![0u8; 64 * 512]; 16];
            let t = Instant::now();
            for (i, b) in bufs.iter_mut().enumerate() {
                assert_eq!(code(submit_read(h, i as u64 * 64, b)), VIX_ASYNC);
            }
            assert_eq!(
                DONE.load(Ordering::SeqCst),
                0,
                "completions arrive later, not inside the submit"
            );
            wait(h);
            let pipelined = t.elapsed();
            assert_eq!(DONE.load(Ordering::SeqCst), 16);
            assert!(bufs.iter().all(|b| b.iter().all(|x| *x == 0x5a)));
            assert_ne!(
                *CALLBACK_THREAD.lock().unwrap(),
                Some(std::thread::current().id()),
                "callbacks come from another thread"
            );

            let t = Instant::now();
            for (i, b) in bufs.iter_mut().enumerate() {
                assert_eq!(code(submit_read(h, i as u64 * 64, b)), VIX_ASYNC);
                wait(h);
            }
            let serial = t.elapsed();
            assert!(
                serial >= Duration::from_millis(16 * 50),
                "serial took {serial:?}"
            );
            assert!(
                pipelined >= Duration::from_millis(50),
                "pipelined took {pipelined:?}"
            );
            assert!(
                pipelined * 4 < serial,
                "pipelined {pipelined:?} vs serial {serial:?}"
            );
            teardown(conn, h);
        },
    );
}

#[test]
fn sync_latency_applies_to_every_call() {
    scenario(
        "sync_latency_applies_to_every_call",
        &[("FAKE_VDDK_LATENCY_US", "20000")],
        || {
            let (conn, h) = setup("fake-knob-latency");
            let t = Instant::now();
            for i in 0..10 {
                read(h, i, 1).unwrap();
            }
            let took = t.elapsed();
            assert!(
                took >= Duration::from_millis(200),
                "10 reads at 20 ms took {took:?}"
            );
            teardown(conn, h);
        },
    );
}

#[test]
fn in_flight_bound_refuses_excess_submissions() {
    let env = [
        ("FAKE_VDDK_MAX_IN_FLIGHT", "4"),
        ("FAKE_VDDK_ASYNC_LATENCY_US", "100000"),
    ];
    scenario("in_flight_bound_refuses_excess_submissions", &env, || {
        let (conn, h) = setup("fake-knob-inflight");
        let mut bufs = vec![vec![0u8; 512]; 5];
        for b in bufs.iter_mut().take(4) {
            assert_eq!(code(submit_read(h, 0, b)), VIX_ASYNC);
        }
        assert_eq!(code(submit_read(h, 0, &mut bufs[4])), VIX_E_OBJECT_IS_BUSY);
        assert!(
            captured().contains("FAKE_VDDK_MAX_IN_FLIGHT"),
            "{}",
            captured()
        );
        wait(h);
        assert_eq!(DONE.load(Ordering::SeqCst), 4);
        assert_eq!(
            code(submit_read(h, 0, &mut bufs[4])),
            VIX_ASYNC,
            "room again after Wait"
        );
        wait(h);
        teardown(conn, h);
    });
}

#[test]
fn query_cost_slows_each_query() {
    scenario(
        "query_cost_slows_each_query",
        &[("FAKE_VDDK_QUERY_COST_MS", "150")],
        || {
            let (conn, h) = setup("fake-knob-query");
            for _ in 0..2 {
                let t = Instant::now();
                assert_eq!(code(query(h, 0, 8192, 128)), VIX_OK);
                assert!(
                    t.elapsed() >= Duration::from_millis(150),
                    "query took {:?}",
                    t.elapsed()
                );
            }
            let t = Instant::now();
            read(h, 0, 1).unwrap();
            assert!(
                t.elapsed() < Duration::from_millis(100),
                "reads are not slowed"
            );
            teardown(conn, h);
        },
    );
}

#[test]
fn max_request_fails_like_nfc() {
    scenario(
        "max_request_fails_like_nfc",
        &[("FAKE_VDDK_MAX_REQUEST", "65536")],
        || {
            let (conn, h) = setup("fake-knob-maxreq");
            assert!(read(h, 0, 128).is_ok(), "64 KiB is allowed");
            assert_eq!(code(read(h, 0, 129).unwrap_err()), VIX_E_OUT_OF_MEMORY);
            assert_eq!(
                code(write(h, 0, &vec![0u8; 256 * 512])),
                VIX_E_OUT_OF_MEMORY
            );
            let log = captured();
            assert!(
                log.contains("NFC error 5")
                    && log.contains("Failed to allocate the requested 66048 bytes"),
                "{log}"
            );
            teardown(conn, h);
        },
    );
}

#[test]
fn fault_injection_fails_the_nth_call() {
    let env = [(
        "FAKE_VDDK_FAIL",
        "read:3:DISK_FULL,flush:1,open:2:FILE_ACCESS_ERROR,write:2:36",
    )];
    scenario("fault_injection_fails_the_nth_call", &env, || {
        let (conn, h) = setup("fake-knob-fail");
        assert!(read(h, 0, 1).is_ok());
        assert!(read(h, 0, 1).is_ok());
        assert_eq!(read(h, 0, 1).unwrap_err(), VIX_E_DISK_FULL as u64);
        assert!(read(h, 0, 1).is_ok(), "only the 3rd read fails");
        assert_eq!(code(flush(h)), VIX_E_FAIL, "1st flush fails with E_FAIL");
        assert_eq!(code(flush(h)), VIX_OK);
        let data = [1u8; 512];
        assert_eq!(code(write(h, 0, &data)), VIX_OK);
        // The 2nd write is asynchronous: its injected failure arrives through the callback.
        let err = write_async(h, 0, &data, Some(on_done), std::ptr::null_mut());
        assert_eq!(code(err), VIX_ASYNC);
        wait(h);
        assert_eq!(FAILED.load(Ordering::SeqCst), 1);
        assert_eq!(
            code(LAST.load(Ordering::SeqCst)),
            VIX_E_HOST_CONNECTION_LOST
        );
        let path = {
            let dir = vddk_tests::scratch_dir("fake-knob-fail2");
            flat_disk(&dir, "d.vmdk", 1, 0)
        };
        assert_eq!(
            code(open(conn, path.to_str().unwrap(), 0).unwrap_err()),
            VIX_E_FILE_ACCESS_ERROR,
            "2nd open"
        );
        let h2 = open(conn, path.to_str().unwrap(), 0).expect("3rd open");
        close(h2);
        teardown(conn, h);
    });
}

const PROB_TEST: &str = "fault_probability_is_seeded";

#[test]
fn fault_probability_is_seeded() {
    if is_child(PROB_TEST) {
        let (conn, h) = setup("fake-knob-prob");
        let pattern: String = (0..300)
            .map(|_| if read(h, 0, 1).is_ok() { '.' } else { 'X' })
            .collect();
        println!("PATTERN {pattern}");
        teardown(conn, h);
        return;
    }
    let pattern = |spec: &str| {
        let out = spawn_child(PROB_TEST, &[("FAKE_VDDK_FAIL_PROB", spec)]);
        assert_passed(&out);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| {
                l.split_once("PATTERN ")
                    .map(|(_, p)| p.chars().take(300).collect::<String>())
            })
            .expect("child printed its pattern")
    };
    let a = pattern("read:0.3:42:FILE_ERROR");
    let b = pattern("read:0.3:42:FILE_ERROR");
    let c = pattern("read:0.3:7:FILE_ERROR");
    assert_eq!(a, b, "same seed, same failures");
    assert_ne!(a, c, "another seed, other failures");
    let failures = a.matches('X').count();
    assert!(
        (50..130).contains(&failures),
        "{failures} of 300 failed at p=0.3"
    );
}

#[test]
fn stats_file_counts_calls_bytes_and_time() {
    let name = "stats_file_counts_calls_bytes_and_time";
    let mut stats = String::new();
    if !is_child(name) {
        stats = vddk_tests::scratch_dir("fake-knob-stats")
            .join("stats.txt")
            .to_str()
            .unwrap()
            .to_string();
    }
    scenario(
        name,
        &[("FAKE_VDDK_STATS", &stats), ("FAKE_VDDK_FAIL", "read:4")],
        || {
            let (conn, h) = setup("fake-knob-stats-disk");
            for _ in 0..3 {
                read(h, 0, 8).unwrap();
            }
            assert!(read(h, 0, 8).is_err());
            assert_eq!(code(write(h, 0, &[0u8; 1024])), VIX_OK);
            teardown(conn, h);
        },
    );
    if is_child(name) {
        return;
    }
    let text = std::fs::read_to_string(&stats).expect("Exit wrote the stats file");
    assert!(
        text.starts_with("# fake-vddk stats v1: function calls errors bytes time_us\n"),
        "{text}"
    );
    let row = |f: &str| -> Vec<u64> {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(f))
            .unwrap_or_else(|| panic!("no {f} in\n{text}"));
        line.split(' ')
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert_eq!(&row("VixDiskLib_Read")[..3], &[4, 1, 3 * 4096]);
    assert_eq!(&row("VixDiskLib_Write")[..3], &[1, 0, 1024]);
    assert_eq!(row("VixDiskLib_Open")[0], 1);
    assert_eq!(row("VixDiskLib_InitEx")[0], 1);
    assert_eq!(row("VixDiskLib_Exit")[0], 1);
}
