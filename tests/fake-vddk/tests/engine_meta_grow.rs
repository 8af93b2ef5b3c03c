//! Metadata (the descriptor's DDB) and Grow, checked with qemu-img.

mod engine_util;

use std::path::Path;

use engine_util::*;
use vddk_fake::vmdk::{self, Adapter, CreateParams, DiskType, VmdkDisk, VmdkError};
use vddk_tests::cmd::run;
use vddk_tests::images::{
    assert_same, assert_same_as_raw, make_vmdk, qemu_check, qemu_raw, s, vmdk_from_raw,
};
use vddk_tests::scratch_dir;

fn create(img: &Path, disk_type: DiskType, capacity: u64) {
    let p = CreateParams {
        disk_type,
        adapter: Adapter::LsiLogic,
        hw_version: 10,
        capacity,
    };
    vmdk::create(img, &p).expect("create");
}

/// Writes a distinct pattern at `sector` to the disk and to `raw`.
fn put(disk: &mut VmdkDisk, raw: &Path, sector: u64, sectors: u64, byte: u8) {
    let buf = vec![byte; (sectors * SECTOR) as usize];
    disk.write(sector, &buf).expect("write");
    patch_raw(raw, sector * SECTOR, &buf);
}

fn raw_of(path: &Path, sectors: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(sectors * SECTOR))
        .expect("raw");
}

fn grow_raw(path: &Path, sectors: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(sectors * SECTOR))
        .expect("grow raw");
}

#[test]
fn metadata_round_trips_in_an_embedded_descriptor() {
    let dir = scratch_dir("meta-embedded");
    let img = dir.join("m.vmdk");
    let raw = dir.join("expected.raw");
    create(&img, DiskType::MonolithicSparse, 4096);
    raw_of(&raw, 4096);
    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    put(&mut disk, &raw, 0, 300, 0x42);
    let keys = disk.metadata_keys();
    for k in [
        "adapterType",
        "geometry.cylinders",
        "geometry.heads",
        "geometry.sectors",
        "uuid",
        "longContentID",
        "virtualHWVersion",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
    }
    assert_eq!(disk.metadata_get("virtualHWVersion").as_deref(), Some("10"));
    assert_eq!(disk.metadata_get("nosuchkey"), None);
    disk.metadata_set("myTool.note", "backed up 2024-01-01")
        .expect("set new");
    disk.metadata_set("geometry.heads", "128")
        .expect("set existing");
    assert_eq!(
        disk.metadata_get("myTool.note").as_deref(),
        Some("backed up 2024-01-01")
    );
    // Too long for the 20-sector area: refused, nothing changed.
    let huge = "x".repeat(11 * 1024);
    assert!(matches!(
        disk.metadata_set("big", &huge),
        Err(VmdkError::NotSupported(_))
    ));
    assert!(matches!(
        disk.metadata_set("bad\"key", "v"),
        Err(VmdkError::InvalidArg(_))
    ));
    assert!(matches!(
        disk.metadata_set("k", "line\nbreak"),
        Err(VmdkError::InvalidArg(_))
    ));
    put(&mut disk, &raw, 4000, 10, 0x43);
    drop(disk);

    let disk = VmdkDisk::open(&img, true, false).expect("reopen");
    assert_eq!(
        disk.metadata_get("myTool.note").as_deref(),
        Some("backed up 2024-01-01")
    );
    assert_eq!(disk.metadata_get("geometry.heads").as_deref(), Some("128"));
    assert_eq!(disk.info().physical_geometry.heads, 128);
    assert_eq!(disk.metadata_get("big"), None);
    assert_eq!(
        disk.metadata_keys().last().map(String::as_str),
        Some("myTool.note")
    );
    assert_same_as_raw(&raw, &img);
}

