//! The fake VDDK's simulated vSphere: an inventory file, logins, morefs,
//! snapshots, thumbprints, transports and PrepareForAccess/EndAccess.

mod fake_support;

use fake_support::*;
use vddk_sys::*;
use vddk_tests::inventory::TwoServers;

const TP_ESX: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
const TP_VC: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";
const COOKIE: &str = "vmware_soap_session=\"52f3a1b2-9c1d\"";
const DISK: &str = "[ds1] vm1/vm1.vmdk";

/// Writes the datastore (two flat disks made by qemu-img) and the
/// inventory; returns the inventory path. Idempotent per scratch dir.
fn world(name: &str) -> String {
    let dir = vddk_tests::scratch_dir(name);
    let vmdir = dir.join("ds1/vm1");
    std::fs::create_dir_all(&vmdir).unwrap();
    flat_disk(&vmdir, "vm1.vmdk", 2, 0x11);
    flat_disk(&vmdir, "vm1-000001.vmdk", 2, 0x22);
    let snapshot = format!("snapshot-7 {DISK} -> [ds1] vm1/vm1-000001.vmdk");
    let path = TwoServers {
        esx: &[
            ("port", "443"),
            ("thumbprint", TP_ESX),
            ("user", "root:s3cret"),
            ("transports", "nbdssl:nbd"),
        ],
        vcenter: &[
            ("port", "8443"),
            ("thumbprint", TP_VC),
            ("user", "admin@vsphere.local:pw"),
            ("cookie", COOKIE),
            ("transports", "nbd"),
        ],
        datastore: ("ds1", &dir.join("ds1")),
        esx_vm: &[("disk", DISK), ("snapshot", &snapshot)],
        vcenter_vm: &[("disk", DISK)],
    }
    .inventory()
    .comment("two servers sharing one datastore")
    .write(&dir.join("inventory.ini"));
    path.to_str().unwrap().to_string()
}

fn esx() -> Params {
    Params::password("esx1.example.com", "moref=42", TP_ESX, "root", "s3cret")
}

fn vc() -> Params {
    Params {
        port: 8443,
        ..Params::cookie("vc.example.com", "moref=vm-42", TP_VC, COOKIE)
    }
}

fn first_byte(h: VixDiskLibHandle) -> u8 {
    read(h, 0, 1).expect("read sector 0")[0]
}

#[test]
fn remote_disks_open_with_password_cookie_and_snapshot() {
    let name = "remote_disks_open_with_password_cookie_and_snapshot";
    let inv = if is_child(name) {
        String::new()
    } else {
        world("fake-remote-ok")
    };
    scenario(name, &[("FAKE_VDDK_INVENTORY", &inv)], || {
        init_ok();
        let c = connect(&esx(), false, None, None).expect("password login");
        let h = open(c, DISK, 0).expect("open the VM's disk");
        assert_eq!(transport(h), "nbdssl", "first transport both sides offer");
        assert_eq!(first_byte(h), 0x11);
        assert_eq!(code(write(h, 8, &[0x33; 512])), VIX_OK);
        assert_eq!(read(h, 8, 1).unwrap()[0], 0x33);
        assert_eq!(code(close(h)), VIX_OK);
        assert_eq!(code(disconnect(c)), VIX_OK);

        let c = connect(&vc(), true, None, Some("nbdssl:nbd")).expect("cookie login");
        let h = open(c, DISK, 0).unwrap();
        assert_eq!(transport(h), "nbd", "the vCenter offers only nbd");
        assert_eq!(
            code(write(h, 0, &[0; 512])),
            VIX_E_FILE_READ_ONLY,
            "read-only connection"
        );
        close(h);
        disconnect(c);

        let c =
            connect(&esx(), true, Some("snapshot-7"), Some("nbd")).expect("snapshot connection");
        let h = open(c, DISK, 0).unwrap();
        assert_eq!(first_byte(h), 0x22, "the snapshot's disk is read");
        assert_eq!(transport(h), "nbd");
        close(h);
        disconnect(c);
        exit();
        assert!(!captured().contains("RULE VIOLATION"), "{}", captured());
    });
}

