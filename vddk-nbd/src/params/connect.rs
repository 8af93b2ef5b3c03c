//! From [`VddkParams`] to the `vddk` crate's types: library options,
//! connection parameters, Open flags and Create parameters.
//!
//! The `vddk` crate owns the syntax of thumbprints, morefs, snapshots and
//! transport lists; errors name the parameter that held the bad value.

use std::str::FromStr;

use super::password::Secrets;
use super::vddk_plugin::{Compression, CreateOptions, VddkParams};

/// The library options for `libdir=` and `config=`.
pub fn init_options(p: &VddkParams) -> vddk::InitOptions {
    let mut init = vddk::InitOptions::new();
    if let Some(dir) = &p.libdir {
        init = init.libdir(dir);
    }
    if let Some(cfg) = &p.config {
        init = init.config_file(cfg);
    }
    init
}

/// A parameter value the `vddk` crate refused (a thumbprint, moref,
/// snapshot, transport list or compression it cannot parse); the message
/// names the parameter and gives the `vddk` crate's reason.
#[derive(Debug, thiserror::Error)]
#[error("{key}={value}: {source}")]
pub struct BadValue {
    /// The parameter (`thumbprint`, `vm`, `snapshot`, `transports`,
    /// `compression`).
    pub key: &'static str,
    /// Its value as given.
    pub value: String,
    /// Why the `vddk` crate refused it.
    pub source: vddk::Error,
}

fn parse<T: FromStr<Err = vddk::Error>>(key: &'static str, v: &str) -> Result<T, BadValue> {
    v.parse::<T>().map_err(|source| BadValue {
        key,
        value: v.to_string(),
        source,
    })
}

/// Builds the connection parameters with the secrets already read
/// ([`Secrets::resolve`]); with `cookie=`, the password is the session
/// key, as in nbdkit.
///
/// # Errors
/// [`BadValue`] for a `thumbprint=`, `vm=`, `snapshot=` or `transports=`
/// the `vddk` crate cannot parse.
pub fn connect_params(
    p: &VddkParams,
    secrets: &Secrets,
    read_only: bool,
) -> Result<vddk::ConnectParams, BadValue> {
    if !p.is_remote() {
        return Ok(vddk::ConnectParams::local().read_only(read_only));
    }
    let server = p.server.as_deref().unwrap_or_default();
    let mut c = vddk::ConnectParams::remote(server).read_only(read_only);
    if let Some(port) = p.port {
        c = c.port(port);
    }
    if let Some(port) = p.nfc_host_port {
        c = c.nfc_host_port(port);
    }
    let creds = match (&p.cookie, &secrets.cookie) {
        (Some(_), cookie) => vddk::Credentials::SessionCookie {
            cookie: cookie.clone().unwrap_or_else(|| vddk::Secret::from("")),
            user: p.user.clone(),
            key: secrets.password.clone(),
        },
        (None, _) => vddk::Credentials::UserPassword {
            user: p.user.clone().unwrap_or_default(),
            password: secrets
                .password
                .clone()
                .unwrap_or_else(|| vddk::Secret::from("")),
        },
    };
    c = c.credentials(creds);
    if let Some(t) = &p.thumbprint {
        c = c.thumbprint(parse::<vddk::Thumbprint>("thumbprint", t)?);
    }
    if let Some(vm) = &p.vm {
        c = c.vm(parse::<vddk::VmRef>("vm", vm)?);
    }
    if let Some(s) = &p.snapshot {
        c = c.snapshot(parse::<vddk::SnapshotRef>("snapshot", s)?);
    }
    if let Some(t) = &p.transports {
        c = c.transports(parse::<vddk::TransportList>("transports", t)?);
    }
    Ok(c)
}

/// Checks the values the `vddk` crate parses (thumbprint, vm, snapshot,
/// transports, compression), so mistakes show before anything starts.
///
/// Transport modes VDDK is not documented to have are passed through, as
/// nbdkit passes them (a newer VDDK may have more), with a warning.
///
/// # Errors
/// [`BadValue`] for the first of them the `vddk` crate cannot parse.
pub fn check(p: &VddkParams) -> Result<(), BadValue> {
    connect_params(p, &Secrets::default(), false).map(drop)?;
    let modes = p
        .transports
        .as_deref()
        .map(str::parse::<vddk::TransportList>);
    if let Some(Ok(list)) = &modes {
        for m in list.unknown() {
            log::warn!(
                "transports: {m:?} is not a mode VDDK is documented to have ({}); it is \
                 passed to VDDK as given",
                vddk::TransportList::KNOWN.join(", ")
            );
        }
    }
    if let Some(u) = &p.uri {
        uri_notes(u);
    }
    open_flags(p, false).map(drop)
}

/// What the URI says that VDDK does not use, told once (here, after any
/// re-execution).
fn uri_notes(u: &super::uri::EsxUri) {
    // VDDK finds the VM by its moref, so a vpx:// path is only shown, for
    // comparing with the host VDDK's NFC connection goes to.
    if let Some(host) = u.inventory_path.last() {
        log::debug!(
            "uri: vCenter {} inventory path /{}: the VM should run on {host}",
            u.server,
            u.inventory_path.join("/")
        );
    }
    match &u.cacert {
        // As in libvirt, where cacert= does nothing with no_verify=1.
        Some(c) if u.no_verify => {
            log::debug!("uri: cacert={c} does nothing with no_verify=1, as in libvirt");
        }
        Some(c) => log::warn!(
            "uri: cacert={c} is not used: VDDK trusts the server by its certificate's \
             thumbprint (thumbprint=), not by a CA"
        ),
        None => {}
    }
}

/// The Open flags for `single-link=`, `unbuffered=`, `compression=` and
/// the read-only choice.
///
/// # Errors
/// [`BadValue`] when the `vddk` crate does not know the compression.
pub fn open_flags(p: &VddkParams, read_only: bool) -> Result<vddk::OpenFlags, BadValue> {
    let mut flags = vddk::OpenFlags::empty();
    if read_only {
        flags |= vddk::OpenFlags::READ_ONLY;
    }
    if p.single_link {
        flags |= vddk::OpenFlags::SINGLE_LINK;
    }
    if p.unbuffered {
        flags |= vddk::OpenFlags::UNBUFFERED;
    }
    if p.compression != Compression::None {
        let c = parse::<vddk::Compression>("compression", p.compression.name())?;
        flags |= vddk::OpenFlags::compression(c);
    }
    Ok(flags)
}

/// What `create=true` and its companions ask Create for.
pub fn create_params(c: &CreateOptions) -> vddk::CreateParams {
    vddk::CreateParams::new(c.disk_type, c.size)
        .adapter(c.adapter)
        .hw_version(c.hw_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_value_names_its_parameter_and_keeps_the_cause() {
        let p = VddkParams {
            server: Some("esx1".into()),
            thumbprint: Some("zz".into()),
            ..VddkParams::default()
        };
        let e = check(&p).unwrap_err();
        assert_eq!((e.key, e.value.as_str()), ("thumbprint", "zz"));
        assert_eq!(e.to_string(), format!("thumbprint=zz: {}", e.source));
        assert!(std::error::Error::source(&e).is_some());
    }
}
