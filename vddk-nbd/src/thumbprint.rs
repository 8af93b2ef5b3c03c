//! A server's certificate thumbprint, fetched over TLS: what VDDK's
//! `thumbprint=` wants (SHA-1, upper-case hex pairs joined by colons) and
//! the SHA-256 fingerprint for comparing with what vSphere shows.
//!
//! The TLS client here only fingerprints: it accepts any certificate,
//! completes the handshake and closes without sending application data.
//! Trust comes from the user (or `no_verify=1`) deciding to use the value.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// The port vSphere serves HTTPS on, and VDDK's default.
pub const DEFAULT_PORT: u16 = 443;

/// How long a fetch may take in all (connect and handshake).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A certificate's fingerprints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    /// SHA-1, as VDDK's `thumbPrint` expects it.
    pub sha1: vddk::Thumbprint,
    /// SHA-256, upper-case hex pairs joined by colons.
    pub sha256: String,
}

impl Fingerprints {
    /// The fingerprints of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprints {
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, der);
        let sha1 = hex_pairs(sha1.as_ref())
            .parse()
            .unwrap_or_else(|_| unreachable_thumbprint());
        Fingerprints {
            sha1,
            sha256: hex_pairs(sha256.as_ref()),
        }
    }
}

// A SHA-1 digest is always 20 bytes, which always parses; this keeps the
// impossible branch free of a panic message pretending otherwise.
fn unreachable_thumbprint() -> vddk::Thumbprint {
    let zeros = ["00"; 20].join(":");
    zeros.parse().unwrap_or_else(|_| std::process::abort())
}

/// Bytes as upper-case hex pairs joined by colons (`AB:01:...`).
pub fn hex_pairs(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// A `HOST[:PORT]` that names no server, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {problem}; expected HOST or HOST:PORT (e.g. esx1.example.com:443)")]
pub struct BadHostPort {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub problem: HostPortProblem,
}

/// What is wrong with a `HOST[:PORT]`: see [`BadHostPort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostPortProblem {
    /// `[v6addr` without its `]`.
    #[error("missing ']'")]
    UnclosedBracket,
    /// Something other than `:PORT` after `[v6addr]`.
    #[error("junk after ']'")]
    JunkAfterBracket,
    /// Nothing before the port.
    #[error("no host")]
    NoHost,
    /// A port that is not 1 to 65535.
    #[error("the port is not a number from 1 to 65535")]
    BadPort,
}

/// Splits `HOST[:PORT]` (`[v6addr]:PORT` for IPv6); the port defaults
/// to 443.
///
/// # Errors
/// [`BadHostPort`] when there is no host, a bracket is unclosed or
/// followed by something other than `:PORT`, or the port is not 1 to 65535.
pub fn parse_host_port(s: &str) -> Result<(String, u16), BadHostPort> {
    let bad = |problem| BadHostPort {
        text: s.to_string(),
        problem,
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(HostPortProblem::UnclosedBracket))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad(HostPortProblem::JunkAfterBracket))?,
                ),
            ),
        }
    } else if s.matches(':').count() > 1 {
        // A bare IPv6 address: no port can be told apart from it.
        (s, None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(bad(HostPortProblem::NoHost));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(HostPortProblem::BadPort))?,
    };
    Ok((host.to_string(), port))
}

