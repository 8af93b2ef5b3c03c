//! TLS with the clients users run: nbdinfo and nbdcopy (libnbd, GnuTLS)
//! over `nbds://` URIs, and qemu-img with `tls-creds-x509`, against the
//! in-process server on 127.0.0.1; data checked byte for byte. Then
//! `--tls-verify-peer`: a client certificate the CA signed is let in, no
//! certificate or one from another CA is not.

mod nbd_common;

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, OnceLock};

use nbd_common::{memory, TestServer};
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::tls::{Tls, TlsMode};
use vddk_nbd::ServerConfig;
use vddk_tests::certs;
use vddk_tests::cmd::{command, output, run};
use vddk_tests::images::{noise, s};

const SIZE: u64 = 8 << 20;

fn certs() -> &'static certs::Certs {
    static CERTS: OnceLock<certs::Certs> = OnceLock::new();
    CERTS.get_or_init(|| certs::make(&vddk_tests::scratch_dir("tls-clients-certs")))
}

/// A memory disk with a pattern in its first and last MiB, served over TCP.
fn server(name: &str, mode: TlsMode, verify_peer: bool) -> (TestServer, Arc<MemoryBackend>) {
    let tls = Tls::load(mode, &certs().server, verify_peer).expect("load the test certificates");
    let disk = memory(SIZE);
    disk.fill(0, &noise(1 << 20, 1));
    disk.fill(SIZE - (1 << 20), &noise(1 << 20, 2));
    let config = ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    };
    (TestServer::tcp(name, disk.clone(), config), disk)
}

/// libnbd's URI for the server, reading certificates from `certs`.
fn nbds(srv: &TestServer, certs: &Path) -> String {
    format!(
        "nbds://localhost:{}/?tls-certificates={}",
        srv.port,
        certs.display()
    )
}

fn nbdinfo_size(uri: &str) -> Output {
    output(command("nbdinfo").args(["--size", uri]))
}

#[test]
fn nbdinfo_and_nbdcopy_over_nbds() {
    let (srv, disk) = server("tls-nbdcopy", TlsMode::Require, false);
    let uri = nbds(&srv, &certs().anonymous);
    assert_eq!(run("nbdinfo", ["--size", &uri]).trim(), SIZE.to_string());

    // Out: the whole disk, compared with what the server holds.
    let out = srv.dir.join("out.raw");
    run("nbdcopy", [uri.as_str(), s(&out)]);
    let copied = std::fs::read(&out).expect("read the copy");
    assert_eq!(copied.len() as u64, SIZE);
    assert!(
        copied == disk.contents(0, SIZE as usize),
        "nbdcopy over TLS read different bytes"
    );

    // In: new contents written through TLS land in the disk.
    let new = noise(SIZE as usize, 3);
    let input = srv.dir.join("in.raw");
    std::fs::write(&input, &new).expect("write the input");
    run("nbdcopy", [s(&input), &uri]);
    assert!(
        disk.contents(0, SIZE as usize) == new,
        "nbdcopy over TLS wrote different bytes"
    );

    // A plain client is turned away with the reason.
    let plain = nbdinfo_size(&format!("nbd://localhost:{}", srv.port));
    assert!(!plain.status.success(), "a plain client must be refused");
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(
        err.contains("TLS"),
        "libnbd reports the TLS requirement: {err}"
    );
}

#[test]
fn qemu_img_reads_and_writes_with_x509_credentials() {
    let (srv, disk) = server("tls-qemu", TlsMode::Require, false);
    let creds = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=client",
        certs().anonymous.display()
    );
    let nbd = format!("driver=nbd,host=localhost,port={},tls-creds=tls0", srv.port);
    let src = srv.dir.join("src.raw");
    let data = noise(SIZE as usize, 9);
    std::fs::write(&src, &data).expect("write the source");
    run(
        "qemu-img",
        [
            "convert",
            "-n",
            "--object",
            &creds,
            "-f",
            "raw",
            s(&src),
            "--target-image-opts",
            &nbd,
        ],
    );
    assert!(
        disk.contents(0, SIZE as usize) == data,
        "qemu-img wrote different bytes over TLS"
    );
    let file = format!(
        "driver=raw,file.driver=file,file.filename={}",
        src.display()
    );
    let compare = || {
        output(command("qemu-img").args([
            "compare",
            "--object",
            &creds,
            "--image-opts",
            &file,
            &nbd,
        ]))
    };
    let cmp = compare();
    assert!(cmp.status.success(), "{cmp:?}");
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(text.contains("Images are identical"), "{text}");

    // Wrong data must show: change one byte in the disk.
    disk.fill(SIZE / 2, &[data[(SIZE / 2) as usize] ^ 0xff]);
    let cmp = compare();
    assert_eq!(cmp.status.code(), Some(1), "{cmp:?}");
}

#[test]
fn tls_on_serves_plain_and_tls_clients() {
    let (srv, _) = server("tls-on", TlsMode::On, false);
    let tls = nbdinfo_size(&nbds(&srv, &certs().anonymous));
    let plain = nbdinfo_size(&format!("nbd://localhost:{}", srv.port));
    for o in [&tls, &plain] {
        assert!(o.status.success(), "{o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), SIZE.to_string());
    }
}

#[test]
fn verify_peer_admits_only_certificates_the_ca_signed() {
    let (srv, _) = server("tls-verify-peer", TlsMode::Require, true);
    let ok = nbdinfo_size(&nbds(&srv, &certs().client));
    assert!(
        ok.status.success(),
        "a CA-signed client is admitted: {ok:?}"
    );
    for (who, dir) in [
        ("no client certificate", &certs().anonymous),
        ("a certificate from another CA", &certs().rogue),
    ] {
        let o = nbdinfo_size(&nbds(&srv, dir));
        assert!(!o.status.success(), "{who} must be refused: {o:?}");
    }
    srv.wait_idle();
    // The refusals did not harm the server.
    let again = nbdinfo_size(&nbds(&srv, &certs().client));
    assert!(again.status.success(), "{again:?}");
}

#[test]
fn nbds_over_a_unix_socket() {
    let tls = Tls::load(TlsMode::Require, &certs().server, false).expect("certificates");
    let disk = memory(SIZE);
    let config = ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    };
    let srv = TestServer::unix("tls-unix", disk, config);
    let uri = format!(
        "nbds+unix:///?socket={}&tls-certificates={}",
        srv.socket.display(),
        certs().anonymous.display()
    );
    assert_eq!(run("nbdinfo", ["--size", &uri]).trim(), SIZE.to_string());
}
