//! The simulated vSphere inventory (FAKE_VDDK_INVENTORY) and the checks
//! ConnectEx and Open make against it.
//!
//! Format: INI-like, `#` starts a comment line, `key = value` lines belong
//! to the section above them. See README.md for a full example.
//! ```text
//! [server esx1.example.com]
//! kind = esxi                  # or vcenter
//! port = 443
//! thumbprint = AA:BB:...:13    # SHA-1, 20 colon-separated hex pairs
//! user = root:secret           # repeatable; the password follows the first ':'
//! cookie = vmware_soap_session="52..."  # repeatable
//! transports = nbdssl:nbd
//!
//! [datastore datastore1]
//! dir = /srv/datastore1
//!
//! [vm esx1.example.com 42]     # server, moref (vm-N on a vcenter)
//! disk = [datastore1] web/web.vmdk
//! snapshot = snapshot-7 [datastore1] web/web.vmdk -> [datastore1] web/web-000001.vmdk
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::link::{Key, LinkConfig};

/// Server flavour: ESXi hosts use numeric morefs; vCenter uses `vm-N` and
/// alone supports PrepareForAccess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Esxi,
    Vcenter,
}

/// One simulated server.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub kind: Kind,
    pub port: u32,
    /// Canonical (upper case) thumbprint.
    pub thumbprint: String,
    pub users: Vec<(String, String)>,
    pub cookies: Vec<String>,
    pub transports: Vec<String>,
    /// Bandwidth, costs, losses, session expiry, NFC limit (link.rs).
    pub link: LinkConfig,
}

/// A snapshot's view of one disk.
#[derive(Debug, Clone)]
pub struct SnapshotDisk {
    pub snapshot: String,
    pub disk: String,
    pub target: String,
}

/// One VM on one server.
#[derive(Debug, Clone)]
pub struct Vm {
    pub server: String,
    pub moref: String,
    pub disks: Vec<String>,
    pub snapshots: Vec<SnapshotDisk>,
    /// The ESXi host that holds the VM (`esx_host`): where its NFC
    /// connections go. `None` means the server itself.
    pub esx_host: Option<String>,
}

impl Vm {
    /// Whether the VM has a snapshot with this id.
    pub fn has_snapshot(&self, id: &str) -> bool {
        self.snapshots.iter().any(|s| s.snapshot == id)
    }
}

/// The whole inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub servers: Vec<Server>,
    pub datastores: Vec<(String, PathBuf)>,
    pub vms: Vec<Vm>,
}

enum Section {
    None,
    Server(usize),
    Datastore(usize),
    Vm(usize),
}

