//! The real library's log lines and names for remote disks.

use super::DEFAULT_NFC_PORT;
use crate::ffi::SECTOR;

/// `N GB` as the real library prints a disk's size (whole GiB); smaller
/// disks in MB or KB (unverified: every public sample is a GB size).
pub fn size_text(sectors: u64) -> String {
    let bytes = sectors.saturating_mul(SECTOR);
    const KIB: u64 = 1024;
    if bytes >= KIB * KIB * KIB {
        format!("{} GB", bytes / (KIB * KIB * KIB))
    } else if bytes >= KIB * KIB {
        format!("{} MB", bytes / (KIB * KIB))
    } else {
        format!("{} KB", bytes / KIB)
    }
}

/// The real library's line for one opened link, e.g.
/// `DISKLIB-LINK  : Opened '/d/a.vmdk' (0xa): monolithicSparse, 20971520 sectors / 10 GB.`
/// The flags are 0xa, or 0xe read-only (0xe appears with read-only remote
/// opens in public logs; the bits' meaning is not documented).
pub fn opened_line(name: &str, read_only: bool, kind: &str, sectors: u64) -> String {
    let flags: u32 = if read_only { 0xe } else { 0xa };
    format!(
        "DISKLIB-LINK  : Opened '{name}' ({flags:#x}): {kind}, {sectors} sectors / {}.",
        size_text(sectors)
    )
}

/// The name the real library gives a remote disk:
/// `vpxa-nfcssl://[datastore1] vm/vm.vmdk@esx1.example.com:902`, `nfc` for
/// every transport but nbdssl, prefixed `SKIPZ-` (seen in public logs),
/// `ZLIB-` or `FASTLZ-` (by analogy, unverified) with compression.
pub fn nfc_url(transport: &str, flags: u32, ds_path: &str, host: &str, port: u32) -> String {
    let scheme = if transport == "nbdssl" {
        "vpxa-nfcssl"
    } else {
        "vpxa-nfc"
    };
    let compression = if flags & 64 != 0 {
        "SKIPZ-"
    } else if flags & 32 != 0 {
        "FASTLZ-"
    } else if flags & 16 != 0 {
        "ZLIB-"
    } else {
        ""
    };
    let port = if port == 0 { DEFAULT_NFC_PORT } else { port };
    format!("{compression}{scheme}://{ds_path}@{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_lines_have_the_real_shape() {
        assert_eq!(
            opened_line("/d/a.vmdk", false, "monolithicSparse", 20971520),
            "DISKLIB-LINK  : Opened '/d/a.vmdk' (0xa): monolithicSparse, 20971520 sectors / 10 GB."
        );
        let url = nfc_url("nbdssl", 0, "[ds1] vm/vm.vmdk", "esx1", 0);
        assert_eq!(url, "vpxa-nfcssl://[ds1] vm/vm.vmdk@esx1:902");
        assert_eq!(
            nfc_url("nbd", 64, "[ds1] a.vmdk", "h", 903),
            "SKIPZ-vpxa-nfc://[ds1] a.vmdk@h:903"
        );
        assert_eq!(size_text(4096), "2 MB");
    }
}
