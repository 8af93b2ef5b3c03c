//! `vddk-create` against the fake VDDK: what it makes passes
//! `qemu-img check`, and `qemu-img info` shows the size and type asked for.

mod common;

use std::path::Path;

use common::*;
use vddk_tests::cmd::run;
use vddk_tests::images::assert_same_as_raw;
use vddk_tests::{libdir_param, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vddk-create");

fn descriptor_has(vmdk: &Path, line: &str) -> bool {
    let bytes = std::fs::read(vmdk).unwrap();
    String::from_utf8_lossy(&bytes).contains(line)
}

#[test]
fn created_disks_have_the_asked_size_type_adapter_and_version() {
    let dir = scratch_dir("ex-create");
    let cases = [
        // flag values, qemu-img's create type, adapter and version in the descriptor
        (
            "sparse",
            "ide",
            "workstation6",
            "monolithicSparse",
            "ide",
            "6",
        ),
        (
            "monolithic-flat",
            "lsilogic",
            "esx65",
            "monolithicFlat",
            "lsilogic",
            "13",
        ),
        (
            "split-sparse",
            "buslogic",
            "10",
            "twoGbMaxExtentSparse",
            "buslogic",
            "10",
        ),
    ];
    for (i, (ty, adapter, hw, create_type, ddb_adapter, ddb_hw)) in cases.iter().enumerate() {
        let disk = dir.join(format!("d{i}.vmdk"));
        let out = ok(example(BIN).arg(libdir_param()).arg(&disk).args([
            "--size",
            "24M",
            "--type",
            ty,
            "--adapter",
            adapter,
            "--hw-version",
            hw,
        ]));
        assert!(
            out.starts_with(&format!("created {}", disk.display())),
            "{out}"
        );
        let p = disk.to_str().unwrap();
        let info = run("qemu-img", ["info", "--output=json", p]);
        assert_eq!(
            json_eval(&info, "d['virtual-size']"),
            (24u64 << 20).to_string()
        );
        assert_eq!(
            json_eval(&info, "d['format-specific']['data']['create-type']"),
            *create_type
        );
        assert!(
            descriptor_has(&disk, &format!("ddb.adapterType = \"{ddb_adapter}\"")),
            "{ty}: adapter not recorded"
        );
        assert!(
            descriptor_has(&disk, &format!("ddb.virtualHWVersion = \"{ddb_hw}\"")),
            "{ty}: hardware version not recorded"
        );
        if create_type.contains("Sparse") {
            run("qemu-img", ["check", "-q", p]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fill_from_a_raw_image() {
    let dir = scratch_dir("ex-create-fill");
    let size: usize = 6 << 20;
    let mut raw = vec![0u8; size];
    raw[..4096].fill(0x10);
    raw[3 << 20..(3 << 20) + 200_000].fill(0x20);
    let raw_path = dir.join("img.raw");
    std::fs::write(&raw_path, &raw).unwrap();
    let disk = dir.join("filled.vmdk");
    let out = ok(example(BIN)
        .arg(libdir_param())
        .arg(&disk)
        .args(["--fill-from", raw_path.to_str().unwrap()]));
    assert!(out.contains("filled from"), "{out}");
    let info = run(
        "qemu-img",
        ["info", "--output=json", disk.to_str().unwrap()],
    );
    // No --size: the raw image's size.
    assert_eq!(json_eval(&info, "d['virtual-size']"), size.to_string());
    assert_same_as_raw(&raw_path, &disk);
    // Zero blocks were skipped, so the sparse disk stays small.
    assert!(
        std::fs::metadata(&disk).unwrap().len() < (size as u64) / 2,
        "the filled disk is not sparse"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mistakes_get_clear_errors() {
    let dir = scratch_dir("ex-create-err");
    let disk = dir.join("x.vmdk");
    let err = fails(example(BIN).arg(libdir_param()).arg(&disk), 1);
    assert!(err.contains("--size"), "{err}");
    let err = fails(
        example(BIN)
            .arg(libdir_param())
            .arg(&disk)
            .args(["--size", "1M", "--type", "bogus"]),
        1,
    );
    assert!(err.contains("monolithic-sparse"), "{err}");
    let err = fails(
        example(BIN)
            .arg(libdir_param())
            .arg(&disk)
            .args(["--size", "1000"]),
        1,
    );
    assert!(err.contains("multiple of 512"), "{err}");
    let err = fails(
        example(BIN)
            .arg(libdir_param())
            .args([
                "server=esx",
                "user=u",
                "password=p",
                "vm=moref=1",
                "[ds] x.vmdk",
            ])
            .args(["--size", "1M"]),
        1,
    );
    assert!(err.contains("local disks"), "{err}");
    assert!(!disk.exists());
    // A fill image larger than --size is refused before anything is created.
    let big = dir.join("big.raw");
    std::fs::write(&big, vec![1u8; 4096]).unwrap();
    let err = fails(
        example(BIN).arg(libdir_param()).arg(&disk).args([
            "--size",
            "2K",
            "--fill-from",
            big.to_str().unwrap(),
        ]),
        1,
    );
    assert!(err.contains("more than --size"), "{err}");
    assert!(!disk.exists());
    // Creating over an existing disk fails rather than destroying it.
    ok(example(BIN)
        .arg(libdir_param())
        .arg(&disk)
        .args(["--size", "1M"]));
    let before = std::fs::read(&disk).unwrap();
    fails(
        example(BIN)
            .arg(libdir_param())
            .arg(&disk)
            .args(["--size", "2M"]),
        1,
    );
    assert_eq!(std::fs::read(&disk).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}
