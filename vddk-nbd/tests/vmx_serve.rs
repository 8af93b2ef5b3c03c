//! `vmx=`: every disk of a local VM served at once, each export named by
//! its device, checked with nbdinfo --list, qemu-img compare per export
//! and nbdcopy reading three exports in parallel.

mod nbd_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nbd_common::{run_script, BIN};
use vddk_tests::images::{assert_same_as_raw, make_vmdk};
use vddk_tests::scratch_dir;

/// A VMDK of `mib` MiB with `byte` in its second MiB.
fn disk(dir: &Path, name: &str, mib: u64, byte: u8) -> PathBuf {
    make_vmdk(
        &dir.join(name),
        "monolithicSparse",
        mib << 20,
        &[(1 << 20, 1 << 20, byte)],
    )
}

/// A VM with SCSI, SATA, NVMe and IDE disks, a CD-ROM and a disk that is
/// not present; one disk lives in a subdirectory and one by absolute path.
fn vm(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    disk(dir, "boot.vmdk", 8, 0x11);
    disk(&dir.join("sub"), "data.vmdk", 12, 0x22);
    let abs = disk(dir, "fast disk.vmdk", 4, 0x33);
    disk(dir, "old.vmdk", 6, 0x44);
    disk(dir, "gone.vmdk", 2, 0x55);
    let vmx = dir.join("vm.vmx");
    std::fs::write(
        &vmx,
        format!(
            r#".encoding = "UTF-8"
displayName = "test vm"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "boot.vmdk"
scsi0:1.present = "FALSE"
scsi0:1.fileName = "gone.vmdk"
sata0.present = "TRUE"
sata0:0.present = "TRUE"
sata0:0.deviceType = "cdrom-image"
sata0:0.fileName = "/nonexistent/install.iso"
sata0:1.present = "TRUE"
sata0:1.fileName = "sub/data.vmdk"
nvme0.present = "TRUE"
nvme0:0.present = "TRUE"
nvme0:0.fileName = "{}"
ide0:0.present = "TRUE"
ide0:0.fileName = "old.vmdk"
ide1:0.present = "TRUE"
ide1:0.deviceType = "atapi-cdrom"
ide1:0.fileName = "auto detect"
ethernet0.present = "TRUE"
"#,
            abs.display()
        ),
    )
    .unwrap();
    vmx
}

fn serve(vmx: &Path, script: &str) -> Output {
    // Any breach of VDDK's threading rules aborts the server.
    let strict = [("FAKE_VDDK_STRICT", "1")];
    run_script(&strict, &[format!("vmx={}", vmx.display())], script)
}

#[test]
fn lists_every_disk_with_name_description_and_size() {
    let dir = scratch_dir("vmx-list");
    let vmx = vm(&dir);
    let o = serve(&vmx, r#"nbdinfo --list --json "$uri""#);
    assert!(o.status.success(), "{o:?}");
    let json = String::from_utf8_lossy(&o.stdout);
    // Each export in order, with its description and size.
    let expected = [
        ("scsi0:0", "boot.vmdk (8 MiB)", 8 << 20),
        ("sata0:1", "sub/data.vmdk (12 MiB)", 12 << 20),
        (
            "nvme0:0",
            &*format!("{} (4 MiB)", dir.join("fast disk.vmdk").display()),
            4 << 20,
        ),
        ("ide0:0", "old.vmdk (6 MiB)", 6 << 20),
    ];
    let mut at = 0;
    for (name, description, size) in expected {
        let n = json[at..]
            .find(&format!("\"export-name\": \"{name}\""))
            .unwrap_or_else(|| panic!("{name} missing or out of order in {json}"));
        at += n;
        let entry = &json[at..];
        let entry = &entry[..entry[1..]
            .find("\"export-name\"")
            .map_or(entry.len(), |e| e + 1)];
        assert!(
            entry.contains(&format!("\"description\": \"{description}\"")),
            "{name}: {entry}"
        );
        assert!(
            entry.contains(&format!("\"export-size\": {size}")),
            "{name}: {entry}"
        );
    }
    for absent in ["gone", "install.iso", "auto detect", "ide1:0", "scsi0:1"] {
        assert!(!json.contains(absent), "{absent} listed: {json}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn each_export_is_its_disk_and_three_read_in_parallel() {
    let dir = scratch_dir("vmx-read");
    let vmx = vm(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        r#"set -e
cd '{d}'
u() {{ echo "nbd+unix:///$1?socket=$unixsocket"; }}
qemu-img compare -q -f raw -F vmdk "$(u scsi0:0)" boot.vmdk
qemu-img compare -q -f raw -F vmdk "$(u sata0:1)" sub/data.vmdk
qemu-img compare -q -f raw -F vmdk "$(u nvme0:0)" 'fast disk.vmdk'
qemu-img compare -q -f raw -F vmdk "$(u ide0:0)" old.vmdk
# The empty name is the first disk.
test "$(nbdinfo --size "$uri")" = 8388608
# Three exports copied at the same time.
nbdcopy "$(u scsi0:0)" out/0.raw & a=$!
nbdcopy "$(u sata0:1)" out/1.raw & b=$!
nbdcopy "$(u ide0:0)" out/2.raw & c=$!
wait $a; wait $b; wait $c
# A device the VM does not have is refused by name.
if nbdinfo --size "$(u scsi9:9)" 2>out/err; then exit 3; fi
"#,
        d = dir.display()
    );
    let o = serve(&vmx, &script);
    assert!(o.status.success(), "{o:?}");
    for (raw, vmdk) in [
        ("0.raw", "boot.vmdk"),
        ("1.raw", "sub/data.vmdk"),
        ("2.raw", "old.vmdk"),
    ] {
        assert_same_as_raw(&out.join(raw), &dir.join(vmdk));
    }
    let err = std::fs::read_to_string(out.join("err")).unwrap();
    assert!(err.contains("scsi9:9"), "{err}");
    // The server's log says what there is instead.
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("export \"scsi9:9\": no such export; this server exports: scsi0:0, sata0:1, nvme0:0, ide0:0"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_vmx_is_reported_before_serving() {
    let dir = scratch_dir("vmx-bad");
    let vmx = dir.join("none.vmx");
    std::fs::write(&vmx, "displayName = \"x\"\nethernet0.present = \"TRUE\"\n").unwrap();
    let o = serve(&vmx, "true");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("lists no virtual disk"),
        "{o:?}"
    );

    let o = Command::new(BIN)
        .env_remove("LD_LIBRARY_PATH")
        .args(["-U", "-", "vmx=/a.vmx", "file=/b.vmdk"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("remove file="),
        "{o:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
