//! Disks the engine creates and writes: `qemu-img check` must pass and
//! `qemu-img compare` must find them identical to the expected raw image.

mod engine_util;

use std::path::Path;

use engine_util::*;
use vddk_fake::vmdk::{self, Adapter, CreateParams, DiskType, VmdkDisk, VmdkError};
use vddk_tests::cmd::{run, status};
use vddk_tests::images::{
    assert_same, assert_same_as_raw, make_vmdk, qemu_check, qemu_raw, s, vmdk_child, vmdk_from_raw,
    Rng,
};
use vddk_tests::scratch_dir;

fn params(disk_type: DiskType, adapter: Adapter, capacity: u64) -> CreateParams {
    CreateParams {
        disk_type,
        adapter,
        hw_version: 7,
        capacity,
    }
}

/// Writes a mix of whole grains, partial grains, runs across grain
/// boundaries and the last (partial) grain, both to the disk and to the
/// expected raw image.
fn scribble(disk: &mut VmdkDisk, raw: &Path, seed: u64) {
    let cap = disk.capacity();
    let mut rng = Rng::new(seed);
    let mut writes = vec![
        (0u64, 128u64),
        // Whole grains written in one go, then a partial one.
        (384, 5 * 128 + 10),
        (130, 1),
        (250, 20),
        (cap - 1, 1),
        (cap - 130, 5),
    ];
    for _ in 0..20 {
        let len = 1 + rng.below(300);
        writes.push((rng.below(cap - len), len));
    }
    for (at, len) in writes {
        let mut buf = vec![0u8; (len * SECTOR) as usize];
        rng.fill(&mut buf);
        disk.write(at, &buf).expect("engine write");
        patch_raw(raw, at * SECTOR, &buf);
    }
    disk.flush().expect("flush");
}

fn create_write_check(disk_type: DiskType, adapter: Adapter, capacity: u64, qemu_reads_it: bool) {
    let dir = scratch_dir(&format!("create-{disk_type:?}"));
    let img = dir.join("new disk.vmdk");
    vmdk::create(&img, &params(disk_type, adapter, capacity)).expect("create");
    assert!(matches!(
        vmdk::create(&img, &params(disk_type, adapter, capacity)),
        Err(VmdkError::AlreadyExists(_))
    ));
    let raw = dir.join("expected.raw");
    write_sparse(&raw, &vec![0u8; (capacity * SECTOR) as usize]);

    let mut disk = VmdkDisk::open(&img, false, false).expect("open new disk");
    let info = disk.info();
    assert_eq!(info.capacity, capacity);
    assert_eq!(info.adapter, adapter);
    assert_eq!(info.num_links, 1);
    assert_eq!(
        info.physical_geometry,
        vmdk::default_geometry(capacity, adapter)
    );
    assert!(info.uuid.is_some_and(|u| u.len() == 47));
    assert_eq!(disk.metadata_get("virtualHWVersion").as_deref(), Some("7"));
    assert!(
        engine_read_all(&mut disk).iter().all(|&b| b == 0),
        "a new disk reads as zeroes"
    );
    scribble(&mut disk, &raw, capacity);
    let want = std::fs::read(&raw).expect("read expected");
    assert_same("engine read-back", &engine_read_all(&mut disk), &want);
    drop(disk);

    let sparse_files: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.starts_with(b"KDMV"))
                .unwrap_or(false)
        })
        .collect();
    if matches!(
        disk_type,
        DiskType::MonolithicSparse | DiskType::SplitSparse
    ) {
        assert!(!sparse_files.is_empty());
        let grains: usize = sparse_files
            .iter()
            .map(|p| assert_redundant_tables_match(p))
            .sum();
        assert!(grains > 10, "the writes allocated grains ({grains})");
    }
    let mut again = VmdkDisk::open(&img, true, false).expect("reopen");
    assert_same("engine after reopen", &engine_read_all(&mut again), &want);
    if qemu_reads_it {
        assert_same_as_raw(&raw, &img);
    }
}

/// 4 MiB + 3 sectors: the last grain is partial.
const ODD: u64 = 8192 + 3;

