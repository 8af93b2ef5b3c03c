//! What to connect to, as types parsed once: [`ConnectParams`] and its parts.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::raw::{ConnectSpec, CredSpec};

/// A secret string (password, session cookie, key): zeroed when dropped,
/// printed as `<redacted>` by Debug and Display.
///
/// # Examples
///
/// ```
/// use vddk::Secret;
///
/// let password = Secret::from("correct horse");
/// // Safe to log: neither Debug nor Display shows the value...
/// assert_eq!(format!("{password} {password:?}"), "<redacted> <redacted>");
/// // ...only `expose` does, for handing it to VDDK.
/// assert_eq!(password.expose(), "correct horse");
/// ```
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes ownership of `value`; its buffer is zeroed on drop.
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The secret itself, for handing to VDDK.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value.to_owned())
    }
}

/// How to authenticate to a server.
///
/// # Examples
///
/// ```
/// use vddk::{ConnectParams, Credentials, Secret};
///
/// let login = Credentials::UserPassword {
///     user: "administrator@vsphere.local".into(),
///     password: Secret::new(std::env::var("VC_PASSWORD").unwrap_or_default()),
/// };
/// // Or a session the program already opened through the vSphere API:
/// let session = Credentials::SessionCookie {
///     cookie: Secret::from("52f9a1c3-0d3e-7b5c-e9c4-4a2b8f1d6e07"),
///     user: None,
///     key: None,
/// };
/// let params = ConnectParams::remote("vcenter.example.com").credentials(session);
/// assert!(!format!("{params:?} {login:?}").contains("52f9a1c3"));
/// ```
#[derive(Debug, Clone)]
pub enum Credentials {
    /// User name and password (`VIXDISKLIB_CRED_UID`).
    UserPassword {
        /// The user, e.g. `administrator@vsphere.local` or `root`.
        user: String,
        /// The password.
        password: Secret,
    },
    /// An existing vSphere HTTP session (`VIXDISKLIB_CRED_SESSIONID`, vSphere 6.7+).
    SessionCookie {
        /// The session cookie, e.g. the value of `vmware_soap_session`.
        cookie: Secret,
        /// The session's user, when the server wants it.
        user: Option<String>,
        /// The session key, when the server wants it.
        key: Option<Secret>,
    },
}

/// A server's SHA-1 certificate thumbprint: 20 hex pairs separated by colons.
///
/// # Examples
///
/// ```
/// use vddk::Thumbprint;
///
/// // As `openssl x509 -noout -fingerprint -sha1` prints it, in either case.
/// let tp: Thumbprint = "b2:31:bd:0a:7d:5b:1e:8c:a2:9f:2c:44:11:3e:6a:c0:d4:57:91:8f".parse()?;
/// assert_eq!(tp.to_string(), "B2:31:BD:0A:7D:5B:1E:8C:A2:9F:2C:44:11:3E:6A:C0:D4:57:91:8F");
/// assert_eq!(tp.bytes()[..2], [0xb2, 0x31]);
/// // A truncated one is refused before it reaches VDDK.
/// let err = "B2:31:BD".parse::<Thumbprint>().unwrap_err();
/// assert!(err.to_string().contains("20 hex pairs"));
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Thumbprint([u8; 20]);

impl Thumbprint {
    /// The 20 bytes of the fingerprint.
    pub fn bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl FromStr for Thumbprint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Thumbprint> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "thumbprint {s:?} {why}: expected 20 hex pairs separated by colons, \
                 e.g. B2:31:BD:...:8F (openssl x509 -noout -fingerprint -sha1 prints it)"
            ))
        };
        let pairs: Vec<&str> = s.trim().split(':').collect();
        if pairs.len() != 20 {
            return Err(bad(&format!("has {} parts", pairs.len())));
        }
        let mut out = [0u8; 20];
        for (slot, pair) in out.iter_mut().zip(&pairs) {
            if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(&format!("has {pair:?} where a hex pair belongs")));
            }
            *slot = u8::from_str_radix(pair, 16).map_err(|_| bad("is not hex"))?;
        }
        Ok(Thumbprint(out))
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({self})")
    }
}

