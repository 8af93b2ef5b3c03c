//! The world of the link tests: a datastore with two flat disks, an ESXi
//! host and a vCenter in the fake's inventory, logins to each, and child
//! scenarios run in it.

use std::time::{Duration, Instant};

use vddk_sys::VixDiskLibHandle;
use vddk_tests::inventory::TwoServers;

use super::{flat_disk, is_child, read, scenario, Params};

pub const TP_ESX: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
pub const TP_VC: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";
pub const COOKIE: &str = "vmware_soap_session=\"52f3a1b2-9c1d\"";
pub const DISK: &str = "[ds1] vm1/vm1.vmdk";
pub const DISK2: &str = "[ds1] vm1/vm1_1.vmdk";
pub const MIB: usize = 1 << 20;

/// Where the child finds the world its parent made.
pub const DIR_VAR: &str = "FAKE_LINK_TEST_DIR";

/// A datastore with two 4 MiB flat disks (first MiB 0x11 and 0x22), an
/// ESXi host and a vCenter whose VM lives on `esx7.example.com`;
/// `esx_extra` are more keys of the ESXi host. Returns the env the
/// child needs.
pub fn world(name: &str, esx_extra: &[(&str, &str)], vm_host: &str) -> Vec<(String, String)> {
    let dir = vddk_tests::scratch_dir(name);
    let vmdir = dir.join("ds1/vm1");
    std::fs::create_dir_all(&vmdir).unwrap();
    flat_disk(&vmdir, "vm1.vmdk", 4, 0x11);
    flat_disk(&vmdir, "vm1_1.vmdk", 4, 0x22);
    let ds = dir.join("ds1");
    // The vCenter's VM is the host's, and lives on `vm_host`.
    let vm = [("disk", DISK), ("disk", DISK2), ("esx_host", vm_host)];
    let mut esx = vec![
        ("thumbprint", TP_ESX),
        ("user", "root:s3cret"),
        ("cookie", COOKIE),
        ("transports", "nbdssl:nbd"),
    ];
    esx.extend_from_slice(esx_extra);
    let path = TwoServers {
        esx: &esx,
        vcenter: &[
            ("thumbprint", TP_VC),
            ("user", "admin@vsphere.local:pw"),
            ("cookie", COOKIE),
            ("transports", "nbd"),
        ],
        datastore: ("ds1", &ds),
        esx_vm: &vm[..2],
        vcenter_vm: &vm,
    }
    .inventory()
    .write(&dir.join("inventory.ini"));
    vec![
        (
            "FAKE_VDDK_INVENTORY".into(),
            path.to_str().unwrap().to_string(),
        ),
        (DIR_VAR.into(), dir.to_str().unwrap().to_string()),
    ]
}

/// Runs `body` as child scenario `name` in a [`world`] (made in the parent
/// only) with `esx_extra` and `vm_host`, and with `env`.
pub fn in_world(
    name: &str,
    esx_extra: &[(&str, &str)],
    vm_host: &str,
    env: &[(&str, &str)],
    body: impl FnOnce(),
) {
    let mut all: Vec<(String, String)> = if is_child(name) {
        Vec::new()
    } else {
        world(name, esx_extra, vm_host)
    };
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    scenario(name, &refs, body);
}

pub fn esx() -> Params {
    Params::password("esx1.example.com", "moref=42", TP_ESX, "root", "s3cret")
}

pub fn vc_cookie() -> Params {
    Params::cookie("vc.example.com", "moref=vm-42", TP_VC, COOKIE)
}

pub fn vc_password() -> Params {
    Params::password(
        "vc.example.com",
        "moref=vm-42",
        TP_VC,
        "admin@vsphere.local",
        "pw",
    )
}

/// Reads `bytes` from sector 0 in 256 KiB requests; returns the time taken.
pub fn read_all(h: VixDiskLibHandle, bytes: usize, fill: u8) -> Duration {
    let chunk = 512u64;
    let t = Instant::now();
    for i in 0..(bytes / (chunk as usize * 512)) as u64 {
        let data = read(h, i * chunk, chunk).expect("read through the link");
        if i * chunk * 512 < MIB as u64 {
            assert!(data.iter().all(|b| *b == fill), "right bytes at {i}");
        }
    }
    t.elapsed()
}
