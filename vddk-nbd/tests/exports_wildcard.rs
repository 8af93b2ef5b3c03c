//! `export=WILDCARD`: the client's export name is the disk path, served
//! when it matches (nbdkit's fnmatch rules: `*` crosses `/`, `[` opens a
//! set), for local files and for `[datastore] path` names through the
//! fake's simulated ESXi host.

mod nbd_common;

use std::path::{Path, PathBuf};
use std::process::Output;

use nbd_common::run_script;
use vddk_tests::images::{make_vmdk, s};
use vddk_tests::inventory::Inventory;
use vddk_tests::nbd::uri_path;
use vddk_tests::scratch_dir;

const THUMBPRINT: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";

/// A VMDK of `mib` MiB with `byte` in its second MiB.
fn disk(path: &Path, mib: u64, byte: u8) {
    make_vmdk(
        path,
        "monolithicSparse",
        mib << 20,
        &[(1 << 20, 1 << 20, byte)],
    );
}

/// Shell words that build the NBD URI of `name` on the server's socket.
fn nbd_uri(name: &str) -> String {
    format!("\"nbd+unix:///{}?socket=$unixsocket\"", uri_path(name))
}

fn serve(inv: Option<&Path>, args: &[String], script: &str) -> Output {
    // Any breach of VDDK's threading rules aborts the server.
    let mut env = vec![("FAKE_VDDK_STRICT", "1")];
    if let Some(inv) = inv {
        env.push(("FAKE_VDDK_INVENTORY", s(inv)));
    }
    run_script(&env, args, script)
}

#[test]
fn local_paths_matching_the_wildcard() {
    let dir = scratch_dir("exports-local");
    let vms = dir.join("vms");
    disk(&vms.join("web/web.vmdk"), 8, 0x61);
    disk(&vms.join("db/db.vmdk"), 4, 0x62);
    disk(&vms.join("db/deep/x.vmdk"), 4, 0x63);
    disk(&dir.join("secret.vmdk"), 4, 0x64);
    disk(&vms.join("web/web.raw"), 4, 0x65);
    let web = vms.join("web/web.vmdk");
    let db = vms.join("db/db.vmdk");
    // As in nbdkit (fnmatch without FNM_PATHNAME), `*` crosses `/`.
    let deep = vms.join("db/deep/x.vmdk");
    let script = format!(
        r#"set -e
qemu-img compare -q -f raw -F vmdk {} '{}'
qemu-img compare -q -f raw -F vmdk {} '{}'
qemu-img compare -q -f raw -F vmdk {} '{}'
for bad in {} {} {} {}; do
  if nbdinfo --size "$bad" 2>/dev/null; then echo "served $bad"; exit 3; fi
done
"#,
        nbd_uri(&web.to_string_lossy()),
        web.display(),
        nbd_uri(&db.to_string_lossy()),
        db.display(),
        nbd_uri(&deep.to_string_lossy()),
        deep.display(),
        nbd_uri(&vms.join("web/web.raw").to_string_lossy()),
        nbd_uri(&format!("{}/vms/../secret.vmdk", dir.display())),
        nbd_uri(&format!("{}/vms/web/missing.vmdk", dir.display())),
        nbd_uri(""),
    );
    let pattern = format!("export={}/vms/*/*.vmdk", dir.display());
    let o = serve(None, &[pattern], &script);
    assert!(o.status.success(), "{o:?}");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("web/web.raw\": not a path matching the exported paths"),
        "{log}"
    );
    assert!(log.contains("'..' component"), "{log}");
    assert!(log.contains("there is no default export"), "{log}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An ESXi host with a VM whose disks are on one datastore, the
/// wildcard covering two of its three disks.
fn inventory(dir: &Path) -> PathBuf {
    let ds = dir.join("store");
    disk(&ds.join("web/web.vmdk"), 8, 0x71);
    disk(&ds.join("web/web_1.vmdk"), 6, 0x72);
    disk(&ds.join("db/db.vmdk"), 4, 0x73);
    Inventory::new()
        .server(
            "esx1.example.com",
            &[("thumbprint", THUMBPRINT), ("user", "root:pw")],
        )
        .datastore("ds-1", &ds)
        .vm(
            "esx1.example.com",
            "42",
            &[
                ("disk", "[ds-1] web/web.vmdk"),
                ("disk", "[ds-1] web/web_1.vmdk"),
                ("disk", "[ds-1] db/db.vmdk"),
            ],
        )
        .write(&dir.join("inventory"))
}

#[test]
fn datastore_paths_through_the_simulated_host() {
    let dir = scratch_dir("exports-remote");
    let inv = inventory(&dir);
    let ds = dir.join("store");
    let script = format!(
        r#"set -e
qemu-img compare -q -f raw -F vmdk {} '{}' &
qemu-img compare -q -f raw -F vmdk {} '{}' &
wait %1; wait %2
if nbdinfo --size {} 2>/dev/null; then exit 3; fi
nbdinfo --list --json "$uri"
"#,
        nbd_uri("[ds-1] web/web.vmdk"),
        ds.join("web/web.vmdk").display(),
        nbd_uri("[ds-1] web/web_1.vmdk"),
        ds.join("web/web_1.vmdk").display(),
        nbd_uri("[ds-1] db/db.vmdk"),
    );
    let args: Vec<String> = [
        // `[` opens a set in a wildcard, as in nbdkit: the datastore's
        // brackets are escaped.
        r"export=\[ds-1\] web/*.vmdk",
        "server=esx1.example.com",
        "user=root",
        "password=pw",
        "vm=moref=42",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("thumbprint={THUMBPRINT}")])
    .collect();
    let o = serve(Some(&inv), &args, &script);
    assert!(o.status.success(), "{o:?}");
    let list = String::from_utf8_lossy(&o.stdout);
    // Disks opened through the wildcard are listed once opened.
    for name in ["[ds-1] web/web.vmdk", "[ds-1] web/web_1.vmdk"] {
        assert!(
            list.contains(&format!("\"export-name\": \"{name}\"")),
            "{list}"
        );
    }
    assert!(!list.contains("db.vmdk"), "{list}");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains(r#"db/db.vmdk": not a path matching the exported paths \[ds-1\] web/*.vmdk"#),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
