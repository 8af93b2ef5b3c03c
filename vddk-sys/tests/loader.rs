//! The loader against small stub libraries compiled here with the system C
//! compiler: one exporting everything, one lacking a core function, one
//! lacking every optional function, and directories with nothing loadable.

use std::path::{Path, PathBuf};
use std::process::Command;

use vddk_sys::{Capabilities, Library, LoadError, LoadOptions, REQUIRED_FUNCTIONS};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("loader-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles a stub exporting `functions` to `out`. ListTransportModes and
/// Grow return recognisable values so the tests can prove the pointers
/// they get are the library's.
fn build_stub(out: &Path, functions: &[&str]) {
    let mut src = String::from("#include <stdint.h>\n");
    for f in functions {
        src.push_str(&match *f {
            "VixDiskLib_ListTransportModes" => {
                "const char *VixDiskLib_ListTransportModes(void) { return \"stub:nbd\"; }\n".to_string()
            }
            "VixDiskLib_Grow" => "uint64_t VixDiskLib_Grow(void *c, const char *p, uint64_t cap, char u, void *f, void *d) { return 42; }\n".to_string(),
            name => format!("uint64_t {name}(void) {{ return 0; }}\n"),
        });
    }
    let c = out.with_extension("c");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&c, src).unwrap();
    let soname = out.file_name().unwrap().to_str().unwrap();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&c)
        .arg(format!("-Wl,-soname,{soname}"))
        .status()
        .expect("a C compiler (cc) is needed to build the stub libraries");
    assert!(status.success(), "compiling {}", c.display());
}

fn all_functions() -> Vec<&'static str> {
    REQUIRED_FUNCTIONS
        .iter()
        .chain(Capabilities::ALL)
        .copied()
        .collect()
}

/// The libdir only: the stubs other tests load share VDDK's sonames, so
/// the dynamic linker would hand them back by name.
fn load(dir: &Path) -> Result<Library, LoadError> {
    Library::load(
        &LoadOptions::default()
            .libdir(dir)
            .env_libdir(None::<&str>)
            .dynamic_linker(false),
    )
}

