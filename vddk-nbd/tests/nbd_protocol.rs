//! Byte-exact protocol cases with a raw client: option negotiation order,
//! unknown and lying options, error replies, oversized requests, DISC.

mod nbd_common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nbd_common::{memory, TestServer};
use vddk_nbd::{Server, ServerConfig};
use vddk_tests::nbd::rawclient::{Raw as RawClient, Requests};

const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EOVERFLOW: u32 = 75;
const EPERM: u32 = 1;
const ENOTSUP: u32 = 95;
const ERR_UNSUP: u32 = (1 << 31) + 1;
const ERR_INVALID: u32 = (1 << 31) + 3;
const ERR_TOO_BIG: u32 = (1 << 31) + 9;

#[test]
fn options_out_of_order_unknown_and_malformed() {
    let disk = memory(1 << 20);
    disk.fill(0, b"hello");
    let srv = TestServer::unix(
        "nbd-proto-opts",
        disk,
        ServerConfig {
            export_name: "e".into(),
            ..Default::default()
        },
    );
    let mut c = RawClient::start(&srv.socket);

    // Unknown option with a payload: answered, and sync is kept.
    c.option(0x1234, b"ignored payload");
    let (o, t, msg) = c.opt_reply();
    assert_eq!((o, t), (0x1234, ERR_UNSUP));
    assert!(!msg.is_empty(), "error replies carry a message");
    // STARTTLS is not offered.
    c.option(5, &[]);
    assert_eq!(c.opt_reply().1, ERR_UNSUP);
    // Meta contexts before structured replies: invalid.
    c.option(9, &RawClient::meta_payload("", &[]));
    assert_eq!(c.opt_reply().1, ERR_INVALID);
    c.option(10, &RawClient::meta_payload("", &[b"base:allocation"]));
    assert_eq!(c.opt_reply().1, ERR_INVALID);
    // LIST with data, STRUCTURED_REPLY with data: invalid.
    c.option(3, b"x");
    assert_eq!(c.opt_reply().1, ERR_INVALID);
    c.option(8, b"x");
    assert_eq!(c.opt_reply().1, ERR_INVALID);
    // INFO whose name length lies.
    let mut lie = RawClient::info_payload(b"e", &[]);
    lie[3] = 50;
    c.option(6, &lie);
    assert_eq!(c.opt_reply().1, ERR_INVALID);
    // LIST proper.
    c.option(3, &[]);
    assert_eq!(
        c.opt_replies(),
        vec![(3, 2, vec![0, 0, 0, 1, b'e']), (3, 1, vec![])]
    );
    // Now structured replies, then list meta contexts with the base: namespace.
    c.option(8, &[]);
    assert_eq!(c.opt_reply(), (8, 1, vec![]));
    c.option(9, &RawClient::meta_payload("e", &[b"base:"]));
    let mut ctx = 0u32.to_be_bytes().to_vec();
    ctx.extend_from_slice(b"base:allocation");
    assert_eq!(c.opt_replies(), vec![(9, 4, ctx), (9, 1, vec![])]);
    c.option(10, &RawClient::meta_payload("e", &[b"base:allocation"]));
    let r = c.opt_replies();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].1, 4);
    let id = u32::from_be_bytes(r[0].2[..4].try_into().unwrap());
    // INFO then GO with NAME and BLOCK_SIZE requested.
    c.option(6, &RawClient::info_payload(b"e", &[1, 3]));
    let info = c.opt_replies();
    assert_eq!(
        info.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    assert_eq!(
        &info[0].2[..10],
        &[0, 0, 0, 0, 0, 0, 0, 16, 0, 0],
        "NBD_INFO_EXPORT with size 1 MiB"
    );
    assert_eq!(info[1].2, [&[0u8, 1][..], b"e"].concat());
    let mut bs = vec![0, 3];
    for v in [512u32, 4096, 32 << 20] {
        bs.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(info[2].2, bs);
    c.option(7, &RawClient::info_payload(b"e", &[]));
    let go = c.opt_replies();
    assert_eq!(go.iter().map(|r| r.1).collect::<Vec<_>>(), vec![3, 3, 1]);

    // Transmission: block status uses the id the server gave.
    c.request(7, 0, 11, 0, 1 << 20, &[]);
    let (flags, kind, cookie, payload) = c.chunk();
    assert_eq!((flags, kind, cookie), (1, 5, 11));
    let mut want = id.to_be_bytes().to_vec();
    for (len, f) in [(65536u32, 0u32), ((1 << 20) - 65536, 3)] {
        want.extend_from_slice(&len.to_be_bytes());
        want.extend_from_slice(&f.to_be_bytes());
    }
    assert_eq!(payload, want);
    // Structured read of a data cluster: one data chunk, done.
    c.request(0, 0, 12, 0, 512, &[]);
    let (flags, kind, cookie, payload) = c.chunk();
    assert_eq!((flags, kind, cookie, payload.len()), (1, 1, 12, 8 + 512));
    assert_eq!(&payload[8..13], b"hello");
    // DISC: the server closes after it.
    c.request(2, 0, 13, 0, 0, &[]);
    assert!(c.closed());
    srv.stop();
}

#[test]
fn export_name_and_no_zeroes() {
    let srv = TestServer::unix(
        "nbd-proto-export-name",
        memory(1 << 20),
        ServerConfig::default(),
    );
    // Without NO_ZEROES: 8 + 2 + 124 bytes.
    let mut c = RawClient::connect(&srv.socket);
    c.send(&1u32.to_be_bytes());
    c.option(1, b"whatever");
    let r = c.recv(134);
    assert_eq!(&r[..8], &(1u64 << 20).to_be_bytes());
    assert!(r[10..].iter().all(|&b| b == 0));
    // Simple replies: a read past the end is EINVAL, and the connection lives.
    c.request(0, 0, 1, 1 << 20, 512, &[]);
    assert_eq!(c.simple_reply(), (EINVAL, 1));
    c.request(0, 0, 2, 0, 512, &[]);
    assert_eq!(c.simple_reply(), (0, 2));
    assert_eq!(c.recv(512), vec![0; 512]);
    drop(c);

    // With NO_ZEROES: exactly 10 bytes, then transmission.
    let mut c = RawClient::start(&srv.socket);
    c.option(1, b"");
    let r = c.recv(10);
    let flags = u16::from_be_bytes([r[8], r[9]]);
    assert_eq!(flags & 1, 1, "HAS_FLAGS");
    assert_eq!(flags & (1 << 5), 0, "TRIM is not advertised");
    assert_eq!(flags & (1 << 7), 0, "DF needs structured replies");
    c.request(3, 0, 5, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 5));
    srv.stop();
}

