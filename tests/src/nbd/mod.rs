//! NBD from the client side: URIs, nbdsh scripts, and a byte-level client
//! ([`rawclient`]) that sends whatever a test says.

pub mod rawclient;

use std::path::Path;

/// The NBD URI of the default export on the Unix socket `socket`.
pub fn unix_uri(socket: &Path) -> String {
    export_uri(socket, "")
}

/// The NBD URI of export `name` on the Unix socket `socket`, the name
/// percent-encoded (RFC 3986) so that any name (`[ds] vm/vm.vmdk`) survives.
pub fn export_uri(socket: &Path, name: &str) -> String {
    format!("nbd+unix:///{}?socket={}", uri_path(name), socket.display())
}

/// `name` as the path of an NBD URI: unreserved characters and `/` as
/// they are, every other byte percent-encoded.
pub fn uri_path(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs a Python script under nbdsh (`h` is an unconnected handle, `nbd`
/// is imported, `sock` is the socket path); returns stdout.
pub fn nbdsh(socket: &Path, script: &str) -> String {
    let full = format!("sock = {:?}\n{script}", socket.display().to_string());
    crate::cmd::run("nbdsh", ["-c", &full])
}

/// `nbdinfo --map` of `uri`: (offset, length, type) rows, type 0 for data,
/// 3 for a hole that reads as zeroes.
pub fn nbdinfo_map(uri: &str) -> Vec<(u64, u64, u32)> {
    let map = crate::cmd::run("nbdinfo", ["--map", uri]);
    map.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| -> u64 {
                f.get(i)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("bad nbdinfo --map line {l:?} in\n{map}"))
            };
            (n(0), n(1), n(2) as u32)
        })
        .collect()
}
