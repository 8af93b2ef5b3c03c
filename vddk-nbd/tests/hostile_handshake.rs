//! Hostile clients during negotiation. Each case asserts the exact option
//! reply or a close without a byte, then that the hostile connection was
//! freed and a well-behaved client is served normally afterwards.
//!
//! Cases in this file (numbered across the hostile_* files, 1-24 here):
//!  1 bad option magic                  2 request magic in place of an option
//!  3 unknown client flag               4 every client flag set
//!  5 client flags unset (old style)    6 short option payload, then silence
//!  7 option claiming 4 GiB             8 option one byte over the 64 KiB cap
//!  9 option at the cap is read whole  10 unknown option numbers keep sync
//! 11 STARTTLS without TLS             12 more than 256 options
//! 13 EXPORT_NAME of a missing export  14 GO/INFO of a missing export
//! 15 EXPORT_NAME not UTF-8            16 GO whose name length lies
//! 17 GO whose info-request count lies 18 SET_META query count claims 4 G
//! 19 SET_META query length lies       20 meta contexts before structured
//! 21 structured replies negotiated twice, and after meta contexts
//! 22 bad and foreign context names    23 SET_META replaced by a later one
//! 24 ABORT, then the next client

mod nbd_common;

use std::time::Duration;

use nbd_common::{memory, TestServer};
use vddk_nbd::ServerConfig;
use vddk_tests::nbd::rawclient::*;

