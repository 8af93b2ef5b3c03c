//! `io=`: how the binary calls VDDK. By default a local file is served
//! with synchronous calls from the connection threads and a remote disk
//! with async calls pipelined by a worker; both give the same bytes, and
//! the library's own counts (`FAKE_VDDK_STATS`) show which calls were made.
//! The fake runs in strict mode, so two calls overlapping on one handle
//! would abort the server.

mod nbd_common;

use std::path::{Path, PathBuf};

use nbd_common::vddk_nbd;
use vddk_tests::cmd::{run_cmd, stdout};
use vddk_tests::images::{assert_same_as_raw, qemu_check, vmdk_from_raw};
use vddk_tests::inventory::one_vm;
use vddk_tests::scratch_dir;
use vddk_tests::stats::FakeStats;

const THUMBPRINT: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
const SIZE: u64 = 32 << 20;

/// SIZE bytes of varied data in a raw file.
fn source(dir: &Path) -> PathBuf {
    let raw = dir.join("src.raw");
    let mut data = Vec::with_capacity(SIZE as usize);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < SIZE as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    // A hole in the middle, so the copy has zeroes to skip too.
    data[8 << 20..12 << 20].fill(0);
    std::fs::write(&raw, data).expect("write the source");
    raw
}

/// Runs the server with `params` until `run` (a `--run` command) ends;
/// returns its stderr and the fake's call counts.
fn serve(dir: &Path, env: &[(&str, &str)], params: &[&str], run: &str) -> (String, FakeStats) {
    let stats = dir.join("fake.stats");
    let _ = std::fs::remove_file(&stats);
    let o = run_cmd(
        vddk_nbd()
            .env("FAKE_VDDK_STATS", &stats)
            .env("FAKE_VDDK_STRICT", "1")
            .envs(env.iter().copied())
            .args(["-v", "-U", "-", "--run", run, "vddk"])
            .arg(vddk_tests::libdir_param())
            .args(params),
    );
    (
        String::from_utf8_lossy(&o.stderr).into_owned(),
        FakeStats::read(&stats),
    )
}

#[test]
fn auto_is_direct_for_local_files_and_pipelined_for_remote_ones() {
    let dir = scratch_dir("io-auto");
    let raw = source(&dir);
    std::fs::create_dir_all(dir.join("ds1/web")).unwrap();
    let disk = dir.join("ds1/web/web.vmdk");
    vmdk_from_raw(&raw, &disk, "monolithicSparse");
    let out = dir.join("out.raw");
    let copy = format!("nbdcopy \"$uri\" {}", out.display());

    // Local: Read, never ReadAsync.
    let (log, calls) = serve(&dir, &[], &[&format!("file={}", disk.display())], &copy);
    assert!(
        log.contains("transport mode file: calls made by the serving threads"),
        "{log}"
    );
    assert!(calls.get("Read").calls > 0, "{}", calls.text);
    assert_eq!(calls.get("ReadAsync").calls, 0, "{}", calls.text);
    assert_same_as_raw(&raw, &out);
    std::fs::remove_file(&out).unwrap();

    // Remote (a simulated ESXi host): ReadAsync, never Read.
    let inv = one_vm(
        &dir,
        "esx1",
        &[("thumbprint", THUMBPRINT), ("user", "root:pw")],
    );
    let pw = dir.join("pw");
    std::fs::write(&pw, "pw").unwrap();
    let remote = [
        "server=esx1".to_owned(),
        "user=root".to_owned(),
        format!("password=+{}", pw.display()),
        format!("thumbprint={THUMBPRINT}"),
        "vm=moref=42".to_owned(),
        "file=[ds1] web/web.vmdk".to_owned(),
    ];
    let remote: Vec<&str> = remote.iter().map(String::as_str).collect();
    let inv_env = [("FAKE_VDDK_INVENTORY", inv.to_str().unwrap())];
    let (log, calls) = serve(&dir, &inv_env, &remote, &copy);
    assert!(
        log.contains("transport mode nbdssl: calls pipelined on a worker thread"),
        "{log}"
    );
    assert!(calls.get("ReadAsync").calls > 0, "{}", calls.text);
    assert_eq!(calls.get("Read").calls, 0, "{}", calls.text);
    assert_same_as_raw(&raw, &out);
    std::fs::remove_file(&out).unwrap();

    // Forced the other way round, each still gives the same bytes.
    let local_pipelined = [format!("file={}", disk.display()), "io=pipelined".into()];
    let local_pipelined: Vec<&str> = local_pipelined.iter().map(String::as_str).collect();
    let (_, calls) = serve(&dir, &[], &local_pipelined, &copy);
    assert!(calls.get("ReadAsync").calls > 0, "{}", calls.text);
    assert_same_as_raw(&raw, &out);
    std::fs::remove_file(&out).unwrap();
    let mut remote_direct = remote.clone();
    remote_direct.push("io=direct");
    let (_, calls) = serve(&dir, &inv_env, &remote_direct, &copy);
    assert!(calls.get("Read").calls > 0, "{}", calls.text);
    assert_eq!(calls.get("ReadAsync").calls, 0, "{}", calls.text);
    assert_same_as_raw(&raw, &out);
    std::fs::remove_dir_all(&dir).ok();
}

