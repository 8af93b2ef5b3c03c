//! VDDK failures injected by the fake library (`FAKE_VDDK_FAIL`,
//! `FAKE_VDDK_FAIL_PROB`) while the binary serves a real VMDK: each failed
//! read, write or flush reaches the client as an NBD error with a
//! structured message, the same client and others keep being served, and
//! the server logs the failure exactly once with the VIX code and text. A
//! failed open ends the program with status 1 and a clear message. Each
//! runs with both ways of calling VDDK (`io=direct`, the default for local
//! disks, and `io=pipelined`, the default for remote ones).

mod nbd_common;

use std::path::{Path, PathBuf};

use nbd_common::{disk_command, serve_disk};
use vddk_tests::images::{make_vmdk, qemu_check, qemu_raw};
use vddk_tests::nbd::rawclient::*;
use vddk_tests::process::lines_with;

const SIZE: u64 = 16 << 20;

/// A sparse disk with 0xab in its first MiB.
fn filled(dir: &Path, name: &str) -> PathBuf {
    make_vmdk(
        &dir.join(name),
        "monolithicSparse",
        SIZE,
        &[(0, 1 << 20, 0xab)],
    )
}

/// The read and write functions each way calls.
const WAYS: [(&str, &str, &str); 2] = [
    ("io=direct", "Read", "Write"),
    ("io=pipelined", "ReadAsync", "WriteAsync"),
];

#[test]
fn failing_read_write_flush_are_reported_and_survived() {
    for (io, read, write) in WAYS {
        failing_read_write_flush(io, read, write);
    }
}