fn check_moref(kind: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{kind} moref {value:?} is not a managed object id (letters, digits and '-', e.g. \
             vm-16 on vCenter or 16 on ESXi)"
        )))
    }
}

/// A virtual machine's managed object reference: `vm-16` (vCenter) or `16` (ESXi).
///
/// Parsed from `moref=vm-16`, `vm-16` or `16`; passed to VDDK as the
/// `vmxSpec` `moref=vm-16`.
///
/// # Examples
///
/// ```
/// use vddk::{ConnectParams, VmRef};
///
/// let on_vcenter: VmRef = "moref=vm-16".parse()?;
/// let on_esxi: VmRef = "16".parse()?;
/// assert_eq!(on_vcenter.moref(), "vm-16");
/// assert_eq!(on_esxi.vmx_spec(), "moref=16");
/// assert!("vm 16".parse::<VmRef>().is_err());
/// let params = ConnectParams::remote("vcenter.example.com").vm(on_vcenter);
/// # let _ = params;
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VmRef(String);

impl VmRef {
    /// The bare moref, e.g. `vm-16`.
    pub fn moref(&self) -> &str {
        &self.0
    }

    /// The `vmxSpec` string VDDK expects: `moref=vm-16`.
    pub fn vmx_spec(&self) -> String {
        format!("moref={}", self.0)
    }
}

impl FromStr for VmRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<VmRef> {
        let s = s.trim();
        let bare = s.strip_prefix("moref=").unwrap_or(s);
        check_moref("VM", bare)?;
        Ok(VmRef(bare.to_owned()))
    }
}

impl fmt::Display for VmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.vmx_spec())
    }
}

/// A snapshot's managed object reference, e.g. `snapshot-43678`.
///
/// # Examples
///
/// ```
/// use vddk::{ConnectParams, SnapshotRef};
///
/// let snap: SnapshotRef = "snapshot-43678".parse()?;
/// assert_eq!(snap.as_str(), "snapshot-43678");
/// assert!("".parse::<SnapshotRef>().is_err());
/// // Disks opened through this connection are read as of the snapshot.
/// let params = ConnectParams::remote("vcenter.example.com")
///     .vm("vm-16".parse()?)
///     .snapshot(snap);
/// # let _ = params;
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotRef(String);

impl SnapshotRef {
    /// The moref as VDDK takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SnapshotRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<SnapshotRef> {
        let s = s.trim();
        check_moref("snapshot", s)?;
        Ok(SnapshotRef(s.to_owned()))
    }
}

impl fmt::Display for SnapshotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ordered list of transport modes to try, e.g. `nbdssl:nbd`.
///
/// Names outside [`TransportList::KNOWN`] are kept and passed to VDDK, as
/// nbdkit does (a newer VDDK may have modes this crate does not know);
/// [`TransportList::unknown`] lists them so that a caller can warn.
///
/// # Examples
///
/// ```
/// let t: vddk::TransportList = "nbdssl:NBD:newmode".parse()?;
/// assert_eq!(t.to_string(), "nbdssl:nbd:newmode");
/// assert_eq!(t.unknown().collect::<Vec<_>>(), ["newmode"]);
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportList(Vec<String>);

impl TransportList {
    /// The modes VDDK is documented to have.
    pub const KNOWN: &'static [&'static str] = &["file", "san", "hotadd", "nbdssl", "nbd"];

    /// The modes in order.
    pub fn modes(&self) -> &[String] {
        &self.0
    }

    /// The modes not in [`TransportList::KNOWN`].
    pub fn unknown(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .map(String::as_str)
            .filter(|m| !Self::KNOWN.contains(m))
    }
}

impl FromStr for TransportList {
    type Err = Error;

    /// Refuses only what cannot be a mode name: an empty one, or one with
    /// characters other than ASCII letters, digits, `-` and `_`.
    fn from_str(s: &str) -> Result<TransportList> {
        let mut modes = Vec::new();
        for mode in s.split(':') {
            let mode = mode.trim().to_ascii_lowercase();
            let name_like = !mode.is_empty()
                && mode
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_like {
                return Err(Error::InvalidArgument(format!(
                    "transport mode {mode:?} in {s:?} is not a mode name: use a colon-separated \
                     list such as {}",
                    Self::KNOWN.join(":")
                )));
            }
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        Ok(TransportList(modes))
    }
}

impl fmt::Display for TransportList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(":"))
    }
}

