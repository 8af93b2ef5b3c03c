//! The server's certificate thumbprint at start-up and after a failed
//! Open: fetched when the user asked for it (`thumbprint=auto`, or
//! `no_verify=1` in `uri=`), and compared with the configured one when
//! VDDK fails an Open with nothing better than "Unknown error".

use super::vddk_plugin::VddkParams;
use crate::thumbprint::{self, FetchError, Fingerprints, DEFAULT_PORT, TIMEOUT};

fn target(p: &VddkParams) -> Option<(&str, u16)> {
    let server = p.server.as_deref()?;
    Some((server, p.port.unwrap_or(DEFAULT_PORT)))
}

/// Why the thumbprint asked for could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// `thumbprint=auto` without a server to fetch it from.
    #[error("thumbprint=auto needs server= (or uri=) to fetch it from")]
    NoServer,
    /// The server's certificate could not be fetched.
    #[error("cannot fetch the thumbprint of {server}:{port}: {source}; give thumbprint= instead")]
    Fetch {
        /// The server asked.
        server: String,
        /// Its port.
        port: u16,
        /// Why the fetch failed.
        source: FetchError,
    },
}

/// Fills `p.thumbprint` from the server when `p.fetch_thumbprint` asks for
/// it and none was given; the value is logged as a warning, since it was
/// trusted without being checked. Returns the fingerprints fetched.
///
/// # Errors
/// [`TrustError::NoServer`] when no server is configured, and
/// [`TrustError::Fetch`] when its certificate cannot be fetched.
pub fn resolve_thumbprint(p: &mut VddkParams) -> Result<Option<Fingerprints>, TrustError> {
    if !p.fetch_thumbprint || p.thumbprint.is_some() {
        return Ok(None);
    }
    let Some((server, port)) = target(p) else {
        return Err(TrustError::NoServer);
    };
    let fp = thumbprint::fetch(server, port, TIMEOUT).map_err(|source| TrustError::Fetch {
        server: server.to_string(),
        port,
        source,
    })?;
    let why = if p.uri.as_ref().is_some_and(|u| u.no_verify) {
        "no_verify=1 in uri="
    } else {
        "thumbprint=auto"
    };
    log::warn!(
        "{why}: trusting {server}:{port} without verifying its certificate: thumbprint={} \
         (SHA-256 {}); pin it with thumbprint= once checked",
        fp.sha1,
        fp.sha256
    );
    p.thumbprint = Some(fp.sha1.to_string());
    Ok(Some(fp))
}

/// The message for a failed Open of `path`. A remote Open that failed with
/// VIX_E_FAIL is usually a thumbprint mismatch that VDDK only logs, so the
/// server's certificate is fetched and, when it differs from the
/// configured thumbprint, the message says so with both values.
pub fn open_error(p: &VddkParams, path: &str, e: &vddk::Error) -> String {
    let base = format!("cannot open {path}: {e}");
    let e_fail = e.vix_code() == Some(vddk::VixCode::FAIL);
    if !p.is_remote() || !e_fail {
        return base;
    }
    if let (Some((server, port)), Some(configured)) = (target(p), p.thumbprint.as_deref()) {
        match thumbprint::fetch(server, port, TIMEOUT) {
            Ok(fp) => {
                if let Some(msg) = mismatch(configured, &fp) {
                    return format!("cannot open {path}: {msg} (VDDK said: {e})");
                }
            }
            Err(fetch) => {
                log::debug!("could not fetch the thumbprint to explain the failure: {fetch}");
            }
        }
    }
    match no_common_transport(p.transports.as_deref()) {
        // VDDK's hint blames the thumbprint, which is the likelier cause
        // only when the modes every host serves were allowed.
        Some(msg) => format!("cannot open {path}: {msg} (VDDK said: {})", without_hint(e)),
        None => base,
    }
}

/// Every ESXi host serves these modes; the others need a setup of their
/// own on this machine (SAN: the LUN; HotAdd: running in a VM there).
const ALWAYS_OFFERED: [&str; 2] = ["nbdssl", "nbd"];

