//! Managing disks through `vddk` on the fake library: a child disk that
//! qemu reads through to its parent, rename and delete with every extent
//! file, check, the size of a clone, and Grow/Clone with progress reports
//! that can cancel. What the fake does not implement (Shrink, Defragment)
//! fails with VDDK's own "not supported" code, as a library without them
//! would.

use std::path::PathBuf;
use std::sync::OnceLock;

use vddk::{ConnectParams, Connection, CreateParams, DiskType, Error, OpenFlags, Vddk, VixCode};
use vddk_tests::images::{make_vmdk, qemu_check, qemu_raw, s};
use vddk_tests::library::fake_vddk;
use vddk_tests::run;

const SIZE: u64 = 8 << 20;

fn vddk() -> Vddk {
    fake_vddk(&[])
}

fn conn() -> Connection {
    Connection::connect(&vddk(), &ConnectParams::local()).expect("connect")
}

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| vddk_tests::scratch_dir("vddk-manage"))
}

/// A disk with data at its start, middle and end.
fn sample(name: &str, subformat: &str) -> (PathBuf, Vec<u8>) {
    let path = make_vmdk(
        &dir().join(name),
        subformat,
        SIZE,
        &[
            (0, 64 << 10, 0x41),
            (3 << 20, 1 << 20, 0x42),
            (SIZE - 4096, 4096, 0x43),
        ],
    );
    let bytes = qemu_raw(&path);
    (path, bytes)
}

