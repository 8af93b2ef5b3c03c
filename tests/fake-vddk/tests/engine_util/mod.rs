//! What the engine tests share beyond `vddk_tests`: reading a disk through
//! the engine, raw images with holes and patches, qemu's allocation map in
//! sectors, and a look at a sparse file's grain tables.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vddk_fake::vmdk::VmdkDisk;
use vddk_tests::images::Rng;

pub const SECTOR: u64 = 512;

/// Reads the whole disk through the engine, in 1 MiB requests.
pub fn engine_read_all(disk: &mut VmdkDisk) -> Vec<u8> {
    let cap = disk.capacity() * SECTOR;
    let mut out = vec![0u8; cap as usize];
    for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
        disk.read(i as u64 * 2048, chunk).expect("engine read");
    }
    out
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

/// Allocated ranges per `qemu-img map`, in sectors, rounded out to
/// `chunk` sectors and merged: the shape VDDK reports.
pub fn qemu_allocated(img: &Path, chunk: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, length) in vddk_tests::images::qemu_data_extents(img) {
        let (s0, e0) = (start / SECTOR, (start + length).div_ceil(SECTOR));
        let (a, b) = (s0 / chunk * chunk, e0.div_ceil(chunk) * chunk);
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
