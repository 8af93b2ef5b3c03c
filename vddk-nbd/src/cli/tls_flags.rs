//! `--tls`, `--tls-certificates` and `--tls-verify-peer`: from the
//! command line to the server's TLS settings, read once at start-up.

use std::path::PathBuf;

use nix::unistd::Uid;

use vddk_nbd::tls::{default_certificates_dir, Tls, TlsMode};

use super::args::Options;

/// The mode the command line asks for. Without `--tls`, giving
/// certificates or `--tls-verify-peer` turns TLS on, as it does for
/// nbdkit once its certificates load; otherwise TLS is off.
pub fn mode(opts: &Options) -> TlsMode {
    match opts.tls {
        Some(m) => m,
        None if opts.tls_certificates.is_some() || opts.tls_verify_peer => TlsMode::On,
        None => TlsMode::Off,
    }
}

/// Loads the certificates when TLS is on; a missing or unusable file is
/// an error naming it.
pub fn load(opts: &Options) -> Result<Option<Tls>, String> {
    let mode = mode(opts);
    if mode == TlsMode::Off {
        if opts.tls_certificates.is_some() || opts.tls_verify_peer {
            log::debug!("--tls=off: --tls-certificates and --tls-verify-peer have no effect");
        }
        return Ok(None);
    }
    let dir = opts.tls_certificates.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        default_certificates_dir(Uid::effective().is_root(), home.as_deref())
    });
    let tls = Tls::load(mode, &dir, opts.tls_verify_peer).map_err(|e| e.to_string())?;
    log::debug!(
        "TLS {} with the certificates in {}{}",
        if mode == TlsMode::Require {
            "required"
        } else {
            "allowed"
        },
        dir.display(),
        if opts.tls_verify_peer {
            "; client certificates are checked"
        } else {
            ""
        }
    );
    Ok(Some(tls))
}
