//! Tests a VDDK program without VMware, as the `vddk-fake` README says:
//! `vddk_fake::libdir()` gives a libdir, and `FAKE_VDDK_INVENTORY` names a
//! simulated vCenter holding a VM whose disk is a local VMDK file.

use std::path::PathBuf;

use vddk::{
    ConnectParams, Connection, CreateParams, Credentials, DiskType, InitOptions, OpenFlags, Secret,
    Vddk,
};
use vddk_downstream_check::read_all;

const THUMBPRINT: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vddk-downstream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("datastore1/web")).expect("scratch directory");
    dir
}

fn vcenter(password: &str) -> ConnectParams {
    ConnectParams::remote("vc.example.com")
        .credentials(Credentials::UserPassword {
            user: "administrator@vsphere.local".into(),
            password: Secret::new(password.into()),
        })
        .thumbprint(THUMBPRINT.parse().expect("a thumbprint"))
        .vm("vm-42".parse().expect("a moref"))
}

#[test]
fn a_disk_made_locally_reads_back_from_a_simulated_vcenter() {
    let dir = scratch();
    let inventory = dir.join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[server vc.example.com]\nkind = vcenter\nthumbprint = {THUMBPRINT}\n\
             user = administrator@vsphere.local:Passw0rd!\n\n\
             [datastore datastore1]\ndir = {}\n\n\
             [vm vc.example.com vm-42]\ndisk = [datastore1] web/web.vmdk\n",
            dir.join("datastore1").display()
        ),
    )
    .expect("write the inventory");
    // Read by the fake at initialisation; set before any thread uses VDDK.
    std::env::set_var("FAKE_VDDK_INVENTORY", &inventory);

    let libdir = vddk_fake::libdir().expect("the fake VDDK builds");
    let vddk = Vddk::init(InitOptions::new().libdir(&libdir)).expect("initialise VDDK");

    // Make the VM's disk through a local connection, with a pattern in it.
    let path = dir.join("datastore1/web/web.vmdk");
    let local = Connection::connect(&vddk, &ConnectParams::local()).expect("local connection");
    local
        .create(
            &path,
            &CreateParams::new(DiskType::MonolithicSparse, 4 << 20),
        )
        .expect("create the disk");
    let pattern: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let disk = local
        .open(&path, OpenFlags::empty())
        .expect("open for writing");
    disk.write_at(2 << 20, &pattern).expect("write");
    disk.close().expect("close");

    // Read it as a backup tool would, from the simulated vCenter.
    let remote = Connection::connect(&vddk, &vcenter("Passw0rd!").read_only(true))
        .expect("connect to the simulated vCenter");
    let disk = remote
        .open("[datastore1] web/web.vmdk", OpenFlags::READ_ONLY)
        .expect("open the VM's disk");
    let bytes = read_all(&disk).expect("read the disk");
    assert_eq!(bytes.len(), 4 << 20);
    assert!(
        bytes[2 << 20..3 << 20] == pattern[..],
        "the written pattern reads back"
    );
    assert!(
        bytes[..2 << 20].iter().all(|&b| b == 0),
        "the rest reads as zeroes"
    );

    // A wrong password is refused the way vCenter refuses it.
    let refused = Connection::connect(&vddk, &vcenter("wrong"));
    let code = refused.err().and_then(|e| e.vix_code());
    assert_eq!(code, Some(vddk::VixCode::AUTHENTICATION_FAIL));
    let _ = std::fs::remove_dir_all(&dir);
}
