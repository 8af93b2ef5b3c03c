//! Hostile clients that leave: mid-payload, mid-reply, mid-handshake, or
//! never finishing it. Each case asserts the server frees the connection
//! (its count of active connections drops to zero) and serves the next
//! client normally.
//!
//! Cases in this file (numbered across the hostile_* files, 45-54 here):
//! 45 disconnect in the middle of a write payload
//! 46 disconnect while a refused 4 GiB write payload is being skipped
//! 47 disconnect in the middle of a 32 MiB read reply
//! 48 pipeline reads without ever reading replies, then disconnect
//! 49 half-close after sending requests: replies still arrive
//! 50 DISC with requests in flight: they are answered first; over TCP,
//!    with more requests after it, no reply is lost to a reset
//! 51 read the greeting, then never send the client flags
//! 52 never read the greeting nor send anything
//! 53 trickle a byte at a time, never finishing negotiation
//! 54 disconnect in the middle of the client flags or an option header
//! (55, 1000 connect/disconnect cycles, is in hostile_cycles.rs.)

mod nbd_common;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use nbd_common::{memory, TestServer};
use vddk_nbd::ServerConfig;
use vddk_tests::nbd::rawclient::*;
use vddk_tests::process::wait_until;

const SIZE: u64 = 64 << 20;

fn server(
    name: &str,
    timeout: Duration,
) -> (TestServer, std::sync::Arc<vddk_nbd::plugins::MemoryBackend>) {
    let disk = memory(SIZE);
    let srv = TestServer::unix(
        name,
        disk.clone(),
        ServerConfig {
            handshake_timeout: timeout,
            ..Default::default()
        },
    );
    (srv, disk)
}

fn finish(srv: TestServer) {
    srv.wait_idle();
    srv.finish();
}

#[test]
fn disconnect_mid_write_payload() {
    let (srv, disk) = server("hostile-mid-payload", Duration::from_secs(5));
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_WRITE, 0, 1, 0, 1 << 20, &vec![0xee; 4096]);
    drop(c);
    srv.wait_idle();
    assert_eq!(
        disk.contents(0, 4096),
        vec![0; 4096],
        "a partial write lands nowhere"
    );
    finish(srv);
}

#[test]
fn disconnect_while_a_refused_payload_is_skipped() {
    let (srv, _) = server("hostile-mid-skip", Duration::from_secs(5));
    let mut c = Raw::go(&srv.socket, true, false);
    // 4 GiB - 1 past the end: refused, and the server reads and drops
    // the payload in small pieces (it never holds it) until the client
    // gives up a megabyte in.
    c.request(CMD_WRITE, 0, 1, SIZE, u32::MAX, &vec![0; 1 << 20]);
    assert!(c.silent_for(Duration::from_millis(100)));
    assert_eq!(srv.active(), 1);
    drop(c);
    finish(srv);
}

#[test]
fn disconnect_mid_read_reply() {
    let (srv, disk) = server("hostile-mid-reply", Duration::from_secs(5));
    disk.fill(0, &vec![0x11; 32 << 20]);
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_READ, 0, 1, 0, 32 << 20, &[]);
    let h = c.recv(100);
    assert_eq!(&h[..4], &STRUCTURED_MAGIC.to_be_bytes());
    drop(c);
    finish(srv);
}

#[test]
fn pipelined_reads_never_collected() {
    let (srv, _) = server("hostile-no-collect", Duration::from_secs(5));
    let mut c = Raw::go(&srv.socket, false, false);
    // Far more reply bytes than any socket buffer: the server's writer
    // blocks, its in-flight bound fills, and then the client leaves.
    let mut b = Vec::new();
    for i in 0..100u64 {
        b.request(CMD_READ, 0, i, 0, 1 << 20, &[]);
    }
    c.send(&b);
    std::thread::sleep(Duration::from_millis(200));
    assert!(srv.active() >= 1);
    drop(c);
    finish(srv);
}

