//! Fixed newstyle negotiation as a state machine: bytes from the client go
//! in, option replies and a decision come out. No sockets, no clock.

use super::consts::*;
use super::wire::{self, WireError};

/// Options a client may send before the server gives up on it; real
/// clients send fewer than ten.
pub const MAX_OPTIONS: u32 = 256;

/// One export as negotiation presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDesc {
    /// Name shown by NBD_OPT_LIST and NBD_INFO_NAME. Used on its own as the
    /// handshake's [`Exports`], every name a client asks for is accepted and
    /// served as this export, as nbdkit does.
    pub name: String,
    /// Optional NBD_INFO_DESCRIPTION.
    pub description: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Writes are refused.
    pub read_only: bool,
    /// Minimum, preferred and maximum block sizes for NBD_INFO_BLOCK_SIZE.
    pub block_sizes: (u32, u32, u32),
}

impl ExportDesc {
    /// Transmission flags for a connection, given whether it negotiated
    /// structured replies (DF only makes sense with them).
    pub fn transmission_flags(&self, structured: bool) -> u16 {
        let mut f =
            tflag::HAS_FLAGS | tflag::SEND_FLUSH | tflag::SEND_CACHE | tflag::CAN_MULTI_CONN;
        if self.read_only {
            f |= tflag::READ_ONLY;
        } else {
            f |= tflag::SEND_FUA | tflag::SEND_WRITE_ZEROES | tflag::SEND_FAST_ZERO;
        }
        if structured {
            f |= tflag::SEND_DF;
        }
        f
    }
}

/// Where negotiation finds exports: the list for NBD_OPT_LIST and the
/// export a client's name selects. A lookup may open the export, so it is
/// asked only when a client needs the answer (INFO, GO, EXPORT_NAME).
pub trait Exports: Send {
    /// Names and descriptions for NBD_OPT_LIST, the default export first.
    fn list(&self) -> Vec<(String, Option<String>)>;
    /// The export `name` selects (`""` is the default export), or why there
    /// is none, in words a client can show its user.
    fn lookup(&mut self, name: &str) -> Result<ExportDesc, String>;
}

/// A single export that answers to every name.
impl Exports for ExportDesc {
    fn list(&self) -> Vec<(String, Option<String>)> {
        vec![(self.name.clone(), self.description.clone())]
    }

    fn lookup(&mut self, _name: &str) -> Result<ExportDesc, String> {
        Ok(self.clone())
    }
}

/// Whether a server offers TLS (NBD_OPT_STARTTLS), in the spec's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// NOTLS: STARTTLS is answered NBD_REP_ERR_UNSUP (`--tls=off`).
    #[default]
    Off,
    /// Clients may upgrade to TLS or go on in plain text (`--tls=on`).
    On,
    /// FORCEDTLS: until the client has upgraded, every option but
    /// STARTTLS and ABORT is answered NBD_REP_ERR_TLS_REQD, and
    /// NBD_OPT_EXPORT_NAME, which has no error reply, closes
    /// (`--tls=require`).
    Require,
}

/// The outcome of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Structured replies were negotiated.
    pub structured: bool,
    /// Id of `base:allocation` if selected.
    pub base_allocation: Option<u32>,
    /// Flags sent to the client.
    pub transmission_flags: u16,
    /// The name the client asked for.
    pub export_name: String,
    /// The export that name selected.
    pub export: ExportDesc,
}

/// What the driver should do after [`Handshake::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes from the client, then call again.
    NeedMore,
    /// Call again with the remaining bytes.
    Continue,
    /// Negotiation is over; transmission starts with the next byte.
    Transmission(Negotiated),
    /// Send what was written to `out` (NBD_REP_ACK to STARTTLS), then run
    /// the TLS handshake as the server; negotiation goes on over TLS with
    /// the next call. No input is left over: a client that sent more
    /// bytes behind STARTTLS gets [`Step::Close`] instead, since those
    /// bytes were sent in plain text and cannot be trusted.
    StartTls,
    /// Send what was written to `out`, then close; the reason is for the log.
    Close(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ClientFlags,
    Options,
    Finished,
}

