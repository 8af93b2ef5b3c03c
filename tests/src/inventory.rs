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

    /// Lines added as they are to the section above.
    pub fn lines(mut self, text: &str) -> Inventory {
        self.text.push_str(text);
        if !text.ends_with('\n') {
            self.text.push('\n');
        }
        self
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