#[test]
fn monolithic_sparse_passes_qemu_check_and_compare() {
    create_write_check(DiskType::MonolithicSparse, Adapter::LsiLogic, ODD, true);
}

#[test]
fn monolithic_flat_passes_qemu_compare() {
    create_write_check(DiskType::MonolithicFlat, Adapter::Ide, ODD, true);
}

#[test]
fn split_sparse_passes_qemu_check_and_compare() {
    create_write_check(DiskType::SplitSparse, Adapter::BusLogic, ODD, true);
}

#[test]
fn split_flat_passes_qemu_compare() {
    create_write_check(DiskType::SplitFlat, Adapter::LsiLogic, ODD, true);
}

#[test]
fn vmfs_flat_passes_qemu_compare() {
    create_write_check(DiskType::VmfsFlat, Adapter::LsiLogic, ODD, true);
}

#[test]
fn vmfs_thin_reads_back() {
    create_write_check(DiskType::VmfsThin, Adapter::LsiLogic, ODD, false);
}

#[test]
fn refuses_what_it_cannot_create() {
    let dir = scratch_dir("create-refused");
    let img = dir.join("x.vmdk");
    assert!(matches!(
        vmdk::create(&img, &params(DiskType::StreamOptimized, Adapter::Ide, 2048)),
        Err(VmdkError::NotSupported(_))
    ));
    assert!(matches!(
        vmdk::create(
            &img,
            &params(DiskType::MonolithicSparse, Adapter::Unknown, 2048)
        ),
        Err(VmdkError::InvalidArg(_))
    ));
    assert!(matches!(
        vmdk::create(
            &dir.join("no/such/dir.vmdk"),
            &params(DiskType::MonolithicFlat, Adapter::Ide, 2048)
        ),
        Err(VmdkError::NotFound(_))
    ));
    assert!(!img.exists(), "failed creates leave nothing behind");
}