/// Where and how to connect: local files, or a vSphere server.
///
/// # Examples
///
/// ```
/// use vddk::{ConnectParams, Credentials, Secret};
/// let params = ConnectParams::remote("esxi.example.com")
///     .credentials(Credentials::UserPassword { user: "root".into(), password: Secret::new("pw".into()) })
///     .thumbprint("B2:31:BD:0A:7D:5B:1E:8C:A2:9F:2C:44:11:3E:6A:C0:D4:57:91:8F".parse()?)
///     .vm("vm-16".parse()?)
///     .transports("nbdssl:nbd".parse()?)
///     .read_only(true);
/// assert!(!format!("{params:?}").contains("pw"));
/// # Ok::<(), vddk::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConnectParams {
    pub(crate) server: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) nfc_host_port: Option<u16>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) thumbprint: Option<Thumbprint>,
    pub(crate) vm: Option<VmRef>,
    pub(crate) snapshot: Option<SnapshotRef>,
    pub(crate) transports: Option<TransportList>,
    pub(crate) read_only: bool,
}

impl ConnectParams {
    /// Local disk files, opened by absolute path.
    pub fn local() -> ConnectParams {
        ConnectParams::default()
    }

    /// A vCenter or ESXi server, by host name or address.
    pub fn remote(server: &str) -> ConnectParams {
        ConnectParams {
            server: Some(server.to_owned()),
            ..ConnectParams::default()
        }
    }

    /// The server's HTTPS port (VDDK's default: 443).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The ESXi host's NFC port (VDDK's default: 902).
    pub fn nfc_host_port(mut self, port: u16) -> Self {
        self.nfc_host_port = Some(port);
        self
    }

    /// How to log in.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The server certificate's SHA-1 thumbprint.
    pub fn thumbprint(mut self, thumbprint: Thumbprint) -> Self {
        self.thumbprint = Some(thumbprint);
        self
    }

    /// The VM whose disks will be opened.
    pub fn vm(mut self, vm: VmRef) -> Self {
        self.vm = Some(vm);
        self
    }

    /// Open the disks as of this snapshot (the disk paths are then the snapshot's).
    pub fn snapshot(mut self, snapshot: SnapshotRef) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// The transport modes to try, in order (VDDK's default: all it has).
    pub fn transports(mut self, transports: TransportList) -> Self {
        self.transports = Some(transports);
        self
    }

    /// Connect read-only (needed for some transports, e.g. SAN on read-only LUNs).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether this names a server (rather than local files).
    pub fn is_remote(&self) -> bool {
        self.server.is_some()
    }

