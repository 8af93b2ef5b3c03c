//! The safe `vddk` crate against the fake library, local disks, strict mode:
//! reads match qemu-img, writes pass qemu-img compare/check, allocated
//! blocks match qemu-img map, metadata, create, grow, errors.

use vddk::{
    AdapterType, ConnectParams, Connection, CreateParams, DiskType, Error, Extent, InitOptions,
    OpenFlags, Vddk, VixCode, MIN_CHUNK,
};
use vddk_tests::images::{pattern_raw, qemu_data_extents, qemu_raw, s, vmdk_from_raw};
use vddk_tests::library::{fake_vddk, read_all};
use vddk_tests::run;

fn scratch(name: &str) -> std::path::PathBuf {
    vddk_tests::scratch_dir(name)
}

fn vddk() -> Vddk {
    // A little latency per call widens any overlap of Open/Close/ConnectEx.
    fake_vddk(&[("FAKE_VDDK_LATENCY_US", "200")])
}

fn local() -> Connection {
    Connection::connect(&vddk(), &ConnectParams::local()).expect("local connection")
}

#[test]
fn library_reports_path_version_modes_and_capabilities() {
    let v = vddk();
    let libdir = vddk_tests::fake_libdir();
    assert!(
        v.library_path().starts_with(libdir.join("lib64")),
        "{:?}",
        v.library_path()
    );
    // The fake is libvixDiskLib.so.8, reached through the .so.9 link.
    assert_eq!(v.major_version(), 8);
    assert_eq!(v.transport_modes(), "file:san:hotadd:nbdssl:nbd");
    let caps = v.capabilities();
    assert!(caps.has_allocate_connect_params() && caps.has_read_metadata() && caps.has_grow());
}

#[test]
fn a_second_init_in_one_process_is_an_error() {
    let _v = vddk();
    let again = Vddk::init(InitOptions::new().libdir(vddk_tests::fake_libdir()));
    assert!(matches!(again, Err(Error::AlreadyInitialized)), "{again:?}");
}

fn reads_like_qemu(subformat: &str, sectors: u64, seed: u64) {
    let dir = scratch(&format!("vddk-read-{subformat}"));
    let raw = dir.join("src.raw");
    let vmdk = dir.join(format!("{subformat}.vmdk"));
    pattern_raw(&raw, sectors, seed);
    vmdk_from_raw(&raw, &vmdk, subformat);
    let oracle = qemu_raw(&vmdk);

    let conn = local();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).expect("open");
    let info = disk.info().unwrap();
    assert_eq!(info.capacity, sectors * 512);
    assert_eq!(disk.capacity().unwrap(), sectors * 512);
    assert_eq!(info.num_links, 1);
    assert_eq!(info.parent_hint, None);
    assert_eq!(disk.transport_mode(), "file");
    let ours = read_all(&disk);
    assert!(
        ours == oracle,
        "{subformat}: VDDK's bytes differ from qemu-img's raw conversion"
    );
    // An odd-sized read in the middle agrees too.
    let mut mid = vec![0u8; 7 * 512];
    disk.read_at(301 * 512, &mut mid).unwrap();
    assert_eq!(mid[..], oracle[301 * 512..308 * 512]);
    // read_to_vec gives the same bytes in a buffer of its own making.
    let v = disk.read_to_vec(301 * 512, 7 * 512).unwrap();
    assert_eq!(v.len(), 7 * 512);
    assert_eq!(v[..], oracle[301 * 512..308 * 512]);
    let whole = disk.read_to_vec(0, sectors as usize * 512).unwrap();
    assert!(
        whole == oracle,
        "{subformat}: read_to_vec of the whole disk differs"
    );
    assert_eq!(disk.read_to_vec(5 * 512, 0).unwrap(), Vec::<u8>::new());
    disk.close().expect("close");
}

#[test]
fn monolithic_sparse_reads_equal_qemu() {
    reads_like_qemu("monolithicSparse", 8192, 1);
}

#[test]
fn monolithic_flat_reads_equal_qemu() {
    reads_like_qemu("monolithicFlat", 4096 + 77, 2);
}

#[test]
fn split_sparse_reads_equal_qemu() {
    reads_like_qemu("twoGbMaxExtentSparse", 4096, 3);
}

