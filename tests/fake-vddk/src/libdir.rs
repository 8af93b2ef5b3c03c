//! A VDDK-shaped directory holding this fake, for programs and tests that
//! take a `libdir` the way they would for VMware's library.
//!
//! The shared object is this package's `cdylib`. Cargo builds a
//! dependency's `cdylib` only when the package is built on its own, so
//! [`libdir`] runs `cargo build` on this package (once per target
//! directory) and lays the result out as `DIR/lib64/libvixDiskLib.so.8`,
//! with `.so.9`, `.so.7` and `.so.6` links to it, which is where VDDK
//! consumers look.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The environment variable that names a libdir laid out beforehand
/// (e.g. by a CI step); [`libdir`] then builds nothing.
pub const LIBDIR_ENV: &str = "VDDK_FAKE_LIBDIR";

/// Sonames VDDK consumers try, newest first; `.so.8` is the file.
const SONAMES: [&str; 3] = ["9", "7", "6"];

/// The libdir of a fake VDDK, built on first use and shared by the
/// process's later calls.
///
/// It is `$VDDK_FAKE_LIBDIR` when that is set; else `vddk-fake/libdir` in
/// the target directory of the running test or program (found from its
/// own path: `target/<profile>/deps/<test>` or `target/<profile>/<bin>`),
/// built with the `cargo` that runs the tests (`$CARGO`) in release mode.
/// The first call takes as long as compiling this package; later ones,
/// also in other processes, only check that it is up to date.
///
/// ```no_run
/// let libdir = vddk_fake::libdir().expect("the fake VDDK builds");
/// assert!(libdir.join("lib64/libvixDiskLib.so.8").exists());
/// ```
///
/// # Errors
/// A message with the command that failed and its output, when the
/// package cannot be built or the directory cannot be made.
pub fn libdir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(LIBDIR_ENV) {
            let dir = PathBuf::from(dir);
            let so = dir.join("lib64/libvixDiskLib.so.8");
            return if so.exists() {
                Ok(dir)
            } else {
                Err(format!(
                    "{LIBDIR_ENV}={} has no lib64/libvixDiskLib.so.8; lay it out with \
                     vddk_fake::build_libdir or unset {LIBDIR_ENV}",
                    dir.display()
                ))
            };
        }
        let target = own_target_dir()?;
        build_libdir(
            &target.join("vddk-fake/build"),
            &target.join("vddk-fake/libdir"),
        )
    })
    .clone()
}

/// Builds this package's shared object into `target_dir` (a Cargo target
/// directory of its own, so that it does not wait for the caller's) and
/// lays out the libdir `dir`; returns `dir`.
///
/// # Errors
/// As [`libdir`].
pub fn build_libdir(target_dir: &Path, dir: &Path) -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--lib", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // The caller's build settings (e.g. a coverage RUSTFLAGS) are for
        // the caller's code, not for the library under it.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    if std::env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the fake VDDK failed: {} build --release --lib --manifest-path {} \
             --target-dir {}:\n{}",
            Path::new(&cargo).display(),
            manifest.display(),
            target_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let built = target_dir.join("release").join(format!(
        "{}vddk_fake{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    install(&built, dir)?;
    Ok(dir.to_path_buf())
}

/// Copies `so` to `dir/lib64/libvixDiskLib.so.8` (through a new file and a
/// rename, so a process that has the old one mapped keeps it) and links
/// the other sonames to it.
fn install(so: &Path, dir: &Path) -> Result<(), String> {
    let lib64 = dir.join("lib64");
    let fail = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    std::fs::create_dir_all(&lib64).map_err(|e| fail("cannot create", &lib64, e))?;
    let file = lib64.join("libvixDiskLib.so.8");
    let tmp = lib64.join(format!(".libvixDiskLib.so.8.{}", std::process::id()));
    std::fs::copy(so, &tmp).map_err(|e| fail("cannot copy", so, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| fail("cannot replace", &file, e))?;
    for v in SONAMES {
        let link = lib64.join(format!("libvixDiskLib.so.{v}"));
        if std::fs::read_link(&link).is_err() {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("libvixDiskLib.so.8", &link)
                .map_err(|e| fail("cannot link", &link, e))?;
        }
    }
    Ok(())
}

/// The Cargo target directory the running executable was built into.
fn own_target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>; with a
    // --target triple, one level more. The target directory is the one
    // that holds a CACHEDIR.TAG, which Cargo writes there.
    exe.ancestors()
        .skip(1)
        .take(4)
        .find(|d| d.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "{} is not in a Cargo target directory; set {LIBDIR_ENV} to a libdir laid out \
                 with vddk_fake::build_libdir",
                exe.display()
            )
        })
}
