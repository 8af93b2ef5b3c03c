//! `openssl s_server` in the place of a vSphere server's HTTPS port: a
//! real TLS listener on 127.0.0.1, for the tests where vddk-nbd fetches a
//! certificate (`thumbprint=auto`, `?no_verify=1`, the `thumbprint`
//! subcommand), with `openssl x509` computing the thumbprint to expect.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cmd::{command, run_cmd, stdout};
use crate::process::wait_until;

/// An `openssl s_server` on a free local port, killed on drop.
pub struct TlsServer {
    child: Child,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// Its self-signed certificate (PEM).
    pub cert: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    /// Makes a self-signed certificate for `localhost` in `dir` and
    /// serves it on a free port of 127.0.0.1, once it accepts connections.
    pub fn start(dir: &Path) -> TlsServer {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        run_cmd(
            command("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
                .args(["-subj", "/CN=localhost", "-days", "1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stderr(Stdio::null()),
        );
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        wait_until("s_server to start", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        TlsServer { child, port, cert }
    }

    /// `openssl x509 -fingerprint -<digest>` of the certificate: the
    /// colon-separated value (`-sha1` gives VDDK's thumbprint).
    pub fn fingerprint(&self, digest: &str) -> String {
        fingerprint(&self.cert, digest)
    }
}

/// `openssl x509 -noout -fingerprint -<digest>` of the PEM file `cert`:
/// the value after `=`.
pub fn fingerprint(cert: &Path, digest: &str) -> String {
    let o = run_cmd(
        command("openssl")
            .args(["x509", "-noout", "-fingerprint", digest, "-in"])
            .arg(cert),
    );
    let out = stdout(&o);
    out.trim()
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("unexpected openssl output {out}"))
}

/// A port of 127.0.0.1 nothing listens on right now (the system's choice,
/// released at once: another process could take it before the caller
/// does, which is unlikely within a test).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
