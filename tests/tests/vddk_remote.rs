//! Remote connections against the fake's simulated inventory, strict mode:
//! password and session-cookie logins, snapshots, transports,
//! PrepareForAccess, and the errors users meet with their hints.

use std::sync::OnceLock;

use vddk::{ConnectParams, Connection, Credentials, Error, OpenFlags, Secret, Thumbprint, Vddk};
use vddk_tests::images::{pattern_raw, qemu_raw, vmdk_from_raw};
use vddk_tests::inventory::TwoServers;
use vddk_tests::library::{fake_vddk, read_all};

const ESX_TP: &str = "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67";
const VC_TP: &str = "FE:DC:BA:98:76:54:32:10:FE:DC:BA:98:76:54:32:10:FE:DC:BA:98";
const COOKIE: &str = "vmware_soap_session=\"52a1b2c3-d4e5\"";
const DISK: &str = "[datastore1] web/web.vmdk";

struct Setup {
    vddk: Vddk,
    disk_bytes: Vec<u8>,
    snap_bytes: Vec<u8>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let dir = vddk_tests::scratch_dir("vddk-remote");
        let web = dir.join("ds1/web");
        std::fs::create_dir_all(&web).unwrap();
        let raw = dir.join("web.raw");
        pattern_raw(&raw, 4096, 11);
        vmdk_from_raw(&raw, &web.join("web.vmdk"), "monolithicSparse");
        pattern_raw(&raw, 4096, 12);
        vmdk_from_raw(&raw, &web.join("web-snap.vmdk"), "monolithicSparse");
        let snapshot = format!("snapshot-7 {DISK} -> [datastore1] web/web-snap.vmdk");
        let inv = TwoServers {
            esx: &[
                ("port", "443"),
                ("thumbprint", ESX_TP),
                ("user", "root:secret"),
                ("cookie", COOKIE),
                ("transports", "nbdssl:nbd"),
            ],
            vcenter: &[
                ("port", "8443"),
                ("thumbprint", VC_TP),
                ("user", "administrator@vsphere.local:Passw0rd!"),
                ("transports", "nbd"),
            ],
            datastore: ("datastore1", &dir.join("ds1")),
            esx_vm: &[("disk", DISK), ("snapshot", &snapshot)],
            vcenter_vm: &[("disk", DISK)],
        }
        .inventory()
        .write(&dir.join("inventory.ini"));
        let vddk = fake_vddk(&[("FAKE_VDDK_INVENTORY", inv.to_str().unwrap())]);
        Setup {
            vddk,
            disk_bytes: qemu_raw(&web.join("web.vmdk")),
            snap_bytes: qemu_raw(&web.join("web-snap.vmdk")),
        }
    })
}

fn tp(s: &str) -> Thumbprint {
    s.parse().unwrap()
}

fn esx() -> ConnectParams {
    ConnectParams::remote("esx1.example.com")
        .credentials(Credentials::UserPassword {
            user: "root".into(),
            password: Secret::new("secret".into()),
        })
        .thumbprint(tp(ESX_TP))
        .vm("42".parse().unwrap())
}

fn connect(p: &ConnectParams) -> vddk::Result<Connection> {
    Connection::connect(&setup().vddk, p)
}

#[test]
fn password_login_reads_the_vm_disk_like_qemu() {
    let conn = connect(&esx().read_only(true)).expect("connect");
    assert!(conn.is_remote());
    let disk = conn.open(DISK, OpenFlags::READ_ONLY).expect("open");
    assert_eq!(disk.transport_mode(), "nbdssl");
    assert!(read_all(&disk) == setup().disk_bytes);
}

#[test]
fn session_cookie_login_works_and_a_stale_cookie_does_not() {
    let with = |cookie: &str| {
        ConnectParams::remote("esx1.example.com")
            .credentials(Credentials::SessionCookie {
                cookie: Secret::new(cookie.into()),
                user: Some("root".into()),
                key: None,
            })
            .thumbprint(tp(ESX_TP))
            .vm("moref=42".parse().unwrap())
    };
    let conn = connect(&with(COOKIE)).expect("cookie login");
    let disk = conn.open(DISK, OpenFlags::READ_ONLY).unwrap();
    let mut first = vec![0u8; 4096];
    disk.read_at(0, &mut first).unwrap();
    assert_eq!(first[..], setup().disk_bytes[..4096]);

    let err = connect(&with("vmware_soap_session=\"expired\"")).unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_AUTHENTICATION_FAIL"),
        "{err}"
    );
    assert!(
        err.hint().is_some_and(|h| h.contains("session cookie")),
        "{err}"
    );
}

#[test]
fn wrong_password_fails_with_a_credentials_hint() {
    let p = esx().credentials(Credentials::UserPassword {
        user: "root".into(),
        password: "nope".into(),
    });
    let err = connect(&p).unwrap_err();
    let f = err.vix().expect("VIX error");
    assert_eq!(
        (f.call(), f.code().name().unwrap_or("?")),
        ("VixDiskLib_ConnectEx", "VIX_E_AUTHENTICATION_FAIL")
    );
    assert!(f.hint().is_some_and(|h| h.contains("credentials")), "{err}");
    assert!(
        !err.to_string().contains("nope"),
        "the password leaked into the error: {err}"
    );
}

#[test]
fn wrong_thumbprint_fails_at_open_naming_both_thumbprints() {
    let wrong = "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA";
    let conn =
        connect(&esx().thumbprint(tp(wrong))).expect("ConnectEx does not check the certificate");
    let err = conn.open(DISK, OpenFlags::READ_ONLY).unwrap_err();
    let f = err.vix().expect("VIX error");
    assert_eq!((f.call(), f.code().value()), ("VixDiskLib_Open", 1));
    let hint = f.hint().unwrap_or_default();
    assert!(
        hint.contains(&format!(
            "the server's thumbprint is {ESX_TP}, you gave {wrong}"
        )),
        "{hint}"
    );
}

