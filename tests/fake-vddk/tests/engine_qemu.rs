//! Disks written by qemu-img, read through the engine: every sector must
//! equal `qemu-img convert -O raw`, and allocation must match `qemu-img map`.

mod engine_util;

use engine_util::*;
use vddk_fake::vmdk::{Adapter, VmdkDisk, VmdkError};
use vddk_tests::cmd::run;
use vddk_tests::images::{assert_same, make_vmdk, qemu_raw, s, vmdk_child, vmdk_from_raw, Rng};
use vddk_tests::scratch_dir;

/// 4 MiB + 3 sectors: not a whole grain, so the last grain is partial.
const ODD_BYTES: u64 = 4 * 1024 * 1024 + 3 * 512;

fn check_subformat(sub: &str, seed: u64) {
    let dir = scratch_dir(&format!("read-{sub}"));
    let raw = dir.join("src.raw");
    let want = make_raw(&raw, ODD_BYTES, seed);
    let img = dir.join(format!("{sub}.vmdk"));
    vmdk_from_raw(&raw, &img, sub);
    let oracle = qemu_raw(&img);
    assert_same(&format!("{sub}: qemu against its source"), &oracle, &want);

    let mut disk = VmdkDisk::open(&img, true, false).expect("open");
    assert_eq!(disk.capacity(), ODD_BYTES / SECTOR, "{sub}: capacity");
    let got = engine_read_all(&mut disk);
    assert_same(
        &format!("{sub}: engine against qemu-img convert"),
        &got,
        &oracle,
    );

    // Unaligned-to-grain requests that cross grain and extent boundaries.
    let mut buf = vec![0u8; 7 * 512];
    for start in [0u64, 125, 127, 8185, ODD_BYTES / SECTOR - 7] {
        disk.read(start, &mut buf).expect("read");
        let at = (start * SECTOR) as usize;
        assert_same(
            &format!("{sub}: sectors at {start}"),
            &buf,
            &oracle[at..at + buf.len()],
        );
    }
    let info = disk.info();
    assert_eq!(info.capacity, ODD_BYTES / SECTOR);
    assert_eq!(info.num_links, 1);
    assert_eq!(
        info.adapter,
        Adapter::Ide,
        "qemu writes ddb.adapterType = \"ide\""
    );
    assert_eq!(info.physical_geometry.heads, 16);
    assert!(info.parent_hint.is_none());
}

#[test]
fn reads_monolithic_sparse_like_qemu() {
    check_subformat("monolithicSparse", 1);
}

#[test]
fn reads_monolithic_flat_like_qemu() {
    check_subformat("monolithicFlat", 2);
}

#[test]
fn reads_split_sparse_like_qemu() {
    check_subformat("twoGbMaxExtentSparse", 3);
}

#[test]
fn reads_split_flat_like_qemu() {
    check_subformat("twoGbMaxExtentFlat", 4);
}

#[test]
fn reads_stream_optimized_like_qemu_and_refuses_writes() {
    check_subformat("streamOptimized", 5);
    let img = scratch_dir("read-streamOptimized").join("x.vmdk");
    make_vmdk(&img, "streamOptimized", 1 << 20, &[]);
    let mut disk = VmdkDisk::open(&img, false, false).expect("open stream read-write");
    assert!(matches!(
        disk.write(0, &[1u8; 512]),
        Err(VmdkError::ReadOnly)
    ));
}

#[test]
fn reads_past_4_gib() {
    let dir = scratch_dir("read-large");
    let img = dir.join("big.vmdk");
    let near_end = 6u64 * 1024 * 1024 * 1024 - 64 * 1024;
    let past_4g = 4u64 * 1024 * 1024 * 1024 + 512;
    make_vmdk(
        &img,
        "monolithicSparse",
        6 << 30,
        &[(near_end, 64 << 10, 0x5a), (past_4g, 4 << 10, 0xa5)],
    );
    let mut disk = VmdkDisk::open(&img, true, false).expect("open");
    assert_eq!(disk.capacity(), 6 * 1024 * 1024 * 2);
    let mut buf = vec![0u8; 64 * 1024];
    disk.read(near_end / SECTOR, &mut buf).expect("read end");
    assert!(
        buf.iter().all(|&b| b == 0x5a),
        "the last 64 KiB hold qemu's pattern"
    );
    let mut buf = vec![0u8; 8192];
    disk.read(past_4g / SECTOR - 1, &mut buf)
        .expect("read past 4G");
    assert!(buf[..512].iter().all(|&b| b == 0));
    assert!(buf[512..4608].iter().all(|&b| b == 0xa5));
    assert!(buf[4608..].iter().all(|&b| b == 0));
    assert!(matches!(
        disk.read(disk.capacity(), &mut [0u8; 512]),
        Err(VmdkError::OutOfRange)
    ));
    let chunk = 128;
    let cap = disk.capacity();
    assert_eq!(
        disk.allocated(0, cap, chunk).expect("allocated"),
        qemu_allocated(&img, chunk)
    );
}