fn failing_read_write_flush(io: &str, read: &str, write: &str) {
    let dir = vddk_tests::scratch_dir("faults-rwf");
    let disk = filled(&dir, "f.vmdk");
    let srv = serve_disk(
        &dir,
        &disk,
        &[(
            "FAKE_VDDK_FAIL",
            "read:2,write:2:DISK_FULL,write:3:FILE_READ_ONLY,flush:1",
        )],
        &[io],
    );
    // A bystander connected before the faults, used after them.
    let mut other = Raw::go(&srv.socket, false, false);
    let mut c = Raw::go(&srv.socket, true, false);

    c.request(CMD_READ, 0, 1, 0, 4096, &[]);
    assert_eq!(c.read_reply(1, 4096), vec![0xab; 4096], "read #1");
    c.request(CMD_READ, 0, 2, 0, 4096, &[]);
    let (e, msg) = c.error_chunk(2);
    assert_eq!(e, EIO, "injected read failure: {msg}");
    assert!(
        msg.contains("VIX_E_FAIL"),
        "the message names the VIX error: {msg}"
    );
    c.request(CMD_READ, 0, 3, 0, 4096, &[]);
    assert_eq!(
        c.read_reply(3, 4096),
        vec![0xab; 4096],
        "the next read succeeds"
    );

    let w = vec![0x5c; 4096];
    c.request(CMD_WRITE, 0, 4, 1 << 20, 4096, &w);
    assert_eq!(c.simple_reply(), (0, 4), "write #1");
    c.request(CMD_WRITE, 0, 5, 2 << 20, 4096, &[0x66; 4096]);
    let (e, msg) = c.error_chunk(5);
    assert_eq!(e, ENOSPC, "a full disk is ENOSPC: {msg}");
    assert!(msg.contains("VIX_E_DISK_FULL"), "{msg}");
    c.request(CMD_WRITE, 0, 6, 3 << 20, 4096, &[0x77; 4096]);
    let (e, msg) = c.error_chunk(6);
    assert_eq!(e, EPERM, "a read-only file is EPERM: {msg}");
    assert!(msg.contains("VIX_E_FILE_READ_ONLY"), "{msg}");
    c.request(CMD_WRITE, 0, 7, 4 << 20, 4096, &w);
    assert_eq!(c.simple_reply(), (0, 7), "the next write succeeds");

    c.request(CMD_FLUSH, 0, 8, 0, 0, &[]);
    let (e, msg) = c.error_chunk(8);
    assert_eq!(e, EIO, "{msg}");
    assert!(msg.contains("VIX_E_FAIL"), "{msg}");
    c.request(CMD_FLUSH, 0, 9, 0, 0, &[]);
    assert_eq!(c.simple_reply(), (0, 9), "the next flush succeeds");

    // The bystander and a newcomer are served, and see the writes that
    // succeeded and none of those that failed.
    other.request(CMD_READ, 0, 10, 1 << 20, 4096, &[]);
    assert_eq!(other.simple_reply(), (0, 10));
    assert_eq!(other.recv(4096), w);
    let mut newcomer = Raw::go(&srv.socket, true, false);
    newcomer.request(CMD_READ, 0, 11, 2 << 20, 4096, &[]);
    assert_eq!(newcomer.read_reply(11, 4096), vec![0; 4096]);
    drop((c, other, newcomer));

    let log = srv.stop();
    for (call, code) in [
        (read, "VIX_E_FAIL (1): Unknown error"),
        (write, "VIX_E_DISK_FULL (8)"),
        (write, "VIX_E_FILE_READ_ONLY"),
        ("Flush", "VIX_E_FAIL (1): Unknown error"),
    ] {
        let call = format!("VixDiskLib_{call} failed");
        assert_eq!(
            lines_with(&log, &[&call, code]),
            1,
            "{io}: {call} {code} logged exactly once:\n{log}"
        );
    }
    assert_eq!(
        lines_with(&log, &["VIX_E_DISK_FULL (8): There is not enough space"]),
        1,
        "the VIX text is logged, once:\n{log}"
    );
    let data = qemu_raw(&disk);
    assert_eq!(&data[1 << 20..(1 << 20) + 4096], &w[..]);
    assert_eq!(&data[4 << 20..(4 << 20) + 4096], &w[..]);
    assert!(data[2 << 20..(2 << 20) + 4096].iter().all(|&b| b == 0));
    qemu_check(&disk);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn random_read_faults_under_load_stay_in_step() {
    for (io, read, _) in WAYS {
        random_read_faults(io, read);
    }
}

fn random_read_faults(io: &str, read: &str) {
    let dir = vddk_tests::scratch_dir("faults-prob");
    let disk = filled(&dir, "p.vmdk");
    let srv = serve_disk(
        &dir,
        &disk,
        &[("FAKE_VDDK_FAIL_PROB", "read:0.25:7")],
        &[io],
    );
    let failures: u32 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Raw::go(&srv.socket, true, false);
                    // 50 reads in flight at once, answered in any order.
                    let mut b = Vec::new();
                    for i in 0..50u64 {
                        b.request(CMD_READ, 0, i, i * 8192, 4096, &[]);
                    }
                    c.send(&b);
                    let mut failed = 0;
                    for _ in 0..50 {
                        let (flags, kind, _, p) = c.chunk();
                        assert_eq!(flags, 1, "one chunk per reply");
                        match kind {
                            CHUNK_DATA => assert!(p[8..].iter().all(|&x| x == 0xab)),
                            CHUNK_ERROR => {
                                assert_eq!(be(&p[..4]), EIO);
                                assert!(String::from_utf8_lossy(&p[6..]).contains("VIX_E_FAIL"));
                                failed += 1;
                            }
                            other => panic!("chunk type {other:#x}"),
                        }
                    }
                    c.request(CMD_DISC, 0, 99, 0, 0, &[]);
                    failed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    assert!(
        failures > 5 && failures < 100,
        "{failures} of 150 reads failed"
    );
    served_read_after_faults(&srv.socket);
    let log = srv.stop();
    // Reads of the final check may fail too; count only what is logged.
    let call = format!("VixDiskLib_{read} failed");
    let logged = lines_with(&log, &[&call, "VIX_E_FAIL (1)"]) as u32;
    assert!(
        logged >= failures && logged <= failures + 20,
        "{io}: {failures} failures seen, {logged} logged:\n{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// With reads failing at random, a client retries until one succeeds.
fn served_read_after_faults(socket: &std::path::Path) {
    let mut c = Raw::go(socket, false, false);
    for i in 0..20u64 {
        c.request(CMD_READ, 0, i, 0, 512, &[]);
        let (e, cookie) = c.simple_reply();
        assert_eq!(cookie, i);
        if e == 0 {
            assert_eq!(c.recv(512), vec![0xab; 512]);
            return;
        }
        assert_eq!(e, EIO);
    }
    panic!("20 reads in a row failed at a 25% failure rate");
}

#[test]
fn failing_open_exits_1_with_the_vix_error() {
    let dir = vddk_tests::scratch_dir("faults-open");
    let disk = make_vmdk(&dir.join("o.vmdk"), "monolithicSparse", SIZE, &[]);
    let out = disk_command(
        &dir,
        &disk,
        &[("FAKE_VDDK_FAIL", "open:1:FILE_ACCESS_ERROR")],
    )
    .stderr(std::process::Stdio::piped())
    .output()
    .expect("run vddk-nbd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = format!("cannot open {}", disk.display());
    assert_eq!(
        lines_with(
            &err,
            &[&line, "VIX_E_FILE_ACCESS_ERROR (13)", "access rights"]
        ),
        1,
        "one clear line with the path, code and text:\n{err}"
    );
    assert!(
        !dir.join("nbd.sock").exists(),
        "nothing listens after a failed open"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn san_alone_against_a_host_without_it_names_no_common_transport() {
    const THUMBPRINT: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
    let dir = vddk_tests::scratch_dir("faults-no-common-transport");
    let inv = vddk_tests::inventory::one_vm(
        &dir,
        "esx1.example.com",
        &[
            ("kind", "esxi"),
            ("thumbprint", THUMBPRINT),
            ("user", "root:s3cret"),
            ("transports", "nbdssl:nbd"),
        ],
    );
    make_vmdk(&dir.join("ds1/web/web.vmdk"), "monolithicSparse", SIZE, &[]);
    std::fs::write(dir.join("pw"), "s3cret").unwrap();
    let out = nbd_common::vddk_nbd()
        .env("FAKE_VDDK_INVENTORY", &inv)
        .args(["-f", "-r", "-U"])
        .arg(dir.join("nbd.sock"))
        .arg(vddk_tests::libdir_param())
        .args(["server=esx1.example.com", "user=root", "vm=moref=42"])
        .arg(format!("password=+{}", dir.join("pw").display()))
        .arg(format!("thumbprint={THUMBPRINT}"))
        .arg("transports=san")
        .arg(vddk_tests::inventory::ONE_VM_DISK)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run vddk-nbd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("cannot open"))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    let cause = line.find("no common transport");
    assert!(cause.is_some(), "the cause is named: {line}");
    assert!(
        line.find("thumbprint").is_none_or(|t| Some(t) > cause),
        "the transport comes before any word of the thumbprint: {line}"
    );
    assert!(line.contains("transports=san:nbdssl:nbd"), "{line}");
    std::fs::remove_dir_all(&dir).ok();
}