#[test]
fn half_close_still_gets_every_reply() {
    let (srv, _) = server("hostile-half-close", Duration::from_secs(5));
    let mut c = Raw::go(&srv.socket, false, false);
    let mut b = Vec::new();
    for i in 0..8u64 {
        b.request(CMD_WRITE, 0, i, i * 512, 3, b"abc");
    }
    c.send(&b);
    c.s.shutdown(Shutdown::Write).unwrap();
    let mut seen: Vec<u64> = (0..8)
        .map(|_| c.simple_reply())
        .map(|(e, k)| {
            assert_eq!(e, 0);
            k
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    assert!(
        c.closed(),
        "the server ends the connection after the replies"
    );
    drop(c);
    finish(srv);
}

#[test]
fn disc_with_requests_in_flight_answers_them_first() {
    let (srv, disk) = server("hostile-disc-inflight", Duration::from_secs(5));
    let mut c = Raw::go(&srv.socket, false, false);
    let mut b = Vec::new();
    b.request(CMD_WRITE, F_FUA, 1, 0, 4, b"last");
    b.request(CMD_READ, 0, 2, 0, 4 << 20, &[]);
    b.request(CMD_DISC, 0, 3, 0, 0, &[]);
    // Anything after DISC is ignored, not parsed.
    b.extend_from_slice(b"garbage after the disconnect");
    c.send(&b);
    let mut got = Vec::new();
    for _ in 0..2 {
        let (e, k) = c.simple_reply();
        assert_eq!(e, 0);
        if k == 2 {
            assert_eq!(c.recv(4 << 20).len(), 4 << 20);
        }
        got.push(k);
    }
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    assert!(c.closed());
    assert_eq!(disk.contents(0, 4), b"last");
    drop(c);
    finish(srv);
}

#[test]
fn disc_then_garbage_over_tcp_loses_no_reply() {
    let disk = memory(SIZE);
    let pattern: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    disk.fill(0, &pattern);
    let srv = TestServer::tcp(
        "hostile-disc-garbage",
        disk.clone(),
        ServerConfig {
            handshake_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    );
    let mut c = Raw::go_tcp(srv.port, false, false);
    // More reply bytes than the socket buffers hold, so that the last
    // ones are still in the server's send queue when it closes: a close
    // with the unread requests behind DISC would reset the connection
    // and throw them away.
    const READS: u64 = 6;
    const LEN: u32 = 4 << 20;
    let mut b = Vec::new();
    b.request(CMD_WRITE, F_FUA, 1, SIZE - 4, 4, b"last");
    for i in 0..READS {
        b.request(CMD_READ, 0, 10 + i, i * u64::from(LEN), LEN, &[]);
    }
    b.request(CMD_DISC, 0, 3, 0, 0, &[]);
    for i in 0..1000u64 {
        b.request(CMD_READ, 0, 100 + i, 0, 512, &[]);
    }
    c.send(&b);
    let (e, k) = c.simple_reply();
    assert_eq!((e, k), (0, 1), "the write is answered first");
    for i in 0..READS {
        assert_eq!(c.simple_reply(), (0, 10 + i), "read {i}");
        let at = (i * u64::from(LEN)) as usize;
        let got = slowly(&mut c, LEN as usize);
        assert!(
            got == pattern[at..at + LEN as usize],
            "read {i} came back whole and exact"
        );
    }
    assert!(c.closed(), "nothing is answered after DISC");
    assert_eq!(disk.contents(SIZE - 4, 4), b"last");
    drop(c);
    let mut next = Raw::go_tcp(srv.port, false, false);
    assert_eq!(
        next.simple_read(2, SIZE - 4, 4),
        b"last",
        "the next client is served"
    );
    drop(next);
    srv.wait_idle();
    srv.stop();
}

/// Reads `n` bytes a little at a time, as a client busy writing what it
/// reads elsewhere does, so that the server's replies wait in its send
/// queue rather than in this side's receive buffer.
fn slowly(c: &mut Raw<std::net::TcpStream>, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.extend(c.recv((n - got.len()).min(64 << 10)));
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

#[test]
fn greeting_read_then_nothing_times_out() {
    let timeout = Duration::from_millis(300);
    let (srv, _) = server("hostile-idle-handshake", timeout);
    let t = Instant::now();
    let mut c = Raw::connect(&srv.socket);
    assert!(c.closed_within(Duration::from_secs(5)));
    let took = t.elapsed();
    assert!(took >= timeout && took < Duration::from_secs(3), "{took:?}");
    drop(c);
    finish(srv);
}

#[test]
fn silent_client_times_out() {
    let timeout = Duration::from_millis(300);
    let (srv, _) = server("hostile-silent", timeout);
    let many: Vec<Raw> = (0..20).map(|_| Raw::bare(&srv.socket)).collect();
    wait_until("20 connections", Duration::from_secs(5), || {
        srv.active() == 20
    });
    // All of them are dropped by the timeout, with no byte from them.
    wait_until("the timeout to free them", Duration::from_secs(5), || {
        srv.active() == 0
    });
    drop(many);
    finish(srv);
}

#[test]
fn trickling_client_is_bounded_by_the_timeout() {
    let timeout = Duration::from_millis(500);
    let (srv, _) = server("hostile-trickle", timeout);
    let mut c = Raw::start(&srv.socket);
    // A byte every 100 ms: each read is quick, but negotiation never ends.
    let mut bytes = Raw::option_header(OPT_LIST, 60_000).into_iter().cycle();
    let t = Instant::now();
    let mut cut_at = None;
    while t.elapsed() < Duration::from_secs(4) {
        let b = [bytes.next().unwrap_or(0)];
        if c.s.write_all(&b).is_err() || srv.active() == 0 {
            cut_at = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut_at = cut_at.expect("a trickling client must not outlive the handshake timeout");
    assert!(cut_at < Duration::from_millis(1500), "cut after {cut_at:?}");
    drop(c);
    finish(srv);
}

#[test]
fn disconnect_mid_flags_or_mid_option_header() {
    // A long timeout: freeing must come from the close, not the clock.
    let (srv, _) = server("hostile-mid-flags", Duration::from_secs(60));
    let mut c = Raw::connect(&srv.socket);
    c.send(&[0, 0]);
    drop(c);
    let mut c = Raw::start(&srv.socket);
    c.send(&Raw::option_header(OPT_GO, 4)[..10]);
    drop(c);
    let mut c = Raw::start(&srv.socket);
    c.send(&Raw::option_header(OPT_GO, 4));
    c.send(&[0, 0]);
    drop(c);
    let t = Instant::now();
    finish(srv);
    assert!(t.elapsed() < Duration::from_secs(5));
}
