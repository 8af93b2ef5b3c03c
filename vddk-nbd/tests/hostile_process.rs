//! Hostile clients against the server process, where what matters is
//! seen from outside: its log.
//!
//! Cases in this file (numbered across the hostile_* files, 56 here):
//! 56 2000 unknown export names give a few warning lines, not 2000

mod nbd_common;

use std::path::PathBuf;
use std::process::Stdio;

use nbd_common::vddk_nbd;
use vddk_tests::nbd::rawclient::*;
use vddk_tests::process::{lines_with, ServerProcess};

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
