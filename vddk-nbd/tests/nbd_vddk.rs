//! The server over a real VMDK through VDDK (the fake library), checked
//! with qemu-img, nbdinfo, qemu-io and nbdcopy.

mod nbd_common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use nbd_common::*;
use vddk::{
    ConnectParams, Connection, DiskDriver, DriverOptions, InitOptions, Mode, OpenFlags, Vddk,
};
use vddk_nbd::backend::Backend;
use vddk_nbd::plugins::VddkDisk;
use vddk_nbd::ServerConfig;

const GRAIN: usize = 64 * 1024;

fn library() -> Vddk {
    static V: OnceLock<Vddk> = OnceLock::new();
    V.get_or_init(|| {
        let dir = vddk_tests::fake_libdir();
        // Set while any other test thread is blocked on this OnceLock.
        std::env::set_var("FAKE_VDDK_STRICT", "1");
        Vddk::init(InitOptions::new().libdir(dir)).expect("initialise the fake VDDK")
    })
    .clone()
}

/// A sparse VMDK of `grains` 64 KiB grains, every third grain left zero.
fn make_vmdk(dir: &Path, grains: usize) -> (std::path::PathBuf, Vec<u8>) {
    let mut image = pattern(grains * GRAIN, 5);
    for g in (1..grains).step_by(3) {
        image[g * GRAIN..(g + 1) * GRAIN].fill(0);
    }
    let raw = dir.join("src.raw");
    std::fs::write(&raw, &image).unwrap();
    let vmdk = dir.join("disk.vmdk");
    run(Command::new("qemu-img")
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=monolithicSparse",
        ])
        .arg(&raw)
        .arg(&vmdk));
    (vmdk, image)
}

fn backend(vmdk: &Path, read_only: bool) -> Arc<VddkDisk> {
    let conn = Connection::connect(&library(), &ConnectParams::local().read_only(read_only))
        .expect("connect");
    let flags = if read_only {
        OpenFlags::READ_ONLY
    } else {
        OpenFlags::empty()
    };
    let disk = conn
        .open(vmdk.to_str().unwrap(), flags)
        .expect("open the VMDK");
    // Pipelined, as a remote disk is served.
    let opts = DriverOptions::new().mode(Mode::Pipelined);
    let driver = DiskDriver::new(disk, opts).expect("start the driver");
    Arc::new(VddkDisk::new(driver, read_only))
}

#[test]
fn serve_a_vmdk_read_map_write() {
    let dir = vddk_tests::scratch_dir("nbd-vddk");
    let grains = 96;
    let (vmdk, mut image) = make_vmdk(&dir, grains);
    let b = backend(&vmdk, false);
    assert_eq!(b.caps().size, (grains * GRAIN) as u64);
    let socket = dir.join("nbd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let srv = TestServer::start(
        dir.clone(),
        socket,
        b.clone(),
        ServerConfig::default(),
        vec![vddk_nbd::Listener::Unix(listener)],
    );
    let uri = srv.uri();
    let raw = dir.join("src.raw");

    // Contents, as qemu-img sees them.
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&raw)
        .arg(&uri));

    // The map: every third grain a hole, the rest data.
    let map = run(Command::new("nbdinfo").args(["--map", &uri]));
    let rows: Vec<(usize, usize, u32)> = map
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for g in 0..grains {
        let t = if g % 3 == 1 { 3 } else { 0 };
        match want.last_mut() {
            Some((_, len, last)) if *last == t => *len += GRAIN,
            _ => want.push((g * GRAIN, GRAIN, t)),
        }
    }
    assert_eq!(rows, want, "{map}");

    // Unaligned and aligned writes, zeroes and flush through qemu-io.
    let out = run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x61 1000 3000",
        "-c",
        "write -P 0x62 65536 65536",
        "-c",
        "write -z 200k 8k",
        "-c",
        "flush",
        "-c",
        "read -P 0x61 1000 3000",
        "-c",
        "read -P 0x62 64k 64k",
        "-c",
        "read -P 0 200k 8k",
        &uri,
    ]));
    assert!(!out.contains("failed"), "{out}");
    image[1000..4000].fill(0x61);
    image[65536..131072].fill(0x62);
    image[200 * 1024..208 * 1024].fill(0);

    // Grain 1 (a hole before) is now data, joining grains 0, 2 and 3.
    let map = run(Command::new("nbdinfo").args(["--map", &uri]));
    assert!(
        map.lines()
            .any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["0", "262144", "0"]),
        "{map}"
    );

    let copy = dir.join("copy.raw");
    run(Command::new("nbdcopy").arg(&uri).arg(&copy));
    assert!(
        std::fs::read(&copy).unwrap() == image,
        "nbdcopy read differs"
    );
    srv.stop();

    b.close().expect("flush and close the disk");
    // What was acknowledged is in the file, and the file is a valid VMDK.
    let expected = dir.join("expected.raw");
    std::fs::write(&expected, &image).unwrap();
    run(Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(&vmdk)
        .arg(&expected));
    run(Command::new("qemu-img")
        .args(["check", "-f", "vmdk"])
        .arg(&vmdk));
}