#[test]
fn allocation_matches_qemu_map() {
    let dir = scratch_dir("map");
    let raw = dir.join("src.raw");
    make_raw(&raw, 8 * 1024 * 1024, 9);
    for sub in [
        "monolithicSparse",
        "twoGbMaxExtentSparse",
        "streamOptimized",
    ] {
        let img = dir.join(format!("{sub}.vmdk"));
        vmdk_from_raw(&raw, &img, sub);
        let disk = VmdkDisk::open(&img, true, false).expect("open");
        let cap = disk.capacity();
        for chunk in [128u64, 1024] {
            let want = qemu_allocated(&img, chunk);
            assert!(!want.is_empty(), "the source has data");
            assert_eq!(
                disk.allocated(0, cap, chunk).expect("allocated"),
                want,
                "{sub}, chunk {chunk}"
            );
        }
        // A window in the middle is clipped to the window.
        let got = disk.allocated(4096, 2048, 128).expect("window");
        let want: Vec<(u64, u64)> = qemu_allocated(&img, 128)
            .into_iter()
            .filter_map(|(a, n)| {
                let (lo, hi) = (a.max(4096), (a + n).min(6144));
                (lo < hi).then(|| (lo, hi - lo))
            })
            .collect();
        assert_eq!(got, want, "{sub}: window");
    }
    // Flat extents are wholly allocated.
    let img = dir.join("flat.vmdk");
    vmdk_from_raw(&raw, &img, "monolithicFlat");
    let disk = VmdkDisk::open(&img, true, false).expect("open flat");
    assert_eq!(
        disk.allocated(0, 16384, 128).expect("flat"),
        vec![(0, 16384)]
    );
}

#[test]
fn reads_a_qemu_parent_child_chain() {
    let dir = scratch_dir("chain");
    let raw = dir.join("parent.raw");
    let parent_data = make_raw(&raw, 2 * 1024 * 1024, 11);
    let parent = dir.join("parent.vmdk");
    vmdk_from_raw(&raw, &parent, "monolithicSparse");
    let child = dir.join("child.vmdk");
    vmdk_child("parent.vmdk", &child);
    run(
        "qemu-io",
        [
            "-c",
            "write -P 0x11 64k 4k",
            "-c",
            "write -P 0x22 1M 128k",
            "-c",
            "write -P 0x33 2040k 8k",
            s(&child),
        ],
    );

    let oracle = qemu_raw(&child);
    let mut disk = VmdkDisk::open(&child, true, false).expect("open child");
    let info = disk.info();
    assert_eq!(info.num_links, 2);
    assert_eq!(info.parent_hint.as_deref(), Some("parent.vmdk"));
    assert_same("chain", &engine_read_all(&mut disk), &oracle);
    assert_eq!(
        disk.allocated(0, 4096, 128).expect("allocated"),
        qemu_allocated(&child, 128)
    );

    // Only the child: its grains, zeroes elsewhere.
    let mut top = VmdkDisk::open(&child, true, true).expect("open single link");
    assert_eq!(top.info().num_links, 1);
    let only = engine_read_all(&mut top);
    // The 4 KiB write made a whole 64 KiB grain, copied from the parent.
    assert_same(
        "child grain 1",
        &only[65536..131072],
        &oracle[65536..131072],
    );
    assert!(only[..65536].iter().all(|&b| b == 0));
    assert!(only[131072..1 << 20].iter().all(|&b| b == 0));
    assert!(only[(1 << 20) + 128 * 1024..1984 * 1024]
        .iter()
        .all(|&b| b == 0));
    assert!(oracle[65536 + 4096..131072] == parent_data[65536 + 4096..131072]);
    let alloc = top.allocated(0, 4096, 128).expect("allocated");
    assert_eq!(alloc, vec![(128, 128), (2048, 256), (3968, 128)]);
}

