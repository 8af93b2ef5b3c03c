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
/// (`monolithicSparse`, `monolithicFlat`, `streamOptimized`, ...), which
/// may carry more of qemu's vmdk options after a comma
/// (`monolithicSparse,adapter_type=lsilogic`).
pub fn vmdk_from_raw(raw: &Path, vmdk: &Path, subformat: &str) {
    let opt = format!("subformat={subformat}");
    run(
        "qemu-img",
        [
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &opt,
            s(raw),
            s(vmdk),
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

/// A VMDK of qemu's `subformat` (with more options after a comma, as for
/// [`vmdk_from_raw`]) and `size` bytes made by `qemu-img create` (its
/// directory too), then `writes` of (offset, length, byte) made by
/// `qemu-io`. Returns the path.
pub fn make_vmdk(path: &Path, subformat: &str, size: u64, writes: &[(u64, u64, u8)]) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the disk's directory");
    }
    let opt = format!("subformat={subformat}");
    let size = size.to_string();
    run(
        "qemu-img",
        ["create", "-q", "-f", "vmdk", "-o", &opt, s(path), &size],
    );
    qemu_write(path, writes);
    path.to_path_buf()
}

/// `qemu-io` writes of (offset, length, byte) to the VMDK at `path`, in
/// one run.
pub fn qemu_write(path: &Path, writes: &[(u64, u64, u8)]) {
    if writes.is_empty() {
        return;
    }
    let mut args = vec!["-f".to_string(), "vmdk".to_string()];
    for (offset, len, byte) in writes {
        args.push("-c".into());
        args.push(format!("write -q -P {byte} {offset} {len}"));
    }
    args.push(s(path).to_string());
    run("qemu-io", &args);
}

/// `qemu-img create` of the VMDK `child` over `parent`, a file name that
/// qemu resolves from the child's directory.
pub fn vmdk_child(parent: &str, child: &Path) {
    run(
        "qemu-img",
        [
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            parent,
            "-F",
            "vmdk",
            s(child),
        ],
    );
}

/// `qemu-img convert` of `image` to the raw file `raw`.
pub fn convert_to_raw(image: &Path, raw: &Path) {
    run("qemu-img", ["convert", "-O", "raw", s(image), s(raw)]);
}

/// What qemu-img reads from an image, as raw bytes.
pub fn qemu_raw(image: &Path) -> Vec<u8> {
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("disk");
    let out = image.with_file_name(format!("{name}.oracle-{}.raw", std::process::id()));
    convert_to_raw(image, &out);
    let data = std::fs::read(&out).expect("read qemu's raw conversion");
    let _ = std::fs::remove_file(&out);
    data
}

/// Asserts that `qemu-img check` finds no errors in `image`.
pub fn qemu_check(image: &Path) {
    run("qemu-img", ["check", s(image)]);
}

/// Asserts that qemu-img sees the same bytes in `raw` and `image`, and
/// that `image` passes `qemu-img check` when it is a VMDK.
pub fn assert_same_as_raw(raw: &Path, image: &Path) {
    run("qemu-img", ["compare", "-f", "raw", s(raw), s(image)]);
    if image.extension().is_some_and(|e| e == "vmdk") {
        qemu_check(image);
    }
}

/// Whether two files hold the same bytes.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).expect("read the first file")
        == std::fs::read(b).expect("read the second file")
}

/// Asserts two byte strings are equal, naming the first difference (with
/// its sector) rather than printing both.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i} (sector {}): got {:#04x}, want {:#04x}",
            i / 512,
            got[i],
            want[i]
        );
    }
}

/// The data extents `qemu-img map` reports, as merged `(offset, length)`
/// byte ranges.
pub fn qemu_data_extents(image: &Path) -> Vec<(u64, u64)> {
    let json = run("qemu-img", ["map", "--output=json", s(image)]);
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

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// `len` bytes of [`Rng`] output for `seed`: data without holes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    Rng::new(seed).fill(&mut data);
    data
}