/// nbdcopy's four connections write at once into one direct handle, and
/// two libnbd connections write unaligned bytes into one shared sector:
/// nothing is lost or torn, and the disk checks clean.
#[test]
fn direct_writes_from_many_connections_are_all_kept() {
    let dir = scratch_dir("io-direct-writes");
    let raw = source(&dir);
    let disk = dir.join("new.vmdk");
    let params = [
        format!("file={}", disk.display()),
        "create=true".into(),
        format!("create-size={SIZE}"),
    ];
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    let copy = format!(
        "nbdcopy --connections=4 --requests=16 --request-size=65536 {} \"$uri\"",
        raw.display()
    );
    let (log, calls) = serve(&dir, &[], &params, &copy);
    assert!(log.contains("calls made by the serving threads"), "{log}");
    assert!(calls.get("Write").calls > 0, "{}", calls.text);
    assert_same_as_raw(&raw, &disk);

    // Two connections each write 2 bytes into each of 50 sectors, at
    // different places in the sector, both at once, one sector after
    // another: every write is a read-modify-write of a sector the other
    // connection writes at the same time, so without ordering one
    // connection's bytes would be lost under the other's. A millisecond per
    // VDDK call keeps both connections' requests waiting for the disk.
    let script = dir.join("rmw.py");
    std::fs::write(
        &script,
        r#"
import nbd, sys
hs = []
for _ in range(2):
    h = nbd.NBD()
    # The server advertises 512-byte blocks; these writes are smaller on
    # purpose.
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
    h.connect_uri(sys.argv[1])
    hs.append(h)
for i in range(50):
    for k, h in enumerate(hs):
        h.aio_pwrite(bytes([0xA0 + k, i]), 4096 + 512 * i + 100 * k)
    for h in hs:
        while h.aio_in_flight() > 0:
            h.poll(-1)
for h in hs:
    h.flush()
got = hs[0].pread(512 * 50, 4096)
lost = [(i, k) for i in range(50) for k in range(2)
        if got[512 * i + 100 * k:512 * i + 100 * k + 2] != bytes([0xA0 + k, i])]
assert not lost, lost
print("rmw ok")
"#,
    )
    .unwrap();
    let params = [format!("file={}", disk.display())];
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    let run = format!("/usr/bin/python3 {} \"$uri\"", script.display());
    // Not through `serve`: its `-v` logging spaces the requests out enough
    // that the race this looks for no longer happens without the lock.
    let o = run_cmd(
        vddk_nbd()
            .env("FAKE_VDDK_STRICT", "1")
            .env("FAKE_VDDK_LATENCY_US", "1000")
            .args(["-U", "-", "--run", &run, "vddk"])
            .arg(vddk_tests::libdir_param())
            .args(&params),
    );
    assert!(stdout(&o).contains("rmw ok"), "{o:?}");
    qemu_check(&disk);
    std::fs::remove_dir_all(&dir).ok();
}
