//! Drives the handshake state machine with arbitrary client bytes.
//!
//! Input: byte 0 picks the export (read-only, with a description or not,
//! of the largest size) or, with bit 3, a table of two named exports whose
//! lookup fails for any other name, and with bits 4-5 the TLS mode (off,
//! on, require); byte 1 seeds the chunk sizes for the incremental run; the
//! rest is what the client sends after the greeting.
//!
//! Checked: no panic; every step consumes no more than it was given and a
//! `Continue` always consumes something (no livelock); the machine never
//! waits for more than one option header plus the option cap (checked by
//! padding some inputs that end waiting up to the cap); every byte it
//! writes is a well-formed option reply (or the EXPORT_NAME answer that ends
//! negotiation); feeding the same bytes in small chunks gives exactly the
//! same replies and outcome as feeding them at once; the export served is
//! the one its name selects. With TLS offered, a third run feeds one
//! option at a time and carries on after STARTTLS as a server whose TLS
//! handshake succeeded would, so the upgraded state is explored too; under
//! `require`, nothing but STARTTLS and ABORT gets anything but
//! NBD_REP_ERR_TLS_REQD before the upgrade.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vddk_nbd::proto::consts::*;
use vddk_nbd::proto::handshake::{
    ExportDesc, Exports, Features, Handshake, NoSuchExport, Step, TlsMode, MAX_OPTIONS,
};

/// Largest set of replies one option may produce: INFO/GO sends at most
/// five short replies, the rest one or two; error messages are short.
const MAX_REPLY_BYTES_PER_STEP: usize = 64 * 1024;

fn export(sel: u8) -> ExportDesc {
    ExportDesc {
        name: "disk".into(),
        description: (sel & 1 != 0).then(|| "fuzzed export".into()),
        size: if sel & 4 != 0 { u64::MAX } else { 1 << 30 },
        block_sizes: (512, 4096, 32 << 20),
        features: if sel & 2 != 0 {
            Features::WRITABLE.read_only()
        } else {
            Features::WRITABLE
        },
    }
}

/// Two exports by name, and a lookup that fails for any other name.
struct Table(u8);

impl Exports for Table {
    fn list(&self) -> Vec<(String, Option<String>)> {
        vec![
            ("disk".into(), None),
            ("ro".into(), Some("read-only".into())),
        ]
    }

    fn lookup(&mut self, name: &str) -> Result<ExportDesc, NoSuchExport> {
        match name {
            "" | "disk" => Ok(export(self.0 & !2)),
            "ro" => Ok(export(self.0 | 2)),
            _ => Err(NoSuchExport(format!("no export named {name:?}"))),
        }
    }
}

/// Byte 0, bits 4-5: how TLS is offered.
fn tls_mode(sel: u8) -> TlsMode {
    match (sel >> 4) & 3 {
        2 => TlsMode::On,
        3 => TlsMode::Require,
        _ => TlsMode::Off,
    }
}

/// Byte 0, bit 3: a table of exports instead of one that takes every name.
fn handshake(sel: u8) -> Handshake {
    let h = if sel & 8 != 0 {
        Handshake::with_exports(Box::new(Table(sel)))
    } else {
        Handshake::new(export(sel))
    };
    h.with_tls(tls_mode(sel))
}

/// The outcome of one run: replies written, bytes consumed, last step.
struct Outcome {
    out: Vec<u8>,
    used: usize,
    step: Step,
    options: u32,
}

