//! `DiskDriver::reopen` against a simulated host that loses each NFC
//! connection after 1 MiB: the loss is told as such
//! (`Error::is_connection_lost`), the handle stays broken, and a reopen
//! through the opener (a new connection and handle) lets the same request
//! succeed with the right bytes, in both driver modes.

use std::sync::{Arc, OnceLock};

use vddk::{
    ConnectParams, Connection, Credentials, DiskDriver, DriverOptions, Error, Mode, OpenFlags,
    Secret, Vddk,
};
use vddk_tests::images::{make_vmdk, qemu_raw};
use vddk_tests::inventory::{one_vm, ONE_VM_DISK};
use vddk_tests::library::{fake_vddk, wait};

const HOST: &str = "esx9.example.com";
const TP: &str = "0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D";

struct World {
    vddk: Vddk,
    bytes: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = vddk_tests::scratch_dir("vddk-reopen");
        let inv = one_vm(
            &dir,
            HOST,
            &[
                ("thumbprint", TP),
                ("user", "root:pw"),
                ("drop_after_bytes", "1M"),
            ],
        );
        let file = make_vmdk(
            &dir.join("ds1/web/web.vmdk"),
            "monolithicSparse",
            4 << 20,
            &[(0, 4 << 20, 0x5c)],
        );
        let vddk = fake_vddk(&[("FAKE_VDDK_INVENTORY", inv.to_str().expect("UTF-8"))]);
        World {
            vddk,
            bytes: qemu_raw(&file),
        }
    })
}

fn params() -> ConnectParams {
    ConnectParams::remote(HOST)
        .credentials(Credentials::UserPassword {
            user: "root".into(),
            password: Secret::new("pw".into()),
        })
        .thumbprint(TP.parse().expect("thumbprint"))
        .vm("42".parse().expect("moref"))
        .read_only(true)
}

fn open() -> vddk::Result<vddk::Disk> {
    let conn = Connection::connect(&world().vddk, &params())?;
    conn.open(ONE_VM_DISK, OpenFlags::READ_ONLY)
}

fn driver(mode: Mode, reopen: bool) -> DiskDriver {
    let mut opts = DriverOptions::new().mode(mode);
    if reopen {
        opts = opts.reopen_with(Arc::new(open));
    }
    DiskDriver::new(open().expect("open"), opts).expect("driver")
}

fn read(d: &DiskDriver, offset: u64) -> vddk::Result<Vec<u8>> {
    wait(|done| d.read(offset, 512 << 10, Vec::new(), done))
}

#[test]
fn a_lost_connection_is_survived_by_reopening() {
    let want = &world().bytes;
    for mode in [Mode::Direct, Mode::Pipelined] {
        let d = driver(mode, true);
        // Two half-MiB reads fit in the first connection's budget.
        for at in [0, 512 << 10] {
            let got = read(&d, at).expect("within the budget");
            assert!(got[..] == want[at as usize..at as usize + (512 << 10)]);
        }
        let err = read(&d, 1 << 20).expect_err("the connection is gone");
        assert!(err.is_connection_lost(), "{mode:?}: {err}");
        // The handle does not come back by itself.
        assert!(read(&d, 1 << 20).is_err(), "{mode:?}");

        d.reopen().expect("reopen");
        let got = read(&d, 1 << 20).expect("the same read after the reopen");
        assert!(
            got[..] == want[1 << 20..(1 << 20) + (512 << 10)],
            "{mode:?}"
        );
        d.close().expect("close");
    }
}

#[test]
fn without_an_opener_reopen_says_how_to_give_one() {
    let d = driver(Mode::Pipelined, false);
    match d.reopen() {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("reopen_with"), "{m}"),
        other => panic!("{other:?}"),
    }
}