/// Why a thumbprint could not be fetched. Each message names the server
/// and the step that failed; a handshake failure suggests the usual cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host as given.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The host name resolved to no address.
    #[error("{host} has no address")]
    NoAddress {
        /// The host as given.
        host: String,
    },
    /// No address accepted a connection; the last attempt's error.
    #[error("cannot connect to {host}:{port} ({addr}): {source}")]
    Connect {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The address last tried.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The connection's timeouts could not be set.
    #[error("{host}:{port}: {source}")]
    Socket {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The host cannot be a TLS server name.
    #[error("{host:?} is not a valid TLS server name: {source}")]
    ServerName {
        /// The host as given.
        host: String,
        /// Why rustls refused it.
        source: InvalidDnsNameError,
    },
    /// The TLS client could not be configured.
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
    /// The TLS session could not be started.
    #[error("{host}:{port}: cannot start TLS: {source}")]
    Start {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// Why rustls refused.
        source: rustls::Error,
    },
    /// The handshake failed, as it does on a port that does not speak TLS.
    #[error(
        "{host}:{port}: TLS handshake failed: {source} (is this a TLS port? vSphere uses 443)"
    )]
    Handshake {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The I/O or TLS error.
        source: std::io::Error,
    },
    /// The handshake completed without a certificate.
    #[error("{host}:{port} presented no certificate")]
    NoCertificate {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Connects to `host:port`, completes a TLS handshake and returns the
/// fingerprints of the certificate the server presented.
///
/// # Errors
/// [`FetchError`]: the name does not resolve, no address connects within
/// `timeout`, or the TLS handshake fails or yields no certificate.
pub fn fetch(host: &str, port: u16, timeout: Duration) -> Result<Fingerprints, FetchError> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|source| FetchError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    let mut last = FetchError::NoAddress {
        host: host.to_string(),
    };
    let mut sock = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(source) => {
                last = FetchError::Connect {
                    host: host.to_string(),
                    port,
                    addr: *a,
                    source,
                }
            }
        }
    }
    let mut sock = sock.ok_or(last)?;
    sock.set_read_timeout(Some(timeout))
        .and_then(|()| sock.set_write_timeout(Some(timeout)))
        .map_err(|source| FetchError::Socket {
            host: host.to_string(),
            port,
            source,
        })?;

    let name = ServerName::try_from(host.to_string()).map_err(|source| FetchError::ServerName {
        host: host.to_string(),
        source,
    })?;
    let mut conn = ClientConnection::new(config()?, name).map_err(|source| FetchError::Start {
        host: host.to_string(),
        port,
        source,
    })?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|source| FetchError::Handshake {
                host: host.to_string(),
                port,
                source,
            })?;
    }
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| FetchError::NoCertificate {
            host: host.to_string(),
            port,
        })?;
    let fp = Fingerprints::of_der(der.as_ref());
    conn.send_close_notify();
    // Best effort: the fingerprint is already known.
    let _ = conn.write_tls(&mut sock).and_then(|_| sock.flush());
    Ok(fp)
}

fn config() -> Result<Arc<ClientConfig>, FetchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(FetchError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FingerprintOnly(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate (we only fingerprint it) but still checks the
/// handshake signatures, so the certificate fingerprinted is the one whose
/// key the server holds.
#[derive(Debug)]
struct FingerprintOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for FingerprintOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_vectors() {
        // FIPS 180 test vectors for "abc".
        let fp = Fingerprints::of_der(b"abc");
        assert_eq!(
            fp.sha1.to_string(),
            "A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D"
        );
        assert_eq!(
            fp.sha256.replace(':', ""),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
    }

    #[test]
    fn host_and_port() {
        assert_eq!(parse_host_port("esx1").unwrap(), ("esx1".into(), 443));
        assert_eq!(parse_host_port("esx1:8443").unwrap(), ("esx1".into(), 8443));
        assert_eq!(parse_host_port("[::1]:9").unwrap(), ("::1".into(), 9));
        assert_eq!(parse_host_port("[::1]").unwrap(), ("::1".into(), 443));
        assert_eq!(parse_host_port("fe80::1").unwrap(), ("fe80::1".into(), 443));
        for bad in ["", ":443", "h:0", "h:x", "h:70000", "[::1", "[::1]x"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
        let e = parse_host_port("h:0").unwrap_err();
        assert_eq!(e.problem, HostPortProblem::BadPort);
        assert_eq!(
            e.to_string(),
            "\"h:0\": the port is not a number from 1 to 65535; expected HOST or HOST:PORT \
             (e.g. esx1.example.com:443)"
        );
        assert_eq!(
            parse_host_port("[::1").unwrap_err().problem,
            HostPortProblem::UnclosedBracket
        );
    }
}