/// The negotiation state of one connection.
pub struct Handshake {
    exports: Box<dyn Exports>,
    state: State,
    no_zeroes: bool,
    structured: bool,
    base_allocation: bool,
    options_seen: u32,
    tls_mode: TlsMode,
    tls_active: bool,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("state", &self.state)
            .field("structured", &self.structured)
            .field("options_seen", &self.options_seen)
            .field("tls_mode", &self.tls_mode)
            .field("tls_active", &self.tls_active)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// A new negotiation for one export that answers to every name.
    pub fn new(export: ExportDesc) -> Handshake {
        Handshake::with_exports(Box::new(export))
    }

    /// A new negotiation choosing among `exports` by name.
    pub fn with_exports(exports: Box<dyn Exports>) -> Handshake {
        Handshake {
            exports,
            state: State::ClientFlags,
            no_zeroes: false,
            structured: false,
            base_allocation: false,
            options_seen: 0,
            tls_mode: TlsMode::Off,
            tls_active: false,
        }
    }

    /// Offers TLS as `mode` says (the default is [`TlsMode::Off`]).
    pub fn with_tls(mut self, mode: TlsMode) -> Handshake {
        self.tls_mode = mode;
        self
    }

    /// Whether the client has upgraded to TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// The bytes the server sends first.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        wire::encode_greeting(out, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    }

    /// Consumes bytes from the front of `input` (returning how many) and
    /// appends replies to `out`.
    pub fn receive(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Step) {
        match self.state {
            State::Finished => (0, Step::Close("negotiation already finished".into())),
            State::ClientFlags => match wire::decode_client_flags(input) {
                Err(_) => (0, Step::NeedMore),
                Ok(flags) => {
                    let unknown = flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
                    if unknown != 0 {
                        self.state = State::Finished;
                        return (
                            4,
                            Step::Close(format!("client sent unknown flags {unknown:#x}")),
                        );
                    }
                    self.no_zeroes = flags & FLAG_C_NO_ZEROES != 0;
                    self.state = State::Options;
                    (4, Step::Continue)
                }
            },
            State::Options => self.option(input, out),
        }
    }

    fn option(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Step) {
        let header = match wire::decode_option_header(input) {
            Err(WireError::NeedMore(_)) => return (0, Step::NeedMore),
            Err(WireError::Malformed(why)) => {
                self.state = State::Finished;
                return (0, Step::Close(why));
            }
            Ok(h) => h,
        };
        if header.length > MAX_OPTION_LEN {
            // Skipping a multi-gigabyte claim would tie the connection up;
            // say why and hang up instead.
            let msg = format!(
                "option payload of {} bytes exceeds the limit of {MAX_OPTION_LEN}",
                header.length
            );
            wire::encode_option_reply(out, header.option, rep::ERR_TOO_BIG, msg.as_bytes());
            self.state = State::Finished;
            return (OPTION_HEADER_LEN, Step::Close(msg));
        }
        let total = OPTION_HEADER_LEN + header.length as usize;
        if input.len() < total {
            return (0, Step::NeedMore);
        }
        self.options_seen += 1;
        if self.options_seen > MAX_OPTIONS {
            self.state = State::Finished;
            return (
                total,
                Step::Close(format!("more than {MAX_OPTIONS} options")),
            );
        }
        let payload = &input[OPTION_HEADER_LEN..total];
        let step = if header.option == opt::STARTTLS {
            self.starttls(payload, input.len() > total, out)
        } else if self.tls_mode == TlsMode::Require && !self.tls_active {
            self.tls_required(header.option, payload, out)
        } else {
            self.dispatch(header.option, payload, out)
        };
        if !matches!(step, Step::Continue | Step::StartTls) {
            self.state = State::Finished;
        }
        (total, step)
    }

    fn dispatch(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) -> Step {
        match option {
            opt::EXPORT_NAME => self.export_name(payload, out),
            opt::ABORT => {
                wire::encode_option_reply(out, option, rep::ACK, &[]);
                Step::Close("client aborted negotiation".into())
            }
            opt::LIST => self.list(payload, out),
            opt::INFO | opt::GO => self.info_go(option, payload, out),
            opt::STRUCTURED_REPLY => self.structured_reply(payload, out),
            opt::LIST_META_CONTEXT | opt::SET_META_CONTEXT => {
                self.meta_context(option, payload, out)
            }
            _ => {
                let msg = format!("option {option} is not supported by this server");
                wire::encode_option_reply(out, option, rep::ERR_UNSUP, msg.as_bytes());
                Step::Continue
            }
        }
    }