/// One `receive` call, with the per-step invariants checked.
fn step(h: &mut Handshake, input: &[u8], out: &mut Vec<u8>) -> (usize, Step) {
    let before = out.len();
    let (n, s) = h.receive(input, out);
    assert!(n <= input.len(), "consumed {n} of {} bytes", input.len());
    assert!(
        out.len() - before <= MAX_REPLY_BYTES_PER_STEP,
        "one step wrote {} bytes",
        out.len() - before
    );
    match &s {
        Step::Continue => assert!(n > 0, "Continue without consuming anything"),
        Step::NeedMore => {
            assert_eq!(n, 0, "NeedMore must leave the bytes to the caller");
            let cap = OPTION_HEADER_LEN + MAX_OPTION_LEN as usize;
            assert!(
                input.len() < cap,
                "waits for more although {} bytes (over the cap {cap}) are there",
                input.len()
            );
        }
        Step::Transmission(neg) => {
            assert!(neg.base_allocation.is_none() || neg.structured);
        }
        Step::Close(why) => assert!(!why.is_empty(), "a close needs a reason for the log"),
        Step::StartTls => {
            assert!(
                h.tls_active(),
                "STARTTLS accepted without TLS becoming active"
            );
            let ack = &out[before..];
            assert!(
                ack.len() == 20 && ack[12..16] == rep::ACK.to_be_bytes(),
                "STARTTLS accepted without a bare ACK"
            );
        }
    }
    (n, s)
}

/// Feeds one option at a time (the client flags first), going on after
/// STARTTLS as if the TLS handshake had succeeded. Checks what `require`
/// promises: before the upgrade, every reply to an option other than
/// STARTTLS and ABORT is NBD_REP_ERR_TLS_REQD, and nothing is served.
fn run_upgraded(sel: u8, input: &[u8]) {
    let mode = tls_mode(sel);
    let mut h = handshake(sel);
    let mut used = 0;
    let mut upgrades = 0;
    for _ in 0..=MAX_OPTIONS + 2 {
        let rest = &input[used..];
        let end = if used == 0 {
            4
        } else if rest.len() >= OPTION_HEADER_LEN {
            let len = u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]) as usize;
            OPTION_HEADER_LEN.saturating_add(len)
        } else {
            rest.len()
        };
        let option = (used > 0 && rest.len() >= 12)
            .then(|| u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]));
        let plain = !h.tls_active();
        let mut out = Vec::new();
        let (n, s) = step(&mut h, &rest[..end.min(rest.len())], &mut out);
        used += n;
        if mode == TlsMode::Off {
            assert!(s != Step::StartTls);
        }
        // An oversized claim is refused as such (and the connection
        // closed) before its option is even looked at.
        let framed = end.saturating_sub(OPTION_HEADER_LEN) <= MAX_OPTION_LEN as usize;
        if mode == TlsMode::Require && plain && n > 0 && framed {
            match option {
                Some(opt::STARTTLS | opt::ABORT) | None => {}
                Some(_) => {
                    assert!(
                        !matches!(s, Step::Transmission(_)),
                        "served an export before TLS under require"
                    );
                    let mut o = &out[..];
                    while o.len() >= 20 {
                        assert_eq!(
                            o[12..16],
                            rep::ERR_TLS_REQD.to_be_bytes(),
                            "a plain option got something other than TLS_REQD"
                        );
                        let len = u32::from_be_bytes([o[16], o[17], o[18], o[19]]) as usize;
                        o = &o[(20 + len).min(o.len())..];
                    }
                }
            }
        }
        match s {
            Step::Continue => {}
            Step::StartTls => {
                upgrades += 1;
                assert_eq!(upgrades, 1, "STARTTLS accepted twice");
            }
            _ => return,
        }
    }
}

fn run_whole(sel: u8, input: &[u8]) -> Outcome {
    let mut h = handshake(sel);
    let mut out = Vec::new();
    let mut used = 0;
    let mut options = 0;
    loop {
        let (n, s) = step(&mut h, &input[used..], &mut out);
        used += n;
        if n > 0 && used > 4 {
            options += 1;
        }
        if s != Step::Continue {
            if s != Step::NeedMore && s != Step::StartTls {
                // Finished: the machine refuses to go on.
                let (n2, again) = h.receive(&input[used..], &mut Vec::new());
                assert_eq!(n2, 0);
                assert!(matches!(again, Step::Close(_)));
            }
            return Outcome {
                out,
                used,
                step: s,
                options,
            };
        }
    }
}