fn server(name: &str) -> TestServer {
    TestServer::unix(
        name,
        memory(1 << 20),
        ServerConfig {
            export_name: "disk".into(),
            handshake_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
}

#[test]
fn bad_option_magic_closes() {
    let srv = server("hostile-opt-magic");
    let mut c = Raw::start(&srv.socket);
    let mut b = Raw::option_header(OPT_GO, 0);
    b[0] ^= 0xff;
    c.send(&b);
    assert!(c.closed());
    drop(c);
    srv.finish();
}

#[test]
fn transmission_request_before_go_closes() {
    let srv = server("hostile-cmd-before-go");
    let mut c = Raw::start(&srv.socket);
    // 28 bytes of a READ where an option header belongs.
    c.request(CMD_READ, 0, 1, 0, 512, &[]);
    assert!(c.closed(), "a command during negotiation is not an option");
    drop(c);
    srv.finish();
}

#[test]
fn unknown_client_flag_closes() {
    let srv = server("hostile-cflag");
    let mut c = Raw::connect(&srv.socket);
    c.send(&(3u32 | 1 << 2).to_be_bytes());
    assert!(c.closed());
    drop(c);
    srv.finish();
}

#[test]
fn every_client_flag_closes() {
    let srv = server("hostile-cflag-all");
    let mut c = Raw::connect(&srv.socket);
    c.send(&u32::MAX.to_be_bytes());
    c.option(OPT_GO, &Raw::info_payload(b"", &[]));
    assert!(c.closed());
    drop(c);
    srv.finish();
}

#[test]
fn unset_client_flags_still_negotiate_with_zero_padding() {
    // A client that sets neither FIXED_NEWSTYLE nor NO_ZEROES is served
    // (as nbdkit does), and EXPORT_NAME is answered with the 124 zero
    // bytes it then expects.
    let srv = server("hostile-cflag-none");
    let mut c = Raw::connect(&srv.socket);
    c.send(&0u32.to_be_bytes());
    c.option(OPT_EXPORT_NAME, b"disk");
    let r = c.recv(8 + 2 + 124);
    assert_eq!(&r[..8], &(1u64 << 20).to_be_bytes());
    assert!(r[10..].iter().all(|&b| b == 0));
    assert_eq!(c.simple_read(5, 0, 16), vec![0; 16]);
    drop(c);
    srv.finish();
}

#[test]
fn short_option_payload_then_silence_times_out() {
    let srv = TestServer::unix(
        "hostile-short-opt",
        memory(1 << 20),
        ServerConfig {
            handshake_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let mut c = Raw::start(&srv.socket);
    let mut b = Raw::option_header(OPT_GO, 100);
    b.extend_from_slice(&[0; 10]);
    c.send(&b);
    // The server waits for the 90 bytes it was promised, but not forever.
    assert!(c.silent_for(Duration::from_millis(150)));
    assert!(c.closed_within(Duration::from_secs(3)));
    drop(c);
    srv.finish();
}

#[test]
fn four_gib_option_claim_is_refused_without_reading_it() {
    let srv = server("hostile-4g-opt");
    let mut c = Raw::start(&srv.socket);
    c.send(&Raw::option_header(0xdead, u32::MAX));
    let (o, t, msg) = c.opt_reply();
    assert_eq!((o, t), (0xdead, REP_ERR_TOO_BIG));
    let msg = String::from_utf8(msg).unwrap();
    assert!(msg.contains("4294967295") && msg.contains("65536"), "{msg}");
    assert!(c.closed());
    drop(c);
    srv.finish();
}

#[test]
fn option_one_byte_over_the_cap_is_refused() {
    let srv = server("hostile-cap-plus-one");
    let mut c = Raw::start(&srv.socket);
    c.send(&Raw::option_header(OPT_LIST, 65537));
    assert_eq!(c.opt_reply().1, REP_ERR_TOO_BIG);
    assert!(c.closed());
    drop(c);
    srv.finish();
}

#[test]
fn option_at_the_cap_is_read_whole_and_answered() {
    let srv = server("hostile-cap");
    let mut c = Raw::start(&srv.socket);
    c.option(0x4242, &vec![0x55; 65536]);
    assert_eq!(c.opt_reply().1, REP_ERR_UNSUP);
    // Still in step: the next option is parsed from the right byte.
    c.go_now();
    c.request(CMD_FLUSH, 0, 1, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 1));
    drop(c);
    srv.finish();
}

#[test]
fn unknown_options_are_unsupported_and_keep_sync() {
    let srv = server("hostile-unknown-opts");
    let mut c = Raw::start(&srv.socket);
    for (opt, payload) in [
        (0u32, &b""[..]),
        (4, b"\x00\x00\x00\x00"),
        (11, b""),
        (0x7fff_ffff, b"xyz"),
        (u32::MAX, b"\xff\xff\xff\xff\xff"),
    ] {
        c.option(opt, payload);
        let (o, t, msg) = c.opt_reply();
        assert_eq!((o, t), (opt, REP_ERR_UNSUP), "option {opt}");
        assert!(!msg.is_empty());
    }
    c.go_now();
    drop(c);
    srv.finish();
}

#[test]
fn starttls_is_unsupported_without_tls() {
    let srv = server("hostile-starttls");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_STARTTLS, &[]);
    assert_eq!(c.opt_reply().1, REP_ERR_UNSUP);
    c.option(OPT_STARTTLS, b"junk");
    assert_eq!(c.opt_reply().1, REP_ERR_UNSUP);
    drop(c);
    srv.finish();
}

#[test]
fn more_than_256_options_close() {
    let srv = server("hostile-many-opts");
    let mut c = Raw::start(&srv.socket);
    let mut burst = Vec::new();
    for _ in 0..300 {
        burst.extend_from_slice(&Raw::option_header(OPT_LIST, 0));
    }
    c.send(&burst);
    for i in 0..256 {
        let r = c.opt_replies();
        assert_eq!(r.len(), 2, "LIST {i}");
    }
    let (opt, kind, msg) = c.opt_reply();
    assert_eq!(
        (opt, kind),
        (OPT_LIST, REP_ERR_POLICY),
        "the 257th option is refused"
    );
    let msg = String::from_utf8_lossy(&msg);
    assert!(msg.contains("more than 256 options"), "{msg}");
    assert!(c.closed(), "the 257th option ends negotiation");
    drop(c);
    srv.finish();
}

#[test]
fn export_name_of_a_missing_export_is_served() {
    // Like nbdkit, every name is the one export.
    let srv = server("hostile-missing-export");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_EXPORT_NAME, b"no-such-export");
    let r = c.recv(10);
    assert_eq!(&r[..8], &(1u64 << 20).to_be_bytes());
    c.request(CMD_READ, 0, 1, 0, 4, &[]);
    assert_eq!(c.simple_reply(), (0, 1));
    assert_eq!(c.recv(4), vec![0; 4]);
    drop(c);
    srv.finish();
}

#[test]
fn go_of_a_missing_export_reports_the_real_name() {
    let srv = server("hostile-missing-go");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_INFO, &Raw::info_payload(b"nope", &[1]));
    let r = c.opt_replies();
    assert_eq!(r.iter().map(|r| r.1).collect::<Vec<_>>(), [3, 3, 3, 1]);
    assert_eq!(r[1].2, [&[0u8, 1][..], b"disk"].concat(), "NBD_INFO_NAME");
    c.option(OPT_GO, &Raw::info_payload(b"nope", &[]));
    assert_eq!(c.opt_replies().last().unwrap().1, REP_ACK);
    c.request(CMD_FLUSH, 0, 2, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 2));
    drop(c);
    srv.finish();
}

#[test]
fn export_name_not_utf8_closes() {
    let srv = server("hostile-name-utf8");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_EXPORT_NAME, b"\xff\xfe");
    assert!(c.closed(), "EXPORT_NAME has no error reply: hang up");
    drop(c);
    srv.finish();
}

#[test]
fn go_name_length_lies() {
    let srv = server("hostile-go-name-lie");
    let mut c = Raw::start(&srv.socket);
    for claim in [5u32, u32::MAX] {
        let mut p = Raw::info_payload(b"disk", &[]);
        p[..4].copy_from_slice(&claim.to_be_bytes());
        c.option(OPT_GO, &p);
        let (o, t, _) = c.opt_reply();
        assert_eq!((o, t), (OPT_GO, REP_ERR_INVALID), "name length {claim}");
    }
    // A rejected GO leaves the client negotiating.
    c.go_now();
    drop(c);
    srv.finish();
}