    fn starttls(&mut self, payload: &[u8], pipelined: bool, out: &mut Vec<u8>) -> Step {
        let option = opt::STARTTLS;
        if self.tls_mode == TlsMode::Off {
            let msg = "this server does not offer TLS";
            wire::encode_option_reply(out, option, rep::ERR_UNSUP, msg.as_bytes());
            return Step::Continue;
        }
        if self.tls_active {
            return Self::invalid(option, "TLS is already active on this connection", out);
        }
        if !payload.is_empty() {
            return Self::invalid(option, "NBD_OPT_STARTTLS takes no data", out);
        }
        if pipelined {
            // Whatever follows was sent in plain text yet would be read as
            // if it came over TLS: a man in the middle could inject it.
            return Step::Close(
                "the client sent more data behind NBD_OPT_STARTTLS before the TLS handshake".into(),
            );
        }
        wire::encode_option_reply(out, option, rep::ACK, &[]);
        self.tls_active = true;
        // Options negotiated in plain text may have been injected by a man
        // in the middle: the client renegotiates what it wants over TLS.
        self.structured = false;
        self.base_allocation = false;
        Step::StartTls
    }

    fn tls_required(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) -> Step {
        match option {
            opt::ABORT => self.dispatch(option, payload, out),
            // This option has no error reply: the only answer is to hang up.
            opt::EXPORT_NAME => {
                Step::Close("the client chose an export without TLS, which is required".into())
            }
            _ => {
                let msg = "this server requires TLS: upgrade with NBD_OPT_STARTTLS first \
                           (e.g. an nbds:// URI)";
                wire::encode_option_reply(out, option, rep::ERR_TLS_REQD, msg.as_bytes());
                Step::Continue
            }
        }
    }

    fn invalid(option: u32, msg: &str, out: &mut Vec<u8>) -> Step {
        wire::encode_option_reply(out, option, rep::ERR_INVALID, msg.as_bytes());
        Step::Continue
    }

    fn negotiated(&self, export_name: String, export: ExportDesc) -> Negotiated {
        Negotiated {
            structured: self.structured,
            base_allocation: (self.structured && self.base_allocation)
                .then_some(BASE_ALLOCATION_ID),
            transmission_flags: export.transmission_flags(self.structured),
            export_name,
            export,
        }
    }

    fn export_name(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Step {
        let Ok(name) = std::str::from_utf8(payload) else {
            // This option has no error reply: the only answer is to hang up.
            return Step::Close("export name is not UTF-8".into());
        };
        let export = match self.exports.lookup(name) {
            Ok(e) => e,
            // No error reply exists for this option either.
            Err(why) => return Step::Close(format!("export {name:?}: {why}")),
        };
        let size = export.size;
        let n = self.negotiated(name.to_owned(), export);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&n.transmission_flags.to_be_bytes());
        if !self.no_zeroes {
            out.extend_from_slice(&[0u8; 124]);
        }
        Step::Transmission(n)
    }