#[test]
fn info_reports_adapter_and_sector_sizes() {
    let dir = scratch("vddk-info");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    pattern_raw(&raw, 2048, 4);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse,adapter_type=lsilogic");
    let conn = local();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    let info = disk.info().unwrap();
    assert_eq!(info.adapter, AdapterType::ScsiLsiLogic);
    if vddk().major_version() >= 7 {
        assert_eq!(info.logical_sector_size, Some(512));
        assert_eq!(info.physical_sector_size, Some(512));
    } else {
        assert_eq!(info.logical_sector_size, None);
    }
}

/// Applies the same writes through VDDK and to a raw copy, then lets
/// qemu-img judge.
fn writes_persist(subformat: &str) {
    let dir = scratch(&format!("vddk-write-{subformat}"));
    let raw = dir.join("src.raw");
    let vmdk = dir.join("w.vmdk");
    let sectors = 8192;
    let mut expect = pattern_raw(&raw, sectors, 5);
    vmdk_from_raw(&raw, &vmdk, subformat);

    let writes: &[(u64, usize, u8)] = &[
        (0, 1, 0x11),
        (130, 300, 0x22),
        (2047, 2, 0x33),
        (8191, 1, 0x44),
    ];
    {
        let conn = local();
        let disk = conn.open(s(&vmdk), OpenFlags::empty()).unwrap();
        for &(at, n, byte) in writes {
            let buf = vec![byte; n * 512];
            disk.write_at(at * 512, &buf).unwrap();
            expect[at as usize * 512..(at as usize + n) * 512].fill(byte);
            let mut back = vec![0u8; n * 512];
            disk.read_at(at * 512, &mut back).unwrap();
            assert_eq!(back, buf, "read-back at {at}");
        }
        disk.flush().unwrap();
        disk.close().unwrap();
    }
    std::fs::write(&raw, &expect).unwrap();
    run(
        "qemu-img",
        ["compare", "-f", "raw", "-F", "vmdk", s(&raw), s(&vmdk)],
    );
    if subformat.contains("Sparse") {
        run("qemu-img", ["check", s(&vmdk)]);
    }
    // And a fresh open reads the same.
    let conn = local();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    assert!(read_all(&disk) == expect);
}

#[test]
fn sparse_writes_persist_and_pass_qemu_compare_and_check() {
    writes_persist("monolithicSparse");
}

#[test]
fn flat_writes_persist_and_pass_qemu_compare() {
    writes_persist("monolithicFlat");
}