#[test]
fn lying_option_length_is_answered_and_closed() {
    let srv = TestServer::unix("nbd-proto-lying", memory(1 << 20), ServerConfig::default());
    let mut c = RawClient::start(&srv.socket);
    let mut b = 0x4948_4156_454f_5054u64.to_be_bytes().to_vec();
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    c.send(&b);
    let (o, t, _) = c.opt_reply();
    assert_eq!((o, t), (7, ERR_TOO_BIG));
    assert!(c.closed());
    srv.wait_idle();
    srv.stop();
}

#[test]
fn request_errors_keep_the_connection() {
    let disk = memory(64 << 20);
    let srv = TestServer::unix("nbd-proto-errors", disk.clone(), ServerConfig::default());
    let mut c = RawClient::go(&srv.socket, true, false);

    let error = |c: &mut RawClient, cookie: u64| -> (u32, String) {
        let (flags, kind, got, p) = c.chunk();
        assert_eq!(
            (flags, kind, got),
            (1, 0x8001, cookie),
            "a final error chunk"
        );
        let errno = u32::from_be_bytes(p[..4].try_into().unwrap());
        let len = u16::from_be_bytes([p[4], p[5]]) as usize;
        assert_eq!(p.len(), 6 + len);
        (errno, String::from_utf8(p[6..].to_vec()).unwrap())
    };

    c.request(0, 0, 1, (64 << 20) - 256, 512, &[]);
    let (e, msg) = error(&mut c, 1);
    assert_eq!(e, EINVAL);
    assert!(msg.contains("past the end"), "{msg}");
    c.request(1, 0, 2, 64 << 20, 4, b"abcd");
    assert_eq!(error(&mut c, 2).0, ENOSPC);
    c.request(6, 0, 3, u64::MAX - 100, 512, &[]);
    assert_eq!(error(&mut c, 3).0, ENOSPC, "offset overflow");
    c.request(0, 0, 4, 0, 0, &[]);
    assert_eq!(error(&mut c, 4).0, EINVAL, "zero length");
    c.request(4, 0, 5, 0, 512, &[]);
    assert_eq!(error(&mut c, 5).0, EINVAL, "TRIM is not supported");
    c.request(7, 0, 6, 0, 512, &[]);
    assert_eq!(error(&mut c, 6).0, EINVAL, "block status without a context");
    c.request(6, 1 << 4, 7, 0, 512, &[]);
    assert_eq!(error(&mut c, 7).0, ENOTSUP, "fast zero");
    c.request(0, 1 << 3, 8, 0, 512, &[]);
    assert_eq!(error(&mut c, 8).0, EINVAL, "REQ_ONE is not a read flag");
    c.request(0, 0, 9, 0, (32 << 20) + 1, &[]);
    assert_eq!(
        error(&mut c, 9).0,
        EOVERFLOW,
        "read above the maximum payload"
    );
    // An oversized write: its payload is read and discarded.
    let big = vec![0x5a; (32 << 20) + 512];
    c.request(1, 0, 10, 0, big.len() as u32, &big);
    assert_eq!(error(&mut c, 10).0, EOVERFLOW);
    assert_eq!(
        disk.contents(0, 512),
        vec![0; 512],
        "nothing of the oversized write landed"
    );
    // Still in sync.
    c.request(1, 1, 11, 100, 3, b"xyz");
    assert_eq!(c.simple_reply(), (0, 11));
    c.request(0, 0, 12, 100, 3, &[]);
    let (flags, kind, cookie, p) = c.chunk();
    assert_eq!((flags, kind, cookie), (1, 1, 12));
    assert_eq!(p, [&100u64.to_be_bytes()[..], b"xyz"].concat());
    assert_eq!(disk.contents(99, 5), vec![0, b'x', b'y', b'z', 0]);
    srv.stop();
}

