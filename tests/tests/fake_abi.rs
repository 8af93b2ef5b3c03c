//! The fake VDDK's C ABI: exported symbols and soname, InitEx logging,
//! error texts, local disk I/O checked against qemu-img, async I/O,
//! allocated blocks, metadata and allocated-struct ownership.

mod fake_support;

use std::collections::BTreeSet;
use std::ffi::{c_char, c_void, CStr, CString};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fake_support::*;
use vddk_sys::*;
use vddk_tests::images::{make_vmdk, qemu_check, qemu_raw, s};
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
fn local_flat_disk_reads_and_writes_like_qemu() {
    scenario("local_flat_disk_reads_and_writes_like_qemu", &[], || {
        let dir = vddk_tests::scratch_dir("fake-local");
        let path = flat_disk(&dir, "disk.vmdk", 8, 0xab);
        init_ok();
        let conn = connect_local();
        let h = open(conn, path.to_str().unwrap(), 0).expect("open the flat disk");
        assert_eq!(transport(h), "file");
        let mut info: *mut VixDiskLibInfo = std::ptr::null_mut();
        // SAFETY: valid handle and out slot; freed with FreeInfo.
        unsafe {
            assert_eq!(code(lib().core().VixDiskLib_GetInfo(h, &mut info)), VIX_OK);
            assert_eq!((*info).capacity, 8 * 2048);
            assert_eq!((*info).numLinks, 1);
            lib().core().VixDiskLib_FreeInfo(info);
        }
        let first = read(h, 0, 2048).unwrap();
        assert!(
            first.iter().all(|b| *b == 0xab),
            "qemu-io's pattern reads back"
        );
        assert!(read(h, 2048, 8).unwrap().iter().all(|b| *b == 0));
        let data: Vec<u8> = (0..64 * 512).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(code(write(h, 4096, &data)), VIX_OK);
        assert_eq!(read(h, 4096, 64).unwrap(), data);
        assert_eq!(
            code(read(h, 8 * 2048 - 1, 2).unwrap_err()),
            VIX_E_DISK_OUTOFRANGE
        );
        assert_eq!(
            code(write(h, 8 * 2048, &data[..512])),
            VIX_E_DISK_OUTOFRANGE
        );
        // SAFETY: a NULL buffer is what is being tested; the fake checks it.
        let null = unsafe { lib().core().VixDiskLib_Read(h, 0, 1, std::ptr::null_mut()) };
        assert_eq!(code(null), VIX_E_INVALID_ARG);
        // SAFETY: plain call on a live handle.
        assert_eq!(code(unsafe { lib().core().VixDiskLib_Flush(h) }), VIX_OK);
        assert_eq!(code(close(h)), VIX_OK);

        let ro = open(conn, path.to_str().unwrap(), VIXDISKLIB_FLAG_OPEN_READ_ONLY).unwrap();
        assert_eq!(code(write(ro, 0, &data[..512])), VIX_E_FILE_READ_ONLY);
        assert_eq!(code(close(ro)), VIX_OK);
        assert_eq!(
            code(open(conn, dir.join("absent.vmdk").to_str().unwrap(), 0).unwrap_err()),
            VIX_E_FILE_NOT_FOUND
        );
        assert_eq!(code(disconnect(conn)), VIX_OK);
        exit();

        let raw = qemu_raw(&path);
        assert_eq!(raw.len(), 8 << 20);
        assert!(raw[..1 << 20].iter().all(|b| *b == 0xab));
        assert_eq!(
            &raw[4096 * 512..4160 * 512],
            &data[..],
            "qemu-img sees what the fake wrote"
        );
    });
}