    fn list(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Step {
        if !payload.is_empty() {
            return Self::invalid(opt::LIST, "NBD_OPT_LIST takes no data", out);
        }
        for (name, description) in self.exports.list() {
            // The bytes after the name are the export's details, which
            // clients such as `nbdinfo --list` show as its description.
            let mut payload = wire::rep_server(&name);
            if let Some(d) = description {
                payload.extend_from_slice(d.as_bytes());
            }
            wire::encode_option_reply(out, opt::LIST, rep::SERVER, &payload);
        }
        wire::encode_option_reply(out, opt::LIST, rep::ACK, &[]);
        Step::Continue
    }

    fn info_go(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) -> Step {
        let req = match wire::decode_info_request(payload) {
            Ok(r) => r,
            Err(WireError::Malformed(why)) => return Self::invalid(option, &why, out),
            Err(WireError::NeedMore(_)) => return Self::invalid(option, "truncated", out),
        };
        let export = match self.exports.lookup(&req.name) {
            Ok(e) => e,
            Err(why) => {
                let msg = format!("export {:?}: {why}", req.name);
                wire::encode_option_reply(out, option, rep::ERR_UNKNOWN, msg.as_bytes());
                return Step::Continue;
            }
        };
        let n = self.negotiated(req.name.clone(), export);
        let e = &n.export;
        wire::encode_option_reply(
            out,
            option,
            rep::INFO,
            &wire::info_export(e.size, n.transmission_flags),
        );
        let mut sent_name = false;
        let mut sent_description = false;
        for r in &req.requests {
            match *r {
                info::NAME if !sent_name => {
                    sent_name = true;
                    wire::encode_option_reply(
                        out,
                        option,
                        rep::INFO,
                        &wire::info_string(info::NAME, &e.name),
                    );
                }
                info::DESCRIPTION if !sent_description => {
                    sent_description = true;
                    if let Some(d) = &e.description {
                        wire::encode_option_reply(
                            out,
                            option,
                            rep::INFO,
                            &wire::info_string(info::DESCRIPTION, d),
                        );
                    }
                }
                _ => {}
            }
        }
        // Block sizes are sent whether asked for or not: the export has a
        // real minimum and clients that care read it either way.
        let (min, pref, max) = e.block_sizes;
        wire::encode_option_reply(
            out,
            option,
            rep::INFO,
            &wire::info_block_size(min, pref, max),
        );
        wire::encode_option_reply(out, option, rep::ACK, &[]);
        if option == opt::GO {
            Step::Transmission(n)
        } else {
            Step::Continue
        }
    }

    fn structured_reply(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Step {
        if !payload.is_empty() {
            return Self::invalid(
                opt::STRUCTURED_REPLY,
                "NBD_OPT_STRUCTURED_REPLY takes no data",
                out,
            );
        }
        self.structured = true;
        wire::encode_option_reply(out, opt::STRUCTURED_REPLY, rep::ACK, &[]);
        Step::Continue
    }

    fn meta_context(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) -> Step {
        if !self.structured {
            return Self::invalid(
                option,
                "negotiate NBD_OPT_STRUCTURED_REPLY before metadata contexts",
                out,
            );
        }
        let req = match wire::decode_meta_request(payload) {
            Ok(r) => r,
            Err(WireError::Malformed(why)) => return Self::invalid(option, &why, out),
            Err(WireError::NeedMore(_)) => return Self::invalid(option, "truncated", out),
        };
        let list = option == opt::LIST_META_CONTEXT;
        let selected = if list {
            req.queries.is_empty()
                || req
                    .queries
                    .iter()
                    .any(|q| q == "base:" || q == BASE_ALLOCATION)
        } else {
            req.queries.iter().any(|q| q == BASE_ALLOCATION)
        };
        if selected {
            // LIST replies carry id 0, which the spec reserves for them.
            let id = if list { 0 } else { BASE_ALLOCATION_ID };
            wire::encode_option_reply(
                out,
                option,
                rep::META_CONTEXT,
                &wire::rep_meta_context(id, BASE_ALLOCATION),
            );
        }
        if !list {
            self.base_allocation = selected;
        }
        wire::encode_option_reply(out, option, rep::ACK, &[]);
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(read_only: bool) -> ExportDesc {
        ExportDesc {
            name: "disk".into(),
            description: Some("a test disk".into()),
            size: 1 << 20,
            read_only,
            block_sizes: (512, 4096, 32 << 20),
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
        let (_, step, _) = run(&mut h, &input);
        assert!(matches!(step, Step::Close(_)));
    }

    /// Two exports, "a" (the default) and "b"; any other name is unknown.
    struct Two;

    impl Exports for Two {
        fn list(&self) -> Vec<(String, Option<String>)> {
            vec![("a".into(), Some("disk a".into())), ("b".into(), None)]
        }

        fn lookup(&mut self, name: &str) -> Result<ExportDesc, String> {
            let mut e = export(false);
            e.name = match name {
                "" | "a" => "a".into(),
                "b" => "b".into(),
                _ => return Err("no such export".into()),
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
}
