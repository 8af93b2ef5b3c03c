//! Property tests of the sans-IO protocol core: every message the codec
//! encodes decodes back to what was encoded (with an independent decoder
//! written from the NBD specification where the codec only has one
//! direction), decoders never panic on arbitrary bytes, the handshake
//! matches a small model of the negotiation, and request validation never
//! lets a request past the export's limits.

use proptest::collection::vec;
use proptest::prelude::*;
use vddk_nbd::proto::consts::*;
use vddk_nbd::proto::handshake::{ExportDesc, Features, Handshake, Step, MAX_OPTIONS};
use vddk_nbd::proto::request::{validate, Command, Limits};
use vddk_nbd::proto::wire::{self, InfoRequest, MetaRequest, OptionHeader, Request, WireError};

// ---- independent encoders and decoders, from the specification ----------

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn option_request(option: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    b
}

fn info_payload(r: &InfoRequest) -> Vec<u8> {
    let mut p = Vec::new();
    put_string(&mut p, &r.name);
    p.extend_from_slice(&(r.requests.len() as u16).to_be_bytes());
    for q in &r.requests {
        p.extend_from_slice(&q.to_be_bytes());
    }
    p
}

fn meta_payload(r: &MetaRequest) -> Vec<u8> {
    let mut p = Vec::new();
    put_string(&mut p, &r.name);
    p.extend_from_slice(&(r.queries.len() as u32).to_be_bytes());
    for q in &r.queries {
        put_string(&mut p, q);
    }
    p
}

/// One option reply as a client reads it: (option, reply type, payload).
type OptionReply = (u32, u32, Vec<u8>);

/// Splits `b` into option replies, failing on any framing error.
fn option_replies(mut b: &[u8]) -> Result<Vec<OptionReply>, String> {
    let mut v = Vec::new();
    while !b.is_empty() {
        if b.len() < 20 || be64(b, 0) != OPTION_REPLY_MAGIC {
            return Err(format!(
                "not an option reply: {:02x?}",
                &b[..b.len().min(20)]
            ));
        }
        let len = be32(b, 16) as usize;
        if b.len() < 20 + len {
            return Err(format!("reply claims {len} bytes, {} left", b.len() - 20));
        }
        v.push((be32(b, 8), be32(b, 12), b[20..20 + len].to_vec()));
        b = &b[20 + len..];
    }
    Ok(v)
}

/// A structured reply chunk header: (flags, type, cookie, length).
fn chunk_header(b: &[u8]) -> (u16, u16, u64, u32) {
    assert_eq!(be32(b, 0), STRUCTURED_REPLY_MAGIC);
    (be16(b, 4), be16(b, 6), be64(b, 8), be32(b, 16))
}

// ---- strategies -----------------------------------------------------------

fn text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn request() -> impl Strategy<Value = Request> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(|(flags, command, cookie, offset, length)| Request {
            flags,
            command,
            cookie,
            offset,
            length,
        })
}

/// Writable or read-only, with trim offered or not.
fn features(read_only: bool, trim: bool) -> Features {
    let f = Features {
        trim,
        ..Features::WRITABLE
    };
    if read_only {
        f.read_only()
    } else {
        f
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        0u64..1 << 40,
        prop_oneof![Just(u64::MAX), Just(0)],
        any::<bool>(),
        1u32..1 << 26,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(size, edge, read_only, max_payload, structured, meta)| Limits {
                size: if size % 7 == 0 { edge } else { size },
                features: features(read_only, meta),
                max_payload,
                structured,
                base_allocation: (structured && meta).then_some(BASE_ALLOCATION_ID),
            },
        )
}

