//! Negotiation driven over a byte stream: the handshake state machine
//! fed from the socket, and the upgrade to TLS when the client asks.

use std::io::{self, Read, Write};

use crate::proto::handshake::{Exports, Handshake, Negotiated, Step, TlsMode};
use crate::tls::Tls;

use super::tls_stream::{self, TlsReader, TlsWriter};

/// A connection's byte stream: plain, or upgraded by NBD_OPT_STARTTLS.
pub(crate) enum Link<R, W> {
    /// The socket (or stdin/stdout) as it is.
    Plain(R, W),
    /// A TLS session over it.
    Tls(TlsReader<R, W>, TlsWriter<W>),
}

impl<R: Read, W: Write> Link<R, W> {
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(r, _) => r.read(buf),
            Link::Tls(r, _) => r.read(buf),
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Plain(_, w) => {
                w.write_all(bytes)?;
                w.flush()
            }
            Link::Tls(_, w) => w.write_all(bytes),
        }
    }

    /// Ends a TLS session cleanly; nothing to do in plain text.
    pub(crate) fn close(&self) {
        if let Link::Tls(_, w) = self {
            w.close();
        }
    }

    /// Runs the TLS handshake over the plain stream.
    fn upgrade(self, tls: Option<&Tls>) -> io::Result<Link<R, W>> {
        let (Link::Plain(r, w), Some(tls)) = (self, tls) else {
            // The handshake machine accepts STARTTLS only once, and only
            // when the server offers TLS.
            return Err(io::Error::other("STARTTLS accepted where TLS cannot start"));
        };
        let (r, w) = tls_stream::accept(r, w, tls.config())?;
        Ok(Link::Tls(r, w))
    }
}

/// What a successful negotiation hands to transmission.
pub(crate) struct Negotiation<R, W> {
    /// The options agreed.
    pub negotiated: Negotiated,
    /// Bytes (plaintext) already received past the end of negotiation.
    pub leftover: Vec<u8>,
    /// The stream transmission goes on over.
    pub link: Link<R, W>,
}

/// Runs the handshake, upgrading to TLS if the client asks and `tls`
/// allows. Returns `None` when the client left or was refused.
pub(crate) fn negotiate<R: Read, W: Write>(
    r: R,
    w: W,
    exports: Box<dyn Exports>,
    tls: Option<&Tls>,
) -> io::Result<Option<Negotiation<R, W>>> {
    let mode = tls.map_or(TlsMode::Off, Tls::mode);
    let mut hs = Handshake::with_exports(exports).with_tls(mode);
    let mut link = Link::Plain(r, w);
    let mut out = Vec::new();
    hs.greeting(&mut out);
    link.send(&out)?;
    let mut input: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        out.clear();
        let (used, step) = hs.receive(&input, &mut out);
        input.drain(..used);
        if !out.is_empty() {
            link.send(&out)?;
        }
        match step {
            Step::Continue => {}
            Step::NeedMore => {
                let n = link.read(&mut buf)?;
                if n == 0 {
                    log::debug!("client left during negotiation");
                    return Ok(None);
                }
                input.extend_from_slice(&buf[..n]);
            }
            Step::StartTls => {
                link = match link.upgrade(tls) {
                    Ok(l) => l,
                    Err(e) => {
                        super::warn_limit::TLS_FAILED
                            .warn(format_args!("TLS handshake with a client failed: {e}"));
                        return Ok(None);
                    }
                };
                log::debug!("client upgraded to TLS");
            }
            Step::Transmission(negotiated) => {
                return Ok(Some(Negotiation {
                    negotiated,
                    leftover: input,
                    link,
                }))
            }
            Step::Close(why) => {
                log::debug!("negotiation ended: {why}");
                link.close();
                return Ok(None);
            }
        }
    }
}
