//! libvirt's ESX driver URIs, as `virsh -c` users write them:
//!
//! - `esx://[user@]host[:port]/[?params]`: an ESXi host;
//! - `vpx://[user@]vcenter[:port]/datacenter/[folder/...][cluster/]host[?params]`:
//!   a host through vCenter;
//! - `gsx://`: VMware Server, which VDDK cannot reach, refused.
//!
//! The URI gives the server, port and user; the query parameters are
//! libvirt's `transport`, `vcenter`, `no_verify`, `auto_answer`, `proxy`
//! and `cacert` (libvirt 11.5). How each applies to VDDK is in vddk-nbd's
//! README.

/// Which libvirt driver scheme the URI used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `esx://`: an ESXi host directly (morefs are plain numbers).
    Esx,
    /// `vpx://`: vCenter (morefs look like `vm-42`).
    Vpx,
}

/// A parsed libvirt ESX URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsxUri {
    /// `esx` or `vpx`.
    pub scheme: Scheme,
    /// The host (ESXi) or vCenter name, brackets removed from IPv6.
    pub server: String,
    /// The port, when the URI gives one.
    pub port: Option<u16>,
    /// The user, percent-decoded (`administrator%40vsphere.local`).
    pub user: Option<String>,
    /// For `vpx://`: the inventory path to the host (datacenter, folders,
    /// cluster, host), percent-decoded. VDDK finds the VM by its moref, so
    /// this is only checked and logged.
    pub inventory_path: Vec<String>,
    /// `no_verify=1`: trust the certificate the server presents.
    pub no_verify: bool,
    /// libvirt's `cacert=` CA bundle (libvirt 11.5), which is not used:
    /// VDDK trusts a server by its thumbprint alone.
    pub cacert: Option<String>,
}

/// Why a `uri=` cannot be used. Every message but the password's starts
/// with `uri=` and the URI; those of [`UriError::Malformed`] end with the
/// two forms libvirt takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// `scheme://user:password@host`. The URI is not kept, so neither the
    /// message nor Debug can repeat the password.
    #[error(
        "uri=: the URI holds a password (user:password@host), which is refused \
         (it would be visible to other users in the process list): remove it and \
         give password=+FILE or password=- instead"
    )]
    Password,
    /// `gsx://`: VMware Server, which VDDK cannot reach.
    #[error(
        "uri={uri}: gsx:// is VMware Server (GSX), which VDDK cannot open disks on; \
         use esx:// for an ESXi host or vpx:// for vCenter"
    )]
    Gsx {
        /// The URI as given.
        uri: String,
    },
    /// `transport=http`, which VDDK never speaks to vSphere.
    #[error(
        "uri={uri}: transport=http is refused: VDDK always talks HTTPS to \
         vSphere (and checks its thumbprint); drop transport= or use https. \
         For VDDK's data transports (nbd, nbdssl, hotadd) use transports="
    )]
    Http {
        /// The URI as given.
        uri: String,
    },
    /// `proxy=`, which VDDK cannot go through.
    #[error(
        "uri={uri}: proxy= is refused: VDDK cannot be sent through a proxy, it \
         connects to the server (HTTPS) and the hosts (NFC, port 902) itself; \
         run vddk-nbd where it reaches them directly"
    )]
    Proxy {
        /// The URI as given.
        uri: String,
    },
    /// Not a URI of libvirt's ESX driver, for the reason given.
    #[error(
        "uri={uri}: {problem}; expected esx://[user@]host[:port]/[?no_verify=1] or \
         vpx://[user@]vcenter[:port]/datacenter/[folder/...][cluster/]host[?no_verify=1]"
    )]
    Malformed {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        problem: UriProblem,
    },
}