#[test]
fn missing_thumbprint_hint_says_which_to_pass() {
    let mut p = ConnectParams::remote("esx1.example.com").credentials(Credentials::UserPassword {
        user: "root".into(),
        password: "secret".into(),
    });
    p = p.vm("42".parse().unwrap());
    let conn = connect(&p).unwrap();
    let err = conn.open(DISK, OpenFlags::READ_ONLY).unwrap_err();
    assert!(
        err.hint()
            .is_some_and(|h| h.contains(ESX_TP) && h.contains("none was given")),
        "{err}"
    );
}

#[test]
fn unknown_vm_server_and_port_have_their_own_errors() {
    let err = connect(&esx().vm("99".parse().unwrap())).unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_VM_NOT_FOUND"),
        "{err}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("moref")));

    let p = ConnectParams::remote("nowhere.example.com").credentials(Credentials::UserPassword {
        user: "root".into(),
        password: "secret".into(),
    });
    let err = connect(&p).unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_HOST_SERVER_NOT_FOUND"),
        "{err}"
    );

    let err = connect(&esx().port(444)).unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_HOST_NETWORK_CONN_REFUSED"),
        "{err}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("port")));
}

#[test]
fn snapshot_connection_reads_the_snapshot_disk() {
    let conn = connect(&esx().snapshot("snapshot-7".parse().unwrap())).unwrap();
    let disk = conn.open(DISK, OpenFlags::READ_ONLY).unwrap();
    let got = read_all(&disk);
    assert!(got == setup().snap_bytes);
    assert!(got != setup().disk_bytes);
    let err = connect(&esx().snapshot("snapshot-8".parse().unwrap())).unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_SNAPSHOT_NOTFOUND"),
        "{err}"
    );
}

#[test]
fn transport_list_picks_the_mode() {
    let conn = connect(&esx().transports("nbd".parse().unwrap())).unwrap();
    let disk = conn.open(DISK, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(disk.transport_mode(), "nbd");
}

#[test]
fn read_only_connection_refuses_writes() {
    let conn = connect(&esx().read_only(true)).unwrap();
    let disk = conn.open(DISK, OpenFlags::empty()).unwrap();
    let err = disk.write_at(0, &[0u8; 512]).unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_FILE_READ_ONLY"),
        "{err}"
    );
}

#[test]
fn prepare_for_access_guards_a_vcenter_session() {
    let vc = ConnectParams::remote("vc.example.com")
        .port(8443)
        .credentials(Credentials::UserPassword {
            user: "administrator@vsphere.local".into(),
            password: "Passw0rd!".into(),
        })
        .thumbprint(tp(VC_TP))
        .vm("vm-42".parse().unwrap());
    let v = &setup().vddk;
    let guard = v
        .prepare_for_access(&vc, "vddk-rs tests")
        .expect("PrepareForAccess");
    {
        let conn = connect(&vc).unwrap();
        let disk = conn.open(DISK, OpenFlags::READ_ONLY).unwrap();
        assert_eq!(disk.transport_mode(), "nbd");
    }
    guard.end().expect("EndAccess");
    // A second guard ends on drop (strict mode aborts on an unmatched EndAccess).
    drop(v.prepare_for_access(&vc, "vddk-rs tests").unwrap());

    let err = v.prepare_for_access(&esx(), "vddk-rs tests").unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_NOT_SUPPORTED"),
        "{err}"
    );
    assert!(matches!(
        v.prepare_for_access(&vc, &"x".repeat(51)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        v.prepare_for_access(&ConnectParams::local(), "id"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn connect_params_make_an_equal_connection() {
    let given = esx()
        .port(443)
        .snapshot("snapshot-7".parse().unwrap())
        .transports("nbd".parse().unwrap())
        .read_only(true);
    let conn = connect(&given).unwrap();
    let reported = conn.connect_params().expect("GetConnectParams");
    // Secrets print redacted on both sides; everything else must match.
    assert_eq!(format!("{reported:?}"), format!("{given:?}"));
    drop(conn);
    // The password came back too: the host takes it.
    let again = connect(&reported).expect("connect with the reported parameters");
    let disk = again.open(DISK, OpenFlags::empty()).unwrap();
    assert_eq!(disk.transport_mode(), "nbd");
    assert!(read_all(&disk) == setup().snap_bytes);
    let err = disk.write_at(0, &[0u8; 512]).unwrap_err();
    assert_eq!(
        err.vix_code().and_then(|c| c.name()),
        Some("VIX_E_FILE_READ_ONLY")
    );
}

#[test]
fn connect_params_keep_a_session_cookie_login() {
    let given = ConnectParams::remote("esx1.example.com")
        .credentials(Credentials::SessionCookie {
            cookie: Secret::new(COOKIE.into()),
            user: Some("root".into()),
            key: None,
        })
        .thumbprint(tp(ESX_TP))
        .vm("moref=42".parse().unwrap());
    let conn = connect(&given).unwrap();
    let reported = conn.connect_params().unwrap();
    assert_eq!(format!("{reported:?}"), format!("{given:?}"));
    let again = connect(&reported).expect("the cookie is still good");
    let disk = again.open(DISK, OpenFlags::READ_ONLY).unwrap();
    assert!(read_all(&disk) == setup().disk_bytes);
}

#[test]
fn connect_params_of_a_local_connection_are_local() {
    let conn = connect(&ConnectParams::local()).unwrap();
    let reported = conn.connect_params().unwrap();
    assert!(!reported.is_remote());
    assert_eq!(
        format!("{reported:?}"),
        format!("{:?}", ConnectParams::local())
    );
}
