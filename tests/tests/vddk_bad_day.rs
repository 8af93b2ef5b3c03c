//! A bad day at the host for a Rust program on `vddk`, scaled down: each
//! NFC connection at 40 Mbit/s, the connection that carries each next MiB
//! lost, the session ending during the copy, and the host taking one NFC
//! connection at a time (so the standby handle the policy asks for is
//! refused). A `DiskDriver` with a `Reconnect` policy reads the whole disk
//! byte-exact, unattended; the same driver without a policy fails at the
//! first loss, with an error that says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vddk::{
    ConnectParams, Connection, Credentials, DiskDriver, DriverOptions, Mode, OpenFlags, Reconnect,
    Secret,
};
use vddk_tests::images::{make_vmdk, qemu_raw};
use vddk_tests::inventory::{one_vm, ONE_VM_DISK};
use vddk_tests::library::{fake_vddk, wait};

const HOST: &str = "esx5.example.com";
const TP: &str = "0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D";
const SIZE: u64 = 8 << 20;
const PIECE: usize = 256 << 10;

#[test]
fn a_bad_day_is_survived_with_a_policy_and_fails_clearly_without() {
    let dir = vddk_tests::scratch_dir("vddk-bad-day");
    let inv = one_vm(
        &dir,
        HOST,
        &[
            ("thumbprint", TP),
            ("user", "root:pw"),
            ("bandwidth", "40Mbit"),
            ("drop_every_bytes", "1M"),
            ("session_ttl_s", "0.4"),
            ("max_nfc_connections", "1"),
        ],
    );
    let file = make_vmdk(
        &dir.join("ds1/web/web.vmdk"),
        "monolithicSparse",
        SIZE,
        &[(0, 3 << 20, 0x61), (4 << 20, 3 << 20, 0x62)],
    );
    let want = qemu_raw(&file);
    let lib = fake_vddk(&[("FAKE_VDDK_INVENTORY", inv.to_str().expect("UTF-8"))]);
    let params = ConnectParams::remote(HOST)
        .credentials(Credentials::UserPassword {
            user: "root".into(),
            password: Secret::new("pw".into()),
        })
        .thumbprint(TP.parse().expect("thumbprint"))
        .vm("42".parse().expect("moref"))
        .read_only(true);
    let open = move || Connection::connect(&lib, &params)?.open(ONE_VM_DISK, OpenFlags::READ_ONLY);

    let policy = Reconnect::new()
        .delay(Duration::from_millis(50))
        .standby(true);
    let opts = DriverOptions::new()
        .mode(Mode::Pipelined)
        .max_in_flight(8)
        .reopen_with(Arc::new(open.clone()))
        .reconnect(policy);
    let d: DiskDriver = DiskDriver::new(open().expect("open"), opts).expect("driver");
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let pieces = SIZE as usize / PIECE;
    for i in 0..pieces {
        let tx = tx.clone();
        d.read(
            (i * PIECE) as u64,
            PIECE,
            Vec::new(),
            Box::new(move |r| drop(tx.send((i, r)))),
        );
    }
    let mut got = vec![0u8; SIZE as usize];
    for _ in 0..pieces {
        let (i, r) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every read completes");
        let buf = r.unwrap_or_else(|e| panic!("read {i}: {e}"));
        got[i * PIECE..(i + 1) * PIECE].copy_from_slice(&buf);
    }
    assert!(
        started.elapsed() > Duration::from_millis(400),
        "the session must end during the copy"
    );
    assert!(got == want, "the disk read through a bad day differs");
    assert!(
        d.reconnections() >= 4,
        "{} reconnections",
        d.reconnections()
    );
    d.close().expect("close");

    // Without a policy the first loss is the end, and says what it is.
    let d: DiskDriver = DiskDriver::new(
        open().expect("open"),
        DriverOptions::new().mode(Mode::Pipelined),
    )
    .expect("driver");
    let failed = (0..pieces)
        .map(|i| wait(|done| d.read((i * PIECE) as u64, PIECE, Vec::new(), done)))
        .find_map(|r| r.err())
        .expect("a read past the connection's MiB fails");
    assert!(failed.is_connection_lost(), "{failed}");
}
