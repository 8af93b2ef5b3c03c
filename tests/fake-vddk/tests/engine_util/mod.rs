//! Shared helpers of the engine tests: scratch directories, qemu-img as the
//! oracle, and reproducible test data with holes.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fake_vddk::vmdk::VmdkDisk;

pub const SECTOR: u64 = 512;

/// A fresh, empty directory `target/test-scratch/<name>`.
pub fn scratch(name: &str) -> PathBuf {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-scratch/fake-vddk-engine");
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs a tool and returns its stdout; fails the test with its stderr.
pub fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a tool and returns (exit code, stdout + stderr).
pub fn run_status(tool: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `qemu-img convert -O raw` of `img`, read back.
pub fn qemu_raw(img: &Path) -> Vec<u8> {
    let raw = img.with_extension("oracle.raw");
    run("qemu-img", &["convert", "-O", "raw", s(img), s(&raw)]);
    let data = std::fs::read(&raw).expect("read oracle raw");
    let _ = std::fs::remove_file(&raw);
    data
}

/// `qemu-img convert` of the raw file `raw` into the VMDK `img` of
/// subformat `sub` (qemu's names: "monolithicSparse", "monolithicFlat"...).
pub fn vmdk_from_raw(raw: &Path, img: &Path, sub: &str) {
    let sub = format!("subformat={sub}");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &sub,
            s(raw),
            s(img),
        ],
    );
}

/// `qemu-img create` of an empty VMDK `img` of subformat `sub` and `size`
/// (qemu's syntax: "1M", "6G").
pub fn qemu_vmdk_new(img: &Path, sub: &str, size: &str) {
    let sub = format!("subformat={sub}");
    run(
        "qemu-img",
        &["create", "-q", "-f", "vmdk", "-o", &sub, s(img), size],
    );
}

/// `qemu-img create` of the VMDK `child` over `parent`, a file name that
/// qemu resolves from the child's directory.
pub fn qemu_vmdk_child(parent: &str, child: &Path) {
    run(
        "qemu-img",
        &[
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

/// Asserts `qemu-img check` finds no errors in `img`.
pub fn qemu_check(img: &Path) {
    let (code, text) = run_status("qemu-img", &["check", s(img)]);
    assert_eq!(code, 0, "qemu-img check {} failed:\n{text}", img.display());
}

/// Asserts `qemu-img compare` calls `a` (any format) and `raw` identical.
pub fn qemu_compare(img: &Path, raw: &Path) {
    let (code, text) = run_status(
        "qemu-img",
        &["compare", "-f", "vmdk", "-F", "raw", s(img), s(raw)],
    );
    assert_eq!(
        code,
        0,
        "qemu-img compare {} {}:\n{text}",
        img.display(),
        raw.display()
    );
}

/// Reads the whole disk through the engine, in 1 MiB requests.
pub fn engine_read_all(disk: &mut VmdkDisk) -> Vec<u8> {
    let cap = disk.capacity() * SECTOR;
    let mut out = vec![0u8; cap as usize];
    for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
        disk.read(i as u64 * 2048, chunk).expect("engine read");
    }
    out
}

/// Finds the first differing byte, for a readable failure.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i} (sector {}): engine {:#04x}, oracle {:#04x}",
            i / 512,
            got[i],
            want[i]
        );
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Writes a raw image of `bytes` with, per 64 KiB block, a hole, random
/// data, or a few random sectors in zeroes; returns its contents.
pub fn make_raw(path: &Path, bytes: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut data = vec![0u8; bytes as usize];
    for block in data.chunks_mut(64 * 1024) {
        match rng.below(5) {
            0 | 1 => {}
            2 | 3 => rng.fill(block),
            _ => {
                let sectors = block.len() / 512;
                for _ in 0..3 {
                    let at = rng.below(sectors as u64) as usize * 512;
                    rng.fill(&mut block[at..at + 512]);
                }
            }
        }
    }
    write_sparse(path, &data);
    data
}

/// Writes `data` to a new file, leaving all-zero 64 KiB blocks as holes.
pub fn write_sparse(path: &Path, data: &[u8]) {
    let f = File::create(path).expect("create raw");
    f.set_len(data.len() as u64).expect("size raw");
    for (i, block) in data.chunks(64 * 1024).enumerate() {
        if block.iter().any(|&b| b != 0) {
            f.write_all_at(block, i as u64 * 64 * 1024)
                .expect("write raw");
        }
    }
}

/// Writes `data` at byte `offset` of an existing raw file.
pub fn patch_raw(path: &Path, offset: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).expect("open raw");
    f.write_all_at(data, offset).expect("patch raw");
}

/// Allocated ranges per `qemu-img map --output=json`, in sectors, rounded
/// out to `chunk` sectors and merged: the shape VDDK reports.
pub fn qemu_allocated(img: &Path, chunk: u64) -> Vec<(u64, u64)> {
    let json = run("qemu-img", &["map", "--output=json", s(img)]);
    let mut ranges = Vec::new();
    for line in json.lines() {
        let field = |name: &str| -> Option<&str> {
            let at = line.find(&format!("\"{name}\":"))? + name.len() + 3;
            let rest = line[at..].trim_start();
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim())
        };
        if field("data") != Some("true") {
            continue;
        }
        let start: u64 = field("start")
            .and_then(|v| v.parse().ok())
            .expect("map start");
        let length: u64 = field("length")
            .and_then(|v| v.parse().ok())
            .expect("map length");
        let (s0, e0) = (start / SECTOR, (start + length).div_ceil(SECTOR));
        ranges.push((s0 / chunk * chunk, e0.div_ceil(chunk) * chunk));
    }
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(l) if a <= l.0 + l.1 => l.1 = l.1.max(b - l.0),
            _ => out.push((a, b - a)),
        }
    }
    out
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Asserts that every grain table of the hosted sparse file `path` equals
/// its redundant copy, and returns how many grains are allocated.
pub fn assert_redundant_tables_match(path: &Path) -> usize {
    let f = std::fs::read(path).expect("read sparse file");
    assert_eq!(&f[0..4], b"KDMV");
    let (capacity, grain) = (le64(&f, 12), le64(&f, 20));
    let per = u64::from(le32(&f, 44));
    let (rgd, gd) = (le64(&f, 48) as usize * 512, le64(&f, 56) as usize * 512);
    let entries = capacity.div_ceil(grain).div_ceil(per) as usize;
    let mut allocated = 0;
    for i in 0..entries {
        let (p, r) = (
            le32(&f, gd + 4 * i) as usize * 512,
            le32(&f, rgd + 4 * i) as usize * 512,
        );
        assert_eq!(p == 0, r == 0, "directory entry {i}: one table missing");
        if p == 0 {
            continue;
        }
        let len = per as usize * 4;
        assert_eq!(
            f[p..p + len],
            f[r..r + len],
            "grain table {i} differs from its redundant copy"
        );
        allocated += f[p..p + len]
            .chunks(4)
            .filter(|e| e != &[0, 0, 0, 0])
            .count();
    }
    allocated
}