#[test]
fn simple_replies_map_eoverflow_to_einval() {
    let srv = TestServer::unix(
        "nbd-proto-simple",
        memory(64 << 20),
        ServerConfig::default(),
    );
    let mut c = RawClient::go(&srv.socket, false, false);
    c.request(0, 0, 1, 0, (32 << 20) + 1, &[]);
    assert_eq!(c.simple_reply(), (EINVAL, 1));
    c.request(0, 0, 2, 0, 1, &[]);
    assert_eq!(c.simple_reply(), (0, 2));
    assert_eq!(c.recv(1), vec![0]);
    srv.stop();
}

#[test]
fn read_only_refuses_writes_with_eperm() {
    let disk = memory(1 << 20);
    let config = ServerConfig {
        read_only: true,
        ..Default::default()
    };
    let srv = TestServer::unix("nbd-proto-ro", disk.clone(), config);
    let mut c = RawClient::go(&srv.socket, false, false);
    c.request(1, 0, 1, 0, 4, b"abcd");
    assert_eq!(c.simple_reply(), (EPERM, 1));
    c.request(6, 0, 2, 0, 512, &[]);
    assert_eq!(c.simple_reply(), (EPERM, 2));
    c.request(3, 0, 3, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 3));
    assert_eq!(disk.contents(0, 4), vec![0; 4]);
    srv.stop();
}

#[test]
fn handshake_timeout_and_connection_limit() {
    let config = ServerConfig {
        max_connections: Some(1),
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let srv = TestServer::unix("nbd-proto-limits", memory(1 << 20), config);
    let t = Instant::now();
    let mut idle = RawClient::connect(&srv.socket);
    // A second client while the first holds the only slot: closed at once.
    let mut second = UnixStream::connect(&srv.socket).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 18];
    assert_eq!(
        std::io::Read::read(&mut second, &mut buf).unwrap(),
        0,
        "over the limit: no greeting"
    );
    // The idle client is dropped after the timeout.
    assert!(idle.closed());
    assert!(t.elapsed() >= Duration::from_millis(300));
    srv.wait_idle();
    // Then the slot is free again.
    let c = RawClient::go(&srv.socket, true, true);
    drop(c);
    srv.stop();
}

#[test]
fn serve_stream_single_connection() {
    let disk = memory(1 << 20);
    disk.fill(4096, b"stream");
    let server = Arc::new(Server::new(disk, ServerConfig::default()));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let s2 = Arc::clone(&server);
    let r = theirs.try_clone().unwrap();
    let t = std::thread::spawn(move || s2.serve_stream(r, theirs));
    let mut c = RawClient { s: ours };
    let mut g = c.recv(18);
    g.truncate(16);
    assert_eq!(g, b"NBDMAGICIHAVEOPT");
    c.send(&3u32.to_be_bytes());
    c.option(1, b"");
    c.recv(10);
    assert_eq!(server.active_connections(), 1);
    c.request(0, 0, 1, 4096, 6, &[]);
    assert_eq!(c.simple_reply(), (0, 1));
    assert_eq!(c.recv(6), b"stream");
    c.request(2, 0, 2, 0, 0, &[]);
    t.join()
        .unwrap()
        .expect("serve_stream returns Ok after DISC");
    assert_eq!(server.active_connections(), 0);
    c.s.flush().unwrap();
}
