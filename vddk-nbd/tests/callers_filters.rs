//! The filters the callers stack, doing their job on the callers' own
//! command lines against the simulated vSphere: retry carrying a copy
//! over a lost connection (and its absence failing it), rate holding
//! virt-v2v's `--bandwidth`, blocksize serving the large and unaligned
//! requests qemu makes, noextents hiding the allocation map.

mod callers_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callers_common::{args, libdir, read, AsNbdkit, Running, World, ESX_TP};
use vddk_tests::cmd::command;
use vddk_tests::images::assert_same;
use vddk_tests::inventory::ESX;
use vddk_tests::nbd::{export_uri, nbdinfo_map, nbdsh};

const PATIENCE: Duration = Duration::from_secs(30);

/// `nbdkit --foreground --readonly -U SOCK --pidfile PID FILTERS vddk
/// (the host's VM 42, disk 0) EXTRA`, started with `env` added.
fn serve(
    n: &AsNbdkit,
    world: &World,
    filters: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Running {
    let sock = n.dir.join("nbd.sock");
    let pid = n.dir.join("nbd.pid");
    let _ = std::fs::remove_file(&pid);
    let mut a = args(&["--foreground", "--readonly", "--exit-with-parent", "-U"]);
    a.push(sock.display().to_string());
    a.push("--pidfile".into());
    a.push(pid.display().to_string());
    a.extend(filters.iter().map(|f| format!("--filter={f}")));
    a.push("vddk".into());
    a.push(libdir());
    a.push(format!("server={ESX}"));
    a.push("user=root".into());
    a.push(world.password_param.clone());
    a.push(format!("thumbprint={ESX_TP}"));
    a.push("vm=moref=42".into());
    a.extend(args(extra));
    a.push(format!("file={}", world.disks[0].name));
    let mut all = world.env();
    all.extend_from_slice(env);
    n.start(&a, &all, &pid, &sock, PATIENCE)
}

/// nbdcopy of the default export into `dir/out.raw`; the output path, or
/// the failure's stderr.
fn copy(socket: &Path, dir: &Path) -> Result<PathBuf, String> {
    let out = dir.join("out.raw");
    let _ = std::fs::remove_file(&out);
    let o = command("nbdcopy")
        .arg(export_uri(socket, ""))
        .arg(&out)
        .output()
        .expect("run nbdcopy");
    if o.status.success() {
        Ok(out)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

#[test]
fn retry_carries_a_copy_over_a_lost_connection() {
    let n = AsNbdkit::install("callers-retry");
    let world = World::new(&n.dir, &["web/web.vmdk"], 12);
    // The host drops each connection after 1.5 MiB of disk data: the copy
    // (3.5 MiB) needs two reconnections, with the callers' default delays.
    let drop = [("FAKE_VDDK_DROP_AFTER_BYTES", "1536K")];

    let s = serve(
        &n,
        &world,
        &["retry", "cacheextents"],
        &["--verbose"],
        &drop,
    );
    let out = copy(&s.socket, &n.dir).unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    assert_same("copied over drops", &read(&out), &world.disks[0].bytes);
    let log = s.stop_clean("INT");
    // Under retry, the disk driver reconnects by itself, with retry's
    // delays, and issues the requests in flight again; after the first
    // loss it keeps a standby handle, which takes over at the second.
    assert_eq!(log.matches("reconnected (try 1)").count(), 1, "{log}");
    assert_eq!(
        log.matches("reconnected: switched to the standby handle")
            .count(),
        1,
        "{log}"
    );

    // The same without retry: the first loss fails the copy with EIO.
    let s = serve(&n, &world, &["cacheextents"], &[], &drop);
    let err = copy(&s.socket, &n.dir).expect_err("a copy over a dropped connection");
    assert!(err.contains("Input/output error"), "{err}");
    s.stop_clean("INT");

    // One transient failure (the third read), as CDI's retry filter meets
    // them: invisible under retry, EIO without.
    let once = [("FAKE_VDDK_FAIL", "read:3:HOST_TCP_CONN_LOST")];
    let s = serve(&n, &world, &["retry", "cacheextents"], &[], &once);
    let out = copy(&s.socket, &n.dir).unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    assert_same(
        "copied over a transient failure",
        &read(&out),
        &world.disks[0].bytes,
    );
    s.stop_clean("INT");
    let s = serve(&n, &world, &["cacheextents"], &[], &once);
    let err = copy(&s.socket, &n.dir).expect_err("a copy over a failed read");
    assert!(err.contains("Input/output error"), "{err}");
    s.stop_clean("INT");
}

#[test]
fn a_reconnection_reads_the_password_file_again() {
    let n = AsNbdkit::install("callers-retry-password");
    let world = World::new(&n.dir, &["web/web.vmdk"], 12);
    let drop = [("FAKE_VDDK_DROP_AFTER_BYTES", "1536K")];
    let s = serve(&n, &world, &["retry"], &["--verbose"], &drop);
    // The password file changes after the server logged in. The host
    // takes only the old password, so the first reconnection is refused:
    // only a fresh read of the file can cause that (with the password read
    // at start, the test above reconnects twice).
    std::fs::write(n.dir.join("password"), "rotated-elsewhere\n").expect("rewrite");
    let err = copy(&s.socket, &n.dir).expect_err("the host refuses the new password");
    assert!(err.contains("Input/output error"), "{err}");
    let log = s.stop_clean("INT");
    assert!(
        log.contains("with the password read again from its file"),
        "{log}"
    );
    assert!(log.contains("no longer accepts the login"), "{log}");
    assert_eq!(log.matches("reconnected (try").count(), 0, "{log}");
}

#[test]
fn a_signal_ends_the_server_during_a_retry_wait() {
    let n = AsNbdkit::install("callers-retry-signal");
    let world = World::new(&n.dir, &["web/web.vmdk"], 12);
    // The third read fails (not a connection loss, so the retry filter
    // itself waits, a minute, before trying again).
    let once = [("FAKE_VDDK_FAIL", "read:3")];
    let s = serve(
        &n,
        &world,
        &["retry"],
        &["--verbose", "retry-delay=60"],
        &once,
    );
    let mut client = command("nbdcopy")
        .arg(export_uri(&s.socket, ""))
        .arg(n.dir.join("out.raw"))
        .spawn()
        .expect("start nbdcopy");
    let deadline = Instant::now() + PATIENCE;
    while !s.log().contains("before retrying") {
        assert!(Instant::now() < deadline, "no retry wait:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    let (status, log) = s.stop("TERM");
    let took = asked.elapsed();
    assert!(status.success(), "{status}:\n{log}");
    // The bound is the server's shutdown grace (5 s) and the disk's close,
    // far below the minute the filter was waiting.
    assert!(took < Duration::from_secs(15), "exit took {took:?}:\n{log}");
    assert!(
        log.contains("the server is stopping; not retrying"),
        "{log}"
    );
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn rate_holds_the_bandwidth_virt_v2v_asks_for() {
    let n = AsNbdkit::install("callers-rate");
    // 4 MiB of data at rate=10M (10 x 2^20 bits/s, as nbdkit reads it):
    // 3.2 s once the bucket is empty. It fills while the server is idle
    // (up to `burstiness` seconds' worth), so a first copy drains it and
    // the second one is measured.
    let world = World::with_layout(&n.dir, &["slow/slow.vmdk"], 4 << 20, &[(0, 4 << 20)], &[]);
    let s = serve(&n, &world, &["rate", "retry"], &["rate=10M"], &[]);
    let first = copy(&s.socket, &n.dir).unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    assert_same("rate-limited copy", &read(&first), &world.disks[0].bytes);
    let t = Instant::now();
    copy(&s.socket, &n.dir).unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    let took = t.elapsed().as_secs_f64();
    let measured = (4u64 << 20) as f64 * 8.0 / took;
    let asked = (10u64 << 20) as f64;
    assert!(
        (measured / asked - 1.0).abs() <= 0.15,
        "rate=10M moved {measured:.0} bits/s ({took:.2} s for 4 MiB)"
    );
    s.stop_clean("TERM");
}

#[test]
fn blocksize_serves_large_and_unaligned_requests() {
    let n = AsNbdkit::install("callers-blocksize");
    let world = World::with_layout(&n.dir, &["big/big.vmdk"], 40 << 20, &[(0, 36 << 20)], &[]);
    let want = &world.disks[0].bytes;
    // VDDK refuses requests over 2 MiB here, as NFC servers do.
    let s = serve(
        &n,
        &world,
        &["blocksize", "retry"],
        &["minblock=512", "maxdata=2M"],
        &[("FAKE_VDDK_MAX_REQUEST", "2097152")],
    );
    let got = nbdsh(
        &s.socket,
        "h.connect_unix(sock)\n\
         big = h.pread(32 << 20, 1 << 20)\n\
         small = h.pread(100, 7)\n\
         print(h.get_block_size(nbd.SIZE_MINIMUM))\n\
         import hashlib\n\
         print(hashlib.sha256(big).hexdigest())\n\
         print(small.hex())\n",
    );
    let lines: Vec<&str> = got.lines().collect();
    // Whatever the client's alignment, it is served (as behind nbdkit's
    // blocksize filter, which advertises 1 and aligns requests itself).
    assert_eq!(lines[0], "1");
    let big = &want[1 << 20..33 << 20];
    let sha = command("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(big)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    let sha = String::from_utf8_lossy(&sha.stdout);
    assert_eq!(lines[1], sha.split_whitespace().next().unwrap_or(""));
    let small: String = want[7..107].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(lines[2], small);
    s.stop_clean("TERM");
}

#[test]
fn noextents_reports_the_whole_disk_as_data() {
    let n = AsNbdkit::install("callers-noextents");
    let world = World::new(&n.dir, &["web/web.vmdk"], 12);
    let s = serve(&n, &world, &["noextents", "retry"], &[], &[]);
    let map = nbdinfo_map(&export_uri(&s.socket, ""));
    assert_eq!(map, vec![(0, 12 << 20, 0)], "{map:?}");
    s.stop_clean("TERM");

    // Without it, the holes show.
    let s = serve(&n, &world, &["retry"], &[], &[]);
    let map = nbdinfo_map(&export_uri(&s.socket, ""));
    assert!(map.iter().any(|&(_, _, t)| t == 3), "{map:?}");
    s.stop_clean("TERM");
}

/// Writes through a host that drops every connection after 1 MiB: under
/// retry, every acknowledged write is on the disk (compared by qemu-img
/// after the server has closed it).
#[test]
fn writes_survive_lost_connections_under_retry() {
    let n = AsNbdkit::install("callers-retry-writes");
    let world = World::with_layout(&n.dir, &["w/w.vmdk"], 6 << 20, &[], &[]);
    let src = n.dir.join("src.raw");
    std::fs::write(&src, vddk_tests::images::noise(6 << 20, 23)).expect("write");
    let sock = n.dir.join("nbd.sock");
    let pid = n.dir.join("nbd.pid");
    let mut a = args(&["--foreground", "-U"]);
    a.push(sock.display().to_string());
    a.push("--pidfile".into());
    a.push(pid.display().to_string());
    a.extend(args(&["--filter=retry", "vddk"]));
    a.push(libdir());
    a.push(format!("server={ESX}"));
    a.push("user=root".into());
    a.push(world.password_param.clone());
    a.push(format!("thumbprint={ESX_TP}"));
    a.extend(args(&["vm=moref=42", "retry-delay=0.1"]));
    a.push(format!("file={}", world.disks[0].name));
    let mut env = world.env();
    env.push(("FAKE_VDDK_DROP_AFTER_BYTES", "1M"));
    let s = n.start(&a, &env, &pid, &sock, PATIENCE);
    let o = command("nbdcopy")
        .arg(&src)
        .arg(export_uri(&sock, ""))
        .output()
        .expect("run nbdcopy");
    assert!(o.status.success(), "{o:?}\n{}", s.log());
    let log = s.stop_clean("TERM");
    assert!(log.matches("was lost").count() >= 4, "{log}");
    vddk_tests::images::assert_same_as_raw(&src, &world.disks[0].file);
}

/// A bad day at the host, all at once, scaled down: each NFC connection at
/// 80 Mbit/s, the host losing the connection that carries each next 3 MiB,
/// the vCenter-style session ending half a second in, and the host taking
/// two NFC connections where the server asks for three. Under retry the
/// copy ends byte-exact, unattended, with no error reaching the client.
#[test]
fn a_bad_day_at_the_host_is_survived_under_retry() {
    let n = AsNbdkit::install("callers-bad-day");
    let data = [
        (0, 6 << 20),
        (8 << 20, 8 << 20),
        (20 << 20, 4 << 20),
        (30 << 20, 2 << 20),
    ];
    let world = World::with_layout(&n.dir, &["web/web.vmdk"], 32 << 20, &data, &[]);
    let env = [
        ("FAKE_VDDK_BANDWIDTH", "80Mbit"),
        ("FAKE_VDDK_DROP_EVERY_BYTES", "3M"),
        ("FAKE_VDDK_SESSION_TTL_S", "0.5"),
        ("FAKE_VDDK_MAX_NFC_CONNECTIONS", "2"),
    ];
    let s = serve(
        &n,
        &world,
        &["retry", "cacheextents"],
        &["--verbose", "nfc-connections=3", "retry-delay=0.2"],
        &env,
    );
    let started = Instant::now();
    let out = copy(&s.socket, &n.dir).unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    let took = started.elapsed();
    assert_same(
        "copied through a bad day",
        &read(&out),
        &world.disks[0].bytes,
    );
    let log = s.stop_clean("INT");
    assert!(log.contains("the host refused NFC connection 3"), "{log}");
    let reconnected = log.matches("reconnected").count();
    assert!(reconnected >= 4, "{reconnected} reconnections:\n{log}");
    assert!(
        took > Duration::from_millis(500),
        "the session must end during the copy: it took {took:?}"
    );
}
