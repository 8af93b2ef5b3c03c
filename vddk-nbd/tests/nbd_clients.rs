//! Real NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy) against an
//! in-process server over a memory disk.

mod nbd_common;

use std::net::TcpListener;
use std::sync::Arc;

use nbd_common::{memory, TestServer};
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::{Listener, ServerConfig};
use vddk_tests::cmd::{command, run, run_cmd, status};
use vddk_tests::images::{noise, s};
use vddk_tests::nbd::nbdinfo_map;

const MIB: u64 = 1 << 20;

/// A 64 MiB disk with data at 1 MiB (64 KiB) and 8..10 MiB; holes elsewhere.
fn sample() -> (Arc<MemoryBackend>, Vec<u8>) {
    let disk = memory(64 * MIB);
    let a = noise(64 * 1024, 1);
    let b = noise(2 * MIB as usize, 2);
    disk.fill(MIB, &a);
    disk.fill(8 * MIB, &b);
    let mut image = vec![0u8; 64 * MIB as usize];
    image[MIB as usize..MIB as usize + a.len()].copy_from_slice(&a);
    image[8 * MIB as usize..10 * MIB as usize].copy_from_slice(&b);
    (disk, image)
}

#[test]
fn qemu_img_info_convert_compare() {
    let (disk, image) = sample();
    let srv = TestServer::unix("nbd-qemu-img", disk.clone(), ServerConfig::default());
    let info = run("qemu-img", ["info", "--output=json", &srv.uri()]);
    assert!(info.contains("\"virtual-size\": 67108864"), "{info}");

    let out = srv.dir.join("out.raw");
    run(
        "qemu-img",
        ["convert", "-f", "raw", "-O", "raw", &srv.uri(), s(&out)],
    );
    assert!(
        std::fs::read(&out).unwrap() == image,
        "converted image differs"
    );

    // Write a new image in through qemu-img and compare both ways.
    let input = srv.dir.join("in.raw");
    let mut new = noise(64 * MIB as usize, 3);
    new[4 * MIB as usize..6 * MIB as usize].fill(0);
    std::fs::write(&input, &new).unwrap();
    let uri = srv.uri();
    run(
        "qemu-img",
        ["convert", "-n", "-f", "raw", "-O", "raw", s(&input), &uri],
    );
    run(
        "qemu-img",
        ["compare", "-f", "raw", "-F", "raw", s(&input), &uri],
    );
    assert!(
        disk.contents(0, new.len()) == new,
        "disk differs from what qemu-img wrote"
    );
    srv.stop();
}

#[test]
fn qemu_img_over_tcp() {
    let (disk, image) = sample();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = vddk_tests::scratch_dir("nbd-tcp");
    let srv = TestServer::start(
        dir.clone(),
        dir.join("unused"),
        disk,
        ServerConfig::default(),
        vec![Listener::Tcp(l)],
    );
    let uri = format!("nbd://127.0.0.1:{port}");
    let info = run("qemu-img", ["info", "--output=json", &uri]);
    assert!(info.contains("\"virtual-size\": 67108864"), "{info}");
    let out = dir.join("out.raw");
    run(
        "qemu-img",
        ["convert", "-f", "raw", "-O", "raw", &uri, s(&out)],
    );
    assert!(std::fs::read(&out).unwrap() == image);
    srv.stop();
}

#[test]
fn nbdinfo_size_flags_and_map() {
    let (disk, _) = sample();
    let config = ServerConfig {
        export_name: "vm-disk".into(),
        description: Some("sample disk".into()),
        ..ServerConfig::default()
    };
    let srv = TestServer::unix("nbd-nbdinfo", disk, config);
    let uri = srv.uri();
    assert_eq!(run("nbdinfo", ["--size", &uri]).trim(), "67108864");
    for (flag, want) in [
        ("--can=write", true),
        ("--can=flush", true),
        ("--can=fua", true),
        ("--can=zero", true),
        ("--can=fast-zero", true),
        ("--can=cache", true),
        ("--can=multi-conn", true),
        ("--can=df", true),
        ("--can=trim", false),
        ("--is=read-only", false),
    ] {
        let (code, text) = status("nbdinfo", [flag, &uri]);
        assert_eq!(code, if want { 0 } else { 2 }, "nbdinfo {flag}: {text}");
    }
    let json = run("nbdinfo", ["--json", &uri]);
    for want in [
        "\"block_size_minimum\": 512",
        "\"block_size_preferred\": 4096",
        "\"block_size_maximum\": 33554432",
        "\"export-name\": \"vm-disk\"",
        "\"description\": \"sample disk\"",
        "\"base:allocation\"",
    ] {
        assert!(json.contains(want), "{want} missing from {json}");
    }
    let list = run("nbdinfo", ["--list", "--json", &uri]);
    assert!(list.contains("\"export-name\": \"vm-disk\""), "{list}");

    assert_eq!(
        nbdinfo_map(&uri),
        vec![
            (0, MIB, 3),
            (MIB, 64 * 1024, 0),
            (MIB + 64 * 1024, 7 * MIB - 64 * 1024, 3),
            (8 * MIB, 2 * MIB, 0),
            (10 * MIB, 54 * MIB, 3),
        ],
    );
    srv.stop();
}

