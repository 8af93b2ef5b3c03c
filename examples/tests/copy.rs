//! `vddk-copy` against the fake VDDK: output compared with
//! `qemu-img convert`, holes, only allocated blocks read, resume after a
//! fault and after a kill, checksums against `sha256sum`, the reverse
//! copy checked with `qemu-img compare`, and a remote source.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use vddk_tests::cmd::output;
use vddk_tests::images::{assert_same_as_raw, convert_to_raw, make_vmdk, same_bytes};
use vddk_tests::{libdir_param, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vddk-copy");
const MIB: u64 = 1 << 20;

/// Data at 1M (3 MiB), at 20M (512 KiB) and in the last 64 KiB.
fn source(dir: &Path, size: u64) -> std::path::PathBuf {
    make_vmdk(
        &dir.join("src.vmdk"),
        "monolithicSparse",
        size,
        &[
            (MIB, 3 * MIB, 0xab),
            (20 * MIB, MIB / 2, 0x11),
            (size - 65536, 65536, 0x5a),
        ],
    )
}

fn state_done(state: &Path) -> u64 {
    let text = std::fs::read_to_string(state).expect("state file");
    text.lines()
        .find_map(|l| l.strip_prefix("done="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no done= in {text}"))
}

#[test]
fn copy_matches_qemu_img_and_reads_only_allocated_blocks() {
    let dir = scratch_dir("ex-copy");
    let size = 32 * MIB;
    let src = source(&dir, size);
    let expected = dir.join("expected.raw");
    convert_to_raw(&src, &expected);
    let out = dir.join("out.raw");
    let stats = dir.join("stats");
    let text = ok(example(BIN)
        .env("FAKE_VDDK_STATS", &stats)
        .arg(libdir_param())
        .arg(&src)
        .args(["--output", out.to_str().unwrap(), "--checksum", "sha256"]));
    assert!(
        same_bytes(&out, &expected),
        "output differs from qemu-img convert"
    );
    assert_eq!(field(&text, "sha256"), sha256sum(&out));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    // Holes stay holes: only the written ranges take space.
    let data = 3 * MIB + MIB / 2 + 65536;
    let used = allocated_bytes(&out);
    assert!(used < size / 4, "output uses {used} bytes of {size}");
    // Only allocated grains were read (grains are 64 KiB, so the data
    // ranges above are read exactly).
    assert_eq!(stats_bytes(&stats, "Read"), data);
    assert!(
        !dir.join("out.raw.vddk-copy-state").exists(),
        "state removed after success"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failed_copy_resumes_from_its_state_file() {
    let dir = scratch_dir("ex-copy-fault");
    let size = 24 * MIB;
    let src = source(&dir, size);
    let expected = dir.join("expected.raw");
    convert_to_raw(&src, &expected);
    let out = dir.join("out.raw");
    let state = dir.join("out.raw.vddk-copy-state");
    let args = |c: &mut std::process::Command| {
        c.arg(libdir_param()).arg(&src).args([
            "-o",
            out.to_str().unwrap(),
            "--request-size",
            "256K",
            "--queue-depth",
            "4",
        ]);
    };
    // The 6th read fails: five pieces (1 MiB hole, then 5 x 256 KiB) are done.
    let mut c = example(BIN);
    args(&mut c);
    let err = fails(c.env("FAKE_VDDK_FAIL", "read:6"), 1);
    assert!(err.contains("--resume"), "{err}");
    let done = state_done(&state);
    assert_eq!(done, 2 * MIB + MIB / 4, "{err}");

    let stats = dir.join("stats");
    let mut c = example(BIN);
    args(&mut c);
    let text = ok(c
        .env("FAKE_VDDK_STATS", &stats)
        .args(["--resume", "--checksum", "sha256"]));
    assert!(text.contains(&format!("resumed at byte {done}")), "{text}");
    assert!(
        same_bytes(&out, &expected),
        "resumed output differs from qemu-img convert"
    );
    assert_eq!(field(&text, "sha256"), sha256sum(&expected));
    // The second run read only what the first had not.
    let data = 3 * MIB + MIB / 2 + 65536;
    assert_eq!(stats_bytes(&stats, "Read"), data - (done - MIB));
    assert!(!state.exists());

    // Nothing left to resume.
    let mut c = example(BIN);
    args(&mut c);
    let err = fails(c.arg("--resume"), 1);
    assert!(err.contains("without --resume"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_copy_resumes() {
    let dir = scratch_dir("ex-copy-kill");
    let size = 16 * MIB;
    let src = make_vmdk(
        &dir.join("src.vmdk"),
        "monolithicSparse",
        size,
        &[(0, 12 * MIB, 0x77)],
    );
    let expected = dir.join("expected.raw");
    convert_to_raw(&src, &expected);
    let out = dir.join("out.raw");
    let state = dir.join("out.raw.vddk-copy-state");
    // 20 ms per async request, two at a time, 64 KiB each: about two seconds.
    let mut child = example(BIN)
        .env("FAKE_VDDK_ASYNC_LATENCY_US", "20000")
        .arg(libdir_param())
        .arg(&src)
        .arg("io=pipelined")
        .args([
            "-o",
            out.to_str().unwrap(),
            "--request-size",
            "64K",
            "--queue-depth",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(state.exists() && state_done(&state) > 0) {
        assert!(Instant::now() < deadline, "no progress recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = state_done(&state);
    assert!(
        done > 0 && done < 12 * MIB,
        "killed too late to test resume: {done}"
    );
    let text = ok(example(BIN).arg(libdir_param()).arg(&src).args([
        "-o",
        out.to_str().unwrap(),
        "--resume",
    ]));
    assert!(text.contains("resumed at byte"), "{text}");
    assert!(
        same_bytes(&out, &expected),
        "output after kill and resume differs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_from_offset_leaves_the_prefix_alone() {
    let dir = scratch_dir("ex-copy-offset");
    let size = 8 * MIB;
    let src = make_vmdk(
        &dir.join("src.vmdk"),
        "monolithicSparse",
        size,
        &[(0, size, 0x42)],
    );
    let out = dir.join("out.raw");
    // A file whose first 4 MiB are "already copied" (marked 0xee) and
    // whose rest is stale garbage.
    std::fs::write(&out, vec![0xeeu8; size as usize]).unwrap();
    ok(example(BIN).arg(libdir_param()).arg(&src).args([
        "-o",
        out.to_str().unwrap(),
        "--resume-from",
        "4M",
    ]));
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        bytes[..4 << 20].iter().all(|b| *b == 0xee),
        "prefix rewritten"
    );
    assert!(
        bytes[4 << 20..].iter().all(|b| *b == 0x42),
        "tail not copied"
    );
    let err = fails(
        example(BIN).arg(libdir_param()).arg(&src).args([
            "-o",
            out.to_str().unwrap(),
            "--resume-from",
            "1000",
        ]),
        1,
    );
    assert!(err.contains("multiple of 512"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn raw_image_into_a_disk() {
    let dir = scratch_dir("ex-copy-reverse");
    let size = 8 * MIB;
    // A raw image: zeroes but for two patterns (one ending mid-sector).
    let mut raw = vec![0u8; size as usize];
    raw[MIB as usize..2 * MIB as usize].fill(0x3c);
    raw[5 * MIB as usize + 100..5 * MIB as usize + 700].fill(0xc3);
    let raw_path = dir.join("in.raw");
    std::fs::write(&raw_path, &raw).unwrap();
    // The target already holds data everywhere: zeroes must overwrite it.
    let target = make_vmdk(
        &dir.join("t.vmdk"),
        "monolithicSparse",
        size,
        &[(0, size, 0xff)],
    );
    // Stopped by the fourth write (1 MiB each), then resumed.
    let err = fails(
        example(BIN)
            .env("FAKE_VDDK_FAIL", "write:4")
            .arg(libdir_param())
            .arg(&target)
            .args(["--from-raw", raw_path.to_str().unwrap()]),
        1,
    );
    assert!(err.contains("--resume-from 3145728"), "{err}");
    let text = ok(example(BIN)
        .arg(libdir_param())
        .arg(&target)
        .args([
            "--from-raw",
            raw_path.to_str().unwrap(),
            "--checksum",
            "sha256",
        ])
        .arg("--resume"));
    assert!(text.contains("resumed at byte 3145728"), "{text}");
    assert_eq!(field(&text, "sha256"), sha256sum(&raw_path));
    assert_same_as_raw(&raw_path, &target);

    // Into a fresh sparse disk, zero blocks are skipped.
    let fresh = make_vmdk(&dir.join("fresh.vmdk"), "monolithicSparse", size, &[]);
    let text = ok(example(BIN).arg(libdir_param()).arg(&fresh).args([
        "--from-raw",
        raw_path.to_str().unwrap(),
        "--request-size",
        "64K",
    ]));
    assert!(
        text.contains(&format!("{} bytes transferred", MIB + 65536)),
        "{text}"
    );
    assert_same_as_raw(&raw_path, &fresh);

    // A raw image larger than the disk is refused before anything is written.
    let small = make_vmdk(&dir.join("small.vmdk"), "monolithicSparse", MIB, &[]);
    let err = fails(
        example(BIN)
            .arg(libdir_param())
            .arg(&small)
            .args(["--from-raw", raw_path.to_str().unwrap()]),
        1,
    );
    assert!(err.contains("larger than the disk"), "{err}");
    assert!(!err.contains("--resume"), "nothing to resume: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn remote_disk_to_raw() {
    let dir = scratch_dir("ex-copy-remote");
    let (inv, thumb) = inventory(&dir);
    let disk = make_vmdk(
        &dir.join("ds1/web").join("web.vmdk"),
        "monolithicSparse",
        4 * MIB,
        &[(MIB, MIB, 0x99)],
    );
    let expected = dir.join("expected.raw");
    convert_to_raw(&disk, &expected);
    let out = dir.join("out.raw");
    ok(example(BIN)
        .env("FAKE_VDDK_INVENTORY", &inv)
        .args(remote_params(thumb))
        .args(["-o", out.to_str().unwrap()]));
    assert!(same_bytes(&out, &expected));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host drops every connection after 1 MiB: the copy reconnects by
/// itself, finishes byte-exact and says how often it had to.
#[test]
fn remote_copy_survives_lost_connections() {
    let dir = scratch_dir("ex-copy-drops");
    let (inv, thumb) = inventory(&dir);
    let disk = make_vmdk(
        &dir.join("ds1/web").join("web.vmdk"),
        "monolithicSparse",
        6 * MIB,
        &[(0, 5 * MIB, 0x5a)],
    );
    let expected = dir.join("expected.raw");
    convert_to_raw(&disk, &expected);
    let out = dir.join("out.raw");
    let report = ok(example(BIN)
        .env("FAKE_VDDK_INVENTORY", &inv)
        .env("FAKE_VDDK_DROP_AFTER_BYTES", "1M")
        .args(remote_params(thumb))
        .args(["-o", out.to_str().unwrap()]));
    assert!(same_bytes(&out, &expected));
    assert!(
        report.contains("the connection was lost and made again"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_mistakes() {
    let err = fails(example(BIN).arg(libdir_param()).arg("/x.vmdk"), 1);
    assert!(
        err.contains("--output FILE") && err.contains("--from-raw FILE"),
        "{err}"
    );
    for (args, want) in [
        (["--from-raw", "b"], "opposite directions"),
        (["--checksum", "md5"], "only sha256"),
        (["--request-size", "1000"], "multiple of 512"),
    ] {
        let err = fails(
            example(BIN)
                .arg(libdir_param())
                .arg("/x.vmdk")
                .args(["-o", "a"])
                .args(args),
            1,
        );
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let help = ok(example(BIN).arg("-h"));
    assert!(
        help.contains("--resume-from <BYTES>") && help.contains("password="),
        "{help}"
    );
}

#[test]
fn progress_bar_on_a_terminal_plain_lines_elsewhere() {
    let dir = scratch_dir("ex-copy-progress");
    let src = make_vmdk(
        &dir.join("src.vmdk"),
        "monolithicSparse",
        8 * MIB,
        &[(0, 8 * MIB, 0x61)],
    );
    let out = dir.join("out.raw");
    let args = format!(
        "{} {} {} -o {} --request-size 64K --queue-depth 1",
        BIN,
        libdir_param(),
        src.display(),
        out.display()
    );
    // Not a terminal: plain lines, one per tenth of the copy, with
    // percentage, bytes, rate and time left, and no terminal controls.
    let o = output(
        example(BIN)
            .env("FAKE_VDDK_ASYNC_LATENCY_US", "2000")
            .args(args.split(' ').skip(1)),
    );
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 10, "{err}");
    assert!(
        lines.iter().all(|l| l.starts_with("progress: ")
            && l.contains("% ")
            && l.contains(" of 8.00 MiB")
            && l.contains("/s")
            && l.contains("ETA ")),
        "{err}"
    );
    assert!(lines[0].starts_with("progress: 10% "), "{err}");
    assert!(
        lines[9].starts_with("progress: 100% 8.00 MiB of 8.00 MiB"),
        "{err}"
    );
    // --no-progress: nothing on stderr.
    let o = output(
        example(BIN)
            .env("FAKE_VDDK_ASYNC_LATENCY_US", "2000")
            .args(args.split(' ').skip(1))
            .arg("--no-progress"),
    );
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    // On a terminal (script(1) gives it one): a bar with rate and ETA.
    let log = dir.join("tty.log");
    let typescript = ok(example("script")
        .env("FAKE_VDDK_ASYNC_LATENCY_US", "2000")
        .args(["-qefc", &args, log.to_str().unwrap()]));
    assert!(typescript.contains("ETA "), "{typescript}");
    assert!(typescript.contains("/s"), "{typescript}");
    assert!(typescript.contains("%"), "{typescript}");
    assert!(!typescript.contains("progress: "), "{typescript}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad day at the host, all at once, scaled down: 40 Mbit/s, the
/// connection lost each time the host has carried another MiB, the
/// session ending within the copy, and the host taking one NFC connection
/// (so no standby handle). The copy ends byte-exact, unattended.
#[test]
fn remote_copy_survives_a_bad_day() {
    let dir = scratch_dir("ex-copy-bad-day");
    let (inv, thumb) = inventory(&dir);
    let disk = make_vmdk(
        &dir.join("ds1/web").join("web.vmdk"),
        "monolithicSparse",
        8 * MIB,
        &[(0, 3 * MIB, 0x5a), (4 * MIB, 3 * MIB, 0xa5)],
    );
    let expected = dir.join("expected.raw");
    convert_to_raw(&disk, &expected);
    let out = dir.join("out.raw");
    let started = std::time::Instant::now();
    let report = ok(example(BIN)
        .env("FAKE_VDDK_INVENTORY", &inv)
        .env("FAKE_VDDK_BANDWIDTH", "40Mbit")
        .env("FAKE_VDDK_DROP_EVERY_BYTES", "1M")
        .env("FAKE_VDDK_SESSION_TTL_S", "0.4")
        .env("FAKE_VDDK_MAX_NFC_CONNECTIONS", "1")
        .args(remote_params(thumb))
        .args(["-o", out.to_str().unwrap()]));
    assert!(started.elapsed() > std::time::Duration::from_millis(400));
    assert!(same_bytes(&out, &expected));
    assert!(
        report.contains("the connection was lost and made again"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
