//! Fixed newstyle negotiation as a state machine: bytes from the client go
//! in, option replies and a decision come out. No sockets, no clock.

use super::consts::*;
pub use super::export::{ExportDesc, Exports, Features, NoSuchExport};
use super::wire::{self, WireError};

mod options;
#[cfg(test)]
mod tests;

/// Options a client may send before the server gives up on it; real
/// clients send fewer than ten.
pub const MAX_OPTIONS: u32 = 256;

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
            // Said before the close, so that the client's user learns why
            // rather than seeing the connection drop.
            let msg = format!(
                "more than {MAX_OPTIONS} options on one connection: the server closes it; \
                 a client needs only a few to choose an export"
            );
            wire::encode_option_reply(out, header.option, rep::ERR_POLICY, msg.as_bytes());
            self.state = State::Finished;
            return (total, Step::Close(msg));
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
}
