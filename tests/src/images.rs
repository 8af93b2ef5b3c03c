//! Test images: deterministic data with holes, VMDKs made by qemu-img, and
//! qemu-img's view of a disk as the oracle.

use std::path::{Path, PathBuf};

use crate::cmd::run;

/// `len` bytes of a deterministic pattern for `seed`: data in some 64 KiB
/// grains, zeroes (holes, once converted) in about one grain in three.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (i, grain) in data.chunks_mut(64 * 1024).enumerate() {
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
    data
}

/// Writes a raw image of `sectors` sectors of [`pattern`] to `path`.
pub fn pattern_raw(path: &Path, sectors: u64, seed: u64) -> Vec<u8> {
    let data = pattern((sectors * 512) as usize, seed);
    std::fs::write(path, &data).expect("write raw image");
    data
}

/// Converts a raw image to a VMDK of qemu's `subformat`
/// (`monolithicSparse`, `monolithicFlat`, `streamOptimized`, ...).
pub fn vmdk_from_raw(raw: &Path, vmdk: &Path, subformat: &str) {
    run(
        "qemu-img",
        [
            "convert".as_ref(),
            "-f".as_ref(),
            "raw".as_ref(),
            "-O".as_ref(),
            "vmdk".as_ref(),
            "-o".as_ref(),
            format!("subformat={subformat}").as_ref(),
            raw.as_os_str(),
            vmdk.as_os_str(),
        ],
    );
}

/// A scratch directory with a raw image of [`pattern`] and its VMDK of
/// `subformat`: (directory, VMDK path, the bytes).
pub fn vmdk_image(
    name: &str,
    sectors: u64,
    seed: u64,
    subformat: &str,
) -> (PathBuf, PathBuf, Vec<u8>) {
    let dir = crate::scratch_dir(name);
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    let bytes = pattern_raw(&raw, sectors, seed);
    vmdk_from_raw(&raw, &vmdk, subformat);
    (dir, vmdk, bytes)
}

/// What qemu-img reads from an image, as raw bytes.
pub fn qemu_raw(image: &Path) -> Vec<u8> {
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("disk");
    let out = image.with_file_name(format!("{name}.oracle-{}.raw", std::process::id()));
    run(
        "qemu-img",
        [
            "convert".as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            image.as_os_str(),
            out.as_os_str(),
        ],
    );
    let data = std::fs::read(&out).expect("read qemu's raw conversion");
    let _ = std::fs::remove_file(&out);
    data
}

/// Asserts that qemu-img sees the same bytes in `raw` and `image`, and
/// that `image` passes `qemu-img check` when it is a VMDK.
pub fn assert_same_as_raw(raw: &Path, image: &Path) {
    run(
        "qemu-img",
        [
            "compare".as_ref(),
            "-f".as_ref(),
            "raw".as_ref(),
            raw.as_os_str(),
            image.as_os_str(),
        ],
    );
    if image.extension().is_some_and(|e| e == "vmdk") {
        run("qemu-img", ["check".as_ref(), image.as_os_str()]);
    }
}

/// The data extents `qemu-img map` reports, as merged `(offset, length)`
/// byte ranges.
pub fn qemu_data_extents(image: &Path) -> Vec<(u64, u64)> {
    let json = run(
        "qemu-img",
        ["map".as_ref(), "--output=json".as_ref(), image.as_os_str()],
    );
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
        let (start, len) = (num(entry, "start"), num(entry, "length"));
        match out.last_mut() {
            Some(last) if last.0 + last.1 == start => last.1 += len,
            _ => out.push((start, len)),
        }
    }
    out
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