fn run_chunked(sel: u8, seed: u8, input: &[u8]) -> Outcome {
    let mut h = handshake(sel);
    let mut out = Vec::new();
    let mut used = 0;
    let mut avail = 0;
    let mut k = u32::from(seed);
    loop {
        let (n, s) = step(&mut h, &input[used..avail], &mut out);
        used += n;
        match s {
            Step::Continue => {}
            Step::NeedMore if avail < input.len() => {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                avail = (avail + 1 + (k >> 16) as usize % 40).min(input.len());
            }
            s => {
                return Outcome {
                    out,
                    used,
                    step: s,
                    options: 0,
                }
            }
        }
    }
}

/// Walks the replies in `out` and checks their framing.
fn check_replies(mut out: &[u8], step: &Step) {
    while !out.is_empty() {
        if out.len() >= 8 && out[..8] == OPTION_REPLY_MAGIC.to_be_bytes() {
            assert!(out.len() >= 20, "truncated option reply header");
            let len = u32::from_be_bytes([out[16], out[17], out[18], out[19]]) as usize;
            assert!(
                out.len() >= 20 + len,
                "option reply claims {len} bytes past the end"
            );
            out = &out[20 + len..];
            continue;
        }
        // Only the EXPORT_NAME answer is not an option reply, and it is last.
        let Step::Transmission(neg) = step else {
            panic!(
                "bytes that are not an option reply: {:02x?}",
                &out[..out.len().min(32)]
            );
        };
        assert!(
            out.len() == 10 || out.len() == 134,
            "EXPORT_NAME answer of {} bytes",
            out.len()
        );
        assert_eq!(out[..8], neg.export.size.to_be_bytes());
        assert_eq!(out[8..10], neg.transmission_flags.to_be_bytes());
        assert!(out[10..].iter().all(|&b| b == 0));
        return;
    }
}

fuzz_target!(|data: &[u8]| {
    let (sel, seed, input) = match data {
        [a, b, rest @ ..] => (*a, *b, rest),
        _ => return,
    };
    if tls_mode(sel) != TlsMode::Off {
        run_upgraded(sel, input);
    }
    let whole = run_whole(sel, input);
    assert!(
        whole.options <= MAX_OPTIONS + 1,
        "{} options accepted",
        whole.options
    );
    check_replies(&whole.out, &whole.step);
    if let Step::Transmission(neg) = &whole.step {
        assert_eq!(
            neg.transmission_flags,
            neg.export.transmission_flags(neg.structured)
        );
        if sel & 8 != 0 {
            let name = neg.export_name.as_str();
            assert!(
                ["", "disk", "ro"].contains(&name),
                "served unknown export {name:?}"
            );
            assert_eq!(
                neg.export.features.read_only,
                name == "ro",
                "export {name:?} served as the wrong one"
            );
        }
    }
    if whole.step == Step::NeedMore && seed % 16 == 0 {
        // Given one option header plus the option cap, it must make
        // progress or decide. (Only for some inputs: building 64 KiB for
        // each would slow the run.)
        let mut padded = input.to_vec();
        padded.resize(whole.used + OPTION_HEADER_LEN + MAX_OPTION_LEN as usize, 0);
        let again = run_whole(sel, &padded);
        assert!(
            again.step != Step::NeedMore || again.used > whole.used,
            "still waiting after the cap"
        );
    }
    let chunked = run_chunked(sel, seed, input);
    if chunked.step == Step::StartTls && matches!(whole.step, Step::Close(_)) {
        // Bytes behind STARTTLS close the connection only if they arrived
        // with it; a split right after the option is a legitimate upgrade.
        return;
    }
    assert_eq!(
        whole.step, chunked.step,
        "outcome depends on how the bytes were split"
    );
    assert_eq!(whole.used, chunked.used);
    assert!(
        whole.out == chunked.out,
        "replies depend on how the bytes were split"
    );
});
