//! Shared by the `vddk_*` integration tests: library start-up against the
//! fake (strict mode), qemu-img helpers and test images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vddk::{Disk, InitOptions, Vddk};

/// The process's one `Vddk`, initialised against the fake in strict mode
/// with `env` set first (the fake reads its knobs at InitEx). Every test in
/// a binary must pass the same `env`.
pub fn vddk(env: &[(&str, &str)]) -> Vddk {
    static V: OnceLock<Vddk> = OnceLock::new();
    V.get_or_init(|| {
        let dir = vddk_tests::fake_libdir();
        // Set while every other test thread is blocked on this OnceLock.
        std::env::set_var("FAKE_VDDK_STRICT", "1");
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        Vddk::init(InitOptions::new().libdir(dir)).expect("initialise the fake VDDK")
    })
    .clone()
}

/// Runs a program, asserts success, returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A raw image of `sectors` sectors: data in some 64 KiB grains, zeros
/// (holes after conversion) in others, a deterministic pattern per seed.
pub fn pattern_raw(path: &Path, sectors: u64, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; (sectors * 512) as usize];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (i, grain) in data.chunks_mut(64 * 1024).enumerate() {
        // Roughly one grain in three stays zero.
        if (i as u64 + seed) % 3 == 1 {
            continue;
        }
        for b in grain.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    std::fs::write(path, &data).expect("write raw image");
    data
}

/// Converts a raw image to VMDK with qemu-img.
pub fn vmdk_from_raw(raw: &Path, vmdk: &Path, subformat: &str) {
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={subformat}"),
            s(raw),
            s(vmdk),
        ],
    );
}

/// What qemu-img reads from a disk, as raw bytes.
pub fn qemu_raw(vmdk: &Path, scratch: &Path) -> Vec<u8> {
    let out = scratch.join(format!(
        "{}.oracle.raw",
        vmdk.file_name().and_then(|n| n.to_str()).unwrap_or("disk")
    ));
    run("qemu-img", &["convert", "-O", "raw", s(vmdk), s(&out)]);
    std::fs::read(&out).expect("read qemu's raw conversion")
}

/// The whole disk read through VDDK, 1 MiB at a time.
pub fn read_all(disk: &Disk) -> Vec<u8> {
    let sectors = disk.info().expect("info").capacity_sectors;
    let mut out = vec![0u8; (sectors * 512) as usize];
    for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
        disk.read(i as u64 * 2048, chunk).expect("read");
    }
    out
}

/// Data extents (in sectors, merged) that `qemu-img map` reports.
pub fn qemu_data_extents(vmdk: &Path) -> Vec<(u64, u64)> {
    let json = run("qemu-img", &["map", "--output=json", s(vmdk)]);
    let num = |entry: &str, key: &str| -> u64 {
        let at = entry
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {entry}"));
        entry[at + key.len() + 3..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("number")
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    for entry in json.split('{').skip(1) {
        if !entry.contains("\"data\": true") {
            continue;
        }
        let (start, len) = (num(entry, "start") / 512, num(entry, "length") / 512);
        match out.last_mut() {
            Some(last) if last.0 + last.1 == start => last.1 += len,
            _ => out.push((start, len)),
        }
    }
    out
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    vddk_tests::scratch_dir(name)
}