#[test]
fn remote_failures_match_the_real_library() {
    let name = "remote_failures_match_the_real_library";
    let inv = if is_child(name) {
        String::new()
    } else {
        world("fake-remote-err")
    };
    scenario(name, &[("FAKE_VDDK_INVENTORY", &inv)], || {
        init_ok();
        let err = |p: Params, snap: Option<&str>| code(connect(&p, false, snap, None).unwrap_err());
        let mut p = esx();
        p.server = Some("nowhere.example.com".into());
        assert_eq!(err(p, None), VIX_E_HOST_SERVER_NOT_FOUND);
        assert_eq!(
            err(Params { port: 902, ..esx() }, None),
            VIX_E_HOST_NETWORK_CONN_REFUSED
        );
        assert_eq!(
            err(
                Params {
                    password: Some("wrong".into()),
                    ..esx()
                },
                None
            ),
            VIX_E_AUTHENTICATION_FAIL
        );
        assert_eq!(
            err(
                Params {
                    cookie: Some("vmware_soap_session=\"x\"".into()),
                    ..vc()
                },
                None
            ),
            VIX_E_AUTHENTICATION_FAIL
        );
        assert_eq!(
            err(
                Params {
                    vmx_spec: Some("moref=43".into()),
                    ..esx()
                },
                None
            ),
            VIX_E_VM_NOT_FOUND
        );
        assert_eq!(
            err(
                Params {
                    vmx_spec: Some("moref=vm-42".into()),
                    ..esx()
                },
                None
            ),
            VIX_E_VM_NOT_FOUND,
            "vCenter moref on ESXi"
        );
        assert_eq!(err(esx(), Some("snapshot-8")), VIX_E_SNAPSHOT_NOTFOUND);

        let wrong = "01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14";
        let c = connect(
            &Params {
                thumbprint: Some(wrong.into()),
                ..esx()
            },
            false,
            None,
            None,
        )
        .expect("ConnectEx does not check the certificate");
        assert_eq!(code(open(c, DISK, 0).unwrap_err()), VIX_E_FAIL);
        let line = format!(
            "Failed to verify SSL certificate: actual thumbprint={TP_ESX} expected={wrong}"
        );
        assert!(
            captured().contains(&line),
            "log lacks {line:?}:\n{}",
            captured()
        );
        disconnect(c);

        let c = connect(&esx(), false, None, Some("file:hotadd")).unwrap();
        assert_eq!(
            code(open(c, DISK, 0).unwrap_err()),
            VIX_E_FAIL,
            "no common transport"
        );
        assert!(captured().contains("none of the requested transport modes"));
        disconnect(c);

        let c = connect(&esx(), false, None, Some("hotadd:nbd:nbdssl")).unwrap();
        let h = open(c, DISK, 0).unwrap();
        assert_eq!(transport(h), "nbd", "the caller's order decides");
        close(h);
        assert_eq!(
            code(open(c, "[ds1] vm1/other.vmdk", 0).unwrap_err()),
            VIX_E_FILE_NOT_FOUND
        );
        disconnect(c);
        exit();
    });
}

#[test]
fn prepare_for_access_needs_vcenter_and_pairs() {
    let name = "prepare_for_access_needs_vcenter_and_pairs";
    let inv = if is_child(name) {
        String::new()
    } else {
        world("fake-remote-prep")
    };
    scenario(name, &[("FAKE_VDDK_INVENTORY", &inv)], || {
        init_ok();
        let opt = lib().optional();
        let (prepare, end) = (opt.prepare_for_access.unwrap(), opt.end_access.unwrap());
        let id = c"vddk-rs-test";
        // SAFETY: valid params and identity strings for each call.
        unsafe {
            assert_eq!(code(vc().with(|p| prepare(p, id.as_ptr()))), VIX_OK);
            assert_eq!(code(vc().with(|p| end(p, id.as_ptr()))), VIX_OK);
            assert_eq!(
                code(vc().with(|p| end(p, id.as_ptr()))),
                VIX_E_INVALID_ARG,
                "EndAccess without Prepare"
            );
            assert!(
                captured().contains("FAKE VDDK RULE VIOLATION: VixDiskLib_EndAccess"),
                "{}",
                captured()
            );
            assert_eq!(
                code(esx().with(|p| prepare(p, id.as_ptr()))),
                VIX_E_NOT_SUPPORTED,
                "ESXi host"
            );
            let bad = Params {
                password: Some("nope".into()),
                ..Params::password(
                    "vc.example.com",
                    "moref=vm-42",
                    TP_VC,
                    "admin@vsphere.local",
                    "pw",
                )
            };
            assert_eq!(
                code(Params { port: 8443, ..bad }.with(|p| prepare(p, id.as_ptr()))),
                VIX_E_AUTHENTICATION_FAIL
            );
            let long = std::ffi::CString::new("x".repeat(51)).unwrap();
            assert_eq!(
                code(vc().with(|p| prepare(p, long.as_ptr()))),
                VIX_E_INVALID_ARG,
                "identity over 50 chars"
            );
        }
        exit();
    });
}

#[test]
fn a_bad_inventory_fails_init_with_the_line() {
    let name = "a_bad_inventory_fails_init_with_the_line";
    let mut path = String::new();
    if !is_child(name) {
        let file = vddk_tests::scratch_dir("fake-remote-bad").join("bad.ini");
        std::fs::write(&file, "[server a]\nthumbprint = 12:34\n").unwrap();
        path = file.to_str().unwrap().to_string();
    }
    scenario(name, &[("FAKE_VDDK_INVENTORY", &path)], || {
        assert_eq!(code(init()), VIX_E_INVALID_ARG);
        let log = captured();
        assert!(
            log.contains("FAKE_VDDK_INVENTORY") && log.contains("20 colon-separated"),
            "{log}"
        );
    });
}
