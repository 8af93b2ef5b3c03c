//! Hostile clients against the server process, where what matters is
//! seen from outside: its log.
//!
//! Cases in this file (numbered across the hostile_* files, 56 and 61-63
//! here):
//! 56 2000 unknown export names give a few warning lines, not 2000
//! 61 40 writers stalled one byte short of 32 MiB beside a client reading
//!    a VMDK byte-exact: the server's resident memory stays within half
//!    its budget and a margin (io=direct)
//! 62 the same with io=pipelined
//! 63 SIGTERM with a client that takes its replies a little at a time:
//!    the server exits within the shutdown grace

mod nbd_common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nbd_common::{serve_disk, vddk_nbd};
use vddk_nbd::SHUTDOWN_GRACE;
use vddk_tests::images::vmdk_image;
use vddk_tests::nbd::rawclient::*;
use vddk_tests::process::{lines_with, memory_kib, wait_until, ServerProcess};

const MIB: usize = 1 << 20;

/// `vddk-nbd -f -U DIR/nbd.sock ARGS`, its stderr in DIR/server.stderr.
fn spawn(dir: &std::path::Path, args: &[String]) -> ServerProcess {
    let socket = dir.join("nbd.sock");
    ServerProcess::spawn(
        vddk_nbd()
            .arg("-f")
            .arg("-U")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        socket,
        dir.join("server.stderr"),
    )
}

#[test]
fn unknown_export_names_do_not_flood_the_log() {
    let dir = vddk_tests::scratch_dir("hostile-log-flood");
    let exports: PathBuf = dir.join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    std::fs::write(exports.join("disk.raw"), vec![0u8; 1 << 20]).unwrap();
    let srv = spawn(&dir, &["file".into(), format!("dir={}", exports.display())]);
    // 2000 names, in connections of 250 options (the limit is 256).
    for conn in 0..8 {
        let mut c = Raw::start(&srv.socket);
        for i in 0..250 {
            let name = format!("no-such-disk-{conn}-{i}");
            c.option(OPT_INFO, &Raw::info_payload(name.as_bytes(), &[]));
            let r = c.opt_replies();
            assert!(
                r.last().is_some_and(|r| r.1 >= 1 << 31),
                "an unknown name is an error: {r:?}"
            );
        }
        c.option(OPT_ABORT, &[]);
        drop(c);
    }
    served_read_only_by_name(&srv.socket);
    let log = srv.stop();
    let warned = lines_with(&log, &["asked for export"]);
    assert!(
        (1..=10).contains(&warned),
        "{warned} warnings for unknown export names:\n{log}"
    );
    assert_eq!(
        lines_with(
            &log,
            &["further warnings about unknown export names are left out"]
        ),
        1,
        "{log}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The one file of the directory is still served by its name.
fn served_read_only_by_name(socket: &std::path::Path) {
    let mut c = Raw::start(socket);
    c.option(OPT_GO, &Raw::info_payload(b"disk.raw", &[]));
    let r = c.opt_replies();
    assert_eq!(r.last().map(|r| r.1), Some(REP_ACK), "{r:?}");
    assert_eq!(c.simple_read(1, 0, 512), vec![0u8; 512]);
    c.request(CMD_DISC, 0, 2, 0, 0, &[]);
    assert!(c.closed());
}

/// Case 61/62: stalled writers against the server process, in `io` mode.
fn stalled_writers_beside_a_reader(name: &str, io: &str) {
    const BUDGET_MIB: u64 = 256;
    const STALLED: u64 = 40;
    let (dir, vmdk, data) = vmdk_image(name, 64 << 11, 61, "monolithicSparse");
    let srv = serve_disk(
        &dir,
        &vmdk,
        &[],
        &[
            &format!("io={io}"),
            &format!("--request-memory={BUDGET_MIB}M"),
        ],
    );
    let pid = srv.child.id();
    let stalled: Vec<StalledWriter> = (0..STALLED)
        .map(|i| StalledWriter::start(&srv.socket, i, 32 << 20))
        .collect();
    // Half the budget goes to payloads arriving: four of the 32 MiB ones
    // are read into the server's memory; the others wait in their sockets.
    wait_until(
        "the server to read the payloads it has room for",
        Duration::from_secs(30),
        || memory_kib(pid).0 > (BUDGET_MIB / 2 - 16) << 10,
    );
    let mut good = Raw::go(&srv.socket, true, false);
    for round in 0..4u64 {
        for i in 0..64 {
            let at = i * MIB;
            let cookie = round * 100 + i as u64;
            good.request(CMD_READ, 0, cookie, at as u64, MIB as u32, &[]);
            let got = good.read_reply(cookie, MIB);
            assert!(got == data[at..at + MIB], "MiB {i} read back exact");
        }
    }
    good.request(CMD_DISC, 0, 9999, 0, 0, &[]);
    assert!(good.closed());
    let (rss, hwm) = memory_kib(pid);
    let bound = (BUDGET_MIB / 2 + 64) << 10;
    eprintln!(
        "{io}: {STALLED} stalled writers: VmRSS {} MiB, VmHWM {} MiB (bound {} MiB)",
        rss >> 10,
        hwm >> 10,
        bound >> 10
    );
    assert!(
        hwm <= bound,
        "the server's peak resident memory was {} MiB with {STALLED} stalled writers and a \
         {BUDGET_MIB} MiB budget",
        hwm >> 10
    );
    drop(stalled);
    let log = srv.stop();
    assert!(!log.contains("panicked"), "{log}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn stalled_writers_hold_bounded_memory_direct() {
    stalled_writers_beside_a_reader("hostile-stalled-rss-direct", "direct");
}

#[test]
fn stalled_writers_hold_bounded_memory_pipelined() {
    stalled_writers_beside_a_reader("hostile-stalled-rss-pipelined", "pipelined");
}

#[test]
fn sigterm_does_not_wait_for_a_client_that_reads_slowly() {
    let (dir, vmdk, data) = vmdk_image("hostile-sigterm-slow", 64 << 11, 63, "monolithicSparse");
    let mut srv = serve_disk(&dir, &vmdk, &[], &[]);
    let mut c = Raw::go(&srv.socket, false, false);
    let mut b = Vec::new();
    for i in 0..200u64 {
        b.request(CMD_READ, 0, i, (i % 64) << 20, 1 << 20, &[]);
    }
    c.send(&b);
    // The client takes 4 KiB every 100 ms: every write the server makes
    // progresses, so only a deadline over the whole reply (or the
    // shutdown's grace) ends it.
    let reader = std::thread::spawn(move || {
        assert_eq!(c.simple_reply(), (0, 0));
        let mut got = Vec::new();
        while let Some(b) = c.try_recv(4096) {
            got.extend(b);
            std::thread::sleep(Duration::from_millis(100));
        }
        got
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    srv.signal("TERM");
    let status = srv.wait(SHUTDOWN_GRACE + Duration::from_secs(10));
    let took = t.elapsed();
    eprintln!("SIGTERM with a slow reader: exited after {took:?}");
    let log = srv.log();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("did not read their replies"),
        "the log says why: {log}"
    );
    let got = reader.join().expect("the reading thread");
    assert!(!got.is_empty() && got.len() < 200 << 20);
    assert!(got[..] == data[..got.len()], "what came was right");
    std::fs::remove_dir_all(dir).ok();
}
