//! Decodes arbitrary bytes as a transmission request and validates it
//! against limits also taken from the input; encodes an error chunk with a
//! message from the input.
//!
//! Input: 28 bytes of request header, then 8 bytes of export size, 4 of
//! maximum payload and 1 of switches (read-only, structured replies,
//! base:allocation selected, trim offered, fast zero offered); the rest is
//! an error message.
//!
//! Checked: no panic; a decoded header re-encodes to the same bytes; an
//! accepted request never reaches past the export, is never empty (except
//! the commands that carry no range), never exceeds the maximum payload and
//! never writes a read-only export; error chunks stay within the spec's
//! 4096-byte message limit, are valid UTF-8 and carry a length that matches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vddk_nbd::proto::consts::*;
use vddk_nbd::proto::export::Features;
use vddk_nbd::proto::request::{validate, Command, Limits};
use vddk_nbd::proto::wire::{self, WireError};

fn in_range(offset: u64, length: u32, limits: &Limits) {
    assert!(length > 0, "accepted a zero-length range");
    let end = offset
        .checked_add(u64::from(length))
        .expect("accepted an overflowing range");
    assert!(
        end <= limits.size,
        "accepted {offset}+{length} past {}",
        limits.size
    );
}

fn check_request(data: &[u8]) {
    let req = match wire::decode_request(data) {
        Ok(r) => r,
        Err(WireError::NeedMore(n)) => {
            assert!(n == REQUEST_LEN && data.len() < n);
            return;
        }
        Err(WireError::Malformed(_)) => {
            assert_ne!(data[..4], REQUEST_MAGIC.to_be_bytes());
            return;
        }
    };
    let mut again = Vec::new();
    wire::encode_request(&mut again, &req);
    assert_eq!(again, data[..REQUEST_LEN]);

    let tail = &data[REQUEST_LEN..];
    if tail.len() < 13 {
        return;
    }
    let switches = tail[12];
    let structured = switches & 2 != 0;
    let limits = Limits {
        size: u64::from_be_bytes(tail[..8].try_into().unwrap_or_default()),
        max_payload: u32::from_be_bytes(tail[8..12].try_into().unwrap_or_default()),
        features: {
            let f = Features {
                trim: switches & 8 != 0,
                fast_zero: switches & 16 != 0,
                ..Features::WRITABLE
            };
            if switches & 1 != 0 {
                f.read_only()
            } else {
                f
            }
        },
        structured,
        base_allocation: (structured && switches & 4 != 0).then_some(BASE_ALLOCATION_ID),
    };
    match validate(&req, &limits) {
        Ok(cmd) => {
            let writes = matches!(
                cmd,
                Command::Write { .. } | Command::WriteZeroes { .. } | Command::Trim { .. }
            );
            assert!(
                !(writes && limits.features.read_only),
                "write accepted on a read-only export"
            );
            match cmd {
                Command::Read { offset, length, df } => {
                    in_range(offset, length, &limits);
                    assert!(length <= limits.max_payload);
                    assert!(!df || structured, "DF accepted without structured replies");
                }
                Command::Write { offset, length, .. } => {
                    in_range(offset, length, &limits);
                    assert!(length <= limits.max_payload);
                }
                Command::WriteZeroes {
                    offset,
                    length,
                    fast,
                    ..
                } => {
                    in_range(offset, length, &limits);
                    assert!(!fast || limits.features.fast_zero);
                }
                Command::Trim { offset, length, .. } => {
                    in_range(offset, length, &limits);
                    assert!(limits.features.trim, "trim accepted though not offered");
                }
                Command::BlockStatus {
                    offset,
                    length,
                    context,
                    ..
                } => {
                    in_range(offset, length, &limits);
                    assert_eq!(Some(context), limits.base_allocation);
                }
                Command::Cache => in_range(req.offset, req.length, &limits),
                Command::Flush | Command::Disconnect => {}
            }
        }
        Err((_, message)) => assert!(!message.is_empty()),
    }
}

fn check_error_chunk(message: &[u8], cookie: u64) {
    let text = String::from_utf8_lossy(message);
    let mut b = Vec::new();
    wire::encode_error_chunk(&mut b, cookie, errno::EIO, &text);
    assert_eq!(b[..4], STRUCTURED_REPLY_MAGIC.to_be_bytes());
    assert_eq!(b[8..16], cookie.to_be_bytes());
    let len = u32::from_be_bytes([b[16], b[17], b[18], b[19]]) as usize;
    assert_eq!(
        len,
        b.len() - 20,
        "chunk length field disagrees with the payload"
    );
    let msg_len = u16::from_be_bytes([b[24], b[25]]) as usize;
    assert_eq!(msg_len, b.len() - 26);
    assert!(msg_len <= MAX_STRING_LEN);
    let sent = std::str::from_utf8(&b[26..]).expect("error message cut inside a character");
    assert!(text.starts_with(sent));
}

fuzz_target!(|data: &[u8]| {
    check_request(data);
    if data.len() > REQUEST_LEN + 13 {
        let cookie = u64::from_be_bytes(data[8..16].try_into().unwrap_or_default());
        check_error_chunk(&data[REQUEST_LEN + 13..], cookie);
    }
});
