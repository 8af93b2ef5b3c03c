//! `nfc-connections=N`: a read-only remote disk opened N times, reads
//! spread over the handles; a host that refuses one more NFC connection
//! leaves the disk with those it has; handles that lose their connection
//! make it again under `--filter=retry`; a disk opened for writing keeps
//! one handle.

mod callers_common;

use std::path::Path;
use std::time::Duration;

use callers_common::{args, libdir, read, AsNbdkit, Running, World, ESX_TP};
use vddk_tests::cmd::command;
use vddk_tests::inventory::ESX;
use vddk_tests::nbd::export_uri;
use vddk_tests::process::wait_until;

const PATIENCE: Duration = Duration::from_secs(30);
const SIZE: u64 = 12 << 20;

/// A host VM whose one disk holds data in most of its 12 MiB.
fn world(n: &AsNbdkit) -> World {
    let data = [
        (0, 5 << 20),
        (6 << 20, 5 << 20),
        (SIZE - (512 << 10), 512 << 10),
    ];
    World::with_layout(&n.dir, &["db/db.vmdk"], SIZE, &data, &[])
}

/// vddk-nbd as nbdkit on the host's disk, verbose, with `extra` options
/// before the plugin and `keys` after it.
fn serve(
    n: &AsNbdkit,
    world: &World,
    extra: &[&str],
    keys: &[&str],
    env: &[(&str, &str)],
) -> Running {
    let sock = n.dir.join("nbd.sock");
    let pid = n.dir.join("nbd.pid");
    let _ = std::fs::remove_file(&pid);
    let mut a = args(&["--foreground", "--verbose", "-U"]);
    a.push(sock.display().to_string());
    a.push("--pidfile".into());
    a.push(pid.display().to_string());
    a.extend(args(extra));
    a.push("vddk".into());
    a.push(libdir());
    a.push(format!("server={ESX}"));
    a.push("user=root".into());
    a.push(world.password_param.clone());
    a.push(format!("thumbprint={ESX_TP}"));
    a.push("vm=moref=42".into());
    a.extend(args(keys));
    a.push(format!("file={}", world.disks[0].name));
    let mut all = world.env();
    all.extend_from_slice(env);
    n.start(&a, &all, &pid, &sock, PATIENCE)
}

/// nbdcopy of the export into `dir/out.raw`, which must succeed.
fn copy_out(s: &Running, socket: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("out.raw");
    let o = command("nbdcopy")
        .arg(export_uri(socket, ""))
        .arg(&out)
        .output()
        .expect("run nbdcopy");
    assert!(o.status.success(), "{o:?}\n{}", s.log());
    read(&out)
}

/// The counts in "reads per NFC connection: a, b, c".
fn reads_per_connection(log: &str) -> Vec<u64> {
    let line = log
        .lines()
        .find_map(|l| l.split_once("reads per NFC connection: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no per-connection counts in the log:\n{log}"));
    line.split(", ")
        .map(|c| c.trim().parse().expect("a count"))
        .collect()
}

#[test]
fn reads_spread_over_the_connections_the_host_allows() {
    let n = AsNbdkit::install("nfc-connections-limit");
    let w = world(&n);
    let s = serve(
        &n,
        &w,
        &["--readonly"],
        &["nfc-connections=4"],
        &[("FAKE_VDDK_MAX_NFC_CONNECTIONS", "3")],
    );
    // The handles beyond the first open while the server serves; the
    // counts below want every one of them in the copy.
    wait_until("the fourth handle refused", PATIENCE, || {
        s.log().contains("reading through 3")
    });
    let sock = n.dir.join("nbd.sock");
    let got = copy_out(&s, &sock, &n.dir);
    assert!(got == w.disks[0].bytes, "the copy differs from the disk");
    let log = s.stop_clean("TERM");
    assert!(
        log.contains("the host refused NFC connection 4") && log.contains("reading through 3"),
        "{log}"
    );
    let counts = reads_per_connection(&log);
    assert_eq!(counts.len(), 3, "{log}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "a connection read nothing: {counts:?}"
    );
}