/// The files in the scratch directory whose names start with `prefix`.
fn files_named(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("list the scratch directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

fn vix_code(r: vddk::Result<()>) -> VixCode {
    match r {
        Err(e) => e
            .vix_code()
            .unwrap_or_else(|| panic!("expected a VIX failure, got {e}")),
        Ok(()) => panic!("expected a failure, got Ok"),
    }
}

/// A sample parent disk `{name}.vmdk`, opened read-only on a local
/// connection, and a child made from it at `{name}-redo.vmdk`: the
/// connection, the parent's handle, path and bytes, and the child's path.
fn family(name: &str) -> (Connection, vddk::Disk, PathBuf, Vec<u8>, PathBuf) {
    let (parent, before) = sample(&format!("{name}.vmdk"), "monolithicSparse");
    let child = dir().join(format!("{name}-redo.vmdk"));
    let conn = conn();
    let base = conn
        .open(&parent, OpenFlags::READ_ONLY)
        .expect("open the parent");
    base.create_child(&child, DiskType::MonolithicSparse)
        .expect("create the child");
    (conn, base, parent, before, child)
}

#[test]
fn a_child_disk_takes_the_writes_and_reads_through_to_its_parent() {
    let (c, base, parent, before, child) = family("base");
    assert_eq!(
        vix_code(base.create_child(&child, DiskType::MonolithicSparse)),
        VixCode::FILE_ALREADY_EXISTS,
        "a second child at the same path"
    );
    drop(base);

    let redo = c.open(&child, OpenFlags::empty()).expect("open the child");
    let patch = vec![0x77u8; 8192];
    redo.write_at((3 << 20) + 4096, &patch)
        .expect("write the child");
    assert_eq!(redo.capacity().expect("capacity"), SIZE);
    redo.close().expect("close the child");

    // qemu follows the child's parent link: the child reads as the parent
    // with the patch, and the parent is as it was.
    let mut want = before.clone();
    want[(3 << 20) + 4096..(3 << 20) + 4096 + patch.len()].copy_from_slice(&patch);
    assert!(
        qemu_raw(&child) == want,
        "the child reads as parent + patch"
    );
    assert!(qemu_raw(&parent) == before, "the parent is unchanged");
    let info = run("qemu-img", ["info", "--backing-chain", s(&child)]);
    assert!(
        info.contains("base.vmdk") && info.matches("image:").count() == 2,
        "qemu sees a chain of two: {info}"
    );
    qemu_check(&child);
}

#[test]
fn a_child_must_be_sparse() {
    let (parent, _) = sample("flat-parent.vmdk", "monolithicFlat");
    let c = conn();
    let base = c.open(&parent, OpenFlags::READ_ONLY).expect("open");
    let r = base.create_child(dir().join("flat-child.vmdk"), DiskType::MonolithicFlat);
    assert_eq!(vix_code(r), VixCode::NOT_SUPPORTED);
    assert!(files_named("flat-child").is_empty(), "nothing left behind");
}

#[test]
fn rename_moves_every_extent_and_the_disk_reads_the_same() {
    for (subformat, old, new) in [
        ("monolithicFlat", "ren-flat", "moved-flat-disk"),
        ("monolithicSparse", "ren-sparse", "moved-sparse-disk"),
        ("twoGbMaxExtentSparse", "ren-split", "moved-split-disk"),
    ] {
        let (src, bytes) = sample(&format!("{old}.vmdk"), subformat);
        let files_before = files_named(old).len();
        let dst = dir().join(format!("{new}.vmdk"));
        vddk().rename_disk(&src, &dst).expect("rename");
        assert!(files_named(old).is_empty(), "{subformat}: old files remain");
        assert_eq!(
            files_named(new).len(),
            files_before,
            "{subformat}: every file moved: {:?}",
            files_named(new)
        );
        assert!(
            qemu_raw(&dst) == bytes,
            "{subformat}: qemu reads the renamed disk"
        );
        let disk = conn()
            .open(&dst, OpenFlags::READ_ONLY)
            .expect("open renamed");
        let mut head = vec![0u8; 64 << 10];
        disk.read_at(0, &mut head).expect("read renamed");
        assert!(
            head == bytes[..64 << 10],
            "{subformat}: VDDK reads the renamed disk"
        );
    }
}

#[test]
fn rename_onto_an_existing_disk_is_refused_and_changes_nothing() {
    let (src, bytes) = sample("keep.vmdk", "monolithicFlat");
    let (other, other_bytes) = sample("taken.vmdk", "monolithicSparse");
    let r = vddk().rename_disk(&src, &other);
    assert_eq!(vix_code(r), VixCode::FILE_ALREADY_EXISTS);
    assert!(qemu_raw(&src) == bytes && qemu_raw(&other) == other_bytes);
    assert_eq!(files_named("keep"), ["keep-flat.vmdk", "keep.vmdk"]);
}

#[test]
fn delete_disk_removes_every_file_of_a_split_disk() {
    let (path, _) = sample("doomed.vmdk", "twoGbMaxExtentFlat");
    assert!(files_named("doomed").len() >= 2);
    let c = conn();
    c.delete_disk(&path).expect("delete");
    assert!(
        files_named("doomed").is_empty(),
        "{:?}",
        files_named("doomed")
    );
    assert_eq!(
        vix_code(c.open(&path, OpenFlags::READ_ONLY).map(drop)),
        VixCode::FILE_NOT_FOUND
    );
}

#[test]
fn check_repair_passes_a_sound_disk_and_fails_a_damaged_one() {
    let (good, _) = sample("sound.vmdk", "monolithicSparse");
    let c = conn();
    c.check_repair(&good, false).expect("a sound disk checks");
    let bad = dir().join("damaged.vmdk");
    std::fs::write(&bad, b"# Disk DescriptorFile\nthis is not a descriptor\n").expect("write");
    assert!(c.check_repair(&bad, true).is_err());
}

#[test]
fn space_needed_for_clone_covers_the_disk() {
    let (path, _) = sample("measure.vmdk", "monolithicSparse");
    let disk = conn().open(&path, OpenFlags::READ_ONLY).expect("open");
    let need = disk
        .space_needed_for_clone(DiskType::MonolithicSparse)
        .expect("space needed");
    assert_eq!(need, SIZE, "the fake answers the capacity, an upper bound");
}

#[test]
fn shrink_and_defragment_are_not_supported_by_the_fake() {
    let (path, _) = sample("compact.vmdk", "monolithicSparse");
    let disk = conn().open(&path, OpenFlags::empty()).expect("open");
    assert_eq!(vix_code(disk.shrink()), VixCode::NOT_SUPPORTED);
    assert_eq!(vix_code(disk.defragment()), VixCode::NOT_SUPPORTED);
}

#[test]
fn clone_reports_progress_and_stops_when_asked() {
    let (src, bytes) = sample("origin.vmdk", "monolithicSparse");
    let c = conn();
    let params = CreateParams::new(DiskType::MonolithicSparse, SIZE);

    let mut seen = Vec::new();
    let whole = dir().join("whole-clone.vmdk");
    c.clone_disk_with_progress(&whole, &c, &src, &params, false, |p| {
        seen.push(p);
        true
    })
    .expect("clone");
    assert!(qemu_raw(&whole) == bytes, "the clone reads as its source");
    assert!(seen.len() >= 2, "several reports: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "in order: {seen:?}");
    assert_eq!(seen.last(), Some(&100));

    let mut calls = 0;
    let part = dir().join("part-clone.vmdk");
    let r = c.clone_disk_with_progress(&part, &c, &src, &params, false, |_| {
        calls += 1;
        calls < 2
    });
    assert!(
        matches!(
            r,
            Err(Error::Cancelled {
                call: "VixDiskLib_Clone"
            })
        ),
        "cancelled: {r:?}"
    );
    assert_eq!(calls, 2, "no report after the one that said stop");
    c.delete_disk(&part).expect("remove the partial clone");
}

#[test]
fn grow_with_progress_can_cancel_before_anything_changes() {
    let (path, bytes) = sample("growing.vmdk", "monolithicFlat");
    let c = conn();
    let r = c.grow_with_progress(&path, 2 * SIZE, false, |_| false);
    assert!(matches!(r, Err(Error::Cancelled { .. })), "{r:?}");
    assert_eq!(qemu_raw(&path).len() as u64, SIZE, "not grown");

    let mut last = 0;
    c.grow_with_progress(&path, 2 * SIZE, false, |p| {
        last = p;
        true
    })
    .expect("grow");
    assert_eq!(last, 100);
    let grown = qemu_raw(&path);
    assert_eq!(grown.len() as u64, 2 * SIZE);
    assert!(grown[..SIZE as usize] == bytes[..] && grown[SIZE as usize..].iter().all(|&b| b == 0));
}

#[test]
fn a_panic_in_a_progress_callback_stops_the_call_and_resumes_in_rust() {
    let (src, _) = sample("panicky.vmdk", "monolithicSparse");
    let c = conn();
    let params = CreateParams::new(DiskType::MonolithicSparse, SIZE);
    let dst = dir().join("panicky-clone.vmdk");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = c.clone_disk_with_progress(&dst, &c, &src, &params, false, |_| {
            panic!("progress callback failed")
        });
    }));
    let msg = caught.expect_err("the panic comes back");
    assert_eq!(
        msg.downcast_ref::<&str>(),
        Some(&"progress callback failed")
    );
    // The library is still usable afterwards.
    c.delete_disk(&dst).expect("remove the partial clone");
    conn()
        .open(&src, OpenFlags::READ_ONLY)
        .expect("open after the panic");
}