/// The cause to name first when a remote Open fails and `transports=`
/// left out every mode a host always offers.
fn no_common_transport(transports: Option<&str>) -> Option<String> {
    let t = transports?.trim();
    let always = t.split(':').any(|m| {
        ALWAYS_OFFERED
            .iter()
            .any(|a| m.trim().eq_ignore_ascii_case(a))
    });
    (!always && !t.is_empty()).then(|| {
        format!(
            "no common transport: transports={t} allows only modes this machine or the \
             host may not offer (san needs the disk's LUN visible here, hotadd this \
             machine to be a VM with access to the datastore; file is for local disks); \
             add the network modes as a fallback, e.g. transports={t}:nbdssl:nbd, and see \
             VDDK's log above for the modes it tried"
        )
    })
}

/// VDDK's failure without the hint attached to it, which for a failed
/// remote Open points at the thumbprint.
fn without_hint(e: &vddk::Error) -> String {
    match e.vix() {
        Some(f) => {
            vddk::VixFailure::new(f.call(), f.code(), f.text().map(String::from), None).to_string()
        }
        None => e.to_string(),
    }
}

/// For a `thumbprint=` that is not a thumbprint at all: nbdkit's manual
/// teaches giving a bogus one (`thumbprint=12`) to learn the real one from
/// the error, so the server's certificate is fetched and its thumbprint
/// offered in the form to paste. `None` for a local disk, or when the
/// certificate cannot be fetched (the reason is logged at debug level).
pub fn server_thumbprint_hint(p: &VddkParams) -> Option<String> {
    let (server, port) = target(p)?;
    match thumbprint::fetch(server, port, TIMEOUT) {
        Ok(fp) => Some(format!(
            "the server's certificate thumbprint is {}: if you trust the server, use \
             thumbprint={}",
            fp.sha1, fp.sha1
        )),
        Err(e) => {
            log::debug!("could not fetch {server}:{port}'s thumbprint to show it: {e}");
            None
        }
    }
}

/// A sentence naming both thumbprints when they differ.
pub fn mismatch(configured: &str, fetched: &Fingerprints) -> Option<String> {
    let same = configured
        .parse::<vddk::Thumbprint>()
        .is_ok_and(|t| t == fetched.sha1);
    (!same).then(|| {
        format!(
            "the server's certificate thumbprint is {} but thumbprint={configured} was \
             given: the certificate changed or the thumbprint is wrong; if you trust the \
             server, use thumbprint={}",
            fetched.sha1, fetched.sha1
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_both_values() {
        let fp = Fingerprints::of_der(b"abc");
        let right = "a9:99:3e:36:47:06:81:6a:ba:3e:25:71:78:50:c2:6c:9c:d0:d8:9d";
        assert_eq!(mismatch(right, &fp), None, "case does not matter");
        let wrong = "00:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D";
        let m = mismatch(wrong, &fp).unwrap();
        assert!(m.contains(wrong) && m.contains(&fp.sha1.to_string()), "{m}");
    }

    #[test]
    fn transports_without_a_network_mode_are_named_first() {
        let msg = no_common_transport(Some("san")).expect("san alone");
        assert!(msg.starts_with("no common transport"), "{msg}");
        assert!(msg.contains("transports=san:nbdssl:nbd"), "{msg}");
        assert!(no_common_transport(Some("san:hotadd")).is_some());
        assert_eq!(no_common_transport(Some("san:NBD")), None);
        assert_eq!(no_common_transport(Some("nbdssl")), None);
        assert_eq!(no_common_transport(None), None, "VDDK's default has them");
    }

    #[test]
    fn auto_without_a_server_says_what_is_missing() {
        let mut p = VddkParams {
            fetch_thumbprint: true,
            ..VddkParams::default()
        };
        let e = resolve_thumbprint(&mut p).unwrap_err();
        assert!(matches!(e, TrustError::NoServer), "{e}");
        assert_eq!(
            e.to_string(),
            "thumbprint=auto needs server= (or uri=) to fetch it from"
        );
        assert_eq!(p.thumbprint, None);
    }
}