#[test]
fn metadata_round_trips_in_a_qemu_descriptor_file() {
    let dir = scratch_dir("meta-file");
    let raw = dir.join("src.raw");
    make_raw(&raw, 1 << 20, 5);
    let img = dir.join("f.vmdk");
    vmdk_from_raw(&raw, &img, "monolithicFlat");
    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    assert_eq!(
        disk.metadata_get("toolsVersion").as_deref(),
        Some("2147483647")
    );
    disk.metadata_set("uuid", "60 00 c2 11 22 33 44 55-66 77 88 99 aa bb cc dd")
        .expect("set");
    drop(disk);
    let disk = VmdkDisk::open(&img, true, false).expect("reopen");
    assert_eq!(
        disk.info().uuid.as_deref(),
        Some("60 00 c2 11 22 33 44 55-66 77 88 99 aa bb cc dd")
    );
    assert_eq!(disk.metadata_get("adapterType").as_deref(), Some("ide"));
    let text = std::fs::read_to_string(&img).expect("descriptor");
    assert!(
        text.contains("ddb.uuid = \"60 00 c2 11 22 33 44 55-66 77 88 99 aa bb cc dd\""),
        "{text}"
    );
    assert_same_as_raw(&raw, &img);
}

#[test]
fn grows_an_engine_sparse_disk_in_place() {
    let dir = scratch_dir("grow-sparse");
    let img = dir.join("g.vmdk");
    let raw = dir.join("expected.raw");
    create(&img, DiskType::MonolithicSparse, 2048);
    raw_of(&raw, 2048);
    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    put(&mut disk, &raw, 100, 50, 0x11);
    drop(disk);

    let new_cap = 200 * 2048 + 3;
    assert!(matches!(
        vmdk::grow(&img, 1024, false),
        Err(VmdkError::InvalidArg(_))
    ));
    vmdk::grow(&img, new_cap, true).expect("grow");
    grow_raw(&raw, new_cap);
    let mut disk = VmdkDisk::open(&img, false, false).expect("reopen");
    assert_eq!(disk.capacity(), new_cap);
    assert_eq!(
        disk.info().physical_geometry,
        vmdk::default_geometry(new_cap, Adapter::LsiLogic)
    );
    put(&mut disk, &raw, new_cap - 5, 5, 0x22);
    put(&mut disk, &raw, 70000, 300, 0x33);
    drop(disk);
    assert_same_as_raw(&raw, &img);
}

#[test]
fn grows_a_qemu_sparse_disk_and_qemu_can_write_it() {
    let dir = scratch_dir("grow-qemu-sparse");
    let img = dir.join("q.vmdk");
    make_vmdk(&img, "monolithicSparse", 1 << 20, &[(0, 64 << 10, 0x44)]);
    vmdk::grow(&img, 64 * 2048, false).expect("grow");
    run("qemu-io", ["-c", "write -P 0x55 63M 1M", s(&img)]);
    qemu_check(&img);
    let mut disk = VmdkDisk::open(&img, true, false).expect("open");
    let all = engine_read_all(&mut disk);
    assert_eq!(all.len(), 64 << 20);
    assert!(all[..65536].iter().all(|&b| b == 0x44));
    assert!(all[65536..63 << 20].iter().all(|&b| b == 0));
    assert!(all[63 << 20..].iter().all(|&b| b == 0x55));
    assert_same("grown disk", &all, &qemu_raw(&img));
}

#[test]
fn refuses_to_grow_past_the_directory_room() {
    let dir = scratch_dir("grow-refused");
    let img = dir.join("r.vmdk");
    create(&img, DiskType::MonolithicSparse, 2048);
    let before = std::fs::read(&img).expect("read");
    // One directory sector maps 128 tables of 32 MiB: 4 GiB.
    assert!(matches!(
        vmdk::grow(&img, 5 * 1024 * 1024 * 2, false),
        Err(VmdkError::NotSupported(_))
    ));
    assert_eq!(
        std::fs::read(&img).expect("read"),
        before,
        "a refused grow changes nothing"
    );
    vmdk::grow(&img, 4 * 1024 * 1024 * 2, false).expect("exactly 4 GiB fits");
    qemu_check(&img);
    let stream = dir.join("s.vmdk");
    make_vmdk(&stream, "streamOptimized", 1 << 20, &[]);
    assert!(matches!(
        vmdk::grow(&stream, 4096, false),
        Err(VmdkError::NotSupported(_))
    ));
}