#[test]
fn missing_parent_and_garbage_are_reported() {
    let dir = scratch_dir("errors");
    let parent = dir.join("p.vmdk");
    make_vmdk(&parent, "monolithicSparse", 1 << 20, &[]);
    let child = dir.join("c.vmdk");
    vmdk_child("p.vmdk", &child);
    std::fs::remove_file(&parent).expect("rm parent");
    assert!(
        matches!(VmdkDisk::open(&child, true, false), Err(VmdkError::NotFound(p)) if p.ends_with("p.vmdk"))
    );
    assert!(
        VmdkDisk::open(&child, true, true).is_ok(),
        "single link needs no parent"
    );
    let junk = dir.join("junk.vmdk");
    std::fs::write(&junk, b"hello\n").expect("write junk");
    assert!(matches!(
        VmdkDisk::open(&junk, true, false),
        Err(VmdkError::Invalid(_))
    ));
    assert!(matches!(
        VmdkDisk::open(&dir.join("none.vmdk"), true, false),
        Err(VmdkError::NotFound(_))
    ));
}

/// A stream whose header says "directory at the end" (as VMware's tools
/// write them) is read through its footer.
#[test]
fn reads_a_stream_with_its_directory_in_the_footer() {
    let dir = scratch_dir("stream-footer");
    let raw = dir.join("src.raw");
    make_raw(&raw, 2 * 1024 * 1024, 41);
    let img = dir.join("s.vmdk");
    vmdk_from_raw(&raw, &img, "streamOptimized");
    let want = qemu_raw(&img);
    let mut bytes = std::fs::read(&img).expect("read stream");
    let mut footer = bytes[..512].to_vec();
    bytes[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    // Footer marker (type 3), the footer itself, end-of-stream marker.
    let mut marker = vec![0u8; 512];
    marker[0..8].copy_from_slice(&1u64.to_le_bytes());
    marker[12..16].copy_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&marker);
    footer.resize(512, 0);
    bytes.extend_from_slice(&footer);
    bytes.extend_from_slice(&[0u8; 512]);
    std::fs::write(&img, &bytes).expect("write stream");

    let mut disk = VmdkDisk::open(&img, true, false).expect("open");
    assert_same("stream with footer", &engine_read_all(&mut disk), &want);
}

/// A hand-written descriptor: offsets into a shared file, a ZERO extent,
/// an RDONLY extent and a file name with a space, checked against the
/// layout the descriptor spells out.
#[test]
fn reads_zero_offset_and_read_only_extents_like_qemu() {
    let dir = scratch_dir("hand-descriptor");
    let data_file = dir.join("data file.bin");
    let mut data = vec![0u8; 4 << 20];
    Rng::new(51).fill(&mut data);
    std::fs::write(&data_file, &data).expect("write data");
    let img = dir.join("hand.vmdk");
    std::fs::write(
        &img,
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n\
         RW 2048 FLAT \"data file.bin\" 100\nRW 1024 ZERO\nRDONLY 2048 FLAT \"data file.bin\" 4000\n\n\
         ddb.adapterType = \"buslogic\"\n",
    )
    .expect("write descriptor");
    let mut want = vec![0u8; 5120 * 512];
    want[..2048 * 512].copy_from_slice(&data[100 * 512..2148 * 512]);
    want[3072 * 512..].copy_from_slice(&data[4000 * 512..6048 * 512]);
    // qemu-img is no oracle here: it skips RDONLY lines and ZERO lines
    // without a file name, which VMware's format allows.

    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    assert_eq!(disk.info().adapter, Adapter::BusLogic);
    assert_eq!(
        disk.info().physical_geometry,
        vddk_fake::vmdk::default_geometry(5120, Adapter::BusLogic)
    );
    assert_same("engine", &engine_read_all(&mut disk), &want);
    assert_eq!(
        disk.allocated(0, 5120, 128).expect("allocated"),
        vec![(0, 2048), (3072, 2048)]
    );
    assert!(
        matches!(disk.write(2048, &[1u8; 512]), Err(VmdkError::ReadOnly)),
        "ZERO extent"
    );
    assert!(
        matches!(disk.write(3072, &[1u8; 512]), Err(VmdkError::ReadOnly)),
        "RDONLY extent"
    );
    disk.write(2047, &[7u8; 512]).expect("RW extent");
    drop(disk);
    let after = std::fs::read(&data_file).expect("read data");
    assert!(
        after[2147 * 512..2148 * 512].iter().all(|&b| b == 7),
        "written at the extent's offset"
    );
    assert_eq!(
        after[2148 * 512..],
        data[2148 * 512..],
        "nothing else changed"
    );
}
