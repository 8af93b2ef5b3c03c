use super::*;

fn export(read_only: bool) -> ExportDesc {
    ExportDesc {
        name: "disk".into(),
        description: Some("a test disk".into()),
        size: 1 << 20,
        block_sizes: (512, 4096, 32 << 20),
        features: if read_only {
            Features::WRITABLE.read_only()
        } else {
            Features::WRITABLE
        },
    }
}

fn option(o: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&o.to_be_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Parses option replies: (option, type, payload).
fn replies(mut b: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut v = Vec::new();
    while !b.is_empty() {
        assert_eq!(&b[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        let o = u32::from_be_bytes(b[8..12].try_into().unwrap());
        let t = u32::from_be_bytes(b[12..16].try_into().unwrap());
        let l = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        v.push((o, t, b[20..20 + l].to_vec()));
        b = &b[20 + l..];
    }
    v
}

/// Runs the machine over `input` until it needs more bytes or stops.
fn run(h: &mut Handshake, input: &[u8]) -> (Vec<u8>, Step, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (n, step) = h.receive(&input[at..], &mut out);
        at += n;
        if step != Step::Continue {
            return (out, step, at);
        }
    }
}

fn started(client_flags: u32) -> Handshake {
    let mut h = Handshake::new(export(false));
    let mut g = Vec::new();
    h.greeting(&mut g);
    assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
    assert_eq!(&g[16..], &[0, 3]);
    let (out, step, used) = run(&mut h, &client_flags.to_be_bytes());
    assert!(out.is_empty());
    assert_eq!((step, used), (Step::NeedMore, 4));
    h
}

#[test]
fn export_name_honours_no_zeroes() {
    for (flags, len) in [(1u32, 8 + 2 + 124), (3, 8 + 2)] {
        let mut h = started(flags);
        let (out, step, _) = run(&mut h, &option(opt::EXPORT_NAME, b"anything"));
        assert_eq!(out.len(), len);
        assert_eq!(&out[..8], &(1u64 << 20).to_be_bytes());
        let Step::Transmission(n) = step else {
            panic!("{step:?}")
        };
        assert_eq!(n.export_name, "anything");
        assert!(!n.structured);
        assert_eq!(u16::from_be_bytes([out[8], out[9]]), n.transmission_flags);
    }
}

#[test]
fn unknown_client_flags_close() {
    let mut h = Handshake::new(export(false));
    let (_, step, _) = run(&mut h, &8u32.to_be_bytes());
    assert!(matches!(step, Step::Close(_)));
}

#[test]
fn unknown_option_keeps_sync_then_go() {
    let mut h = started(3);
    let mut input = option(42, b"some payload bytes");
    input.extend(option(opt::STRUCTURED_REPLY, &[]));
    let mut go = 4u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"disk");
    go.extend_from_slice(&2u16.to_be_bytes());
    go.extend_from_slice(&info::NAME.to_be_bytes());
    go.extend_from_slice(&info::DESCRIPTION.to_be_bytes());
    input.extend(option(opt::GO, &go));
    input.extend_from_slice(b"tail");
    let (out, step, used) = run(&mut h, &input);
    assert_eq!(
        used,
        input.len() - 4,
        "transmission bytes are left to the caller"
    );
    let r = replies(&out);
    let types: Vec<(u32, u32)> = r.iter().map(|(o, t, _)| (*o, *t)).collect();
    assert_eq!(
        types,
        [
            (42, rep::ERR_UNSUP),
            (opt::STRUCTURED_REPLY, rep::ACK),
            (opt::GO, rep::INFO),
            (opt::GO, rep::INFO),
            (opt::GO, rep::INFO),
            (opt::GO, rep::INFO),
            (opt::GO, rep::ACK)
        ]
    );
    let flags = tflag::HAS_FLAGS
        | tflag::SEND_FLUSH
        | tflag::SEND_CACHE
        | tflag::CAN_MULTI_CONN
        | tflag::SEND_FUA
        | tflag::SEND_WRITE_ZEROES
        | tflag::SEND_FAST_ZERO
        | tflag::SEND_DF;
    assert_eq!(r[2].2, wire::info_export(1 << 20, flags));
    assert_eq!(r[3].2, wire::info_string(info::NAME, "disk"));
    assert_eq!(r[4].2, wire::info_string(info::DESCRIPTION, "a test disk"));
    assert_eq!(r[5].2, wire::info_block_size(512, 4096, 32 << 20));
    let Step::Transmission(n) = step else {
        panic!("{step:?}")
    };
    assert!(n.structured);
    assert_eq!(n.base_allocation, None);
    assert_eq!(n.transmission_flags, flags);
}

#[test]
fn truncated_option_waits_for_bytes() {
    let mut h = started(3);
    let full = option(opt::LIST, &[]);
    for cut in [0, 5, 15] {
        let (out, step, used) = run(&mut h, &full[..cut]);
        assert_eq!((out.len(), step, used), (0, Step::NeedMore, 0));
    }
    let mut h = started(3);
    let info = option(opt::INFO, &[0, 0, 0, 0, 0, 0]);
    let (_, step, used) = run(&mut h, &info[..info.len() - 1]);
    assert_eq!((step, used), (Step::NeedMore, 0));
}

#[test]
fn lying_lengths() {
    // A 4 GiB option is answered without waiting for or allocating it.
    let mut h = started(3);
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&opt::GO.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    let (out, step, _) = run(&mut h, &b);
    assert_eq!(replies(&out)[0].1, rep::ERR_TOO_BIG);
    assert!(matches!(step, Step::Close(_)));

    // A name length inside INFO that lies is ERR_INVALID and sync is kept.
    let mut h = started(3);
    let mut input = option(opt::INFO, &[0, 0, 1, 0, b'x', 0, 0]);
    input.extend(option(opt::LIST, &[1]));
    input.extend(option(opt::ABORT, &[]));
    let (out, step, _) = run(&mut h, &input);
    let types: Vec<u32> = replies(&out).iter().map(|r| r.1).collect();
    assert_eq!(types, [rep::ERR_INVALID, rep::ERR_INVALID, rep::ACK]);
    assert!(matches!(step, Step::Close(_)));

    // Wrong magic in an option header closes.
    let mut h = started(3);
    let (_, step, _) = run(&mut h, &[0u8; 16]);
    assert!(matches!(step, Step::Close(_)));
}

fn meta(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut p = (name.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        p.extend_from_slice(&(q.len() as u32).to_be_bytes());
        p.extend_from_slice(q.as_bytes());
    }
    p
}

#[test]
fn meta_contexts() {
    let mut h = started(3);
    // Before structured replies: refused.
    let (out, _, _) = run(
        &mut h,
        &option(opt::SET_META_CONTEXT, &meta("", &[BASE_ALLOCATION])),
    );
    assert_eq!(replies(&out)[0].1, rep::ERR_INVALID);

    let mut input = option(opt::STRUCTURED_REPLY, &[]);
    input.extend(option(opt::LIST_META_CONTEXT, &meta("", &["base:"])));
    input.extend(option(
        opt::LIST_META_CONTEXT,
        &meta("", &["qemu:dirty-bitmap:x"]),
    ));
    input.extend(option(
        opt::SET_META_CONTEXT,
        &meta("", &["qemu:foo", BASE_ALLOCATION]),
    ));
    input.extend(option(opt::EXPORT_NAME, b""));
    let (out, step, _) = run(&mut h, &input);
    let r = replies(&out[..out.len() - 10]);
    let got: Vec<(u32, u32, Vec<u8>)> = r;
    assert_eq!(
        got,
        vec![
            (opt::STRUCTURED_REPLY, rep::ACK, vec![]),
            (
                opt::LIST_META_CONTEXT,
                rep::META_CONTEXT,
                wire::rep_meta_context(0, BASE_ALLOCATION)
            ),
            (opt::LIST_META_CONTEXT, rep::ACK, vec![]),
            (opt::LIST_META_CONTEXT, rep::ACK, vec![]),
            (
                opt::SET_META_CONTEXT,
                rep::META_CONTEXT,
                wire::rep_meta_context(1, BASE_ALLOCATION)
            ),
            (opt::SET_META_CONTEXT, rep::ACK, vec![]),
        ]
    );
    let Step::Transmission(n) = step else {
        panic!("{step:?}")
    };
    assert_eq!(n.base_allocation, Some(BASE_ALLOCATION_ID));
}

#[test]
fn read_only_flags() {
    let e = export(true);
    let f = e.transmission_flags(false);
    assert_eq!(f & tflag::READ_ONLY, tflag::READ_ONLY);
    assert_eq!(
        f & (tflag::SEND_WRITE_ZEROES | tflag::SEND_FUA | tflag::SEND_TRIM),
        0
    );
}

#[test]
fn too_many_options_close() {
    let mut h = started(3);
    let mut input = Vec::new();
    for _ in 0..=MAX_OPTIONS {
        input.extend(option(opt::LIST, &[]));
    }
    let (out, step, _) = run(&mut h, &input);
    assert!(matches!(step, Step::Close(_)));
    let r = replies(&out);
    // Each LIST is answered with a SERVER reply and an ACK; the option
    // over the limit gets an error saying why the connection ends.
    assert_eq!(r.len(), 2 * MAX_OPTIONS as usize + 1);
    let (o, kind, msg) = r.last().unwrap();
    assert_eq!((*o, *kind), (opt::LIST, rep::ERR_POLICY));
    let msg = String::from_utf8_lossy(msg);
    assert!(msg.contains("more than 256 options"), "{msg}");
}

/// Two exports, "a" (the default) and "b"; any other name is unknown.
struct Two;

impl Exports for Two {
    fn list(&self) -> Vec<(String, Option<String>)> {
        vec![("a".into(), Some("disk a".into())), ("b".into(), None)]
    }

    fn lookup(&mut self, name: &str) -> Result<ExportDesc, NoSuchExport> {
        let mut e = export(false);
        e.name = match name {
            "" | "a" => "a".into(),
            "b" => "b".into(),
            _ => return Err(NoSuchExport("no such export".into())),
        };
        e.size = if e.name == "a" { 1 << 20 } else { 2 << 20 };
        Ok(e)
    }
}

fn started_with(exports: Box<dyn Exports>) -> Handshake {
    let mut h = Handshake::with_exports(exports);
    let (_, step, _) = run(&mut h, &3u32.to_be_bytes());
    assert_eq!(step, Step::NeedMore);
    h
}

#[test]
fn several_exports_by_name() {
    let mut h = started_with(Box::new(Two));
    let mut input = option(opt::LIST, &[]);
    input.extend(option(opt::INFO, &Raw::info(b"zzz")));
    input.extend(option(opt::INFO, &Raw::info(b"")));
    input.extend(option(opt::GO, &Raw::info(b"b")));
    let (out, step, _) = run(&mut h, &input);
    let r = replies(&out);
    let mut a = wire::rep_server("a");
    a.extend_from_slice(b"disk a");
    assert_eq!(r[0], (opt::LIST, rep::SERVER, a));
    assert_eq!(r[1], (opt::LIST, rep::SERVER, wire::rep_server("b")));
    assert_eq!((r[2].0, r[2].1), (opt::LIST, rep::ACK));
    assert_eq!((r[3].0, r[3].1), (opt::INFO, rep::ERR_UNKNOWN));
    assert_eq!(r[3].2, b"export \"zzz\": no such export");
    // The empty name is the default export, "a", with its own size.
    assert_eq!(r[4].1, rep::INFO);
    assert_eq!(&r[4].2[2..10], &(1u64 << 20).to_be_bytes());
    let Step::Transmission(n) = step else {
        panic!("{step:?}")
    };
    assert_eq!((n.export_name.as_str(), n.export.name.as_str()), ("b", "b"));
    assert_eq!(n.export.size, 2 << 20);

    // EXPORT_NAME has no error reply: an unknown name closes.
    let mut h = started_with(Box::new(Two));
    let (out, step, _) = run(&mut h, &option(opt::EXPORT_NAME, b"nope"));
    assert!(out.is_empty());
    assert!(matches!(step, Step::Close(why) if why.contains("no such export")));
}

fn started_tls(mode: TlsMode) -> Handshake {
    let mut h = Handshake::new(export(false)).with_tls(mode);
    let (_, step, _) = run(&mut h, &3u32.to_be_bytes());
    assert_eq!(step, Step::NeedMore);
    h
}

fn reply_types(out: &[u8]) -> Vec<(u32, u32)> {
    replies(out).iter().map(|(o, t, _)| (*o, *t)).collect()
}

#[test]
fn tls_off_refuses_starttls() {
    let mut h = started_tls(TlsMode::Off);
    let (out, step, _) = run(&mut h, &option(opt::STARTTLS, &[]));
    assert_eq!(reply_types(&out), [(opt::STARTTLS, rep::ERR_UNSUP)]);
    assert_eq!(step, Step::NeedMore);
    assert!(!h.tls_active());
}

#[test]
fn tls_required_refuses_every_other_option_first() {
    let mut h = started_tls(TlsMode::Require);
    let mut input = Vec::new();
    for o in [opt::LIST, opt::STRUCTURED_REPLY, 42] {
        input.extend(option(o, &[]));
    }
    input.extend(option(opt::INFO, &Raw::info(b"")));
    input.extend(option(opt::GO, &Raw::info(b"")));
    input.extend(option(opt::SET_META_CONTEXT, &meta("", &[BASE_ALLOCATION])));
    input.extend(option(opt::ABORT, &[]));
    let (out, step, used) = run(&mut h, &input);
    assert_eq!(used, input.len());
    let r = replies(&out);
    let types: Vec<(u32, u32)> = r.iter().map(|(o, t, _)| (*o, *t)).collect();
    assert_eq!(
        types,
        [
            (opt::LIST, rep::ERR_TLS_REQD),
            (opt::STRUCTURED_REPLY, rep::ERR_TLS_REQD),
            (42, rep::ERR_TLS_REQD),
            (opt::INFO, rep::ERR_TLS_REQD),
            (opt::GO, rep::ERR_TLS_REQD),
            (opt::SET_META_CONTEXT, rep::ERR_TLS_REQD),
            (opt::ABORT, rep::ACK),
        ]
    );
    assert!(String::from_utf8_lossy(&r[0].2).contains("requires TLS"));
    assert!(matches!(step, Step::Close(_)));

    // EXPORT_NAME has no error reply: without TLS it closes, silently.
    let mut h = started_tls(TlsMode::Require);
    let (out, step, _) = run(&mut h, &option(opt::EXPORT_NAME, b""));
    assert!(out.is_empty());
    assert!(matches!(step, Step::Close(why) if why.contains("without TLS")));
}

#[test]
fn starttls_then_options_go_on_over_tls() {
    let mut h = started_tls(TlsMode::Require);
    // With data: invalid, and still waiting for a proper STARTTLS.
    let (out, step, _) = run(&mut h, &option(opt::STARTTLS, b"x"));
    assert_eq!(reply_types(&out), [(opt::STARTTLS, rep::ERR_INVALID)]);
    assert_eq!(step, Step::NeedMore);
    assert!(!h.tls_active());

    let (out, step, used) = run(&mut h, &option(opt::STARTTLS, &[]));
    assert_eq!(replies(&out), [(opt::STARTTLS, rep::ACK, vec![])]);
    assert_eq!((step, used), (Step::StartTls, OPTION_HEADER_LEN));
    assert!(h.tls_active());

    // Over TLS: a second STARTTLS is invalid, and nothing is TLS_REQD.
    let mut input = option(opt::STARTTLS, &[]);
    input.extend(option(opt::LIST, &[]));
    input.extend(option(opt::GO, &Raw::info(b"")));
    let (out, step, _) = run(&mut h, &input);
    let types = reply_types(&out);
    assert_eq!(types[0], (opt::STARTTLS, rep::ERR_INVALID));
    assert_eq!(types[1], (opt::LIST, rep::SERVER));
    assert_eq!(types[2], (opt::LIST, rep::ACK));
    assert_eq!(types.last(), Some(&(opt::GO, rep::ACK)));
    assert!(types.iter().all(|t| t.1 != rep::ERR_TLS_REQD));
    assert!(matches!(step, Step::Transmission(_)));
}

#[test]
fn bytes_pipelined_behind_starttls_close_without_ack() {
    for mode in [TlsMode::On, TlsMode::Require] {
        let mut h = started_tls(mode);
        let mut input = option(opt::STARTTLS, &[]);
        input.push(0x16);
        let (out, step, _) = run(&mut h, &input);
        assert!(out.is_empty(), "{mode:?}: no ACK is sent");
        assert!(matches!(step, Step::Close(why) if why.contains("behind NBD_OPT_STARTTLS")));
        assert!(matches!(h.receive(&[], &mut Vec::new()).1, Step::Close(_)));
    }
}

#[test]
fn plain_text_negotiation_is_forgotten_at_starttls() {
    let mut h = started_tls(TlsMode::On);
    let mut input = option(opt::STRUCTURED_REPLY, &[]);
    input.extend(option(opt::SET_META_CONTEXT, &meta("", &[BASE_ALLOCATION])));
    input.extend(option(opt::STARTTLS, &[]));
    let (out, step, _) = run(&mut h, &input);
    assert_eq!(step, Step::StartTls);
    assert_eq!(reply_types(&out).last(), Some(&(opt::STARTTLS, rep::ACK)));
    let (_, step, _) = run(&mut h, &option(opt::GO, &Raw::info(b"")));
    let Step::Transmission(n) = step else {
        panic!("{step:?}")
    };
    assert!(
        !n.structured,
        "structured replies must be asked for again over TLS"
    );
    assert_eq!(n.base_allocation, None);
    assert_eq!(n.transmission_flags & tflag::SEND_DF, 0);
}

#[test]
fn tls_on_still_serves_plain_clients() {
    let mut h = started_tls(TlsMode::On);
    let mut input = option(opt::STRUCTURED_REPLY, &[]);
    input.extend(option(opt::GO, &Raw::info(b"")));
    let (_, step, _) = run(&mut h, &input);
    let Step::Transmission(n) = step else {
        panic!("{step:?}")
    };
    assert!(n.structured);
    assert!(!h.tls_active());
}

/// Payload helpers for INFO/GO.
struct Raw;

impl Raw {
    fn info(name: &[u8]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name);
        p.extend_from_slice(&0u16.to_be_bytes());
        p
    }
}
