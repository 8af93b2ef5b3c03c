//! The fake as a C library on disks: local flat disks read and written
//! like qemu reads them, QueryAllocatedBlocks' rules and its map against
//! qemu's, async I/O through the C callback, the metadata length protocol,
//! and Create, Clone and Unlink making disks that qemu accepts.

mod fake_support;

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fake_support::*;
use vddk_sys::*;
use vddk_tests::images::{make_vmdk, qemu_check, qemu_raw, s};

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
        assert_eq!(code(flush(h)), VIX_OK);
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
        // The buffers outlive each Wait, which waits for the callback.
        let tag = 0x1234 as *mut c_void;
        assert_eq!(
            code(write_async(h, 100, &data, Some(on_done), tag)),
            VIX_ASYNC
        );
        wait(h);
        assert_eq!(COMPLETED.load(Ordering::SeqCst), 1);
        assert_eq!(
            code(read_async(h, 100, &mut back, Some(on_done), tag)),
            VIX_ASYNC
        );
        wait(h);
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
            let create = |params: &VixDiskLibCreateParams| {
                // SAFETY: valid connection, NUL-terminated path and params.
                code(unsafe {
                    lib().core().VixDiskLib_Create(
                        conn,
                        sparse_c.as_ptr(),
                        params,
                        None,
                        std::ptr::null_mut(),
                    )
                })
            };
            assert_eq!(create(&params), VIX_OK);
            assert_eq!(create(&params), VIX_E_FILE_ALREADY_EXISTS);
            let h = open(conn, sparse.to_str().unwrap(), 0).unwrap();
            let data: Vec<u8> = (0..128 * 512).map(|i| (i % 253) as u8).collect();
            assert_eq!(code(write(h, 1024, &data)), VIX_OK);
            assert_eq!(code(close(h)), VIX_OK);
            params.diskType = VIXDISKLIB_DISK_MONOLITHIC_FLAT;
            let clone = || {
                // SAFETY: as above; both connections are the same local one.
                code(unsafe {
                    opt.clone.unwrap()(
                        conn,
                        flat_c.as_ptr(),
                        conn,
                        sparse_c.as_ptr(),
                        &params,
                        None,
                        std::ptr::null_mut(),
                        0,
                    )
                })
            };
            assert_eq!(clone(), VIX_OK);
            assert_eq!(clone(), VIX_E_FILE_ALREADY_EXISTS, "no overwrite");
            // SAFETY: valid connection and paths.
            unsafe {
                assert_eq!(
                    code(opt.check_repair.unwrap()(conn, flat_c.as_ptr(), 0)),
                    VIX_OK
                );
                // Rename never replaces a disk.
                assert_eq!(
                    code(opt.rename.unwrap()(sparse_c.as_ptr(), flat_c.as_ptr())),
                    VIX_E_FILE_ALREADY_EXISTS
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