#[test]
fn buffers_must_be_whole_sectors_and_read_only_refuses_writes() {
    let dir = scratch("vddk-args");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    pattern_raw(&raw, 1024, 6);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    let conn = local();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    assert!(matches!(
        disk.read_at(0, &mut [0u8; 511]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        disk.write_at(0, &[0u8; 513]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        disk.read_at(100, &mut [0u8; 512]),
        Err(Error::InvalidArgument(_))
    ));
    let err = disk.write_at(0, &[0u8; 512]).unwrap_err();
    assert_eq!(
        err.vix().map(|f| (f.call(), f.code())),
        Some(("VixDiskLib_Write", VixCode::FILE_READ_ONLY))
    );
    // Past the end: the same condition as through a DiskDriver.
    let err = disk.read_at(1024 * 512, &mut [0u8; 512]).unwrap_err();
    assert!(
        matches!(err, Error::OutOfRange { offset, length: 512, capacity } if offset == capacity),
        "{err:?}"
    );
    let err = disk.read_to_vec(1020 * 512, 8 * 512).unwrap_err();
    assert!(matches!(err, Error::OutOfRange { .. }), "{err:?}");
    // A size that cannot be allocated is refused before any call.
    assert!(matches!(
        disk.read_to_vec(0, usize::MAX / 1024 * 512),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn missing_disk_error_names_call_code_text_and_hint() {
    let conn = local();
    let err = conn
        .open("/nonexistent/dir/disk.vmdk", OpenFlags::READ_ONLY)
        .unwrap_err();
    let f = err.vix().expect("a VIX error");
    assert_eq!(
        (f.call(), f.code(), f.code().value(), f.code().name()),
        (
            "VixDiskLib_Open",
            VixCode::FILE_NOT_FOUND,
            4,
            Some("VIX_E_FILE_NOT_FOUND")
        )
    );
    assert!(
        f.text().is_some_and(|t| !t.is_empty()),
        "GetErrorText gave nothing"
    );
    assert!(
        f.hint().is_some_and(|h| h.contains("absolute path")),
        "{f:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.starts_with("VixDiskLib_Open failed: VIX_E_FILE_NOT_FOUND (4)"),
        "{shown}"
    );
}

#[test]
fn allocated_blocks_match_qemu_map() {
    let dir = scratch("vddk-blocks");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    let sectors = 128 * 40;
    pattern_raw(&raw, sectors, 7);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    let want: Vec<Extent> = qemu_data_extents(&vmdk)
        .into_iter()
        .map(|(offset, length)| Extent { offset, length })
        .collect();
    let size = sectors * 512;
    assert!(
        want.len() > 3,
        "the image should have several data runs: {want:?}"
    );

    let conn = local();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    assert_eq!(disk.allocated_blocks(0, size, MIN_CHUNK).unwrap(), want);
    // A sub-range is clipped to what was asked.
    let (a, b) = (want[1].offset + 5 * 512, want[2].end() - 3 * 512);
    let got = disk.allocated_blocks(a, b - a, MIN_CHUNK).unwrap();
    assert_eq!(got.first().map(|e| e.offset), Some(a));
    assert_eq!(got.last().map(Extent::end), Some(b));
    let covered: u64 = got.iter().map(|e| e.length).sum();
    let expected: u64 = want
        .iter()
        .map(|e| e.end().min(b).saturating_sub(e.offset.max(a)))
        .sum();
    assert_eq!(covered, expected);
    // Past the end is refused before reaching VDDK.
    assert!(matches!(
        disk.allocated_blocks(size - 512, 1024, MIN_CHUNK),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn unaligned_tail_is_reported_as_data_without_querying() {
    let dir = scratch("vddk-tail");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    // 10 chunks and 50 sectors; the tail grain is zero in the image.
    let sectors = 128 * 10 + 50;
    std::fs::write(&raw, vec![0u8; sectors as usize * 512]).unwrap();
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    let conn = local();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    assert_eq!(
        disk.allocated_blocks(0, sectors * 512, MIN_CHUNK).unwrap(),
        vec![Extent {
            offset: 1280 * 512,
            length: 50 * 512
        }]
    );
}

#[test]
fn metadata_round_trips_across_reopen() {
    let dir = scratch("vddk-meta");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    pattern_raw(&raw, 1024, 8);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    {
        let conn = local();
        let disk = conn.open(s(&vmdk), OpenFlags::empty()).unwrap();
        let keys = disk.metadata_keys().unwrap();
        assert!(keys.iter().any(|k| k.contains("adapterType")), "{keys:?}");
        let adapter_key = keys.iter().find(|k| k.contains("adapterType")).unwrap();
        assert_eq!(disk.metadata_get(adapter_key).unwrap(), "ide");
        disk.metadata_set("vddk-rs.test", "value with spaces = ok")
            .unwrap();
        let err = disk.metadata_get("no.such.key").unwrap_err();
        assert_eq!(err.vix_code(), Some(VixCode::DISK_KEY_NOTFOUND));
    }
    let conn = local();
    let disk = conn.open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    assert!(disk
        .metadata_keys()
        .unwrap()
        .iter()
        .any(|k| k == "vddk-rs.test"));
    assert_eq!(
        disk.metadata_get("vddk-rs.test").unwrap(),
        "value with spaces = ok"
    );
    // qemu still reads the image with the rewritten descriptor.
    run("qemu-img", ["check", s(&vmdk)]);
}

fn create_and_reopen(disk_type: DiskType, name: &str) {
    let dir = scratch(&format!("vddk-create-{name}"));
    let path = dir.join(format!("{name}.vmdk"));
    let conn = local();
    let params = CreateParams::new(disk_type, 4096 * 512).adapter(AdapterType::ScsiLsiLogic);
    conn.create(s(&path), &params).expect("create");
    let again = conn.create(s(&path), &params).unwrap_err();
    assert_eq!(
        again.vix_code(),
        Some(VixCode::FILE_ALREADY_EXISTS),
        "{again}"
    );
    let data: Vec<u8> = (0..64 * 512).map(|i| (i % 251) as u8).collect();
    {
        let disk = conn.open(s(&path), OpenFlags::empty()).unwrap();
        let info = disk.info().unwrap();
        assert_eq!(
            (info.capacity, info.adapter),
            (4096 * 512, AdapterType::ScsiLsiLogic)
        );
        disk.write_at(1000 * 512, &data).unwrap();
    }
    let disk = conn.open(s(&path), OpenFlags::READ_ONLY).unwrap();
    let mut back = vec![0u8; data.len()];
    disk.read_at(1000 * 512, &mut back).unwrap();
    assert_eq!(back, data);
    drop(disk);
    let info = run("qemu-img", ["info", s(&path)]);
    assert!(info.contains("virtual size: 2 MiB"), "{info}");
    let oracle = qemu_raw(&path);
    assert_eq!(oracle[1000 * 512..1000 * 512 + data.len()], data[..]);
}

#[test]
fn created_sparse_disk_reopens_and_qemu_reads_it() {
    create_and_reopen(DiskType::MonolithicSparse, "sparse");
}

#[test]
fn created_flat_disk_reopens_and_qemu_reads_it() {
    create_and_reopen(DiskType::MonolithicFlat, "flat");
}

#[test]
fn grow_extends_a_closed_disk() {
    let dir = scratch("vddk-grow");
    let path = dir.join("g.vmdk");
    let conn = local();
    conn.create(
        s(&path),
        &CreateParams::new(DiskType::MonolithicSparse, 2048 * 512),
    )
    .unwrap();
    assert!(matches!(
        conn.grow(&path, 8192 * 512 + 1, false),
        Err(Error::InvalidArgument(_))
    ));
    conn.grow(&path, 8192 * 512, false).expect("grow");
    let disk = conn.open(s(&path), OpenFlags::READ_ONLY).unwrap();
    assert_eq!(disk.info().unwrap().capacity, 8192 * 512);
    drop(disk);
    run("qemu-img", ["check", s(&path)]);
}

#[test]
fn a_disk_moves_to_another_thread() {
    let dir = scratch("vddk-send");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    let expect = pattern_raw(&raw, 1024, 9);
    vmdk_from_raw(&raw, &vmdk, "monolithicFlat");
    let disk = local().open(s(&vmdk), OpenFlags::READ_ONLY).unwrap();
    let got = std::thread::spawn(move || read_all(&disk)).join().unwrap();
    assert!(got == expect);
}

#[test]
fn remote_only_parameters_are_refused_locally() {
    let params = ConnectParams::local().vm("vm-1".parse().unwrap());
    assert!(matches!(
        Connection::connect(&vddk(), &params),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn clone_converts_a_disk_that_qemu_finds_identical() {
    let dir = scratch("vddk-clone");
    let raw = dir.join("a.raw");
    let src = dir.join("src.vmdk");
    let dst = dir.join("dst.vmdk");
    pattern_raw(&raw, 4096, 10);
    vmdk_from_raw(&raw, &src, "monolithicSparse");
    let conn = local();
    let params = CreateParams::new(DiskType::MonolithicFlat, 4096 * 512);
    conn.clone_disk(s(&dst), &conn, s(&src), &params, false)
        .expect("clone");
    run("qemu-img", ["compare", s(&src), s(&dst)]);
    let again = conn
        .clone_disk(s(&dst), &conn, s(&src), &params, false)
        .unwrap_err();
    assert_eq!(
        again.vix_code(),
        Some(VixCode::FILE_ALREADY_EXISTS),
        "{again}"
    );
    conn.clone_disk(s(&dst), &conn, s(&src), &params, true)
        .expect("overwrite");
}

/// Open, Close, ConnectEx and Disconnect from many threads at once: the
/// fake (strict) aborts the process if two of them ever overlap.
#[test]
fn concurrent_opens_and_closes_are_serialised() {
    let dir = scratch("vddk-concurrent");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    let expect = pattern_raw(&raw, 1024, 12);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    let shared = std::sync::Arc::new(local());
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let shared = shared.clone();
            let path = vmdk.clone();
            let expect = expect.clone();
            std::thread::spawn(move || {
                for i in 0..25u64 {
                    let own;
                    let conn = if t % 2 == 0 {
                        &*shared
                    } else {
                        own = local();
                        &own
                    };
                    let disk = conn.open(s(&path), OpenFlags::READ_ONLY).unwrap();
                    let at = (t * 25 + i) * 4;
                    let mut buf = vec![0u8; 4096];
                    disk.read_at(at * 512, &mut buf).unwrap();
                    assert_eq!(buf[..], expect[at as usize * 512..at as usize * 512 + 4096]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