/// Canonical form of a thumbprint: upper case, trimmed.
pub fn canonical_thumbprint(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

fn valid_thumbprint(s: &str) -> bool {
    let pairs: Vec<&str> = s.split(':').collect();
    pairs.len() == 20
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn valid_moref(kind: Kind, moref: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    match kind {
        Kind::Esxi => digits(moref),
        Kind::Vcenter => moref.strip_prefix("vm-").is_some_and(digits),
    }
}

impl Inventory {
    /// Parses inventory text; errors carry the line number and the fix.
    pub fn parse(text: &str) -> Result<Inventory, String> {
        let mut inv = Inventory::default();
        let mut section = Section::None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let words: Vec<&str> = head.split_whitespace().collect();
                section = match words.as_slice() {
                    ["server", name] => {
                        inv.servers.push(Server {
                            name: (*name).to_string(),
                            kind: Kind::Esxi,
                            port: 443,
                            thumbprint: String::new(),
                            users: Vec::new(),
                            cookies: Vec::new(),
                            transports: vec!["nbdssl".into(), "nbd".into()],
                            link: LinkConfig::default(),
                        });
                        Section::Server(inv.servers.len() - 1)
                    }
                    ["datastore", name] => {
                        inv.datastores.push(((*name).to_string(), PathBuf::new()));
                        Section::Datastore(inv.datastores.len() - 1)
                    }
                    ["vm", server, moref] => {
                        inv.vms.push(Vm {
                            server: (*server).to_string(),
                            moref: (*moref).to_string(),
                            disks: Vec::new(),
                            snapshots: Vec::new(),
                            esx_host: None,
                        });
                        Section::Vm(inv.vms.len() - 1)
                    }
                    _ => {
                        return Err(format!(
                            "line {n}: unknown section [{head}]; use [server NAME], [datastore NAME] or [vm SERVER MOREF]"
                        ))
                    }
                };
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "line {n}: expected `key = value` or a [section], found {line:?}"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            match section {
                Section::None => return Err(format!("line {n}: `{key}` outside any section")),
                Section::Server(s) => parse_server_key(&mut inv.servers[s], key, value)
                    .map_err(|e| format!("line {n}: {e}"))?,
                Section::Datastore(d) => match key {
                    "dir" => inv.datastores[d].1 = PathBuf::from(value),
                    _ => return Err(format!("line {n}: unknown datastore key `{key}`; use dir")),
                },
                Section::Vm(v) => match key {
                    "disk" => inv.vms[v].disks.push(value.to_string()),
                    "esx_host" if !value.is_empty() => {
                        inv.vms[v].esx_host = Some(value.to_string())
                    }
                    "snapshot" => {
                        let parsed =
                            value
                                .split_once(char::is_whitespace)
                                .and_then(|(id, rest)| {
                                    rest.split_once("->").map(|(disk, target)| SnapshotDisk {
                                        snapshot: id.to_string(),
                                        disk: disk.trim().to_string(),
                                        target: target.trim().to_string(),
                                    })
                                });
                        match parsed {
                            Some(s) => inv.vms[v].snapshots.push(s),
                            None => {
                                return Err(format!(
                                    "line {n}: snapshot must be `ID DISKPATH -> SNAPSHOTDISKPATH`, found {value:?}"
                                ))
                            }
                        }
                    }
                    _ => {
                        return Err(format!(
                            "line {n}: unknown vm key `{key}`; use disk, snapshot or esx_host"
                        ))
                    }
                },
            }
        }
        for s in &inv.servers {
            if !valid_thumbprint(&s.thumbprint) {
                return Err(format!(
                    "server {}: thumbprint {:?} is not 20 colon-separated hex pairs (AA:BB:...)",
                    s.name, s.thumbprint
                ));
            }
        }
        for (name, dir) in &inv.datastores {
            if dir.as_os_str().is_empty() {
                return Err(format!("datastore {name}: no `dir = /local/directory`"));
            }
        }
        for vm in &inv.vms {
            let Some(server) = inv.server(&vm.server) else {
                return Err(format!(
                    "vm {}: server {} is not declared with [server {}]",
                    vm.moref, vm.server, vm.server
                ));
            };
            if !valid_moref(server.kind, &vm.moref) {
                return Err(format!(
                    "vm {} on {}: a {} moref looks like {}",
                    vm.moref,
                    vm.server,
                    if server.kind == Kind::Esxi {
                        "ESXi"
                    } else {
                        "vCenter"
                    },
                    if server.kind == Kind::Esxi {
                        "42"
                    } else {
                        "vm-42"
                    }
                ));
            }
        }
        Ok(inv)
    }

    /// The server with this name (case-insensitive, as host names are).
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The VM with this moref on this server.
    pub fn vm(&self, server: &str, moref: &str) -> Option<&Vm> {
        self.vms
            .iter()
            .find(|v| v.server.eq_ignore_ascii_case(server) && v.moref == moref)
    }

    /// Resolves `[datastore] relative/path.vmdk` (or an absolute path) to a
    /// local file.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let path = path.trim();
        if let Some(rest) = path.strip_prefix('[') {
            let Some((ds, rel)) = rest.split_once(']') else {
                return Err(format!("{path:?}: missing ']' after the datastore name"));
            };
            let Some((_, dir)) = self.datastores.iter().find(|(n, _)| n == ds) else {
                return Err(format!("datastore [{ds}] is not in the inventory"));
            };
            return Ok(dir.join(rel.trim().trim_start_matches('/')));
        }
        if Path::new(path).is_absolute() {
            return Ok(PathBuf::from(path));
        }
        Err(format!(
            "{path:?} is not a datastore path such as \"[datastore1] vm/vm.vmdk\""
        ))
    }
}

fn parse_server_key(server: &mut Server, key: &str, value: &str) -> Result<(), String> {
    match key {
        "kind" => {
            server.kind = match value {
                "esxi" => Kind::Esxi,
                "vcenter" => Kind::Vcenter,
                _ => return Err(format!("kind must be esxi or vcenter, found {value:?}")),
            }
        }
        "port" => {
            server.port = value
                .parse()
                .map_err(|_| format!("port {value:?} is not a number"))?
        }
        "thumbprint" => server.thumbprint = canonical_thumbprint(value),
        "user" => {
            let (u, p) = value
                .split_once(':')
                .ok_or_else(|| format!("user must be NAME:PASSWORD, found {value:?}"))?;
            server.users.push((u.to_string(), p.to_string()));
        }
        "cookie" => server.cookies.push(value.to_string()),
        "transports" => {
            server.transports = value
                .split(':')
                .map(str::to_string)
                .filter(|s| !s.is_empty())
                .collect()
        }
        _ => match Key::from_inventory(key) {
            Some(k) => server
                .link
                .set(k, value)
                .map_err(|e| format!("{key}: {e}"))?,
            None => {
                let link: Vec<&str> = Key::ALL.iter().map(|k| k.inventory_name()).collect();
                return Err(format!(
                    "unknown server key `{key}`; use kind, port, thumbprint, user, cookie, transports \
                     or a link setting ({})",
                    link.join(", ")
                ));
            }
        },
    }
    Ok(())
}