#[test]
fn query_allocated_blocks_enforces_vddk_rules() {
    scenario("query_allocated_blocks_enforces_vddk_rules", &[], || {
        let dir = vddk_tests::scratch_dir("fake-query");
        let path = flat_disk(&dir, "disk.vmdk", 4, 1);
        init_ok();
        let conn = connect_local();
        let h = open(conn, path.to_str().unwrap(), 0).unwrap();
        let query = |start: u64, count: u64, chunk: u64| -> Result<Vec<(u64, u64)>, u32> {
            let mut list: *mut VixDiskLibBlockList = std::ptr::null_mut();
            // SAFETY: valid handle and out slot; the list is freed below.
            unsafe {
                let err = lib()
                    .core()
                    .VixDiskLib_QueryAllocatedBlocks(h, start, count, chunk, &mut list);
                if code(err) != VIX_OK {
                    return Err(code(err));
                }
                let n = (*list).numBlocks as usize;
                let blocks = std::slice::from_raw_parts((*list).blocks.as_ptr(), n);
                let out = blocks.iter().map(|b| (b.offset, b.length)).collect();
                assert_eq!(code(lib().core().VixDiskLib_FreeBlockList(list)), VIX_OK);
                Ok(out)
            }
        };
        assert_eq!(
            query(0, 8192, 128),
            Ok(vec![(0, 8192)]),
            "a flat extent is fully allocated"
        );
        assert_eq!(
            query(0, 8192, 64),
            Err(VIX_E_INVALID_ARG),
            "chunk below 128"
        );
        assert_eq!(
            query(64, 128, 128),
            Err(VIX_E_INVALID_ARG),
            "unaligned start"
        );
        assert_eq!(
            query(0, 200, 128),
            Err(VIX_E_INVALID_ARG),
            "count not whole chunks"
        );
        assert_eq!(
            query(0, 8192 + 128, 128),
            Err(VIX_E_INVALID_ARG),
            "beyond capacity"
        );
        assert_eq!(code(close(h)), VIX_OK);
        assert_eq!(code(disconnect(conn)), VIX_OK);
        exit();
    });
}

#[test]
fn sparse_disk_allocation_matches_qemu_map() {
    scenario("sparse_disk_allocation_matches_qemu_map", &[], || {
        let dir = vddk_tests::scratch_dir("fake-sparse");
        let path = dir.join("sparse.vmdk");
        make_vmdk(
            &path,
            "monolithicSparse",
            16 << 20,
            &[(1 << 20, 64 << 10, 0x5a), (9 << 20, 128 << 10, 0x11)],
        );
        init_ok();
        let conn = connect_local();
        let h = open(conn, path.to_str().unwrap(), VIXDISKLIB_FLAG_OPEN_READ_ONLY).unwrap();
        let mut list: *mut VixDiskLibBlockList = std::ptr::null_mut();
        // SAFETY: valid handle and out slot; the list is freed below.
        let blocks: Vec<(u64, u64)> = unsafe {
            assert_eq!(
                code(
                    lib()
                        .core()
                        .VixDiskLib_QueryAllocatedBlocks(h, 0, 32768, 128, &mut list)
                ),
                VIX_OK
            );
            let b = std::slice::from_raw_parts((*list).blocks.as_ptr(), (*list).numBlocks as usize)
                .iter()
                .map(|b| (b.offset, b.length))
                .collect();
            lib().core().VixDiskLib_FreeBlockList(list);
            b
        };
        assert_eq!(blocks, vec![(2048, 128), (18432, 256)]);
        assert!(read(h, 2048, 128).unwrap().iter().all(|b| *b == 0x5a));
        assert!(read(h, 18432, 256).unwrap().iter().all(|b| *b == 0x11));
        close(h);
        disconnect(conn);
        exit();
    });
}

