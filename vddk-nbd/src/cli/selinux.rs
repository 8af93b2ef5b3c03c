//! `--selinux-label`: the SELinux context of the listening sockets, set
//! through `/proc/thread-self/attr/sockcreate` for the sockets this thread
//! creates, then reset. Where SELinux is not enabled there is no label to
//! set, and the option does nothing (nbdkit built without SELinux refuses
//! it instead; accepting it lets virt-v2v's command line run on any host).
//! Where it is enabled and the label cannot be set, the server stops with
//! the reason.

use std::path::Path;

const SOCKCREATE: &str = "/proc/thread-self/attr/sockcreate";

/// Whether SELinux is enabled on this host.
fn enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Runs `bind` with sockets created under `label` (when given).
pub fn with_label<T>(
    label: Option<&str>,
    bind: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let Some(label) = label else {
        return bind();
    };
    if !enabled() {
        log::debug!("--selinux-label={label}: SELinux is not enabled here; nothing to label");
        return bind();
    }
    std::fs::write(SOCKCREATE, label).map_err(|e| {
        format!("--selinux-label={label}: cannot set the socket label ({SOCKCREATE}): {e}")
    })?;
    let r = bind();
    if let Err(e) = std::fs::write(SOCKCREATE, "") {
        log::warn!("cannot reset the SELinux socket label: {e}");
    }
    r
}
