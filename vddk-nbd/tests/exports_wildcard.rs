//! `export=WILDCARD`: the client's export name is the disk path, served
//! when it matches (`*` within one path component), for local files and
//! for `[datastore] path` names through the fake's simulated ESXi host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vddk_tests::{fake_libdir, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vddk-nbd");
const THUMBPRINT: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";

fn check(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("spawn");
    assert!(o.status.success(), "{cmd:?} failed: {o:?}");
    o
}

fn disk(path: &Path, size: &str, pattern: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    check(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk"])
            .arg(path)
            .arg(size),
    );
    check(
        Command::new("qemu-io")
            .args(["-f", "vmdk", "-c", &format!("write -q -P {pattern} 1M 1M")])
            .arg(path),
    );
}

/// The export name as the path of an NBD URI (RFC 3986 escapes).
fn uri_path(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Shell words that build the NBD URI of `name` on the server's socket.
fn nbd_uri(name: &str) -> String {
    format!("\"nbd+unix:///{}?socket=$unixsocket\"", uri_path(name))
}

fn serve(inv: Option<&Path>, args: &[String], script: &str) -> Output {
    let mut c = Command::new(BIN);
    c.env(
        "PATH",
        format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
    )
    .env_remove("LD_LIBRARY_PATH")
    .env_remove("FAKE_VDDK_INVENTORY")
    // Any breach of VDDK's threading rules aborts the server.
    .env("FAKE_VDDK_STRICT", "1");
    if let Some(inv) = inv {
        c.env("FAKE_VDDK_INVENTORY", inv);
    }
    c.args(["-U", "-", "-r"])
        .arg(format!("libdir={}", fake_libdir().display()))
        .args(args)
        .args(["--run", script])
        .output()
        .expect("spawn vddk-nbd")
}

#[test]
fn local_paths_matching_the_wildcard() {
    let dir = scratch_dir("exports-local");
    let vms = dir.join("vms");
    disk(&vms.join("web/web.vmdk"), "8M", "0x61");
    disk(&vms.join("db/db.vmdk"), "4M", "0x62");
    disk(&vms.join("db/deep/x.vmdk"), "4M", "0x63");
    disk(&dir.join("secret.vmdk"), "4M", "0x64");
    let web = vms.join("web/web.vmdk");
    let db = vms.join("db/db.vmdk");
    let script = format!(
        r#"set -e
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
        nbd_uri(&vms.join("db/deep/x.vmdk").to_string_lossy()),
        nbd_uri(&format!("{}/vms/../secret.vmdk", dir.display())),
        nbd_uri(&format!("{}/vms/web/missing.vmdk", dir.display())),
        nbd_uri(""),
    );
    let pattern = format!("export={}/vms/*/*.vmdk", dir.display());
    let o = serve(None, &[pattern], &script);
    assert!(o.status.success(), "{o:?}");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("deep/x.vmdk\": not a path matching the exported paths"),
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
    disk(&ds.join("web/web.vmdk"), "8M", "0x71");
    disk(&ds.join("web/web_1.vmdk"), "6M", "0x72");
    disk(&ds.join("db/db.vmdk"), "4M", "0x73");
    let inv = dir.join("inventory");
    std::fs::write(
        &inv,
        format!(
            "[server esx1.example.com]\nthumbprint = {THUMBPRINT}\nuser = root:pw\n\n\
             [datastore ds-1]\ndir = {}\n\n\
             [vm esx1.example.com 42]\ndisk = [ds-1] web/web.vmdk\ndisk = [ds-1] web/web_1.vmdk\n\
             disk = [ds-1] db/db.vmdk\n",
            ds.display()
        ),
    )
    .unwrap();
    inv
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
        "export=[ds-1] web/*.vmdk",
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
        log.contains("db/db.vmdk\": not a path matching the exported paths [ds-1] web/*.vmdk"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
