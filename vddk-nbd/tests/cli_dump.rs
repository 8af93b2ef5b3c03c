//! `--dump-plugin` against the fake library: the keys nbdkit's vddk
//! plugin prints, with values that match the library actually loaded.

use std::path::PathBuf;
use std::process::Command;

use vddk_tests::fake_libdir;

fn dump(libdir: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vddk-nbd"))
        .args(["vddk", &format!("libdir={libdir}"), "--dump-plugin"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run vddk-nbd")
}

#[test]
fn keys_describe_the_loaded_library() {
    let libdir = fake_libdir();
    let o = dump(&libdir.to_string_lossy());
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let key = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {out}"))
            .to_string()
    };
    assert_eq!(key("vddk_has_nfchostport"), "1");
    assert!(key("vddk_default_libdir").starts_with('/'), "{out}");
    let dll = PathBuf::from(key("vddk_dll"));
    assert!(dll.starts_with(libdir.join("lib64")), "{}", dll.display());
    assert!(dll.exists(), "{}", dll.display());
    let version = key("vddk_library_version");
    // The version is the real file's, behind the soname links.
    let real = std::fs::canonicalize(&dll).unwrap_or(dll.clone());
    assert!(
        real.to_string_lossy().ends_with(&format!(".so.{version}")),
        "vddk_library_version={version} does not match {}",
        dll.display()
    );
    let modes = key("vddk_transport_modes");
    assert!(modes.split(':').any(|m| m == "file"), "{modes}");
    for f in vddk_sys_required() {
        assert_eq!(key(f), "1", "{f}");
    }
    // Every VixDiskLib_ line is a function set to 1, nothing else.
    for l in out.lines().filter(|l| l.starts_with("VixDiskLib_")) {
        assert!(l.ends_with("=1"), "{l}");
    }
}

fn vddk_sys_required() -> [&'static str; 5] {
    [
        "VixDiskLib_InitEx",
        "VixDiskLib_Open",
        "VixDiskLib_ReadAsync",
        "VixDiskLib_Flush",
        "VixDiskLib_QueryAllocatedBlocks",
    ]
}

/// As nbdkit does (issue 20's `--dump-plugin` without VDDK): the plugin's
/// own keys on stdout and exit 0, so that a caller probing for the plugin
/// finds it; what could not be loaded, and where to point libdir=, on stderr.
#[test]
fn missing_library_still_dumps_the_plugin_keys() {
    let o = dump("/nonexistent/vddk");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    for k in [
        "name=vddk",
        "magic_config_key=file",
        "vddk_default_libdir=/",
    ] {
        assert!(out.lines().any(|l| l.starts_with(k)), "no {k} in {out}");
    }
    assert!(!out.contains("vddk_dll="), "{out}");
    assert!(!out.contains("VixDiskLib_"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/vddk") && err.contains("libdir"),
        "{err}"
    );
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
}

/// The manual's "Library location": with no libdir holding VDDK, the
/// dynamic linker's search path (`LD_LIBRARY_PATH`) finds it, and `-v`
/// says which file was loaded and how.
#[test]
fn ld_library_path_alone_finds_the_library() {
    let lib64 = fake_libdir().join("lib64");
    let o = Command::new(env!("CARGO_BIN_EXE_vddk-nbd"))
        .args(["vddk", "--dump-plugin"])
        .env("LD_LIBRARY_PATH", &lib64)
        .env_remove("VDDK_LIBDIR")
        .output()
        .expect("run vddk-nbd");
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let dll = out
        .lines()
        .find_map(|l| l.strip_prefix("vddk_dll="))
        .unwrap_or_else(|| panic!("no vddk_dll= in {out}"));
    assert!(PathBuf::from(dll).starts_with(&lib64), "{dll}");

    let dir = vddk_tests::scratch_dir("cli-ld-library-path");
    let disk = vddk_tests::images::make_vmdk(&dir.join("d.vmdk"), "monolithicSparse", 1 << 20, &[]);
    let o = vddk_tests::cmd::command(env!("CARGO_BIN_EXE_vddk-nbd"))
        .args(["-v", "-r", "-U", "-", "vddk"])
        .arg(&disk)
        .args(["--run", "nbdinfo --size \"$uri\""])
        .env("LD_LIBRARY_PATH", &lib64)
        .env_remove("VDDK_LIBDIR")
        .output()
        .expect("run vddk-nbd");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1048576");
    assert!(
        err.contains("found by the dynamic linker's search path"),
        "{err}"
    );
}