/// What is wrong with a malformed URI: see [`UriError::Malformed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriProblem {
    /// No `scheme://`.
    #[error("no scheme")]
    NoScheme,
    /// A scheme other than `esx`, `vpx` or `gsx`.
    #[error("scheme {0}:// is not one of libvirt's ESX driver schemes")]
    UnknownScheme(String),
    /// A `#fragment`.
    #[error("a '#' fragment has no meaning here")]
    Fragment,
    /// `@host` with nothing before the `@`.
    #[error("the user before '@' is empty")]
    EmptyUser,
    /// A `%` not followed by two hex digits, in the part given.
    #[error("bad percent escape in {0:?}")]
    BadEscape(String),
    /// A part whose percent escapes do not decode to UTF-8.
    #[error("{0:?} does not decode to UTF-8")]
    NotUtf8(String),
    /// `[v6addr` without its `]`.
    #[error("an IPv6 address lacks its ']'")]
    UnclosedBracket,
    /// Something other than `:port` after `[v6addr]`.
    #[error("junk after ']'")]
    JunkAfterBracket,
    /// No host before the port or path.
    #[error("no host name")]
    NoHost,
    /// A port that is not 1 to 65535, as given.
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    /// A path on an `esx://` URI.
    #[error("an esx:// URI has no path (the path names a host through vCenter: use vpx://)")]
    EsxPath,
    /// A `vpx://` URI without `/datacenter/.../host`.
    #[error("a vpx:// URI needs the path /datacenter/.../host of the host that runs the VM")]
    VpxPath,
    /// A flag (`no_verify`, `auto_answer`) that is not 0 or 1.
    #[error("{key}={value}: libvirt accepts 0 or 1")]
    BadFlag {
        /// The query parameter.
        key: String,
        /// Its value.
        value: String,
    },
    /// `vcenter=` on a `vpx://` URI, which already names its vCenter.
    #[error("vcenter= belongs to esx:// URIs; a vpx:// URI already names its vCenter")]
    VcenterOnVpx,
    /// A `transport=` other than `http` or `https`.
    #[error("transport={0}: libvirt accepts http or https")]
    BadTransport(String),
    /// A query parameter libvirt does not define.
    #[error(
        "unknown parameter {0}; libvirt's are transport, vcenter, no_verify, auto_answer, proxy \
         and cacert"
    )]
    UnknownParameter(String),
}

/// Refuses `scheme://user:password@host`, before any other message could
/// repeat the URI: libvirt takes no password there, and one written on
/// the command line is visible to every user of the machine.
fn refuse_password(uri: &str) -> Result<(), UriError> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => Err(UriError::Password),
        _ => Ok(()),
    }
}

/// Parses a libvirt ESX driver URI.
///
/// # Errors
/// [`UriError`]: a password in the URI, a scheme other than `esx://` or
/// `vpx://`, a query parameter VDDK cannot honour, or a malformed part.
pub fn parse(uri: &str) -> Result<EsxUri, UriError> {
    refuse_password(uri)?;
    let bad = |problem| UriError::Malformed {
        uri: uri.to_string(),
        problem,
    };
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| bad(UriProblem::NoScheme))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "esx" => Scheme::Esx,
        "vpx" => Scheme::Vpx,
        "gsx" => {
            return Err(UriError::Gsx {
                uri: uri.to_string(),
            })
        }
        other => return Err(bad(UriProblem::UnknownScheme(other.to_string()))),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    if rest.contains('#') {
        return Err(bad(UriProblem::Fragment));
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            let u = decode(u).map_err(bad)?;
            if u.is_empty() {
                return Err(bad(UriProblem::EmptyUser));
            }
            (Some(u), h)
        }
        None => (None, authority),
    };
    let (server, port) = host_port(hostport).map_err(bad)?;
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    match scheme {
        Scheme::Esx if !segments.is_empty() => return Err(bad(UriProblem::EsxPath)),
        Scheme::Vpx if segments.len() < 2 => return Err(bad(UriProblem::VpxPath)),
        _ => {}
    }
    let mut parsed = EsxUri {
        scheme,
        server,
        port,
        user,
        inventory_path: segments,
        no_verify: false,
        cacert: None,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v).map_err(bad)?;
        match k {
            "no_verify" => parsed.no_verify = flag(k, &v).map_err(bad)?,
            "auto_answer" => {
                flag(k, &v).map_err(bad)?;
                log::debug!("uri: auto_answer={v} answers VM questions in libvirt; disk access asks none, so it is ignored");
            }
            // The vCenter that manages the host (`*`: the one the host
            // reports): libvirt needs it to migrate VMs, disk access does not.
            "vcenter" if scheme == Scheme::Vpx => return Err(bad(UriProblem::VcenterOnVpx)),
            "vcenter" => {
                log::debug!("uri: vcenter={v} names the host's vCenter for libvirt's migrations; disk access does not use it");
            }
            "transport" => match v.as_str() {
                "https" => {}
                "http" => {
                    return Err(UriError::Http {
                        uri: uri.to_string(),
                    })
                }
                other => return Err(bad(UriProblem::BadTransport(other.to_string()))),
            },
            "proxy" => {
                return Err(UriError::Proxy {
                    uri: uri.to_string(),
                })
            }
            // libvirt's CA bundle for its own HTTPS checks (since 11.5).
            // VDDK trusts a server by its thumbprint alone, so the URI is
            // taken and the bundle is not used; validation still asks for
            // thumbprint= or no_verify=1.
            "cacert" => parsed.cacert = Some(v),
            other => return Err(bad(UriProblem::UnknownParameter(other.to_string()))),
        }
    }
    Ok(parsed)
}

