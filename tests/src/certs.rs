//! Certificates made with the `openssl` CLI at test time, laid out as
//! nbdkit (server side) and libnbd and qemu (client side) read them.
//! GnuTLS clients are strict about extensions, so the CA says it is one
//! and may sign certificates, and each certificate names its purpose.

use std::path::{Path, PathBuf};

use crate::cmd::{command, run_cmd};

/// The directories of one set of certificates.
pub struct Certs {
    /// Server side: `ca-cert.pem`, `server-cert.pem`, `server-key.pem`
    /// (for `localhost` and 127.0.0.1).
    pub server: PathBuf,
    /// A client that trusts the CA and has a certificate it signed:
    /// `ca-cert.pem`, `client-cert.pem`, `client-key.pem`.
    pub client: PathBuf,
    /// A client that trusts the CA and has no certificate.
    pub anonymous: PathBuf,
    /// A client that trusts the CA but whose certificate another CA signed.
    pub rogue: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    run_cmd(command("openssl").args(args).current_dir(dir));
}

/// A P-256 key in `key`.
fn key(dir: &Path, key: &str) {
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key,
        ],
        dir,
    );
}

/// A self-signed CA: `{name}-cert.pem`, `{name}-key.pem`.
fn ca(dir: &Path, name: &str) {
    let k = format!("{name}-key.pem");
    key(dir, &k);
    openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &k,
            "-out",
            &format!("{name}-cert.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
}

/// `{name}-cert.pem` and `{name}-key.pem`, signed by the CA `ca`, with
/// the extensions in `ext`.
fn issue(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) {
    let k = format!("{name}-key.pem");
    key(dir, &k);
    let csr = format!("{name}.csr");
    openssl(
        &[
            "req",
            "-new",
            "-key",
            &k,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
        dir,
    );
    let extfile = format!("{name}.ext");
    std::fs::write(dir.join(&extfile), ext).expect("write the extensions file");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}-cert.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-out",
            &format!("{name}-cert.pem"),
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
        dir,
    );
}

fn copy(from: &Path, to: &Path, names: &[(&str, &str)]) {
    std::fs::create_dir_all(to).expect("make a certificate directory");
    for (src, dst) in names {
        std::fs::copy(from.join(src), to.join(dst))
            .unwrap_or_else(|e| panic!("copy {src} to {}: {e}", to.display()));
    }
}

/// Makes every certificate under `dir`.
pub fn make(dir: &Path) -> Certs {
    let work = dir.join("pki-work");
    std::fs::create_dir_all(&work).expect("make the certificate work directory");
    ca(&work, "ca");
    ca(&work, "other-ca");
    issue(
        &work,
        "ca",
        "server",
        "localhost",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    let client_ext = "basicConstraints=CA:FALSE\n\
                      keyUsage=critical,digitalSignature,keyEncipherment\n\
                      extendedKeyUsage=clientAuth\n";
    issue(&work, "ca", "client", "client.example.com", client_ext);
    issue(&work, "other-ca", "rogue", "client.example.com", client_ext);

    let certs = Certs {
        server: dir.join("pki-server"),
        client: dir.join("pki-client"),
        anonymous: dir.join("pki-anonymous"),
        rogue: dir.join("pki-rogue"),
    };
    copy(
        &work,
        &certs.server,
        &[
            ("ca-cert.pem", "ca-cert.pem"),
            ("server-cert.pem", "server-cert.pem"),
            ("server-key.pem", "server-key.pem"),
        ],
    );
    copy(
        &work,
        &certs.client,
        &[
            ("ca-cert.pem", "ca-cert.pem"),
            ("client-cert.pem", "client-cert.pem"),
            ("client-key.pem", "client-key.pem"),
        ],
    );
    copy(&work, &certs.anonymous, &[("ca-cert.pem", "ca-cert.pem")]);
    copy(
        &work,
        &certs.rogue,
        &[
            ("ca-cert.pem", "ca-cert.pem"),
            ("rogue-cert.pem", "client-cert.pem"),
            ("rogue-key.pem", "client-key.pem"),
        ],
    );
    certs
}
