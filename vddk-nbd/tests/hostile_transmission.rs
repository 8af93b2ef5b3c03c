//! Hostile clients after negotiation: every request a client should not
//! send gets its exact error (with a message when structured replies are
//! on), the connection stays in step, and a second client is served
//! normally afterwards.
//!
//! Cases in this file (numbered across the hostile_* files, 25-44 here):
//! 25 read past the end              26 read straddling the end
//! 27 write past the end (payload skipped)
//! 28 write zeroes past the end      29 offset + length overflows (read)
//! 30 offset + length overflows (write, payload skipped)
//! 31 cache and block status past the end
//! 32 zero-length read, write, zeroes, cache, block status
//! 33 read above the maximum payload 34 write above the maximum payload,
//!    simple replies                 35 unknown command numbers
//! 36 TRIM (not advertised)          37 unknown flag bits on each command
//! 38 DF without structured replies  39 invalid flags on a write skip its payload
//! 40 FAST_ZERO                      41 write and zeroes on a read-only export
//! 42 BLOCK_STATUS without a context 43 bad request magic mid-stream
//! 44 duplicate cookies in flight

mod nbd_common;

use std::sync::Arc;

use nbd_common::{memory, TestServer};
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::ServerConfig;
use vddk_tests::nbd::rawclient::*;

const SIZE: u64 = 1 << 20;
const MAX: u32 = 32 << 20;

fn server(name: &str) -> (TestServer, Arc<MemoryBackend>) {
    let disk = memory(SIZE);
    let srv = TestServer::unix(name, disk.clone(), ServerConfig::default());
    (srv, disk)
}

/// The connection is still in step: a write and a read of it succeed.
fn in_step(c: &mut Raw, cookie: u64) {
    c.request(CMD_WRITE, 0, cookie, 8192, 4, b"sync");
    assert_eq!(c.simple_reply(), (0, cookie), "in step after an error");
    c.request(CMD_READ, 0, cookie + 1, 8192, 4, &[]);
    assert_eq!(c.read_reply(cookie + 1, 4), b"sync");
}

#[test]
fn read_past_the_end() {
    let (srv, _) = server("hostile-read-end");
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_READ, 0, 1, SIZE, 512, &[]);
    let (e, msg) = c.error_chunk(1);
    assert_eq!(e, EINVAL);
    assert!(msg.contains("past the end"), "{msg}");
    in_step(&mut c, 2);
    drop(c);
    srv.finish();
}

#[test]
fn read_straddling_the_end() {
    let (srv, _) = server("hostile-read-straddle");
    let mut c = Raw::go(&srv.socket, false, false);
    c.request(CMD_READ, 0, 1, SIZE - 1, 2, &[]);
    assert_eq!(c.simple_reply(), (EINVAL, 1), "no data follows an error");
    c.request(CMD_READ, 0, 2, SIZE - 1, 1, &[]);
    assert_eq!(c.simple_reply(), (0, 2));
    assert_eq!(c.recv(1), [0]);
    drop(c);
    srv.finish();
}

#[test]
fn write_past_the_end_skips_its_payload() {
    let (srv, disk) = server("hostile-write-end");
    let mut c = Raw::go(&srv.socket, true, false);
    // The payload looks like request headers: if the server parsed it as
    // requests, the next reply would be for cookie 77.
    let mut fake = Vec::new();
    fake.request(CMD_WRITE, 0, 77, 0, 4, b"evil");
    c.request(CMD_WRITE, 0, 1, SIZE, fake.len() as u32, &fake);
    assert_eq!(c.error_chunk(1).0, ENOSPC);
    in_step(&mut c, 2);
    assert_eq!(disk.contents(0, 4), vec![0; 4]);
    drop(c);
    srv.finish();
}

#[test]
fn write_zeroes_past_the_end() {
    let (srv, _) = server("hostile-zero-end");
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_WRITE_ZEROES, 0, 1, SIZE - 512, 1024, &[]);
    assert_eq!(c.error_chunk(1).0, ENOSPC);
    in_step(&mut c, 2);
    drop(c);
    srv.finish();
}

#[test]
fn read_offset_overflow() {
    let (srv, _) = server("hostile-read-overflow");
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_READ, 0, 1, u64::MAX - 10, 512, &[]);
    assert_eq!(c.error_chunk(1).0, EINVAL);
    c.request(CMD_READ, 0, 2, u64::MAX, u32::MAX, &[]);
    assert_eq!(c.error_chunk(2).0, EINVAL);
    in_step(&mut c, 3);
    drop(c);
    srv.finish();
}

#[test]
fn write_offset_overflow_skips_its_payload() {
    let (srv, _) = server("hostile-write-overflow");
    let mut c = Raw::go(&srv.socket, false, false);
    c.request(CMD_WRITE, 0, 1, u64::MAX - 1, 8, b"12345678");
    assert_eq!(c.simple_reply(), (ENOSPC, 1));
    c.request(CMD_WRITE, 0, 2, 8192, 4, b"sync");
    assert_eq!(c.simple_reply(), (0, 2));
    drop(c);
    srv.finish();
}

