//! TLS settings for NBD_OPT_STARTTLS: the mode, and the certificates
//! loaded from a directory laid out as nbdkit's `--tls-certificates`
//! expects (`ca-cert.pem`, `server-cert.pem`, `server-key.pem`, and
//! optionally `ca-crl.pem`).
//!
//! Everything is read and checked once, at start-up, so that a missing or
//! broken file stops the server with its name instead of failing each
//! client's handshake later.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

pub use crate::proto::handshake::TlsMode;

/// The CA certificate, needed to check client certificates.
pub const CA_CERT: &str = "ca-cert.pem";
/// The server's certificate chain, its own certificate first.
pub const SERVER_CERT: &str = "server-cert.pem";
/// The server's private key (PKCS#8, PKCS#1 or SEC1, in PEM).
pub const SERVER_KEY: &str = "server-key.pem";
/// Optional certificate revocation list for client certificates.
pub const CA_CRL: &str = "ca-crl.pem";

/// Where to read about making certificates; every loading error ends with it.
const HOW_TO_MAKE: &str = "the TLS section of vddk-nbd's README shows the openssl \
     commands that make ca-cert.pem, server-cert.pem and server-key.pem";

/// A certificate directory that cannot be used, in words that name the
/// file and say what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// TLS as a server offers it: the mode, and the rustls configuration every
/// upgraded connection starts from.
#[derive(Clone)]
pub struct Tls {
    mode: TlsMode,
    config: Arc<rustls::ServerConfig>,
    verify_peer: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .field("verify_peer", &self.verify_peer)
            .finish_non_exhaustive()
    }
}

/// Two settings are equal when they are copies of the same loaded one.
impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        self.mode == other.mode && Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for Tls {}

impl Tls {
    /// Loads the server certificate and key from `dir` and, with
    /// `verify_peer`, the CA (and revocation list, if there is one) that
    /// client certificates must be signed by. `mode` must not be
    /// [`TlsMode::Off`].
    pub fn load(mode: TlsMode, dir: &Path, verify_peer: bool) -> Result<Tls, TlsError> {
        if mode == TlsMode::Off {
            return Err(TlsError(
                "TLS certificates were loaded for a server with TLS off".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates(&dir.join(SERVER_CERT), "server certificate")?;
        let key_path = dir.join(SERVER_KEY);
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| pem_error(&key_path, "server private key", e))?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("cannot set up TLS: {e}")))?;
        let builder = if verify_peer {
            let ca_path = dir.join(CA_CERT);
            let mut roots = RootCertStore::empty();
            for cert in certificates(&ca_path, "CA certificate that --tls-verify-peer needs,")? {
                roots.add(cert).map_err(|e| {
                    TlsError(format!(
                        "{}: not a usable CA certificate: {e}; {HOW_TO_MAKE}",
                        ca_path.display()
                    ))
                })?;
            }
            let crls = revocation_lists(&dir.join(CA_CRL))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                .build()
                .map_err(|e| {
                    TlsError(format!(
                        "cannot check client certificates against {}: {e}",
                        ca_path.display()
                    ))
                })?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            TlsError(format!(
                "{} and {} do not make a usable pair: {e}; the key must be the one the \
                 certificate was issued for ({HOW_TO_MAKE})",
                dir.join(SERVER_CERT).display(),
                key_path.display()
            ))
        })?;
        // One long connection per client: resumption would only add bytes.
        config.send_tls13_tickets = 0;
        Ok(Tls {
            mode,
            config: Arc::new(config),
            verify_peer,
        })
    }

    /// Whether TLS is allowed or required.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Whether clients must present a certificate signed by the CA.
    pub fn verify_peer(&self) -> bool {
        self.verify_peer
    }

    /// The configuration a connection's TLS session starts from.
    pub(crate) fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, what, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, what, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The revocation lists at `path`, or none if there is no such file.
fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let what = "certificate revocation list";
    CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, what, e))
}

fn pem_error(path: &Path, what: &str, e: pem::Error) -> TlsError {
    let why = match e {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no PEM item of the right kind in it".to_string(),
        other => format!("not valid PEM: {other}"),
    };
    TlsError(format!(
        "cannot load the {what} {}: {why}; check that --tls-certificates names the \
         directory that holds it ({HOW_TO_MAKE})",
        path.display()
    ))
}

/// The directory nbdkit reads certificates from when no
/// `--tls-certificates` is given: `/etc/pki/nbdkit` for root; otherwise
/// `$HOME/.pki/nbdkit`, or `$HOME/.config/pki/nbdkit` if only that exists.
pub fn default_certificates_dir(is_root: bool, home: Option<&Path>) -> PathBuf {
    if is_root {
        return PathBuf::from("/etc/pki/nbdkit");
    }
    let Some(home) = home else {
        return PathBuf::from(".pki/nbdkit");
    };
    let first = home.join(".pki/nbdkit");
    let second = home.join(".config/pki/nbdkit");
    if !first.exists() && second.exists() {
        second
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dirs_follow_nbdkit() {
        assert_eq!(
            default_certificates_dir(true, Some(Path::new("/root"))),
            Path::new("/etc/pki/nbdkit")
        );
        let home = std::env::temp_dir().join(format!("vddk-nbd-tls-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        assert_eq!(
            default_certificates_dir(false, Some(&home)),
            home.join(".pki/nbdkit")
        );
        std::fs::create_dir_all(home.join(".config/pki/nbdkit")).unwrap();
        assert_eq!(
            default_certificates_dir(false, Some(&home)),
            home.join(".config/pki/nbdkit")
        );
        std::fs::create_dir_all(home.join(".pki/nbdkit")).unwrap();
        assert_eq!(
            default_certificates_dir(false, Some(&home)),
            home.join(".pki/nbdkit")
        );
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn missing_files_are_named() {
        let dir = Path::new("/nonexistent-vddk-nbd-certs");
        let e = Tls::load(TlsMode::Require, dir, false).unwrap_err().0;
        assert!(
            e.contains("/nonexistent-vddk-nbd-certs/server-cert.pem"),
            "{e}"
        );
        assert!(e.contains("README"), "{e}");
        assert!(Tls::load(TlsMode::Off, dir, false).is_err());
    }
}
