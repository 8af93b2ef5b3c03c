//! Decodes arbitrary bytes as an option header and as the payloads of
//! NBD_OPT_INFO/GO and NBD_OPT_{LIST,SET}_META_CONTEXT.
//!
//! Checked: no panic; a header that decodes re-encodes to the same 16
//! bytes; a payload that decodes re-encodes (as the spec lays it out) to
//! exactly the bytes given, so the decoder neither drops nor invents data;
//! decoded strings respect the spec's 4096-byte limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vddk_nbd::proto::consts::*;
use vddk_nbd::proto::wire::{self, InfoRequest, MetaRequest, WireError};

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_info(r: &InfoRequest) -> Vec<u8> {
    let mut p = Vec::new();
    put_string(&mut p, &r.name);
    p.extend_from_slice(&(r.requests.len() as u16).to_be_bytes());
    for q in &r.requests {
        p.extend_from_slice(&q.to_be_bytes());
    }
    p
}

fn encode_meta(r: &MetaRequest) -> Vec<u8> {
    let mut p = Vec::new();
    put_string(&mut p, &r.name);
    p.extend_from_slice(&(r.queries.len() as u32).to_be_bytes());
    for q in &r.queries {
        put_string(&mut p, q);
    }
    p
}

fuzz_target!(|data: &[u8]| {
    match wire::decode_option_header(data) {
        Ok(h) => {
            let mut b = IHAVEOPT.to_be_bytes().to_vec();
            b.extend_from_slice(&h.option.to_be_bytes());
            b.extend_from_slice(&h.length.to_be_bytes());
            assert_eq!(b, data[..OPTION_HEADER_LEN]);
        }
        Err(WireError::NeedMore(n)) => assert!(data.len() < n && n == OPTION_HEADER_LEN),
        Err(WireError::Malformed(_)) => assert!(data.len() >= OPTION_HEADER_LEN),
    }

    match wire::decode_info_request(data) {
        Ok(r) => {
            assert!(r.name.len() <= MAX_STRING_LEN);
            assert_eq!(encode_info(&r), data, "INFO/GO payload does not round-trip");
        }
        Err(WireError::NeedMore(_)) => panic!("a whole payload never needs more"),
        Err(WireError::Malformed(m)) => assert!(!m.is_empty()),
    }

    match wire::decode_meta_request(data) {
        Ok(r) => {
            assert!(r.name.len() <= MAX_STRING_LEN);
            assert!(r.queries.iter().all(|q| q.len() <= MAX_STRING_LEN));
            assert_eq!(
                encode_meta(&r),
                data,
                "meta context payload does not round-trip"
            );
        }
        Err(WireError::NeedMore(_)) => panic!("a whole payload never needs more"),
        Err(WireError::Malformed(m)) => assert!(!m.is_empty()),
    }

    if let Ok(flags) = wire::decode_client_flags(data) {
        assert_eq!(flags.to_be_bytes(), data[..4]);
    }
});