/// Requests near the interesting edges of `limits` as well as anywhere.
fn request_for() -> impl Strategy<Value = (Request, Limits)> {
    (limits(), request(), 0u16..10, any::<u8>(), any::<i32>()).prop_map(
        |(l, mut r, cmd, flags, delta)| {
            r.command = cmd;
            r.flags = u16::from(flags & 0x1f);
            if delta % 2 == 0 {
                r.offset = l
                    .size
                    .saturating_sub(u64::from(r.length))
                    .wrapping_add(i64::from(delta % 5) as u64);
            }
            (r, l)
        },
    )
}

fn export() -> impl Strategy<Value = ExportDesc> {
    (any::<bool>(), any::<bool>(), any::<u64>()).prop_map(|(read_only, described, size)| {
        ExportDesc {
            name: "disk".into(),
            description: described.then(|| "the disk".into()),
            size,
            block_sizes: (512, 4096, 32 << 20),
            features: features(read_only, false),
        }
    })
}

/// An option a well-behaved client might send, for the handshake model.
#[derive(Debug, Clone)]
enum ClientOption {
    List,
    Structured,
    Info(String),
    ListMeta(Vec<String>),
    SetMeta(Vec<String>),
    Unknown(u32, Vec<u8>),
}

fn client_option() -> impl Strategy<Value = ClientOption> {
    let query = prop_oneof![
        Just(BASE_ALLOCATION.to_string()),
        Just("base:".to_string()),
        Just("qemu:dirty-bitmap:x".to_string()),
        text(12)
    ];
    prop_oneof![
        Just(ClientOption::List),
        Just(ClientOption::Structured),
        text(20).prop_map(ClientOption::Info),
        vec(query.clone(), 0..4).prop_map(ClientOption::ListMeta),
        vec(query, 0..4).prop_map(ClientOption::SetMeta),
        (11u32..1000, vec(any::<u8>(), 0..40)).prop_map(|(o, p)| ClientOption::Unknown(o, p)),
    ]
}

/// What a hostile client sends after its flags: option frames whose
/// number, length and payload may disagree, or plain garbage.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let option = prop_oneof![1u32..12, any::<u32>()];
    let length = prop_oneof![
        Just(None),
        any::<u32>().prop_map(Some),
        (0u32..64).prop_map(Some)
    ];
    prop_oneof![
        4 => (option, length, vec(any::<u8>(), 0..48)).prop_map(|(o, len, payload)| {
            let mut b = option_request(o, &payload);
            if let Some(len) = len {
                b[12..16].copy_from_slice(&len.to_be_bytes());
            }
            b
        }),
        1 => vec(any::<u8>(), 0..24),
    ]
}

// ---- drivers --------------------------------------------------------------

/// Feeds `input` to `h` whole; returns (replies, consumed, last step).
fn run(h: &mut Handshake, input: &[u8]) -> (Vec<u8>, usize, Step) {
    let mut out = Vec::new();
    let mut used = 0;
    loop {
        let (n, step) = h.receive(&input[used..], &mut out);
        assert!(n <= input.len() - used);
        used += n;
        match step {
            Step::Continue => assert!(n > 0, "Continue without progress"),
            s => return (out, used, s),
        }
    }
}

/// Feeds `input` to `h` in the given chunk sizes (cycled).
fn run_chunked(h: &mut Handshake, input: &[u8], chunks: &[usize]) -> (Vec<u8>, usize, Step) {
    let mut out = Vec::new();
    let (mut used, mut avail, mut i) = (0, 0, 0);
    loop {
        let (n, step) = h.receive(&input[used..avail], &mut out);
        used += n;
        match step {
            Step::Continue => {}
            Step::NeedMore if avail < input.len() => {
                avail = (avail + chunks[i % chunks.len()]).min(input.len());
                i += 1;
            }
            s => return (out, used, s),
        }
    }
}

// ---- properties -----------------------------------------------------------