#[test]
fn cleanup_after_a_crash_reports_what_it_did() {
    // The fake leaves nothing behind to clean: nothing cleaned, nothing left.
    let done = vddk().cleanup(&ConnectParams::local()).expect("cleanup");
    assert_eq!((done.cleaned, done.remaining), (0, 0));
}

#[test]
fn an_attached_parent_is_read_under_a_single_link_child() {
    let (c, base, parent, before, child) = family("attach-base");

    let mut redo = c
        .open(&child, OpenFlags::SINGLE_LINK)
        .expect("open the child alone");
    let mut head = vec![0u8; 64 << 10];
    redo.read_at(0, &mut head).expect("read the lone child");
    assert!(
        head.iter().all(|&b| b == 0),
        "alone, the child holds nothing"
    );
    assert_eq!(redo.info().expect("info").num_links, 1);

    redo.check_attach(&base).expect("the parent fits");
    redo.attach(base).expect("attach");
    assert_eq!(redo.info().expect("info").num_links, 2);
    let mut all = vec![0u8; SIZE as usize];
    redo.read_at(0, &mut all).expect("read through");
    assert!(all == before, "the child reads as its parent");

    let patch = vec![0x5au8; 4096];
    redo.write_at(3 << 20, &patch).expect("write the child");
    redo.read_at(0, &mut all).expect("read back");
    let mut want = before.clone();
    want[3 << 20..(3 << 20) + patch.len()].copy_from_slice(&patch);
    assert!(all == want, "the write is in the chain");
    redo.close().expect("close the child");
    assert!(qemu_raw(&parent) == before, "the parent is unchanged");
    assert!(qemu_raw(&child) == want, "qemu reads the same chain");
}

#[test]
fn a_parent_that_is_not_the_childs_is_refused_and_its_handle_is_gone() {
    let (c, base, parent, _, child) = family("attach-right");
    drop(base);
    let (other, _) = sample("attach-wrong.vmdk", "monolithicSparse");

    let wrong = c
        .open(&other, OpenFlags::READ_ONLY)
        .expect("open another disk");
    let mut redo = c
        .open(&child, OpenFlags::SINGLE_LINK)
        .expect("open the child");
    assert_eq!(
        vix_code(redo.check_attach(&wrong)),
        VixCode::INVALID_ARG,
        "another disk's content is not the child's parent"
    );
    // Refused, and the handle is VDDK's no more: dropping it must not
    // close it again (strict mode aborts on a stale handle).
    let refused = redo.attach(wrong).expect_err("another disk's content");
    assert!(
        refused
            .hint()
            .is_some_and(|h| h.contains("create_child") && h.contains("SINGLE_LINK")),
        "{refused}"
    );
    assert_eq!(vix_code(Err(refused)), VixCode::INVALID_ARG);
    let mut head = vec![0u8; 4096];
    redo.read_at(0, &mut head).expect("the child still reads");
    assert!(head.iter().all(|&b| b == 0));

    // A child opened with its chain has its parent already.
    let chained = c
        .open(&child, OpenFlags::READ_ONLY)
        .expect("open with chain");
    let base = c
        .open(&parent, OpenFlags::READ_ONLY)
        .expect("open the parent");
    assert_eq!(vix_code(chained.check_attach(&base)), VixCode::INVALID_ARG);
}
