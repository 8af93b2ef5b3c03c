//! A simulated ESXi host for the fake library: one server `esx1` with one
//! user, a datastore `ds1` in a scratch directory, and VM 42 whose disk is
//! `[ds1] web/web.vmdk`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Writes `dir/inventory` for a host with `thumbprint` where `root` logs
/// in with `password`; the datastore is `dir/ds1`. Returns the path, for
/// `FAKE_VDDK_INVENTORY`.
pub fn one_vm_inventory(dir: &Path, thumbprint: &str, password: &str) -> PathBuf {
    let inv = dir.join("inventory");
    std::fs::write(
        &inv,
        format!(
            "[server esx1]\nthumbprint = {thumbprint}\nuser = root:{password}\n\n\
             [datastore ds1]\ndir = {}\n\n[vm esx1 42]\ndisk = [ds1] web/web.vmdk\n",
            dir.join("ds1").display()
        ),
    )
    .expect("write the inventory");
    inv
}