#[test]
fn split_types_split_at_2047_mib() {
    let dir = scratch_dir("create-split-big");
    let img = dir.join("big.vmdk");
    let cap = 4_192_256 * 2 + 2048;
    vmdk::create(&img, &params(DiskType::SplitFlat, Adapter::LsiLogic, cap)).expect("create");
    for f in ["big-f001.vmdk", "big-f002.vmdk", "big-f003.vmdk"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    // A write straddling the first extent boundary lands in both files.
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    disk.write(4_192_256 - 4, &data)
        .expect("write across extents");
    let mut back = vec![0u8; 4096];
    disk.read(4_192_256 - 4, &mut back).expect("read back");
    assert_eq!(back, data);
    drop(disk);
    let info = run("qemu-img", ["info", s(&img)]);
    assert!(
        info.contains(&format!("({} bytes)", cap * SECTOR)),
        "{info}"
    );
    let (code, text) = status(
        "qemu-io",
        [
            "-r",
            "-c",
            &format!("read -P 0 {} 2048", (4_192_256 + 4) * SECTOR),
            s(&img),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("Pattern verification failed"), "{text}");
}

#[test]
fn large_sparse_disk_writes_near_the_end() {
    let dir = scratch_dir("create-large");
    let img = dir.join("large.vmdk");
    let cap = 5 * 1024 * 1024 * 2 + 3; // 5 GiB + 3 sectors
    vmdk::create(
        &img,
        &params(DiskType::MonolithicSparse, Adapter::LsiLogic, cap),
    )
    .expect("create");
    let raw = dir.join("expected.raw");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(cap * SECTOR))
        .expect("sparse raw");
    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    let mut rng = Rng::new(77);
    for at in [cap - 200, 4 * 1024 * 1024 * 2 + 1, 2048] {
        let mut buf = vec![0u8; 100 * 512];
        rng.fill(&mut buf);
        disk.write(at, &buf).expect("write");
        patch_raw(&raw, at * SECTOR, &buf);
    }
    disk.flush().expect("flush");
    let alloc = disk.allocated(0, cap / 128 * 128, 128).expect("allocated");
    drop(disk);
    assert_same_as_raw(&raw, &img);
    let meta = std::fs::metadata(&img).expect("stat");
    assert!(
        meta.len() < 8 << 20,
        "the sparse file stays small: {}",
        meta.len()
    );
    // The unaligned tail is not queried, as VDDK callers must not.
    assert_eq!(
        alloc,
        qemu_allocated(&img, 128)
            .into_iter()
            .filter(|r| r.0 < cap / 128 * 128)
            .collect::<Vec<_>>()
    );
}

#[test]
fn writes_into_a_qemu_child_copy_on_write() {
    let dir = scratch_dir("cow");
    let raw = dir.join("expected.raw");
    let data = make_raw(&raw, 2 * 1024 * 1024, 21);
    let parent = dir.join("base.vmdk");
    vmdk_from_raw(&raw, &parent, "monolithicSparse");
    let child = dir.join("top.vmdk");
    vmdk_child("base.vmdk", &child);
    let parent_before = std::fs::read(&parent).expect("read parent");

    let mut disk = VmdkDisk::open(&child, false, false).expect("open child");
    // Partial grains: the rest of each grain must come from the parent.
    for (at, len) in [(10u64, 3u64), (1000, 200), (4095, 1)] {
        let buf = vec![0xc3u8; (len * SECTOR) as usize];
        disk.write(at, &buf).expect("write child");
        patch_raw(&raw, at * SECTOR, &buf);
    }
    let want = std::fs::read(&raw).expect("expected");
    assert_ne!(want, data);
    assert_same("chain after write", &engine_read_all(&mut disk), &want);
    drop(disk);
    assert_eq!(
        std::fs::read(&parent).expect("parent"),
        parent_before,
        "the parent is never written"
    );
    assert_same_as_raw(&raw, &child);
}

#[test]
fn read_only_and_range_errors() {
    let dir = scratch_dir("errors-rw");
    let img = dir.join("d.vmdk");
    vmdk::create(
        &img,
        &params(DiskType::MonolithicSparse, Adapter::Ide, 2048),
    )
    .expect("create");
    let mut ro = VmdkDisk::open(&img, true, false).expect("open ro");
    assert!(matches!(ro.write(0, &[0u8; 512]), Err(VmdkError::ReadOnly)));
    assert!(matches!(
        ro.metadata_set("a", "b"),
        Err(VmdkError::ReadOnly)
    ));
    let mut rw = VmdkDisk::open(&img, false, false).expect("open rw");
    assert!(matches!(
        rw.write(2047, &[0u8; 1024]),
        Err(VmdkError::OutOfRange)
    ));
    assert!(matches!(
        rw.read(2048, &mut [0u8; 512]),
        Err(VmdkError::OutOfRange)
    ));
    assert!(matches!(
        rw.read(0, &mut [0u8; 100]),
        Err(VmdkError::InvalidArg(_))
    ));
    assert!(matches!(
        rw.read(u64::MAX, &mut [0u8; 512]),
        Err(VmdkError::OutOfRange)
    ));
}

#[test]
fn creates_children_that_qemu_reads_through_their_parent() {
    let dir = scratch_dir("create-child");
    let raw = dir.join("expected.raw");
    make_raw(&raw, 3 * 1024 * 1024, 31);
    let parent = dir.join("base.vmdk");
    vmdk_from_raw(&raw, &parent, "monolithicFlat");
    let child = dir.join("delta.vmdk");
    assert!(matches!(
        vmdk::create_child(&parent, &child, DiskType::MonolithicFlat),
        Err(VmdkError::NotSupported(_))
    ));
    vmdk::create_child(&parent, &child, DiskType::MonolithicSparse).expect("create child");
    assert!(matches!(
        vmdk::create_child(&parent, &child, DiskType::MonolithicSparse),
        Err(VmdkError::AlreadyExists(_))
    ));
    let mut disk = VmdkDisk::open(&child, false, false).expect("open child");
    assert_eq!(disk.path(), child.as_path());
    let info = disk.info();
    assert_eq!(info.num_links, 2);
    assert_eq!(info.parent_hint.as_deref(), Some("base.vmdk"));
    assert_eq!(info.adapter, Adapter::Ide, "copied from the qemu parent");
    assert_eq!(disk.capacity(), 3 * 2048);
    let buf = vec![0x9au8; 5 * 512];
    disk.write(1000, &buf).expect("write child");
    patch_raw(&raw, 1000 * SECTOR, &buf);
    drop(disk);
    assert_same_as_raw(&raw, &child);
    let text = run("qemu-img", ["info", "--backing-chain", s(&child)]);
    assert!(text.contains("backing file: base.vmdk"), "{text}");

    // A parent in another directory is named by its absolute path.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let far = sub.join("far.vmdk");
    vmdk::create_child(&parent, &far, DiskType::SplitSparse).expect("child elsewhere");
    let mut disk = VmdkDisk::open(&far, true, false).expect("open far child");
    let hint = disk.info().parent_hint.expect("hint");
    assert!(
        Path::new(&hint).is_absolute() && hint.ends_with("/base.vmdk"),
        "{hint}"
    );
    let parent_data = qemu_raw(&parent);
    assert_same("far child", &engine_read_all(&mut disk), &parent_data);
    assert_same("qemu through the far child", &qemu_raw(&far), &parent_data);
    qemu_check(&far);
}

/// A large write from the middle of a grain, across whole unallocated
/// grains and the boundary between two grain tables (32 MiB), into an
/// allocated grain: written with few system calls, read back like qemu.
#[test]
fn large_writes_across_grain_tables_match_qemu() {
    let dir = scratch_dir("create-large-writes");
    let img = dir.join("big.vmdk");
    let capacity = 64 * 2048;
    vmdk::create(
        &img,
        &params(DiskType::MonolithicSparse, Adapter::LsiLogic, capacity),
    )
    .expect("create");
    let raw = dir.join("expected.raw");
    write_sparse(&raw, &vec![0u8; (capacity * SECTOR) as usize]);
    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    let mut rng = Rng::new(7);
    let boundary = 32 * 2048;
    for (at, len) in [
        (boundary + 128, 128),
        (boundary - 3 * 128 - 7, 3 * 128 + 7 + 2 * 128 + 5),
        (100, 4 * 2048),
    ] {
        let mut buf = vec![0u8; (len * SECTOR) as usize];
        rng.fill(&mut buf);
        disk.write(at, &buf).expect("engine write");
        patch_raw(&raw, at * SECTOR, &buf);
    }
    disk.flush().expect("flush");
    let want = std::fs::read(&raw).expect("read expected");
    assert_same("engine read-back", &engine_read_all(&mut disk), &want);
    drop(disk);
    assert!(assert_redundant_tables_match(&img) >= 4 * 16 + 6);
    assert_same_as_raw(&raw, &img);
}

/// A monolithicSparse file copied under another name still names the
/// original in its embedded extent line; the copy must be self-contained.
#[test]
fn copied_monolithic_sparse_is_its_own_extent() {
    let dir = scratch_dir("copied-sparse");
    let orig = dir.join("orig.vmdk");
    make_vmdk(&orig, "monolithicSparse", 4 << 20, &[]);
    let copy = dir.join("copy.vmdk");
    std::fs::copy(&orig, &copy).unwrap();
    let before = std::fs::read(&orig).unwrap();
    {
        let mut d = vddk_fake::vmdk::VmdkDisk::open(&copy, false, false).unwrap();
        d.write(0, &[0xabu8; 512 * 128]).unwrap();
        d.flush().unwrap();
        let mut back = vec![0u8; 512];
        d.read(0, &mut back).unwrap();
        assert_eq!(back, vec![0xab; 512]);
    }
    assert_eq!(
        std::fs::read(&orig).unwrap(),
        before,
        "the original was written through the copy"
    );
    let mut o = vddk_fake::vmdk::VmdkDisk::open(&orig, true, false).unwrap();
    let mut back = vec![1u8; 512];
    o.read(0, &mut back).unwrap();
    assert_eq!(back, vec![0; 512]);
}
