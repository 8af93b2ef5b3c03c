//! The fake VDDK's C ABI: exported symbols and soname, InitEx logging,
//! error texts, connection parameters and allocated-struct ownership, and
//! a C program linked against the soname. Disk I/O is in fake_abi_disks.

mod fake_support;

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::process::Command;

use fake_support::*;
use vddk_sys::*;
use vddk_tests::run_cmd;

#[test]
fn exports_every_header_function_with_the_vddk8_soname() {
    let lib = vddk_tests::fake_libdir().join("lib64/libvixDiskLib.so.8");
    let header =
        std::fs::read_to_string(vddk_tests::workspace_root().join("vddk-sys/include/vddk_abi.h"))
            .unwrap();
    let wanted: BTreeSet<String> = header
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("VixDiskLib_") && !w.ends_with("Fn"))
        .map(str::to_string)
        .collect();
    assert!(wanted.len() >= 40, "header parse found only {wanted:?}");
    let nm = run_cmd(Command::new("nm").args(["-D", "--defined-only"]).arg(&lib));
    let exported: BTreeSet<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("VixDiskLib_"))
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = wanted.difference(&exported).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
    let readelf = run_cmd(Command::new("readelf").arg("-d").arg(&lib));
    assert!(
        String::from_utf8_lossy(&readelf.stdout).contains("Library soname: [libvixDiskLib.so.8]"),
        "wrong soname:\n{}",
        String::from_utf8_lossy(&readelf.stdout)
    );
    for v in [9, 7, 6] {
        let link = vddk_tests::fake_libdir().join(format!("lib64/libvixDiskLib.so.{v}"));
        assert_eq!(
            std::fs::read_link(&link).unwrap().to_str(),
            Some("libvixDiskLib.so.8")
        );
    }
    let loaded = lib_caps();
    assert!(
        loaded.iter().all(|(_, has)| *has),
        "optional functions missing: {loaded:?}"
    );
}

fn lib_caps() -> Vec<(&'static str, bool)> {
    fake_support::lib().capabilities().iter().collect()
}

#[test]
fn init_logs_the_version_line_through_a_c_callback() {
    scenario(
        "init_logs_the_version_line_through_a_c_callback",
        &[],
        || {
            init_ok();
            let log = captured();
            assert!(
                log.contains("[log] VMware VixDiskLib (8.0.2) Release build-"),
                "log:\n{log}"
            );
            // SAFETY: returns a static string.
            let modes = unsafe { CStr::from_ptr(lib().core().VixDiskLib_ListTransportModes()) };
            assert_eq!(modes.to_str().unwrap(), "file:san:hotadd:nbdssl:nbd");
            for (err, want) in [
                (0x0000_0001_0000_000Bu64, "The file is read-only"),
                (VIX_E_FAIL as u64, "Unknown error"),
                (
                    VIX_E_INVALID_ARG as u64,
                    "One of the parameters was invalid",
                ),
            ] {
                // SAFETY: NULL locale is allowed; the text is freed with FreeErrorText.
                unsafe {
                    let text = lib().core().VixDiskLib_GetErrorText(err, std::ptr::null());
                    assert_eq!(CStr::from_ptr(text).to_str().unwrap(), want);
                    lib().core().VixDiskLib_FreeErrorText(text);
                }
            }
            exit();
            assert!(captured().contains("VixDiskLib_Exit"), "Exit is logged");
        },
    );
}

#[test]
fn init_without_callbacks_logs_to_stderr() {
    let out = scenario("init_without_callbacks_logs_to_stderr", &[], || {
        // SAFETY: NULL callbacks are allowed by the ABI.
        let err = unsafe {
            lib().core().VixDiskLib_InitEx(
                8,
                0,
                None,
                None,
                None,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(code(err), VIX_OK);
        exit();
    });
    if let Some(out) = out {
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("VMware VixDiskLib (8.0.2) Release build-"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn connect_params_round_trip() {
    scenario("connect_params_round_trip", &[], || {
        init_ok();
        let opt = lib().optional();
        let (alloc, free, get) = (
            opt.allocate_connect_params.unwrap(),
            opt.free_connect_params.unwrap(),
            opt.get_connect_params.unwrap(),
        );
        // SAFETY: the struct is allocated and freed by the library; strings
        // we store in it stay ours and outlive the calls.
        unsafe {
            let p = alloc();
            assert!(!p.is_null());
            assert!((*p).serverName.is_null() && (*p).port == 0, "zeroed");
            let mut conn: VixDiskLibConnection = std::ptr::null_mut();
            assert_eq!(
                code(lib().core().VixDiskLib_ConnectEx(
                    p,
                    1,
                    std::ptr::null(),
                    std::ptr::null(),
                    &mut conn
                )),
                VIX_OK
            );
            free(p);
            let mut back: *mut VixDiskLibConnectParams = std::ptr::null_mut();
            assert_eq!(code(get(conn, &mut back)), VIX_OK);
            assert!((*back).serverName.is_null());
            assert_eq!((*back).credType, 0);
            free(back);
            assert_eq!(code(disconnect(conn)), VIX_OK);
        }
        exit();
        assert!(!captured().contains("RULE VIOLATION"), "{}", captured());
    });
}

#[test]
fn a_c_program_links_against_the_soname() {
    let dir = vddk_tests::scratch_dir("fake-cprog");
    let libdir = vddk_tests::fake_libdir().join("lib64");
    let disk = flat_disk(&dir, "disk.vmdk", 1, 0x3c);
    let src = dir.join("prog.c");
    std::fs::write(
        &src,
        r#"
#include <stdio.h>
#include <vddk_abi.h>
static void logf_(const char *fmt, va_list ap) { vfprintf(stdout, fmt, ap); }
int main(int argc, char **argv) {
    VixDiskLibConnectParams params = {0};
    VixDiskLibConnection conn;
    VixDiskLibHandle disk;
    uint8_t buf[512];
    if (VixDiskLib_InitEx(8, 0, logf_, logf_, logf_, NULL, NULL) != VIX_OK) return 1;
    if (VixDiskLib_ConnectEx(&params, 1, NULL, NULL, &conn) != VIX_OK) return 2;
    if (VixDiskLib_Open(conn, argv[1], VIXDISKLIB_FLAG_OPEN_READ_ONLY, &disk) != VIX_OK) return 3;
    if (VixDiskLib_Read(disk, 0, 1, buf) != VIX_OK) return 4;
    printf("first byte %#x via %s\n", buf[0], VixDiskLib_GetTransportMode(disk));
    VixDiskLib_Close(disk);
    VixDiskLib_Disconnect(conn);
    VixDiskLib_Exit();
    return argc == 2 ? 0 : 5;
}
"#,
    )
    .unwrap();
    let exe = dir.join("prog");
    run_cmd(
        Command::new("gcc")
            .arg("-I")
            .arg(vddk_tests::workspace_root().join("vddk-sys/include"))
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .arg("-L")
            .arg(&libdir)
            .arg("-l:libvixDiskLib.so.8"),
    );
    let ldd = run_cmd(
        Command::new("ldd")
            .arg(&exe)
            .env("LD_LIBRARY_PATH", &libdir),
    );
    assert!(
        String::from_utf8_lossy(&ldd.stdout).contains("libvixDiskLib.so.8 =>"),
        "the soname is recorded"
    );
    let out = run_cmd(
        Command::new(&exe)
            .arg(&disk)
            .env("LD_LIBRARY_PATH", &libdir),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("VMware VixDiskLib (8.0.2) Release build-"),
        "{stdout}"
    );
    assert!(stdout.contains("first byte 0x3c via file"), "{stdout}");
}