#[test]
fn grows_flat_disks() {
    let dir = scratch_dir("grow-flat");
    let raw = dir.join("src.raw");
    make_raw(&raw, 1 << 20, 8);
    let img = dir.join("f.vmdk");
    vmdk_from_raw(&raw, &img, "monolithicFlat");
    vmdk::grow(&img, 3 * 2048 + 1, false).expect("grow flat");
    grow_raw(&raw, 3 * 2048 + 1);
    let mut disk = VmdkDisk::open(&img, false, false).expect("open");
    put(&mut disk, &raw, 3 * 2048 - 10, 11, 0x66);
    drop(disk);
    assert_same_as_raw(&raw, &img);
}

#[test]
fn grows_split_disks_by_adding_extents() {
    let split = 4_192_256u64;
    for (disk_type, second) in [
        (DiskType::SplitFlat, "x-f002.vmdk"),
        (DiskType::SplitSparse, "x-s002.vmdk"),
    ] {
        let dir = scratch_dir(&format!("grow-{disk_type:?}"));
        let img = dir.join("x.vmdk");
        create(&img, disk_type, 2048);
        let new_cap = split + 4096;
        vmdk::grow(&img, new_cap, false).expect("grow split");
        assert!(dir.join(second).exists(), "{second} added");
        let mut disk = VmdkDisk::open(&img, false, false).expect("open");
        assert_eq!(disk.capacity(), new_cap);
        disk.write(split - 1, &[0x77u8; 1024])
            .expect("write across the old end");
        disk.write(new_cap - 1, &[0x78u8; 512])
            .expect("write the last sector");
        drop(disk);
        if disk_type == DiskType::SplitSparse {
            qemu_check(&img);
        }
        let info = run("qemu-img", ["info", s(&img)]);
        assert!(
            info.contains(&format!("({} bytes)", new_cap * SECTOR)),
            "{info}"
        );
        for (at, len, byte) in [
            (split - 1, 1024, 0x77),
            (new_cap - 1, 512, 0x78),
            (split + 1, 512, 0),
        ] {
            let cmd = format!("read -P {byte} {} {len}", at * SECTOR);
            let out = run("qemu-io", ["-r", "-c", &cmd, s(&img)]);
            assert!(
                !out.contains("Pattern verification failed"),
                "{disk_type:?} {cmd}: {out}"
            );
        }
    }
}

#[test]
fn absurd_capacities_are_refused_not_panicked_on() {
    let dir = scratch_dir("absurd");
    let img = dir.join("a.vmdk");
    for t in [
        DiskType::MonolithicFlat,
        DiskType::MonolithicSparse,
        DiskType::SplitFlat,
    ] {
        let p = CreateParams {
            disk_type: t,
            adapter: Adapter::Ide,
            hw_version: 4,
            capacity: u64::MAX,
        };
        assert!(
            matches!(vmdk::create(&img, &p), Err(VmdkError::InvalidArg(_))),
            "{t:?}"
        );
    }
    create(&img, DiskType::MonolithicFlat, 2048);
    assert!(matches!(
        vmdk::grow(&img, u64::MAX, false),
        Err(VmdkError::InvalidArg(_))
    ));
    // A corrupt header claiming an enormous capacity is reported, not allocated.
    let sparse = dir.join("s.vmdk");
    create(&sparse, DiskType::MonolithicSparse, 2048);
    patch_raw(&sparse, 12, &(u64::MAX / 4).to_le_bytes());
    assert!(matches!(
        VmdkDisk::open(&sparse, true, true),
        Err(VmdkError::Invalid(_))
    ));
    // A descriptor with a huge extent offset is reported too.
    let hand = dir.join("h.vmdk");
    std::fs::write(
        &hand,
        "createType=\"monolithicFlat\"\nRW 10 FLAT \"a-flat.vmdk\" 18446744073709551000\n",
    )
    .expect("write");
    assert!(matches!(
        VmdkDisk::open(&hand, true, true),
        Err(VmdkError::Invalid(_))
    ));
}
