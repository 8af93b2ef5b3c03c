//! Test support shared by every test crate of the workspace: the fake
//! library's libdir and a strict `Vddk` over it, scratch directories,
//! running external tools ([`cmd`]) and servers ([`process`]), test images
//! with qemu-img as the oracle ([`images`]), the fake's simulated vSphere
//! inventories ([`inventory`]) and call counts ([`stats`]), TLS
//! certificates ([`certs`]), a TLS server standing in for vSphere's
//! HTTPS port ([`openssl`]) and NBD clients ([`nbd`]).

pub mod certs;
pub mod cmd;
pub mod images;
pub mod inventory;
pub mod library;
pub mod nbd;
pub mod openssl;
pub mod process;
pub mod stats;

pub use cmd::{run, run_cmd};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// A VDDK-shaped directory holding the fake library (`lib64/libvixDiskLib.so.8`).
///
/// `ci/test` builds it once and sets `FAKE_VDDK_LIBDIR`; a bare `cargo test`
/// builds it here, in a target directory of its own so it never waits on
/// the cargo process that is running the tests.
pub fn fake_libdir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("FAKE_VDDK_LIBDIR") {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("lib64/libvixDiskLib.so.8").exists(),
                "FAKE_VDDK_LIBDIR={} has no lib64/libvixDiskLib.so.8; run ci/install-fake",
                dir.display()
            );
            return dir;
        }
        let root = workspace_root();
        let dir = root.join("target/fake-vddk");
        let status = Command::new("bash")
            .arg(root.join("ci/install-fake"))
            .arg(&dir)
            .env("CARGO_TARGET_DIR", root.join("target/fake-build"))
            .status()
            .expect("run ci/install-fake");
        assert!(status.success(), "ci/install-fake failed");
        dir
    })
    .clone()
}

/// The `libdir=` parameter naming [`fake_libdir`], as the programs take it.
pub fn libdir_param() -> String {
    format!("libdir={}", fake_libdir().display())
}

/// A fresh scratch directory under the target dir, removed by the caller
/// when it wants (kept on failure for inspection).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target/test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Whether an external program is on PATH (tests that need it fail loudly
/// in CI, where `ci/test` installs everything, rather than skip).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The top-level README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
