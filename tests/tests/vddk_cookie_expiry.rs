//! A connection made with a session cookie that the server has since
//! ended: when the connection is lost, the `Reconnect` policy cannot log
//! in again, and it says so at once (no waits through the tries), with
//! what to use instead; requests made with a password reconnect through
//! the same host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vddk::{
    ConnectParams, Connection, Credentials, DiskDriver, DriverOptions, Mode, OpenFlags, Reconnect,
    Secret, Vddk,
};
use vddk_tests::images::make_vmdk;
use vddk_tests::inventory::{one_vm, ONE_VM_DISK};
use vddk_tests::library::{fake_vddk, wait};

const HOST: &str = "esx7.example.com";
const TP: &str = "0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D";
const COOKIE: &str = "vmware_soap_session=\"52f3a1b2-9c1d\"";
/// How long after InitEx the host stops taking the cookie.
const TTL: Duration = Duration::from_millis(1500);

fn params(credentials: Credentials) -> ConnectParams {
    ConnectParams::remote(HOST)
        .credentials(credentials)
        .thumbprint(TP.parse().expect("thumbprint"))
        .vm("42".parse().expect("moref"))
        .read_only(true)
}

fn cookie() -> Credentials {
    Credentials::SessionCookie {
        cookie: Secret::new(COOKIE.into()),
        user: Some("root".into()),
        key: None,
    }
}

fn password() -> Credentials {
    Credentials::UserPassword {
        user: "root".into(),
        password: Secret::new("pw".into()),
    }
}

/// A driver on the VM's disk that reconnects with `credentials`.
fn driver(vddk: &Vddk, credentials: fn() -> Credentials) -> DiskDriver {
    let lib = vddk.clone();
    let open = move || {
        let conn = Connection::connect(&lib, &params(credentials()))?;
        conn.open(ONE_VM_DISK, OpenFlags::READ_ONLY)
    };
    let first = open().expect("open within the session");
    // Waits of a second and more between tries: giving up in less than
    // that shows the refused login ended it.
    let policy = Reconnect::new().tries(5).delay(Duration::from_secs(1));
    let opts = DriverOptions::new()
        .mode(Mode::Pipelined)
        .reopen_with(Arc::new(open))
        .reconnect(policy);
    DiskDriver::new(first, opts).expect("driver")
}

#[test]
fn an_ended_session_is_told_at_once_with_what_to_use() {
    let dir = vddk_tests::scratch_dir("vddk-cookie-expiry");
    let inv = one_vm(
        &dir,
        HOST,
        &[
            ("thumbprint", TP),
            ("user", "root:pw"),
            ("cookie", COOKIE),
            ("drop_after_bytes", "1M"),
            ("session_ttl_s", &TTL.as_secs_f64().to_string()),
        ],
    );
    make_vmdk(
        &dir.join("ds1/web/web.vmdk"),
        "monolithicSparse",
        4 << 20,
        &[(0, 4 << 20, 0x6d)],
    );
    let vddk = fake_vddk(&[("FAKE_VDDK_INVENTORY", inv.to_str().expect("UTF-8"))]);
    let with_cookie = driver(&vddk, cookie);
    let with_password = driver(&vddk, password);
    std::thread::sleep(TTL);

    // 1 MiB is each connection's budget: the second read loses it.
    let piece = 768 << 10;
    let first = wait(|done| with_cookie.read(0, piece, Vec::new(), done)).expect("first read");
    assert!(first.iter().all(|&b| b == 0x6d));
    let started = Instant::now();
    let e = wait(|done| with_cookie.read(piece as u64, piece, Vec::new(), done))
        .expect_err("the cookie's session has ended");
    let msg = e.to_string();
    assert!(
        msg.contains("no longer accepts the login")
            && msg.contains("session cookie")
            && msg.contains("user name and password"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "gave up after {:?}: the refused login was tried again",
        started.elapsed()
    );
    assert_eq!(with_cookie.reconnections(), 0);

    // The same loss with a password: a new login, the read succeeds.
    wait(|done| with_password.read(0, piece, Vec::new(), done)).expect("first read");
    let second = wait(|done| with_password.read(piece as u64, piece, Vec::new(), done))
        .expect("read after reconnecting with the password");
    assert!(second.iter().all(|&b| b == 0x6d));
    assert_eq!(with_password.reconnections(), 1);
}