#[test]
fn go_info_request_count_lies() {
    let srv = server("hostile-go-count-lie");
    let mut c = Raw::start(&srv.socket);
    let mut p = Raw::info_payload(b"", &[1]);
    p[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    c.option(OPT_GO, &p);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    // Trailing bytes after the requests are a lie too.
    let mut p = Raw::info_payload(b"", &[]);
    p.extend_from_slice(b"zz");
    c.option(OPT_INFO, &p);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    drop(c);
    srv.finish();
}

#[test]
fn meta_query_count_claiming_billions() {
    let srv = server("hostile-meta-count");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    let mut p = Raw::meta_payload("", &[b"base:allocation"]);
    p[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    c.option(OPT_SET_META, &p);
    let (o, t, msg) = c.opt_reply();
    assert_eq!((o, t), (OPT_SET_META, REP_ERR_INVALID));
    assert!(String::from_utf8_lossy(&msg).contains("4294967295"));
    drop(c);
    srv.finish();
}

#[test]
fn meta_query_length_lies() {
    let srv = server("hostile-meta-len");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    let mut p = Raw::meta_payload("", &[b"base:allocation"]);
    p[8..12].copy_from_slice(&1000u32.to_be_bytes());
    c.option(OPT_LIST_META, &p);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    p[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    c.option(OPT_SET_META, &p);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    // Nothing was selected: block status is refused after GO.
    c.go_now();
    c.request(CMD_BLOCK_STATUS, 0, 3, 0, 512, &[]);
    assert_eq!(c.error_chunk(3).0, EINVAL);
    drop(c);
    srv.finish();
}

#[test]
fn meta_contexts_before_structured_replies_are_invalid() {
    let srv = server("hostile-meta-early");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_SET_META, &Raw::meta_payload("", &[b"base:allocation"]));
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    c.go_now();
    // Simple replies only, and no context: block status is EINVAL.
    c.request(CMD_BLOCK_STATUS, 0, 4, 0, 512, &[]);
    assert_eq!(c.simple_reply(), (EINVAL, 4));
    drop(c);
    srv.finish();
}

#[test]
fn structured_replies_twice_and_after_meta_contexts() {
    let srv = server("hostile-structured-twice");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.opt_reply(), (OPT_STRUCTURED_REPLY, REP_ACK, vec![]));
    c.option(OPT_SET_META, &Raw::meta_payload("", &[b"base:allocation"]));
    let r = c.opt_replies();
    assert_eq!(r.len(), 2);
    let id = u32::from_be_bytes(r[0].2[..4].try_into().unwrap());
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.opt_reply(), (OPT_STRUCTURED_REPLY, REP_ACK, vec![]));
    c.go_now();
    // The selection survives the repeat.
    c.request(CMD_BLOCK_STATUS, 0, 5, 0, 4096, &[]);
    let (flags, kind, cookie, p) = c.chunk();
    assert_eq!((flags, kind, cookie), (1, CHUNK_BLOCK_STATUS, 5));
    assert_eq!(u32::from_be_bytes(p[..4].try_into().unwrap()), id);
    drop(c);
    srv.finish();
}

#[test]
fn bad_context_names_select_nothing() {
    let srv = server("hostile-bad-contexts");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    let names: [&[u8]; 5] = [
        b"base:nonsense",
        b"qemu:dirty-bitmap:x",
        b"",
        b"base:allocation\0",
        b"BASE:ALLOCATION",
    ];
    c.option(OPT_SET_META, &Raw::meta_payload("", &names));
    assert_eq!(c.opt_replies(), vec![(OPT_SET_META, REP_ACK, vec![])]);
    c.option(OPT_LIST_META, &Raw::meta_payload("", &[b"qemu:"]));
    assert_eq!(c.opt_replies(), vec![(OPT_LIST_META, REP_ACK, vec![])]);
    c.option(OPT_SET_META, &Raw::meta_payload("", &[b"base:\xff"]));
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID, "a name that is not UTF-8");
    c.go_now();
    c.request(CMD_BLOCK_STATUS, 0, 6, 0, 512, &[]);
    let (e, msg) = c.error_chunk(6);
    assert_eq!(e, EINVAL);
    assert!(msg.contains("base:allocation"), "{msg}");
    drop(c);
    srv.finish();
}

#[test]
fn a_later_set_meta_context_replaces_the_first() {
    let srv = server("hostile-meta-replace");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    c.option(OPT_SET_META, &Raw::meta_payload("", &[b"base:allocation"]));
    assert_eq!(c.opt_replies().len(), 2);
    c.option(OPT_SET_META, &Raw::meta_payload("", &[b"base:other"]));
    assert_eq!(c.opt_replies().len(), 1, "nothing selected the second time");
    c.go_now();
    c.request(CMD_BLOCK_STATUS, 0, 7, 0, 512, &[]);
    assert_eq!(c.error_chunk(7).0, EINVAL);
    drop(c);
    srv.finish();
}

#[test]
fn abort_is_acknowledged_then_closed() {
    let srv = server("hostile-abort");
    let mut c = Raw::start(&srv.socket);
    c.option(OPT_ABORT, &[]);
    assert_eq!(c.opt_reply(), (OPT_ABORT, REP_ACK, vec![]));
    assert!(c.closed());
    drop(c);
    srv.finish();
}