#[test]
fn cache_and_block_status_past_the_end() {
    let (srv, _) = server("hostile-cache-end");
    let mut c = Raw::go(&srv.socket, true, true);
    c.request(CMD_CACHE, 0, 1, SIZE, 1, &[]);
    assert_eq!(c.error_chunk(1).0, EINVAL);
    c.request(CMD_BLOCK_STATUS, 0, 2, SIZE - 512, 4096, &[]);
    assert_eq!(c.error_chunk(2).0, EINVAL);
    in_step(&mut c, 3);
    drop(c);
    srv.finish();
}

#[test]
fn zero_length_requests() {
    let (srv, _) = server("hostile-zero-length");
    let mut c = Raw::go(&srv.socket, true, true);
    for (i, command) in [
        CMD_READ,
        CMD_WRITE,
        CMD_WRITE_ZEROES,
        CMD_CACHE,
        CMD_BLOCK_STATUS,
    ]
    .into_iter()
    .enumerate()
    {
        let cookie = 10 + i as u64;
        c.request(command, 0, cookie, 0, 0, &[]);
        let (e, msg) = c.error_chunk(cookie);
        assert_eq!(e, EINVAL, "zero-length command {command}");
        assert!(msg.contains("zero-length"), "{msg}");
    }
    in_step(&mut c, 20);
    drop(c);
    srv.finish();
}

#[test]
fn read_above_the_maximum_payload() {
    // Larger than the maximum payload, so the limit is what answers.
    let disk = memory(64 << 20);
    let srv = TestServer::unix("hostile-read-max", disk, ServerConfig::default());
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_READ, 0, 1, 0, MAX + 1, &[]);
    let (e, msg) = c.error_chunk(1);
    assert_eq!(e, EOVERFLOW);
    assert!(msg.contains("maximum payload"), "{msg}");
    c.request(CMD_READ, 0, 2, 0, u32::MAX, &[]);
    assert_eq!(c.error_chunk(2).0, EINVAL, "also past the end");
    in_step(&mut c, 3);
    drop(c);
    srv.finish();
}

#[test]
fn write_above_the_maximum_payload_with_simple_replies() {
    let disk = memory(64 << 20);
    let srv = TestServer::unix("hostile-write-max", disk.clone(), ServerConfig::default());
    let mut c = Raw::go(&srv.socket, false, false);
    let big = vec![0xa5; MAX as usize + 4096];
    c.request(CMD_WRITE, 0, 1, 0, big.len() as u32, &big);
    assert_eq!(
        c.simple_reply(),
        (EINVAL, 1),
        "EOVERFLOW needs structured replies"
    );
    c.request(CMD_WRITE, 0, 2, 8192, 4, b"sync");
    assert_eq!(c.simple_reply(), (0, 2));
    assert_eq!(disk.contents(0, 4), vec![0; 4]);
    drop(c);
    srv.finish();
}

#[test]
fn unknown_command_numbers() {
    let (srv, _) = server("hostile-unknown-cmd");
    let mut c = Raw::go(&srv.socket, true, false);
    for (i, command) in [8u16, 9, 0x100, 0x7fff, u16::MAX].into_iter().enumerate() {
        let cookie = 30 + i as u64;
        c.request(command, 0, cookie, 0, 512, &[]);
        let (e, msg) = c.error_chunk(cookie);
        assert_eq!(e, EINVAL, "command {command}");
        assert!(msg.contains("not supported"), "{msg}");
    }
    in_step(&mut c, 40);
    drop(c);
    srv.finish();
}

#[test]
fn trim_is_refused_as_not_advertised() {
    let (srv, disk) = server("hostile-trim");
    disk.fill(0, b"keep");
    let mut c = Raw::go(&srv.socket, false, false);
    c.request(CMD_TRIM, 0, 1, 0, 4096, &[]);
    assert_eq!(c.simple_reply(), (EINVAL, 1));
    assert_eq!(disk.contents(0, 4), b"keep");
    drop(c);
    srv.finish();
}

#[test]
fn unknown_flag_bits_on_each_command() {
    let (srv, _) = server("hostile-unknown-flags");
    let mut c = Raw::go(&srv.socket, true, true);
    let cases = [
        (CMD_READ, 1u16 << 15),
        (CMD_READ, F_REQ_ONE),
        (CMD_FLUSH, 1 << 5),
        (CMD_CACHE, F_NO_HOLE),
        (CMD_WRITE_ZEROES, F_DF),
        (CMD_BLOCK_STATUS, F_DF),
        (CMD_DISC, 1 << 9),
    ];
    for (i, (command, flags)) in cases.into_iter().enumerate() {
        let cookie = 50 + i as u64;
        c.request(command, flags, cookie, 0, 512, &[]);
        let (e, msg) = c.error_chunk(cookie);
        assert_eq!(e, EINVAL, "command {command} flags {flags:#x}");
        assert!(msg.contains("flags"), "{msg}");
    }
    // DISC with a bad flag was refused, not obeyed: still connected.
    in_step(&mut c, 60);
    drop(c);
    srv.finish();
}