#[test]
fn complete_library_loads_with_every_capability() {
    let dir = scratch("complete");
    build_stub(&dir.join("lib64/libvixDiskLib.so.8"), &all_functions());
    let lib = load(&dir).expect("complete stub loads");
    assert_eq!(lib.path(), dir.join("lib64/libvixDiskLib.so.8"));
    assert_eq!(lib.major_version(), 8);
    let caps = lib.capabilities();
    assert!(caps.has_prepare_for_access() && caps.has_grow() && caps.has_get_connect_params());
    assert!(caps.iter().all(|(_, present)| present));
    assert_eq!(caps.iter().count(), Capabilities::ALL.len());

    // SAFETY: the stub's ListTransportModes returns a static string.
    let modes = unsafe { std::ffi::CStr::from_ptr(lib.core().VixDiskLib_ListTransportModes()) };
    assert_eq!(modes.to_str().unwrap(), "stub:nbd");
    let grow = lib.optional().grow.expect("grow resolved");
    // SAFETY: the stub's Grow ignores its arguments and returns 42.
    let r = unsafe {
        grow(
            std::ptr::null_mut(),
            std::ptr::null(),
            0,
            0,
            None,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 42);
}

#[test]
fn missing_core_function_is_refused_by_name() {
    let dir = scratch("missing-core");
    let functions: Vec<_> = all_functions()
        .into_iter()
        .filter(|f| *f != "VixDiskLib_Wait" && *f != "VixDiskLib_FreeBlockList")
        .collect();
    build_stub(&dir.join("lib64/libvixDiskLib.so.7"), &functions);
    match load(&dir) {
        Err(LoadError::MissingSymbols { path, missing }) => {
            assert_eq!(path, dir.join("lib64/libvixDiskLib.so.7"));
            assert_eq!(missing, vec!["VixDiskLib_Wait", "VixDiskLib_FreeBlockList"]);
            let msg = LoadError::MissingSymbols { path, missing }.to_string();
            assert!(
                msg.contains("lacks VixDiskLib_Wait, VixDiskLib_FreeBlockList"),
                "{msg}"
            );
            assert!(msg.contains("libdir="), "{msg}");
        }
        other => panic!("expected MissingSymbols, got {other:?}"),
    }
}

#[test]
fn library_without_optional_functions_loads_with_none() {
    let dir = scratch("core-only");
    build_stub(&dir.join("lib64/libvixDiskLib.so.6"), REQUIRED_FUNCTIONS);
    let lib = load(&dir).expect("core-only stub loads");
    assert_eq!(lib.major_version(), 6);
    let caps = lib.capabilities();
    assert!(!caps.has_prepare_for_access());
    assert!(!caps.has_allocate_connect_params());
    assert!(caps.iter().all(|(_, present)| !present));
    assert!(lib.optional().grow.is_none());
    assert!(lib.optional().end_access.is_none());
}

#[test]
fn nothing_found_lists_every_path_and_reason() {
    let dir = scratch("empty");
    let err = load(&dir).expect_err("empty dir");
    let msg = err.to_string();
    match &err {
        LoadError::NotFound { tried, .. } => {
            assert_eq!(tried.len(), 10);
            for a in tried {
                assert!(a.reason.contains("No such file or directory"), "{a:?}");
                assert!(msg.contains(&a.path.display().to_string()), "{msg}");
            }
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    for major in [9, 8, 7, 6, 5] {
        assert!(
            msg.contains(&format!(
                "lib64/libvixDiskLib.so.{major}: cannot open shared object file: No such file"
            )),
            "{msg}"
        );
    }
    assert!(
        msg.contains("libdir=") && msg.contains("VDDK_LIBDIR"),
        "{msg}"
    );
    assert!(msg.contains("libdir given explicitly"), "{msg}");
}

#[test]
fn lib64_is_preferred_and_broken_candidates_are_skipped_with_reason() {
    let dir = scratch("order");
    // A newer soname directly in the dir loses to lib64.
    build_stub(&dir.join("libvixDiskLib.so.9"), &all_functions());
    // A file that is not a shared object is reported and skipped.
    std::fs::create_dir_all(dir.join("lib64")).unwrap();
    std::fs::write(dir.join("lib64/libvixDiskLib.so.9"), [b'x'; 4096]).unwrap();
    build_stub(&dir.join("lib64/libvixDiskLib.so.7"), &all_functions());
    let lib = load(&dir).expect("loads lib64 .so.7");
    assert_eq!(lib.path(), dir.join("lib64/libvixDiskLib.so.7"));
    assert_eq!(lib.major_version(), 7);
    // Unload it first: the dynamic loader would hand back a loaded object.
    drop(lib);

    std::fs::remove_file(dir.join("lib64/libvixDiskLib.so.7")).unwrap();
    std::fs::remove_file(dir.join("libvixDiskLib.so.9")).unwrap();
    let msg = load(&dir).expect_err("only a broken file").to_string();
    assert!(
        msg.contains("lib64/libvixDiskLib.so.9: invalid ELF header"),
        "{msg}"
    );
}

#[test]
fn major_version_follows_links_to_the_real_file() {
    let dir = scratch("links");
    build_stub(&dir.join("lib64/libvixDiskLib.so.8.0.2"), &all_functions());
    std::os::unix::fs::symlink(
        "libvixDiskLib.so.8.0.2",
        dir.join("lib64/libvixDiskLib.so.8"),
    )
    .unwrap();
    std::os::unix::fs::symlink("libvixDiskLib.so.8", dir.join("lib64/libvixDiskLib.so.9")).unwrap();
    let lib = load(&dir).expect("loads through the links");
    assert_eq!(lib.path(), dir.join("lib64/libvixDiskLib.so.9"));
    assert_eq!(lib.major_version(), 8);
    assert_eq!(lib.version(), Some("8.0.2"));
}

#[test]
fn environment_libdir_is_used_when_none_is_explicit() {
    let dir = scratch("env");
    build_stub(&dir.join("libvixDiskLib.so.5"), &all_functions());
    let env = |d: &Path| {
        LoadOptions::default()
            .env_libdir(Some(d.as_os_str()))
            .dynamic_linker(false)
    };
    let lib = Library::load(&env(&dir)).expect("loads from the environment's libdir");
    assert_eq!(lib.path(), dir.join("libvixDiskLib.so.5"));
    assert_eq!(lib.major_version(), 5);

    let err = Library::load(&env(&dir.join("nowhere"))).expect_err("wrong env dir");
    assert!(err.to_string().contains("$VDDK_LIBDIR"), "{err}");
}
