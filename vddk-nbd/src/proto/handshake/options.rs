//! One function per option: what the server answers and how the
//! negotiation goes on.

use super::super::consts::*;
use super::super::export::ExportDesc;
use super::super::wire::{self, WireError};
use super::{Handshake, Negotiated, Step, TlsMode, BASE_ALLOCATION_ID};

impl Handshake {
    pub(super) fn dispatch(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) -> Step {
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

    pub(super) fn starttls(&mut self, payload: &[u8], pipelined: bool, out: &mut Vec<u8>) -> Step {
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

    pub(super) fn tls_required(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) -> Step {
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
