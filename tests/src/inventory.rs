//! Inventories for the fake's simulated ESXi hosts and vCenters
//! (`FAKE_VDDK_INVENTORY`; the format is described in the fake's
//! `remote.rs`), written section by section:
//!
//! ```
//! # use vddk_tests::inventory::Inventory;
//! let text = Inventory::new()
//!     .server("esx1", &[("thumbprint", "12:34"), ("user", "root:pw")])
//!     .datastore("ds1", std::path::Path::new("/srv/ds1"))
//!     .vm("esx1", "42", &[("disk", "[ds1] web/web.vmdk")])
//!     .text()
//!     .to_string();
//! assert!(text.starts_with("[server esx1]\nthumbprint = 12:34\n"));
//! ```

use std::path::{Path, PathBuf};

/// The disk of the VM [`one_vm`] declares.
pub const ONE_VM_DISK: &str = "[ds1] web/web.vmdk";

/// An inventory being written.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    text: String,
}

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// A `# ` comment line.
    pub fn comment(mut self, text: &str) -> Inventory {
        self.text.push_str(&format!("# {text}\n"));
        self
    }

    /// `[server NAME]` with `key = value` lines.
    pub fn server(self, name: &str, keys: &[(&str, &str)]) -> Inventory {
        self.section(&format!("server {name}"), keys)
    }

    /// `[datastore NAME]` whose files are in `dir`.
    pub fn datastore(self, name: &str, dir: &Path) -> Inventory {
        let dir = dir.display().to_string();
        self.section(&format!("datastore {name}"), &[("dir", &dir)])
    }

    /// `[vm SERVER MOREF]` with `key = value` lines (`disk`, `snapshot`,
    /// `esx_host`).
    pub fn vm(self, server: &str, moref: &str, keys: &[(&str, &str)]) -> Inventory {
        self.section(&format!("vm {server} {moref}"), keys)
    }

    fn section(mut self, head: &str, keys: &[(&str, &str)]) -> Inventory {
        if !self.text.is_empty() && !self.text.ends_with("]\n") {
            self.text.push('\n');
        }
        self.text.push_str(&format!("[{head}]\n"));
        for (k, v) in keys {
            self.text.push_str(&format!("{k} = {v}\n"));
        }
        self
    }

    /// The inventory as text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Writes the inventory to `path` and returns it, for
    /// `FAKE_VDDK_INVENTORY`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.text)
            .unwrap_or_else(|e| panic!("write the inventory {}: {e}", path.display()));
        path.to_path_buf()
    }
}

/// The common case, written to `dir/inventory`: server `server` with
/// `keys`, datastore `ds1` in `dir/ds1` (made, with its `web` directory),
/// and VM 42 on the server with the disk [`ONE_VM_DISK`]. Returns the path.
pub fn one_vm(dir: &Path, server: &str, keys: &[(&str, &str)]) -> PathBuf {
    let ds = dir.join("ds1");
    std::fs::create_dir_all(ds.join("web")).expect("create the datastore");
    Inventory::new()
        .server(server, keys)
        .datastore("ds1", &ds)
        .vm(server, "42", &[("disk", ONE_VM_DISK)])
        .write(&dir.join("inventory"))
}

/// The ESXi host of [`TwoServers`].
pub const ESX: &str = "esx1.example.com";
/// The vCenter of [`TwoServers`].
pub const VCENTER: &str = "vc.example.com";

/// Two servers sharing one datastore, each declaring VM 42: the ESXi host
/// [`ESX`] (`kind = esxi`, the VM as moref `42`) and the vCenter
/// [`VCENTER`] (`kind = vcenter`, the VM as `vm-42`).
pub struct TwoServers<'a> {
    /// The host's keys after `kind`.
    pub esx: &'a [(&'a str, &'a str)],
    /// The vCenter's keys after `kind`.
    pub vcenter: &'a [(&'a str, &'a str)],
    /// The datastore's name and directory.
    pub datastore: (&'a str, &'a Path),
    /// The VM's keys on the host.
    pub esx_vm: &'a [(&'a str, &'a str)],
    /// The VM's keys on the vCenter.
    pub vcenter_vm: &'a [(&'a str, &'a str)],
}

impl TwoServers<'_> {
    /// The inventory, to write or add to.
    pub fn inventory(&self) -> Inventory {
        let mut esx = vec![("kind", "esxi")];
        esx.extend_from_slice(self.esx);
        let mut vcenter = vec![("kind", "vcenter")];
        vcenter.extend_from_slice(self.vcenter);
        Inventory::new()
            .server(ESX, &esx)
            .server(VCENTER, &vcenter)
            .datastore(self.datastore.0, self.datastore.1)
            .vm(ESX, "42", self.esx_vm)
            .vm(VCENTER, "vm-42", self.vcenter_vm)
    }
}
