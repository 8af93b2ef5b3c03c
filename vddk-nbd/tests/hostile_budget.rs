//! Hostile clients that hold the server's memory or its shutdown: writers
//! that stall mid-payload, readers that stop taking their replies. The
//! server's budget for request data bounds what they hold, timeouts over
//! the whole payload or reply end them, and a well-behaved client beside
//! them is served throughout.
//!
//! Cases in this file (numbered across the hostile_* files, 57-60 here):
//! 57 16 writers stalled one byte short of 32 MiB beside a client reading
//! 58 a payload that stops arriving: the connection ends, its buffer freed
//! 59 a reply taken a little at a time: cut after the write timeout
//! 60 shutdown with a client that reads none of 100 MiB of replies

mod nbd_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nbd_common::{memory, TestServer};
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::{ServerConfig, SHUTDOWN_GRACE};
use vddk_tests::images::pattern;
use vddk_tests::nbd::rawclient::*;
use vddk_tests::process::wait_until;

const SIZE: u64 = 64 << 20;
const MIB: usize = 1 << 20;

fn server(name: &str, config: ServerConfig) -> (TestServer, Arc<MemoryBackend>, Vec<u8>) {
    let disk = memory(SIZE);
    let data = pattern(SIZE as usize, 57);
    disk.fill(0, &data);
    let srv = TestServer::unix(
        name,
        disk.clone(),
        ServerConfig {
            handshake_timeout: Duration::from_secs(5),
            ..config
        },
    );
    (srv, disk, data)
}

/// Reads `count` MiB one MiB at a time from the start of the disk and
/// checks every byte.
fn read_exact_mibs(c: &mut Raw, data: &[u8], count: usize) {
    for i in 0..count {
        let at = i * MIB;
        c.request(CMD_READ, 0, 1000 + i as u64, at as u64, MIB as u32, &[]);
        let got = c.read_reply(1000 + i as u64, MIB);
        assert!(got == data[at..at + MIB], "MiB {i} read back exact");
    }
}

#[test]
fn stalled_writers_hold_at_most_half_the_budget_and_a_reader_is_served() {
    let budget = 64 * MIB;
    let (srv, disk, data) = server(
        "hostile-stalled-writers",
        ServerConfig {
            request_memory: budget,
            ..Default::default()
        },
    );
    let stalled: Vec<StalledWriter> = (0..16)
        .map(|i| StalledWriter::start(&srv.socket, i, 32 << 20))
        .collect();
    wait_until("16 stalled connections", Duration::from_secs(10), || {
        srv.active() == 16
    });
    // One 32 MiB payload fills the arriving half; the 15 others wait,
    // unread, in their sockets.
    wait_until(
        "the server to take one payload",
        Duration::from_secs(10),
        || srv.memory_held() == 32 << 20,
    );
    let mut good = Raw::go(&srv.socket, true, false);
    for round in 0..4 {
        read_exact_mibs(&mut good, &data, 16);
        let held = srv.memory_held();
        assert!(held <= budget, "round {round}: {held} bytes held");
    }
    good.request(CMD_DISC, 0, 2, 0, 0, &[]);
    assert!(good.closed());
    drop(stalled);
    srv.wait_idle();
    assert_eq!(srv.memory_held(), 0, "everything was given back");
    assert!(
        disk.contents(0, MIB) == data[..MIB],
        "no stalled write landed"
    );
    srv.finish();
}

#[test]
fn a_payload_that_stops_arriving_ends_its_connection() {
    let (srv, disk, data) = server(
        "hostile-payload-timeout",
        ServerConfig {
            payload_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let stalled = StalledWriter::start(&srv.socket, 1, 8 << 20);
    wait_until("the payload to be taken", Duration::from_secs(10), || {
        srv.memory_held() == 8 << 20
    });
    wait_until(
        "the payload timeout to end the connection",
        Duration::from_secs(10),
        || srv.active() == 0,
    );
    assert_eq!(srv.memory_held(), 0, "its buffer was given back");
    assert!(disk.contents(0, MIB) == data[..MIB], "nothing was written");
    drop(stalled);
    srv.finish();
}

#[test]
fn a_reply_taken_a_little_at_a_time_is_cut_after_the_write_timeout() {
    let timeout = Duration::from_secs(1);
    let (srv, _, data) = server(
        "hostile-slow-reader",
        ServerConfig {
            write_timeout: timeout,
            ..Default::default()
        },
    );
    let mut c = Raw::go(&srv.socket, false, false);
    c.request(CMD_READ, 0, 1, 0, 32 << 20, &[]);
    assert_eq!(c.simple_reply(), (0, 1));
    // 64 KiB every 50 ms: each of the server's writes makes progress, but
    // the whole reply would take 25 s.
    let t = Instant::now();
    let mut got = 0;
    let cut = loop {
        match c.try_recv(64 << 10) {
            Some(b) => {
                assert!(
                    b == data[got..got + b.len()],
                    "the bytes that came are right"
                );
                got += b.len();
            }
            None => break t.elapsed(),
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the reply was not cut ({got} bytes taken)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(got < 32 << 20, "cut before the end, after {cut:?}");
    drop(c);
    srv.wait_idle();
    assert_eq!(srv.memory_held(), 0);
    srv.finish();
}

#[test]
fn shutdown_does_not_wait_for_a_client_that_reads_nothing() {
    let (srv, _, _) = server("hostile-shutdown-no-reader", ServerConfig::default());
    let mut c = Raw::go(&srv.socket, false, false);
    let mut b = Vec::new();
    for i in 0..100u64 {
        b.request(CMD_READ, 0, i, i << 20, 1 << 20, &[]);
    }
    c.send(&b);
    wait_until("replies to back up", Duration::from_secs(10), || {
        srv.memory_held() > 0
    });
    let t = Instant::now();
    srv.begin_shutdown();
    wait_until(
        "shutdown to close the connection",
        SHUTDOWN_GRACE + Duration::from_secs(10),
        || srv.active() == 0,
    );
    assert!(
        t.elapsed() >= SHUTDOWN_GRACE / 2,
        "the client had its grace"
    );
    assert_eq!(srv.memory_held(), 0);
    drop(c);
    srv.stop();
}