static COMPLETED: AtomicUsize = AtomicUsize::new(0);
static LAST_ERROR: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn on_done(data: *mut c_void, result: VixError) {
    assert_eq!(data as usize, 0x1234);
    LAST_ERROR.store(result, Ordering::SeqCst);
    COMPLETED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn async_io_completes_through_the_callback() {
    scenario("async_io_completes_through_the_callback", &[], || {
        let dir = vddk_tests::scratch_dir("fake-async");
        let path = flat_disk(&dir, "disk.vmdk", 4, 0x77);
        init_ok();
        let conn = connect_local();
        let h = open(conn, path.to_str().unwrap(), 0).unwrap();
        let data = vec![0x42u8; 16 * 512];
        let mut back = vec![0u8; 16 * 512];
        // SAFETY: buffers outlive the Wait below, which waits for both callbacks.
        unsafe {
            let c = lib().core();
            assert_eq!(
                code(c.VixDiskLib_WriteAsync(
                    h,
                    100,
                    16,
                    data.as_ptr(),
                    Some(on_done),
                    0x1234 as *mut c_void
                )),
                VIX_ASYNC
            );
            assert_eq!(code(c.VixDiskLib_Wait(h)), VIX_OK);
            assert_eq!(COMPLETED.load(Ordering::SeqCst), 1);
            assert_eq!(
                code(c.VixDiskLib_ReadAsync(
                    h,
                    100,
                    16,
                    back.as_mut_ptr(),
                    Some(on_done),
                    0x1234 as *mut c_void
                )),
                VIX_ASYNC
            );
            assert_eq!(code(c.VixDiskLib_Wait(h)), VIX_OK);
        }
        assert_eq!(COMPLETED.load(Ordering::SeqCst), 2);
        assert_eq!(LAST_ERROR.load(Ordering::SeqCst), 0);
        assert_eq!(back, data);
        close(h);
        disconnect(conn);
        exit();
    });
}

#[test]
fn metadata_follows_the_required_length_protocol() {
    scenario("metadata_follows_the_required_length_protocol", &[], || {
        let dir = vddk_tests::scratch_dir("fake-meta");
        let path = flat_disk(&dir, "disk.vmdk", 4, 0);
        init_ok();
        let conn = connect_local();
        let h = open(conn, path.to_str().unwrap(), 0).unwrap();
        let opt = lib().optional();
        let (get_keys, read_md, write_md) = (
            opt.get_metadata_keys.unwrap(),
            opt.read_metadata.unwrap(),
            opt.write_metadata.unwrap(),
        );
        // SAFETY: buffers and out pointers sized as passed.
        unsafe {
            let mut need = 0u64;
            assert_eq!(
                code(get_keys(h, std::ptr::null_mut(), 0, &mut need)),
                VIX_E_BUFFER_TOOSMALL
            );
            assert!(need > 2);
            let mut keys = vec![0u8; need as usize];
            assert_eq!(
                code(get_keys(
                    h,
                    keys.as_mut_ptr() as *mut c_char,
                    need,
                    &mut need
                )),
                VIX_OK
            );
            let n = need as usize;
            assert_eq!(&keys[n - 2..n], b"\0\0", "keys end with a double NUL");
            let names: Vec<&str> = keys[..n - 2]
                .split(|b| *b == 0)
                .map(|k| std::str::from_utf8(k).unwrap())
                .collect();
            assert!(names.contains(&"adapterType"), "keys: {names:?}");

            let key = CString::new("adapterType").unwrap();
            let mut small = [0 as c_char; 2];
            assert_eq!(
                code(read_md(h, key.as_ptr(), small.as_mut_ptr(), 2, &mut need)),
                VIX_E_BUFFER_TOOSMALL
            );
            let mut buf = vec![0 as c_char; need as usize];
            assert_eq!(
                code(read_md(h, key.as_ptr(), buf.as_mut_ptr(), need, &mut need)),
                VIX_OK
            );
            assert!(!CStr::from_ptr(buf.as_ptr()).to_bytes().is_empty());

            let (k, v) = (
                CString::new("fakeTest").unwrap(),
                CString::new("hello world").unwrap(),
            );
            assert_eq!(code(write_md(h, k.as_ptr(), v.as_ptr())), VIX_OK);
            let mut buf = vec![0 as c_char; 64];
            assert_eq!(
                code(read_md(h, k.as_ptr(), buf.as_mut_ptr(), 64, &mut need)),
                VIX_OK
            );
            assert_eq!(
                CStr::from_ptr(buf.as_ptr()).to_str().unwrap(),
                "hello world"
            );
            assert_eq!(need, 12);
            let absent = CString::new("noSuchKey").unwrap();
            assert_eq!(
                code(read_md(h, absent.as_ptr(), buf.as_mut_ptr(), 64, &mut need)),
                VIX_E_DISK_KEY_NOTFOUND
            );
        }
        close(h);
        disconnect(conn);
        exit();
        let descriptor = std::fs::read_to_string(&path).unwrap();
        assert!(
            descriptor.contains("ddb.fakeTest = \"hello world\""),
            "descriptor:\n{descriptor}"
        );
    });
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
fn create_clone_and_unlink_disks_that_qemu_accepts() {
    scenario(
        "create_clone_and_unlink_disks_that_qemu_accepts",
        &[],
        || {
            let dir = vddk_tests::scratch_dir("fake-manage");
            let (sparse, flat) = (dir.join("new.vmdk"), dir.join("clone.vmdk"));
            let (sparse_c, flat_c) = (
                CString::new(sparse.to_str().unwrap()).unwrap(),
                CString::new(flat.to_str().unwrap()).unwrap(),
            );
            init_ok();
            let conn = connect_local();
            let opt = lib().optional();
            let mut params = VixDiskLibCreateParams {
                diskType: VIXDISKLIB_DISK_MONOLITHIC_SPARSE,
                adapterType: VIXDISKLIB_ADAPTER_SCSI_LSILOGIC,
                hwVersion: VIXDISKLIB_HWVERSION_ESX65 as u16,
                capacity: 4096,
                logicalSectorSize: 0,
                physicalSectorSize: 0,
            };
            // SAFETY: valid connection, NUL-terminated paths and params for each call.
            unsafe {
                let c = lib().core();
                assert_eq!(
                    code(c.VixDiskLib_Create(
                        conn,
                        sparse_c.as_ptr(),
                        &params,
                        None,
                        std::ptr::null_mut()
                    )),
                    VIX_OK
                );
                assert_eq!(
                    code(c.VixDiskLib_Create(
                        conn,
                        sparse_c.as_ptr(),
                        &params,
                        None,
                        std::ptr::null_mut()
                    )),
                    VIX_E_FILE_ALREADY_EXISTS
                );
            }
            let h = open(conn, sparse.to_str().unwrap(), 0).unwrap();
            let data: Vec<u8> = (0..128 * 512).map(|i| (i % 253) as u8).collect();
            assert_eq!(code(write(h, 1024, &data)), VIX_OK);
            assert_eq!(code(close(h)), VIX_OK);
            params.diskType = VIXDISKLIB_DISK_MONOLITHIC_FLAT;
            // SAFETY: as above; both connections are the same local one.
            unsafe {
                let clone = opt.clone.unwrap();
                let args = (
                    conn,
                    flat_c.as_ptr(),
                    conn,
                    sparse_c.as_ptr(),
                    &params as *const _,
                );
                assert_eq!(
                    code(clone(
                        args.0,
                        args.1,
                        args.2,
                        args.3,
                        args.4,
                        None,
                        std::ptr::null_mut(),
                        0
                    )),
                    VIX_OK
                );
                assert_eq!(
                    code(clone(
                        args.0,
                        args.1,
                        args.2,
                        args.3,
                        args.4,
                        None,
                        std::ptr::null_mut(),
                        0
                    )),
                    VIX_E_FILE_ALREADY_EXISTS,
                    "no overwrite"
                );
                assert_eq!(
                    code(opt.check_repair.unwrap()(conn, flat_c.as_ptr(), 0)),
                    VIX_OK
                );
                assert_eq!(
                    code(opt.rename.unwrap()(sparse_c.as_ptr(), flat_c.as_ptr())),
                    VIX_E_NOT_SUPPORTED
                );
            }
            qemu_check(&sparse);
            let (sparse_s, flat_s) = (s(&sparse), s(&flat));
            vddk_tests::run(
                "qemu-img",
                [
                    "compare", "-q", "-f", "vmdk", "-F", "vmdk", sparse_s, flat_s,
                ],
            );
            assert_eq!(&qemu_raw(&flat)[1024 * 512..1152 * 512], &data[..]);
            // SAFETY: valid connection and paths.
            unsafe {
                assert_eq!(code(opt.unlink.unwrap()(conn, flat_c.as_ptr())), VIX_OK);
                assert_eq!(code(opt.unlink.unwrap()(conn, sparse_c.as_ptr())), VIX_OK);
            }
            let left: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(
                left.is_empty(),
                "Unlink removes descriptors and extents, left {left:?}"
            );
            disconnect(conn);
            exit();
        },
    );
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
