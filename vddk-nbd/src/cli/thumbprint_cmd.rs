//! `vddk-nbd thumbprint HOST[:PORT]`: prints a server's certificate
//! thumbprint as VDDK's `thumbprint=` wants it, and its SHA-256.

use vddk_nbd::thumbprint;

/// Runs the subcommand on its arguments (after `thumbprint`); returns the
/// exit status.
pub fn run(args: &[String]) -> i32 {
    let [target] = args else {
        eprintln!("usage: vddk-nbd thumbprint HOST[:PORT]   (the port defaults to 443)");
        return 1;
    };
    let result = thumbprint::parse_host_port(target)
        .map_err(|e| e.to_string())
        .and_then(|(host, port)| {
            thumbprint::fetch(&host, port, thumbprint::TIMEOUT).map_err(|e| e.to_string())
        });
    match result {
        Ok(fp) => {
            // The first line can be pasted as a parameter as it is.
            super::print(&format!("thumbprint={}\nsha256={}\n", fp.sha1, fp.sha256))
        }
        Err(e) => {
            eprintln!("vddk-nbd: error: {e}");
            1
        }
    }
}