#[test]
fn each_connection_reconnects_by_itself_under_retry() {
    let n = AsNbdkit::install("nfc-connections-drops");
    let w = world(&n);
    // Every 1 MiB the host carries, one of the connections is lost.
    let s = serve(
        &n,
        &w,
        &["--readonly", "--filter=retry"],
        &["nfc-connections=3", "retry-delay=0.1"],
        &[("FAKE_VDDK_DROP_EVERY_BYTES", "1M")],
    );
    wait_until("three handles open", PATIENCE, || {
        s.log().contains("reads spread over 3 NFC connections")
    });
    let sock = n.dir.join("nbd.sock");
    let got = copy_out(&s, &sock, &n.dir);
    assert!(got == w.disks[0].bytes, "the copy differs from the disk");
    let log = s.stop_clean("TERM");
    assert!(log.matches("was lost").count() >= 5, "{log}");
    assert_eq!(reads_per_connection(&log).len(), 3, "{log}");
}

#[test]
fn the_server_serves_while_the_other_connections_open() {
    let n = AsNbdkit::install("nfc-connections-background");
    let w = world(&n);
    // Each Open takes 1.5 s: the three beyond the first would hold the
    // server back 4.5 s.
    let s = serve(
        &n,
        &w,
        &["--readonly"],
        &["nfc-connections=4"],
        &[
            ("FAKE_VDDK_OPEN_COST_MS", "1500"),
            ("FAKE_VDDK_STRICT", "1"),
        ],
    );
    assert!(
        !s.log().contains("reads spread over"),
        "the server waited for every connection before listening:\n{}",
        s.log()
    );
    let sock = n.dir.join("nbd.sock");
    let got = copy_out(&s, &sock, &n.dir);
    assert!(got == w.disks[0].bytes, "the copy differs from the disk");
    wait_until("four handles open", PATIENCE, || {
        s.log().contains("reads spread over 4 NFC connections")
    });
    let log = s.stop_clean("TERM");
    assert_eq!(reads_per_connection(&log).len(), 4, "{log}");
}

#[test]
fn a_server_stopped_while_connections_open_closes_every_handle() {
    let n = AsNbdkit::install("nfc-connections-stop");
    let w = world(&n);
    let stats = n.dir.join("fake-stats.txt");
    let stats_env = stats.display().to_string();
    let s = serve(
        &n,
        &w,
        &["--readonly"],
        &["nfc-connections=4"],
        &[
            ("FAKE_VDDK_OPEN_COST_MS", "1000"),
            ("FAKE_VDDK_STRICT", "1"),
            ("FAKE_VDDK_STATS", &stats_env),
        ],
    );
    // Stopped during the second handle's Open, which finishes first.
    let log = s.stop_clean("TERM");
    assert!(!log.contains("RULE VIOLATION"), "{log}");
    let stats = std::fs::read_to_string(&stats).unwrap_or_default();
    let count = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name} "))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in the library's statistics:\n{stats}"))
    };
    assert_eq!(
        count("VixDiskLib_Open"),
        count("VixDiskLib_Close"),
        "{stats}\n{log}"
    );
    assert!(count("VixDiskLib_Open") < 4, "{stats}");
}

#[test]
fn a_disk_opened_for_writing_keeps_one_connection() {
    let n = AsNbdkit::install("nfc-connections-rw");
    let w = world(&n);
    let s = serve(&n, &w, &[], &["nfc-connections=2"], &[]);
    let sock = n.dir.join("nbd.sock");
    let got = copy_out(&s, &sock, &n.dir);
    assert!(got == w.disks[0].bytes, "the copy differs from the disk");
    let log = s.stop_clean("TERM");
    assert!(
        log.contains("a disk opened for writing is served through one connection"),
        "{log}"
    );
    assert!(!log.contains("reads per NFC connection"), "{log}");
}

#[test]
fn a_count_out_of_range_is_refused_with_the_range() {
    let n = AsNbdkit::install("nfc-connections-bad");
    let o = n.sh("nbdkit --readonly vddk file=/x.vmdk nfc-connections=0 --run true");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        err.contains("nfc-connections") && err.contains("from 1 to 16"),
        "{err}"
    );
}