#[test]
fn df_without_structured_replies() {
    let (srv, _) = server("hostile-df-simple");
    let mut c = Raw::go(&srv.socket, false, false);
    c.request(CMD_READ, F_DF, 1, 0, 512, &[]);
    assert_eq!(c.simple_reply(), (EINVAL, 1));
    assert_eq!(c.simple_read(2, 0, 8), vec![0; 8]);
    drop(c);
    srv.finish();
}

#[test]
fn invalid_flags_on_a_write_skip_its_payload() {
    let (srv, disk) = server("hostile-write-flags");
    let mut c = Raw::go(&srv.socket, true, false);
    let mut fake = Vec::new();
    fake.request(CMD_DISC, 0, 66, 0, 0, &[]);
    c.request(CMD_WRITE, F_REQ_ONE, 1, 0, fake.len() as u32, &fake);
    assert_eq!(c.error_chunk(1).0, EINVAL);
    in_step(&mut c, 2);
    assert_eq!(disk.contents(0, 4), vec![0; 4]);
    drop(c);
    srv.finish();
}

#[test]
fn fast_zero_is_not_supported() {
    let (srv, disk) = server("hostile-fast-zero");
    disk.fill(0, b"data");
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_WRITE_ZEROES, F_FAST_ZERO | F_NO_HOLE, 1, 0, 512, &[]);
    assert_eq!(c.error_chunk(1).0, ENOTSUP);
    assert_eq!(disk.contents(0, 4), b"data", "nothing zeroed");
    in_step(&mut c, 2);
    drop(c);
    srv.finish();
}

#[test]
fn writes_on_a_read_only_export_are_eperm() {
    let disk = memory(SIZE);
    disk.fill(0, b"orig");
    let srv = TestServer::unix(
        "hostile-ro",
        disk.clone(),
        ServerConfig {
            read_only: true,
            ..Default::default()
        },
    );
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_WRITE, F_FUA, 1, 0, 4, b"evil");
    let (e, msg) = c.error_chunk(1);
    assert_eq!(e, EPERM);
    assert!(msg.contains("read-only"), "{msg}");
    c.request(CMD_WRITE_ZEROES, 0, 2, 0, 512, &[]);
    assert_eq!(c.error_chunk(2).0, EPERM);
    // Past the end too: the export's mode is the first answer.
    c.request(CMD_WRITE, 0, 3, SIZE, 4, b"evil");
    assert_eq!(c.error_chunk(3).0, EPERM);
    c.request(CMD_TRIM, 0, 4, 0, 512, &[]);
    assert_eq!(c.error_chunk(4).0, EPERM);
    c.request(CMD_READ, 0, 5, 0, 4, &[]);
    assert_eq!(c.read_reply(5, 4), b"orig");
    drop(c);
    assert_eq!(disk.contents(0, 4), b"orig");
    served_read_only(&srv.socket);
    srv.wait_idle();
    srv.stop();
}

#[test]
fn block_status_without_a_context() {
    let (srv, _) = server("hostile-bs-no-context");
    let mut c = Raw::go(&srv.socket, true, false);
    c.request(CMD_BLOCK_STATUS, 0, 1, 0, 4096, &[]);
    let (e, msg) = c.error_chunk(1);
    assert_eq!(e, EINVAL);
    assert!(msg.contains("metadata context"), "{msg}");
    c.request(CMD_BLOCK_STATUS, F_REQ_ONE, 2, 0, 4096, &[]);
    assert_eq!(c.error_chunk(2).0, EINVAL);
    in_step(&mut c, 3);
    drop(c);
    srv.finish();
}

#[test]
fn bad_request_magic_closes_after_answering_what_came_before() {
    let (srv, _) = server("hostile-req-magic");
    let mut c = Raw::go(&srv.socket, false, false);
    let mut b = Vec::new();
    b.request(CMD_FLUSH, 0, 1, 0, 0, &[]);
    let bad = b.len();
    b.request(CMD_READ, 0, 2, 0, 512, &[]);
    b[bad] = 0;
    c.send(&b);
    assert_eq!(c.simple_reply(), (0, 1));
    assert!(c.closed(), "the stream cannot be resynchronised");
    drop(c);
    srv.finish();
}

#[test]
fn duplicate_cookies_are_each_answered() {
    let (srv, _) = server("hostile-dup-cookie");
    let mut c = Raw::go(&srv.socket, false, false);
    let mut b = Vec::new();
    for _ in 0..16 {
        b.request(CMD_FLUSH, 0, 7, 0, 0, &[]);
    }
    c.send(&b);
    for _ in 0..16 {
        assert_eq!(c.simple_reply(), (0, 7));
    }
    drop(c);
    srv.finish();
}