static INVENTORY: RwLock<Option<Arc<Inventory>>> = RwLock::new(None);

/// Loads FAKE_VDDK_INVENTORY (or forgets the inventory when unset).
pub fn load_from_env() -> Result<(), String> {
    let inv = match std::env::var_os("FAKE_VDDK_INVENTORY") {
        None => None,
        Some(p) if p.is_empty() => None,
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| format!("FAKE_VDDK_INVENTORY={}: {e}", Path::new(&p).display()))?;
            let inv = Inventory::parse(&text)
                .map_err(|e| format!("FAKE_VDDK_INVENTORY={}: {e}", Path::new(&p).display()))?;
            Some(Arc::new(inv))
        }
    };
    *INVENTORY.write().unwrap_or_else(|e| e.into_inner()) = inv;
    Ok(())
}

/// The inventory in force (empty when none was given).
pub fn inventory() -> Arc<Inventory> {
    INVENTORY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd";

    fn sample() -> String {
        format!(
            "# comment\n[server esx1]\nkind = esxi\nport = 8443\nthumbprint = {TP}\nuser = root:pa:ss\n\
             cookie = vmware_soap_session=\"abc\"\n\n[server vc]\nkind = vcenter\nthumbprint = {TP}\ntransports = nbd\n\
             [datastore ds1]\ndir = /srv/ds1\n[vm esx1 42]\ndisk = [ds1] web/web.vmdk\n\
             snapshot = snapshot-7 [ds1] web/web.vmdk -> [ds1] web/web-000001.vmdk\n[vm vc vm-42]\n"
        )
    }

    #[test]
    fn parses_the_documented_format() {
        let inv = Inventory::parse(&sample()).unwrap();
        let esx = inv.server("ESX1").unwrap();
        assert_eq!(esx.port, 8443);
        assert_eq!(esx.users, vec![("root".to_string(), "pa:ss".to_string())]);
        assert_eq!(esx.thumbprint, TP.to_ascii_uppercase());
        assert_eq!(esx.transports, vec!["nbdssl", "nbd"]);
        assert_eq!(inv.server("vc").unwrap().kind, Kind::Vcenter);
        let vm = inv.vm("esx1", "42").unwrap();
        assert!(vm.has_snapshot("snapshot-7") && !vm.has_snapshot("snapshot-8"));
        assert_eq!(vm.snapshots[0].target, "[ds1] web/web-000001.vmdk");
        assert!(inv.vm("esx1", "vm-42").is_none());
        assert_eq!(
            inv.resolve("[ds1] web/web.vmdk").unwrap(),
            PathBuf::from("/srv/ds1/web/web.vmdk")
        );
        assert!(inv.resolve("[nope] a.vmdk").is_err());
    }

    #[test]
    fn link_settings_and_esx_host() {
        let text = format!(
            "[server vc]\nkind = vcenter\nthumbprint = {TP}\nbandwidth = 1Gbit\nhost_bandwidth = 4Gbit\n\
             open_cost_ms = 30\nsession_ttl_s = 0.5\nmax_nfc_connections = 3\n\
             [vm vc vm-1]\nesx_host = esx7.example.com\n"
        );
        let inv = Inventory::parse(&text).unwrap();
        let link = &inv.server("vc").unwrap().link;
        assert_eq!(link.bandwidth, Some(125_000_000.0));
        assert_eq!(link.host_bandwidth, Some(500_000_000.0));
        assert_eq!(link.open_cost, std::time::Duration::from_millis(30));
        assert_eq!(link.max_nfc_connections, Some(3));
        assert_eq!(
            inv.vm("vc", "vm-1").unwrap().esx_host.as_deref(),
            Some("esx7.example.com")
        );
        let bad = Inventory::parse(&format!(
            "[server a]\nthumbprint = {TP}\nbandwidth = fast\n"
        ))
        .unwrap_err();
        assert!(bad.contains("line 3") && bad.contains("bandwidth"), "{bad}");
    }

    #[test]
    fn rejects_mistakes_with_line_numbers() {
        assert!(Inventory::parse("[server a]\nthumbprint = 12:34\n")
            .unwrap_err()
            .contains("20 colon-separated"));
        assert!(Inventory::parse("[server a]\ncolour = red\n")
            .unwrap_err()
            .contains("line 2"));
        let bad_moref = format!("[server a]\nkind = vcenter\nthumbprint = {TP}\n[vm a 42]\n");
        assert!(Inventory::parse(&bad_moref).unwrap_err().contains("vm-42"));
        assert!(Inventory::parse("[vm nowhere 1]\n")
            .unwrap_err()
            .contains("not declared"));
    }
}