fn flag(key: &str, v: &str) -> Result<bool, UriProblem> {
    match v {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(UriProblem::BadFlag {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

fn host_port(s: &str) -> Result<(String, Option<u16>), UriProblem> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or(UriProblem::UnclosedBracket)?;
        match after {
            "" => (h, None),
            a => (
                h,
                Some(a.strip_prefix(':').ok_or(UriProblem::JunkAfterBracket)?),
            ),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(UriProblem::NoHost);
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| UriProblem::BadPort(p.to_string()))?,
        ),
    };
    Ok((host.to_string(), port))
}

/// Percent-decoding (RFC 3986), which must yield UTF-8.
fn decode(s: &str) -> Result<String, UriProblem> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UriProblem::BadEscape(s.to_string()))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriProblem::NotUtf8(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(decode("a%40b%20c").unwrap(), "a@b c");
        assert_eq!(decode("caf%C3%A9").unwrap(), "café");
        assert!(decode("%4").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("%FF").is_err());
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("h").unwrap(), ("h".into(), None));
        assert_eq!(host_port("h:").unwrap(), ("h".into(), None));
        assert_eq!(host_port("h:8443").unwrap(), ("h".into(), Some(8443)));
        assert_eq!(
            host_port("[fe80::1]:9").unwrap(),
            ("fe80::1".into(), Some(9))
        );
        assert!(host_port(":1").is_err());
        assert!(host_port("h:0").is_err());
        assert!(host_port("h:99999").is_err());
    }

    #[test]
    fn cacert_is_libvirts_and_taken() {
        // drvesx.rst's extra parameters, less the proxy VDDK cannot use.
        let u = parse("esx://h/?no_verify=1&auto_answer=1&cacert=certs/ca-bundle.pem").unwrap();
        assert!(u.no_verify);
        assert_eq!(u.cacert.as_deref(), Some("certs/ca-bundle.pem"));
        assert!(!parse("esx://h/?cacert=ca.pem").unwrap().no_verify);
        let e = parse("esx://h/?cafile=ca.pem").unwrap_err().to_string();
        assert!(
            e.contains("unknown parameter cafile") && e.contains("and cacert"),
            "{e}"
        );
    }

    #[test]
    fn a_password_in_the_uri_is_refused_without_repeating_it() {
        for uri in [
            "esx://root:hunter2@esx1/",
            "vpx://admin%40vsphere.local:hunter2@vc/DC/h?no_verify=1",
            "gsx://root:hunter2@h/",
            "esx://root:hunter2@h/#frag",
        ] {
            let e = parse(uri).unwrap_err();
            assert_eq!(e, UriError::Password);
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
            let e = e.to_string();
            assert!(e.contains("holds a password"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        // A colon after the host is a port, not a password.
        assert_eq!(parse("esx://root@esx1:8443/").unwrap().port, Some(8443));
    }
}