proptest! {
    #[test]
    fn request_round_trips(r in request()) {
        let mut b = Vec::new();
        wire::encode_request(&mut b, &r);
        prop_assert_eq!(b.len(), REQUEST_LEN);
        prop_assert_eq!(be32(&b, 0), REQUEST_MAGIC);
        prop_assert_eq!(wire::decode_request(&b), Ok(r));
        let cut = b.len() - 1 - (r.cookie as usize % REQUEST_LEN);
        prop_assert_eq!(wire::decode_request(&b[..cut]), Err(WireError::NeedMore(REQUEST_LEN)));
    }

    #[test]
    fn option_header_round_trips(option in any::<u32>(), payload in vec(any::<u8>(), 0..64)) {
        let b = option_request(option, &payload);
        let h = wire::decode_option_header(&b);
        prop_assert_eq!(h, Ok(OptionHeader { option, length: payload.len() as u32 }));
    }

    #[test]
    fn info_request_round_trips(name in text(40), requests in vec(any::<u16>(), 0..20)) {
        let r = InfoRequest { name, requests };
        prop_assert_eq!(wire::decode_info_request(&info_payload(&r)), Ok(r));
    }

    #[test]
    fn meta_request_round_trips(name in text(40), queries in vec(text(30), 0..10)) {
        let r = MetaRequest { name, queries };
        prop_assert_eq!(wire::decode_meta_request(&meta_payload(&r)), Ok(r));
    }

    #[test]
    fn trailing_bytes_are_refused(name in text(20), items in vec(text(8), 0..4), junk in vec(any::<u8>(), 1..9)) {
        let requests = items.iter().map(|q| q.len() as u16).collect();
        let mut info = info_payload(&InfoRequest { name: name.clone(), requests });
        info.extend_from_slice(&junk);
        prop_assert!(matches!(wire::decode_info_request(&info), Err(WireError::Malformed(_))));
        let mut meta = meta_payload(&MetaRequest { name, queries: items });
        meta.extend_from_slice(&junk);
        prop_assert!(matches!(wire::decode_meta_request(&meta), Err(WireError::Malformed(_))));
    }

    #[test]
    fn overlong_strings_are_refused(extra in 1usize..64) {
        let long = "x".repeat(MAX_STRING_LEN + extra);
        let info = info_payload(&InfoRequest { name: long.clone(), requests: vec![] });
        prop_assert!(matches!(wire::decode_info_request(&info), Err(WireError::Malformed(_))));
        let meta = meta_payload(&MetaRequest { name: String::new(), queries: vec![long] });
        prop_assert!(matches!(wire::decode_meta_request(&meta), Err(WireError::Malformed(_))));
    }

    #[test]
    fn decoders_never_panic(b in vec(any::<u8>(), 0..600)) {
        let _ = wire::decode_request(&b);
        let _ = wire::decode_option_header(&b);
        let _ = wire::decode_client_flags(&b);
        // A whole payload is given: these never ask for more.
        prop_assert!(!matches!(wire::decode_info_request(&b), Err(WireError::NeedMore(_))));
        prop_assert!(!matches!(wire::decode_meta_request(&b), Err(WireError::NeedMore(_))));
        // What does decode is the canonical encoding of what came out.
        if let Ok(r) = wire::decode_info_request(&b) {
            prop_assert_eq!(info_payload(&r), b.clone());
        }
        if let Ok(r) = wire::decode_meta_request(&b) {
            prop_assert_eq!(meta_payload(&r), b);
        }
    }

    #[test]
    fn simple_reply_and_chunk_headers_decode(error in any::<u32>(), cookie in any::<u64>(),
            flags in any::<u16>(), kind in any::<u16>(), length in any::<u32>(), offset in any::<u64>()) {
        let mut b = Vec::new();
        wire::encode_simple_reply(&mut b, error, cookie);
        prop_assert_eq!((b.len(), be32(&b, 0), be32(&b, 4), be64(&b, 8)), (16, SIMPLE_REPLY_MAGIC, error, cookie));

        let mut b = Vec::new();
        wire::encode_chunk_header(&mut b, flags, kind, cookie, length);
        prop_assert_eq!(b.len(), 20);
        prop_assert_eq!(chunk_header(&b), (flags, kind, cookie, length));

        let data_len = length % (1 << 25);
        let mut b = Vec::new();
        wire::encode_data_chunk_header(&mut b, flags, cookie, offset, data_len);
        prop_assert_eq!(chunk_header(&b), (flags, chunk::OFFSET_DATA, cookie, data_len + 8));
        prop_assert_eq!((b.len(), be64(&b, 20)), (28, offset));

        let mut b = Vec::new();
        wire::encode_hole_chunk(&mut b, flags, cookie, offset, length);
        prop_assert_eq!(chunk_header(&b), (flags, chunk::OFFSET_HOLE, cookie, 12));
        prop_assert_eq!((b.len(), be64(&b, 20), be32(&b, 28)), (32, offset, length));
    }

    #[test]
    fn error_chunk_decodes_to_a_prefix_of_the_message(cookie in any::<u64>(), error in any::<u32>(),
            message in text(1500), repeat in 1usize..4) {
        let message = message.repeat(repeat);
        let mut b = Vec::new();
        wire::encode_error_chunk(&mut b, cookie, error, &message);
        let (flags, kind, c, len) = chunk_header(&b);
        prop_assert_eq!((flags, kind, c), (REPLY_FLAG_DONE, chunk::ERROR, cookie));
        prop_assert_eq!(len as usize, b.len() - 20);
        prop_assert_eq!(be32(&b, 20), error);
        let msg_len = usize::from(be16(&b, 24));
        prop_assert_eq!(msg_len, b.len() - 26);
        let sent = std::str::from_utf8(&b[26..]);
        prop_assert!(sent.is_ok(), "message cut inside a character");
        let sent = sent.unwrap_or_default();
        prop_assert!(message.starts_with(sent));
        // Cut only when needed, and then by less than one character.
        prop_assert!(msg_len <= MAX_STRING_LEN);
        prop_assert!(sent.len() == message.len() || sent.len() + 4 > MAX_STRING_LEN);
    }

    #[test]
    fn block_status_chunk_decodes(cookie in any::<u64>(), context in any::<u32>(),
            descriptors in vec((any::<u32>(), any::<u32>()), 0..50)) {
        let mut b = Vec::new();
        wire::encode_block_status_chunk(&mut b, cookie, context, &descriptors);
        let (flags, kind, c, len) = chunk_header(&b);
        prop_assert_eq!((flags, kind, c), (REPLY_FLAG_DONE, chunk::BLOCK_STATUS, cookie));
        prop_assert_eq!(len as usize, b.len() - 20);
        prop_assert_eq!(be32(&b, 20), context);
        let got: Vec<(u32, u32)> = b[24..].chunks_exact(8).map(|d| (be32(d, 0), be32(d, 4))).collect();
        prop_assert_eq!(got, descriptors);
    }

    #[test]
    fn option_reply_payloads_decode(option in any::<u32>(), reply in any::<u32>(), size in any::<u64>(),
            tflags in any::<u16>(), name in text(40), sizes in (any::<u32>(), any::<u32>(), any::<u32>()),
            id in any::<u32>()) {
        let mut b = Vec::new();
        wire::encode_option_reply(&mut b, option, reply, name.as_bytes());
        prop_assert_eq!(option_replies(&b), Ok(vec![(option, reply, name.as_bytes().to_vec())]));

        let p = wire::info_export(size, tflags);
        prop_assert_eq!((p.len(), be16(&p, 0), be64(&p, 2), be16(&p, 10)), (12, info::EXPORT, size, tflags));
        let p = wire::info_string(info::DESCRIPTION, &name);
        prop_assert_eq!(be16(&p, 0), info::DESCRIPTION);
        prop_assert_eq!(&p[2..], name.as_bytes());
        let p = wire::info_block_size(sizes.0, sizes.1, sizes.2);
        prop_assert_eq!(
            (p.len(), be16(&p, 0), be32(&p, 2), be32(&p, 6), be32(&p, 10)),
            (14, info::BLOCK_SIZE, sizes.0, sizes.1, sizes.2)
        );
        let p = wire::rep_server(&name);
        prop_assert_eq!(be32(&p, 0) as usize, name.len());
        prop_assert_eq!(&p[4..], name.as_bytes());
        let p = wire::rep_meta_context(id, &name);
        prop_assert_eq!(be32(&p, 0), id);
        prop_assert_eq!(&p[4..], name.as_bytes());
    }

    #[test]
    fn validation_keeps_requests_inside_the_limits((r, l) in request_for()) {
        let Ok(cmd) = validate(&r, &l) else { return Ok(()) };
        let inside = |offset: u64, length: u32| {
            length > 0 && offset.checked_add(u64::from(length)).is_some_and(|end| end <= l.size)
        };
        match cmd {
            Command::Read { offset, length, df } => {
                prop_assert!(inside(offset, length) && length <= l.max_payload);
                prop_assert!(!df || l.structured);
            }
            Command::Write { offset, length, .. } => {
                prop_assert!(!l.features.read_only);
                prop_assert!(inside(offset, length) && length <= l.max_payload);
            }
            Command::WriteZeroes { offset, length, fast, .. } => {
                prop_assert!(!l.features.read_only && l.features.zero && inside(offset, length));
                prop_assert!(!fast || l.features.fast_zero);
            }
            Command::Trim { offset, length, .. } => {
                prop_assert!(!l.features.read_only && l.features.trim && inside(offset, length));
            }
            Command::BlockStatus { offset, length, context, .. } => {
                prop_assert!(inside(offset, length));
                prop_assert_eq!(Some(context), l.base_allocation);
            }
            Command::Cache => prop_assert!(inside(r.offset, r.length)),
            Command::Flush => prop_assert_eq!(r.command, cmd::FLUSH),
            Command::Disconnect => prop_assert_eq!(r.command, cmd::DISC),
        }
    }

    #[test]
    fn handshake_survives_hostile_bytes(e in export(), flags in 0u32..4, frames in vec(frame(), 0..8),
            chunks in vec(1usize..50, 1..8)) {
        let mut input = flags.to_be_bytes().to_vec();
        input.extend(frames.concat());
        let (out, used, step) = run(&mut Handshake::new(e.clone()), &input);
        if step == Step::NeedMore {
            // Given one option header plus the option cap, it must make
            // progress or decide: a client cannot make it wait for (or
            // buffer) more.
            let mut padded = input.clone();
            padded.resize(used + OPTION_HEADER_LEN + MAX_OPTION_LEN as usize, 0);
            let (_, used_again, again) = run(&mut Handshake::new(e.clone()), &padded);
            prop_assert!(again != Step::NeedMore || used_again > used, "still waiting after the cap");
        }
        let (out2, used2, step2) = run_chunked(&mut Handshake::new(e), &input, &chunks);
        prop_assert_eq!((out, used, step), (out2, used2, step2));
    }

    #[test]
    fn handshake_follows_the_model(e in export(), no_zeroes in any::<bool>(),
            options in vec(client_option(), 0..12), by_name in any::<bool>()) {
        let mut input = (FLAG_C_FIXED_NEWSTYLE | if no_zeroes { FLAG_C_NO_ZEROES } else { 0 }).to_be_bytes().to_vec();
        let mut structured = false;
        let mut base_allocation = false;
        let mut expected: Vec<(u32, u32)> = Vec::new();
        for o in &options {
            match o {
                ClientOption::List => {
                    input.extend(option_request(opt::LIST, &[]));
                    expected.extend([(opt::LIST, rep::SERVER), (opt::LIST, rep::ACK)]);
                }
                ClientOption::Structured => {
                    input.extend(option_request(opt::STRUCTURED_REPLY, &[]));
                    expected.push((opt::STRUCTURED_REPLY, rep::ACK));
                    structured = true;
                }
                ClientOption::Info(name) => {
                    let r = InfoRequest { name: name.clone(), requests: vec![info::NAME] };
                    input.extend(option_request(opt::INFO, &info_payload(&r)));
                    expected.extend([(opt::INFO, rep::INFO), (opt::INFO, rep::INFO), (opt::INFO, rep::INFO), (opt::INFO, rep::ACK)]);
                }
                ClientOption::ListMeta(q) | ClientOption::SetMeta(q) => {
                    let set = matches!(o, ClientOption::SetMeta(_));
                    let o = if set { opt::SET_META_CONTEXT } else { opt::LIST_META_CONTEXT };
                    input.extend(option_request(o, &meta_payload(&MetaRequest { name: String::new(), queries: q.clone() })));
                    if !structured {
                        expected.push((o, rep::ERR_INVALID));
                        continue;
                    }
                    let hit = if set {
                        q.iter().any(|q| q == BASE_ALLOCATION)
                    } else {
                        q.is_empty() || q.iter().any(|q| q == BASE_ALLOCATION || q == "base:")
                    };
                    if hit {
                        expected.push((o, rep::META_CONTEXT));
                    }
                    expected.push((o, rep::ACK));
                    if set {
                        base_allocation = hit;
                    }
                }
                ClientOption::Unknown(n, p) => {
                    input.extend(option_request(*n, p));
                    expected.push((*n, rep::ERR_UNSUP));
                }
            }
        }
        let go = InfoRequest { name: "any".into(), requests: vec![] };
        if by_name {
            input.extend(option_request(opt::EXPORT_NAME, b"any"));
        } else {
            input.extend(option_request(opt::GO, &info_payload(&go)));
            expected.extend([(opt::GO, rep::INFO), (opt::GO, rep::INFO), (opt::GO, rep::ACK)]);
        }
        let (out, used, step) = run(&mut Handshake::new(e.clone()), &input);
        prop_assert_eq!(used, input.len());
        let Step::Transmission(n) = step else {
            return Err(TestCaseError::fail(format!("negotiation did not finish: {step:?}")));
        };
        prop_assert_eq!(n.structured, structured);
        prop_assert_eq!(n.base_allocation, (structured && base_allocation).then_some(BASE_ALLOCATION_ID));
        prop_assert_eq!(n.transmission_flags, e.transmission_flags(structured));
        prop_assert_eq!(n.export_name.as_str(), "any");
        let replies_end = if by_name { out.len() - if no_zeroes { 10 } else { 134 } } else { out.len() };
        let replies = option_replies(&out[..replies_end]).map_err(TestCaseError::fail)?;
        let got: Vec<(u32, u32)> = replies.iter().map(|r| (r.0, r.1)).collect();
        prop_assert_eq!(got, expected);
        if by_name {
            prop_assert_eq!(be64(&out, replies_end), e.size);
            prop_assert_eq!(be16(&out, replies_end + 8), n.transmission_flags);
        }
    }
}

#[test]
fn handshake_closes_after_too_many_options() {
    let mut input = FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
    for _ in 0..=MAX_OPTIONS {
        input.extend(option_request(opt::LIST, &[]));
    }
    let e = ExportDesc {
        name: "d".into(),
        description: None,
        size: 1,
        block_sizes: (1, 1, 1),
        features: Features::WRITABLE.read_only(),
    };
    let (out, _, step) = run(&mut Handshake::new(e), &input);
    assert!(matches!(step, Step::Close(_)), "{step:?}");
    let replies = option_replies(&out).expect("well-formed replies");
    assert_eq!(
        replies.len(),
        2 * MAX_OPTIONS as usize + 1,
        "every accepted option answered, the extra one with an error"
    );
    let last = replies.last().expect("replies");
    assert_eq!((last.0, last.1), (opt::LIST, rep::ERR_POLICY), "{last:?}");
}
