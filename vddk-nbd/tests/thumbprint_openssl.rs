//! Thumbprints against a real TLS server: `openssl s_server` with a
//! certificate made here, compared with `openssl x509 -fingerprint`; then
//! `thumbprint=auto`, `uri=...?no_verify=1` and a wrong thumbprint against
//! the fake's simulated ESXi host at the same address.

mod nbd_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nbd_common::{run_script, BIN};
use vddk_tests::cmd::{output_into_closed_pipe, run_cmd, stderr, stdout};
use vddk_tests::images::{make_vmdk, s};
use vddk_tests::inventory::{one_vm, Inventory, ONE_VM_DISK};
use vddk_tests::openssl::{free_port, TlsServer};
use vddk_tests::scratch_dir;

#[test]
fn subcommand_matches_openssl() {
    let dir = scratch_dir("thumb-openssl");
    let tls = TlsServer::start(&dir);
    let sha1 = tls.fingerprint("-sha1");
    let sha256 = tls.fingerprint("-sha256");
    assert_eq!(sha1.len(), 59, "{sha1}");

    let o = run_cmd(Command::new(BIN).args(["thumbprint", &format!("127.0.0.1:{}", tls.port)]));
    assert_eq!(stdout(&o), format!("thumbprint={sha1}\nsha256={sha256}\n"));
    // `| true`: the reader gone, the command still ends quietly.
    for _ in 0..5 {
        let o = output_into_closed_pipe(
            Command::new(BIN).args(["thumbprint", &format!("127.0.0.1:{}", tls.port)]),
        );
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert!(o.stderr.is_empty(), "{}", stderr(&o));
    }

    // Nothing listening: a clear error, not a hang.
    let free = free_port();
    let o = Command::new(BIN)
        .args(["thumbprint", &format!("127.0.0.1:{free}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot connect to 127.0.0.1"), "{o:?}");
    let o = Command::new(BIN)
        .args(["thumbprint", "h:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("HOST:PORT"), "{o:?}");
    std::fs::remove_dir_all(&dir).ok();
}

const DISK_SIZE: u64 = 16 << 20;

/// The fake's ESXi host at the TLS server's address and port, with the
/// certificate's thumbprint, and a VM whose disk is on datastore ds1.
fn inventory(dir: &Path, port: u16, thumbprint: &str) -> PathBuf {
    let port = port.to_string();
    let inv = one_vm(
        dir,
        "127.0.0.1",
        &[
            ("port", &port),
            ("thumbprint", thumbprint),
            ("user", "root:pw"),
        ],
    );
    make_vmdk(
        &dir.join("ds1/web/web.vmdk"),
        "monolithicSparse",
        DISK_SIZE,
        &[],
    );
    inv
}

/// Runs the server over the inventory with `args` (which name the disk)
/// until `nbdinfo --size` ends.
fn serve(inv: &Path, args: &[String]) -> Output {
    let env = [("FAKE_VDDK_INVENTORY", s(inv))];
    run_script(&env, args, r#"nbdinfo --size "$uri""#)
}

/// [`serve`] for VM 42's disk, as root with password `pw`.
fn serve_remote(inv: &Path, args: &[String]) -> Output {
    let mut args = args.to_vec();
    args.extend([
        "password=pw".into(),
        "vm=moref=42".into(),
        ONE_VM_DISK.into(),
    ]);
    serve(inv, &args)
}

#[test]
fn fetched_thumbprints_open_and_mismatches_name_both() {
    let dir = scratch_dir("thumb-remote");
    let tls = TlsServer::start(&dir);
    let sha1 = tls.fingerprint("-sha1");
    let inv = inventory(&dir, tls.port, &sha1);
    let port = tls.port;

    // no_verify=1: fetched, trusted, and logged with its value.
    let o = serve_remote(
        &inv,
        &[format!("uri=esx://root@127.0.0.1:{port}/?no_verify=1")],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), DISK_SIZE.to_string());
    let log = stderr(&o);
    assert!(
        log.contains("warning: no_verify=1") && log.contains(&format!("thumbprint={sha1}")),
        "{log}"
    );

    // thumbprint=auto with the classic parameters.
    let o = serve_remote(
        &inv,
        &[
            "server=127.0.0.1".into(),
            format!("port={port}"),
            "user=root".into(),
            "thumbprint=auto".into(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(
        stderr(&o).contains("thumbprint=auto: trusting 127.0.0.1"),
        "{o:?}"
    );

    // A URI without no_verify needs a thumbprint.
    let o = serve_remote(&inv, &[format!("uri=esx://root@127.0.0.1:{port}/")]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("needs the server's thumbprint"),
        "{o:?}"
    );

    // A wrong thumbprint: VDDK's E_FAIL becomes a message with both values.
    // The first byte changed (the certificate is new each run, so its
    // own first byte may be 00).
    let first = if sha1.starts_with("00") { "11" } else { "00" };
    let wrong = format!("{first}{}", &sha1[2..]);
    let o = serve_remote(
        &inv,
        &[
            format!("uri=esx://root@127.0.0.1:{port}/"),
            format!("thumbprint={wrong}"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "the server's certificate thumbprint is {sha1} but thumbprint={wrong} was given"
        )),
        "{err}"
    );

    // The manuals' bogus thumbprint: not one at all, and the error still
    // gives the real one to paste.
    let o = serve_remote(
        &inv,
        &[
            "server=127.0.0.1".into(),
            format!("port={port}"),
            "user=root".into(),
            "thumbprint=12".into(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.contains("thumbprint=12") && err.contains(&format!("use thumbprint={sha1}")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn vpx_uri_reaches_a_vcenter_with_a_fetched_thumbprint() {
    let dir = scratch_dir("thumb-vpx");
    let tls = TlsServer::start(&dir);
    let sha1 = tls.fingerprint("-sha1");
    let port = tls.port;
    // The same disk set-up as the ESXi case, served by a vCenter instead.
    inventory(&dir, port, &sha1);
    let port_text = port.to_string();
    let inv = Inventory::new()
        .server(
            "localhost",
            &[
                ("kind", "vcenter"),
                ("port", &port_text),
                ("thumbprint", &sha1),
                ("user", "administrator@vsphere.local:pw"),
            ],
        )
        .datastore("ds1", &dir.join("ds1"))
        .vm("localhost", "vm-42", &[("disk", ONE_VM_DISK)])
        .write(&dir.join("inventory-vc"));
    let o = serve(
        &inv,
        &[
            format!("uri=vpx://administrator%40vsphere.local@localhost:{port}/DC1/Cluster%20A/esx1.example.com?no_verify=1"),
            "password=pw".into(),
            "vm=moref=vm-42".into(),
            format!("file=<source file='{ONE_VM_DISK}'/>"),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), DISK_SIZE.to_string());
    assert!(stderr(&o).contains(&format!("thumbprint={sha1}")), "{o:?}");
    std::fs::remove_dir_all(&dir).ok();
}