    /// The parameters as the FFI layer passes them to ConnectEx.
    pub(crate) fn spec(&self) -> ConnectSpec<'_> {
        ConnectSpec {
            vmx_spec: self.vm.as_ref().map(VmRef::vmx_spec),
            server: self.server.as_deref(),
            thumbprint: self.thumbprint.as_ref().map(Thumbprint::to_string),
            creds: self.credentials.as_ref().map(|c| match c {
                Credentials::UserPassword { user, password } => CredSpec::UserPassword {
                    user,
                    password: password.expose(),
                },
                Credentials::SessionCookie { cookie, user, key } => CredSpec::SessionCookie {
                    cookie: cookie.expose(),
                    user: user.as_deref(),
                    key: key.as_ref().map(Secret::expose),
                },
            }),
            port: self.port.map_or(0, u32::from),
            nfc_host_port: self.nfc_host_port.map_or(0, u32::from),
            read_only: self.read_only,
            snapshot: self.snapshot.as_ref().map(SnapshotRef::as_str),
            transports: self.transports.as_ref().map(TransportList::to_string),
        }
    }

    /// Checks the combination before it reaches VDDK.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(server) = &self.server {
            if server.trim().is_empty() {
                return Err(Error::InvalidArgument("the server name is empty".into()));
            }
            if self.credentials.is_none() {
                return Err(Error::InvalidArgument(format!(
                    "connecting to {server} needs credentials (a user and password, or a \
                     session cookie)"
                )));
            }
        } else if self.credentials.is_some() || self.vm.is_some() || self.snapshot.is_some() {
            return Err(Error::InvalidArgument(
                "credentials, vm and snapshot apply only to remote connections: use \
                 ConnectParams::remote(server)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "b2:31:bd:0a:7d:5b:1e:8c:a2:9f:2c:44:11:3e:6a:c0:d4:57:91:8f";

    #[test]
    fn thumbprint_parses_case_insensitively_and_prints_upper_case() {
        let t: Thumbprint = TP.parse().unwrap();
        assert_eq!(t.to_string(), TP.to_ascii_uppercase());
        assert_eq!(t.bytes()[0], 0xb2);
        assert_eq!(t, TP.to_ascii_uppercase().parse().unwrap());
    }

    #[test]
    fn thumbprint_rejects_bad_shapes() {
        for bad in [
            "",
            "B2:31",
            &TP[..TP.len() - 3],
            &format!("{TP}:00"),
            &TP.replace("b2", "g2"),
            &TP.replace("b2:", "b2-"),
            &TP.replace("b2", "b"),
        ] {
            let err = bad.parse::<Thumbprint>().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}");
            assert!(err.to_string().contains("20 hex pairs"), "{err}");
        }
    }

    #[test]
    fn vm_ref_accepts_three_forms() {
        for s in ["moref=vm-16", "vm-16"] {
            let v: VmRef = s.parse().unwrap();
            assert_eq!(v.moref(), "vm-16");
            assert_eq!(v.vmx_spec(), "moref=vm-16");
        }
        let esxi: VmRef = "16".parse().unwrap();
        assert_eq!(esxi.vmx_spec(), "moref=16");
        assert!("moref=".parse::<VmRef>().is_err());
        assert!("vm 16".parse::<VmRef>().is_err());
        assert!("vm-16;x".parse::<VmRef>().is_err());
    }

    #[test]
    fn snapshot_ref_parses() {
        let s: SnapshotRef = "snapshot-43678".parse().unwrap();
        assert_eq!(s.as_str(), "snapshot-43678");
        assert!("".parse::<SnapshotRef>().is_err());
    }

    #[test]
    fn transport_list_round_trips_and_keeps_unknown_names() {
        let t: TransportList = "NBDSSL:nbd".parse().unwrap();
        assert_eq!(t.to_string(), "nbdssl:nbd");
        assert_eq!(t.modes().len(), 2);
        assert_eq!(t.unknown().count(), 0);
        let t: TransportList = "nbd:bogus".parse().unwrap();
        assert_eq!(t.unknown().collect::<Vec<_>>(), ["bogus"]);
        let err = "nbd:f p".parse::<TransportList>().unwrap_err();
        assert!(err.to_string().contains("\"f p\""), "{err}");
        assert!("".parse::<TransportList>().is_err());
        assert!("nbd::san".parse::<TransportList>().is_err());
    }

    #[test]
    fn secrets_never_print() {
        let p = ConnectParams::remote("h").credentials(Credentials::SessionCookie {
            cookie: Secret::new("cookie-value".into()),
            user: Some("u".into()),
            key: Some(Secret::from("key-value")),
        });
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("cookie-value") && !dbg.contains("key-value"),
            "{dbg}"
        );
        assert!(dbg.contains("<redacted>"));
        assert_eq!(Secret::from("x").to_string(), "<redacted>");
        assert_eq!(Secret::from("x").expose(), "x");
    }

    #[test]
    fn validation_catches_mismatched_parts() {
        assert!(ConnectParams::local().validate().is_ok());
        assert!(ConnectParams::remote("h").validate().is_err());
        assert!(ConnectParams::local()
            .vm("vm-1".parse().unwrap())
            .validate()
            .is_err());
        let ok = ConnectParams::remote("h").credentials(Credentials::UserPassword {
            user: "u".into(),
            password: "p".into(),
        });
        assert!(ok.validate().is_ok());
    }
}
