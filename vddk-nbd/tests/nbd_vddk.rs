//! The server over a real VMDK through VDDK (the fake library), checked
//! with qemu-img, nbdinfo, qemu-io and nbdcopy.

mod nbd_common;

use std::path::Path;
use std::sync::Arc;

use nbd_common::TestServer;
use vddk::{ConnectParams, Connection, DiskDriver, DriverOptions, Mode, OpenFlags, Vddk};
use vddk_nbd::backend::Backend;
use vddk_nbd::plugins::VddkDisk;
use vddk_nbd::ServerConfig;
use vddk_tests::cmd::run;
use vddk_tests::images::{assert_same_as_raw, noise, s, vmdk_from_raw};
use vddk_tests::nbd::nbdinfo_map;

const GRAIN: usize = 64 * 1024;

fn library() -> Vddk {
    vddk_tests::library::fake_vddk(&[])
}

/// A sparse VMDK of `grains` 64 KiB grains, every third grain left zero.
fn make_vmdk(dir: &Path, grains: usize) -> (std::path::PathBuf, Vec<u8>) {
    let mut image = noise(grains * GRAIN, 5);
    for g in (1..grains).step_by(3) {
        image[g * GRAIN..(g + 1) * GRAIN].fill(0);
    }
    let raw = dir.join("src.raw");
    std::fs::write(&raw, &image).unwrap();
    let vmdk = dir.join("disk.vmdk");
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
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
    run(
        "qemu-img",
        ["compare", "-f", "raw", "-F", "raw", s(&raw), &uri],
    );

    // The map: every third grain a hole, the rest data.
    let rows = nbdinfo_map(&uri);
    let mut want = Vec::new();
    for g in 0..grains as u64 {
        let t = if g % 3 == 1 { 3 } else { 0 };
        let grain = GRAIN as u64;
        match want.last_mut() {
            Some((_, len, last)) if *last == t => *len += grain,
            _ => want.push((g * grain, grain, t)),
        }
    }
    assert_eq!(rows, want);

    // Unaligned and aligned writes, zeroes and flush through qemu-io.
    let out = run(
        "qemu-io",
        [
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
        ],
    );
    assert!(!out.contains("failed"), "{out}");
    image[1000..4000].fill(0x61);
    image[65536..131072].fill(0x62);
    image[200 * 1024..208 * 1024].fill(0);

    // Grain 1 (a hole before) is now data, joining grains 0, 2 and 3.
    let map = nbdinfo_map(&uri);
    assert!(map.contains(&(0, 262144, 0)), "{map:?}");

    let copy = dir.join("copy.raw");
    run("nbdcopy", [uri.as_str(), s(&copy)]);
    assert!(
        std::fs::read(&copy).unwrap() == image,
        "nbdcopy read differs"
    );
    srv.stop();

    b.close().expect("flush and close the disk");
    // What was acknowledged is in the file, and the file is a valid VMDK.
    let expected = dir.join("expected.raw");
    std::fs::write(&expected, &image).unwrap();
    assert_same_as_raw(&expected, &vmdk);
}