#[test]
fn nbdcopy_round_trip() {
    let (disk, image) = sample();
    let srv = TestServer::unix("nbd-nbdcopy", disk.clone(), ServerConfig::default());
    let out = srv.dir.join("out.raw");
    let uri = srv.uri();
    run("nbdcopy", [uri.as_str(), s(&out)]);
    assert!(
        std::fs::read(&out).unwrap() == image,
        "nbdcopy read differs"
    );

    let input = srv.dir.join("in.raw");
    let mut new = noise(64 * MIB as usize, 4);
    new[20 * MIB as usize..30 * MIB as usize].fill(0);
    std::fs::write(&input, &new).unwrap();
    run("nbdcopy", [s(&input), &uri]);
    assert!(disk.contents(0, new.len()) == new, "nbdcopy write differs");
    let back = srv.dir.join("back.raw");
    run("nbdcopy", [uri.as_str(), s(&back)]);
    assert!(std::fs::read(&back).unwrap() == new);
    srv.stop();
}

#[test]
fn qemu_io_reads_writes_zeroes_flush() {
    let disk = memory(16 * MIB);
    disk.fill(0, &[0x11; 1 << 20]);
    let srv = TestServer::unix("nbd-qemu-io", disk.clone(), ServerConfig::default());
    let cmds = [
        "read -P 0x11 0 1M",
        "write -P 0xab 1M 64k",
        "read -P 0xab 1M 64k",
        "write -z 4k 8k",
        "read -P 0 4k 8k",
        "read -P 0x11 0 4k",
        "read -P 0x11 12k 4k",
        "write -P 0xcd -f 2M 4k",
        "flush",
        "write -P 0xee 3000 100",
        "read -P 0xee 3000 100",
        "read -P 0x11 2900 100",
        "read -P 0x11 3100 100",
    ];
    let mut c = command("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.arg(srv.uri());
    let out = vddk_tests::cmd::stdout(&run_cmd(&mut c));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert!(!out.contains("failed"), "{out}");
    assert_eq!(disk.contents(MIB, 65536), vec![0xab; 65536]);
    assert_eq!(disk.contents(2 * MIB, 4096), vec![0xcd; 4096]);
    assert_eq!(disk.contents(3000, 100), vec![0xee; 100]);
    assert_eq!(disk.contents(2999, 1), vec![0x11]);
    assert_eq!(disk.contents(3100, 1), vec![0x11]);
    assert_eq!(disk.contents(4096 * 3, 1), vec![0x11]);
    srv.stop();
}

#[test]
fn read_only_export() {
    let (disk, image) = sample();
    let config = ServerConfig {
        read_only: true,
        ..ServerConfig::default()
    };
    let srv = TestServer::unix("nbd-readonly", disk.clone(), config);
    let uri = srv.uri();
    assert_eq!(status("nbdinfo", ["--is=read-only", &uri]).0, 0);
    assert_eq!(status("nbdinfo", ["--can=write", &uri]).0, 2);
    assert_eq!(status("nbdinfo", ["--can=zero", &uri]).0, 2);
    let (_, text) = status("qemu-io", ["-f", "raw", "-c", "write -P 1 0 4k", &uri]);
    assert!(
        text.contains("ermission denied")
            || text.contains("read-only")
            || text.contains("read only"),
        "{text}"
    );
    assert!(
        disk.contents(0, image.len()) == image,
        "a read-only export changed"
    );
    srv.stop();
}
