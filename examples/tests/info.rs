//! `vddk-info` against the fake VDDK, checked with `qemu-img info` and
//! python3's JSON parser.

mod common;

use common::*;
use vddk_tests::cmd::{output, run};
use vddk_tests::images::{make_vmdk, vmdk_child};
use vddk_tests::{fake_libdir, libdir_param, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vddk-info");

#[test]
fn library_report_without_a_disk() {
    let out = ok(example(BIN).arg(libdir_param()));
    let lib = field(&out, "library");
    assert!(
        lib.starts_with(&fake_libdir().join("lib64").display().to_string())
            && lib.contains("libvixDiskLib.so."),
        "{out}"
    );
    assert_eq!(field(&out, "major version"), "8");
    assert_eq!(field(&out, "transport modes"), "file:san:hotadd:nbdssl:nbd");
    assert!(field(&out, "optional functions").contains("VixDiskLib_GetMetadataKeys"));
    assert!(!out.contains("capacity:"), "no disk was given:\n{out}");

    // VDDK needs libdir/lib64 on LD_LIBRARY_PATH from the start: the
    // program re-executes itself once to put it there.
    let o = output(example(BIN).arg(libdir_param()).arg("-v"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("re-executing"), "{err}");
    assert!(
        err.contains("VixDiskLib"),
        "VDDK's log lines are shown with -v: {err}"
    );
    // RUST_LOG works without -v, and narrows what -v shows.
    let o = output(
        example(BIN)
            .arg(libdir_param())
            .env("RUST_LOG", "vddk::library=debug"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("vddk::library: "),
        "{err}"
    );
    assert!(!err.contains("re-executing"), "{err}");
    let o = output(
        example(BIN)
            .arg(libdir_param())
            .arg("-v")
            .env("RUST_LOG", "off"),
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");

    let json = ok(example(BIN).arg(libdir_param()).arg("--json"));
    assert_eq!(
        json_eval(&json, "d['library']['transport_modes']"),
        "file:san:hotadd:nbdssl:nbd"
    );
    assert_eq!(
        json_eval(&json, "d['library']['capabilities']['VixDiskLib_Clone']"),
        "true"
    );
    assert_eq!(json_eval(&json, "'disk' in d"), "false");
}

#[test]
fn disk_fields_agree_with_qemu_img() {
    let dir = scratch_dir("ex-info");
    let disk = make_vmdk(
        &dir.join("d.vmdk"),
        "monolithicSparse,adapter_type=lsilogic,hwversion=6",
        100 << 20,
        &[],
    );
    let p = disk.to_str().unwrap();
    let qemu = run("qemu-img", ["info", "--output=json", p]);
    let qemu_size = json_eval(&qemu, "d['virtual-size']");
    assert_eq!(qemu_size, (100u64 << 20).to_string());

    let out = ok(example(BIN).arg(libdir_param()).arg(p));
    assert_eq!(field(&out, "disk"), p);
    assert_eq!(
        field(&out, "capacity"),
        format!("{qemu_size} bytes ({} sectors)", (100u64 << 20) / 512)
    );
    assert_eq!(field(&out, "adapter"), "lsilogic");
    assert_eq!(field(&out, "links"), "1");
    assert_eq!(field(&out, "parent"), "-");
    assert_eq!(field(&out, "transport mode"), "file");
    assert!(out.contains("\n  adapterType = lsilogic\n"), "{out}");
    assert!(out.contains("\n  virtualHWVersion = 6\n"), "{out}");

    let json = ok(example(BIN)
        .arg(libdir_param())
        .arg("--json")
        .arg(format!("file={p}")));
    assert_eq!(json_eval(&json, "d['disk']['capacity_bytes']"), qemu_size);
    assert_eq!(json_eval(&json, "d['disk']['adapter']"), "lsilogic");
    assert_eq!(json_eval(&json, "d['disk']['links']"), "1");
    assert_eq!(json_eval(&json, "d['disk']['parent']"), "null");
    assert_eq!(
        json_eval(&json, "d['disk']['metadata']['adapterType']"),
        "lsilogic"
    );
    // The geometry GetInfo reports is the one in the descriptor's metadata.
    assert_eq!(
        json_eval(&json, "d['disk']['bios_geometry']['cylinders']"),
        json_eval(&json, "d['disk']['metadata']['geometry.cylinders']")
    );
    assert_eq!(json_eval(&json, "d['disk']['transport_mode']"), "file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn child_disk_shows_links_and_parent() {
    let dir = scratch_dir("ex-info-child");
    let base = make_vmdk(&dir.join("base.vmdk"), "monolithicSparse", 8 << 20, &[]);
    let child = dir.join("child.vmdk");
    vmdk_child(base.to_str().unwrap(), &child);
    let qemu = run(
        "qemu-img",
        ["info", "--output=json", child.to_str().unwrap()],
    );
    let backing = json_eval(&qemu, "d['backing-filename']");
    let json = ok(example(BIN).arg(libdir_param()).arg("--json").arg(&child));
    assert_eq!(json_eval(&json, "d['disk']['links']"), "2");
    let parent = json_eval(&json, "d['disk']['parent']");
    assert!(
        backing.ends_with(&parent) || parent.ends_with(&backing),
        "parent {parent:?} vs qemu-img's backing file {backing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn remote_disk_through_the_simulated_server() {
    let dir = scratch_dir("ex-info-remote");
    let (inv, thumb) = inventory(&dir);
    make_vmdk(
        &dir.join("ds1/web").join("web.vmdk"),
        "monolithicSparse",
        4 << 20,
        &[],
    );
    let out = ok(example(BIN)
        .env("FAKE_VDDK_INVENTORY", &inv)
        .args(remote_params(thumb)));
    assert_eq!(field(&out, "transport mode"), "nbdssl");
    assert_eq!(field(&out, "capacity"), "4194304 bytes (8192 sectors)");

    // A wrong thumbprint fails at Open; the error points at the thumbprint.
    let mut wrong = remote_params(thumb);
    wrong[4] = format!("thumbprint={}", thumb.replace("12", "AB"));
    let err = fails(
        example(BIN).env("FAKE_VDDK_INVENTORY", &inv).args(&wrong),
        1,
    );
    assert!(err.contains("cannot open [ds1] web/web.vmdk"), "{err}");
    assert!(err.to_lowercase().contains("thumbprint"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mistakes_get_clear_errors() {
    let err = fails(example(BIN).arg("libdir=/nonexistent/vddk"), 1);
    assert!(err.contains("/nonexistent/vddk"), "{err}");
    let err = fails(example(BIN).arg(libdir_param()).arg("relative.vmdk"), 1);
    assert!(err.contains("absolute path"), "{err}");
    let err = fails(example(BIN).arg(libdir_param()).arg("fiel=/x.vmdk"), 1);
    assert!(err.contains("unknown parameter 'fiel'"), "{err}");
    let err = fails(example(BIN).arg("--bogus"), 2);
    assert!(err.contains("--bogus") && err.contains("--help"), "{err}");
    let err = fails(
        example(BIN).arg(libdir_param()).arg("/no/such/disk.vmdk"),
        1,
    );
    assert!(err.contains("cannot open /no/such/disk.vmdk"), "{err}");
    let help = ok(example(BIN).arg("--help"));
    assert!(
        help.contains("--json") && help.contains("thumbprint="),
        "{help}"
    );
    assert!(help.contains("Examples:\n  vddk-info "), "{help}");
    let err = fails(example(BIN).args(["/a.vmdk", "/b.vmdk"]), 2);
    assert!(err.contains("two disks"), "{err}");
}
