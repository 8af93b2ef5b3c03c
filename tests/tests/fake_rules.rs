//! The fake VDDK's rule enforcement: each breach returns an error and logs
//! `FAKE VDDK RULE VIOLATION: ...`, and with FAKE_VDDK_STRICT=1 aborts the
//! process instead. Every scenario runs twice in a child process: once
//! lenient (the child asserts the error codes), once strict (the parent
//! asserts SIGABRT).

mod fake_support;

use std::time::Duration;

use fake_support::*;
use vddk_sys::*;

const VIOLATION: &str = "FAKE VDDK RULE VIOLATION: ";

/// Runs `body` in a lenient and a strict child; both must report a breach
/// whose text contains `needle`.
fn rule(name: &str, env: &[(&str, &str)], needle: &str, body: impl FnOnce()) {
    if is_child(name) {
        body();
        return;
    }
    let lenient = spawn_child(name, env);
    assert_passed(&lenient);
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(
        stderr.contains(VIOLATION) && stderr.contains(needle),
        "no {needle:?} breach reported:\n{}",
        text(&lenient)
    );

    let mut strict_env = env.to_vec();
    strict_env.push(("FAKE_VDDK_STRICT", "1"));
    let strict = spawn_child(name, &strict_env);
    assert_aborted(&strict);
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        stderr.contains(needle) && stderr.contains("FAKE_VDDK_STRICT=1: aborting"),
        "{}",
        text(&strict)
    );
}

/// A local connection and an open 1 MiB flat disk.
fn setup(tag: &str) -> (VixDiskLibConnection, VixDiskLibHandle, std::path::PathBuf) {
    let dir = vddk_tests::scratch_dir(tag);
    let path = flat_disk(&dir, "disk.vmdk", 1, 0x5a);
    init_ok();
    let conn = connect_local();
    let h = open(conn, path.to_str().unwrap(), 0).expect("open");
    (conn, h, path)
}

#[test]
fn calls_before_init_are_refused() {
    rule(
        "calls_before_init_are_refused",
        &[],
        "VixDiskLib_ConnectEx called before VixDiskLib_InitEx",
        || {
            assert_eq!(
                code(connect(&Params::default(), false, None, None).unwrap_err()),
                VIX_E_FAIL
            );
        },
    );
}

#[test]
fn a_second_init_is_refused() {
    rule(
        "a_second_init_is_refused",
        &[],
        "VixDiskLib_InitEx called a second time",
        || {
            init_ok();
            assert_eq!(code(init()), VIX_E_FAIL);
            exit();
        },
    );
}

#[test]
fn exit_with_open_handles_is_reported() {
    rule(
        "exit_with_open_handles_is_reported",
        &[],
        "1 open connection(s) and 1 open disk handle(s)",
        || {
            let (_conn, _h, _) = setup("fake-rule-exit");
            exit();
        },
    );
}

#[test]
fn use_after_close_and_made_up_handles_are_refused() {
    rule(
        "use_after_close_and_made_up_handles_are_refused",
        &[],
        "used after it was closed",
        || {
            let (conn, h, _) = setup("fake-rule-stale");
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(read(h, 0, 1).unwrap_err()), VIX_E_INVALID_HANDLE);
            assert_eq!(code(close(h)), VIX_E_INVALID_HANDLE);
            assert_eq!(
                code(read(0x1234 as VixDiskLibHandle, 0, 1).unwrap_err()),
                VIX_E_INVALID_HANDLE
            );
            assert!(
                captured().contains("0x1234 is not a disk handle"),
                "{}",
                captured()
            );
            assert_eq!(
                code(read(conn as VixDiskLibHandle, 0, 1).unwrap_err()),
                VIX_E_INVALID_HANDLE,
                "a connection is not a disk"
            );
            assert_eq!(code(disconnect(conn)), VIX_OK);
            exit();
        },
    );
}

#[test]
fn concurrent_calls_on_one_handle_are_refused() {
    let env = [("FAKE_VDDK_LATENCY_US", "400000")];
    rule(
        "concurrent_calls_on_one_handle_are_refused",
        &env,
        "while another call on the same handle is running",
        || {
            let (conn, h, _) = setup("fake-rule-busy");
            let hv = h as usize;
            let first = std::thread::spawn(move || read(hv as VixDiskLibHandle, 0, 1).is_ok());
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(code(read(h, 0, 1).unwrap_err()), VIX_E_OBJECT_IS_BUSY);
            assert!(first.join().unwrap(), "the first call is unaffected");
            close(h);
            disconnect(conn);
            exit();
        },
    );
}

#[test]
fn overlapping_open_and_close_are_refused() {
    let env = [("FAKE_VDDK_LATENCY_US", "400000")];
    rule(
        "overlapping_open_and_close_are_refused",
        &env,
        "called while VixDiskLib_Open is running",
        || {
            let (conn, h, path) = setup("fake-rule-global");
            let (cv, p) = (conn as usize, path.to_str().unwrap().to_string());
            let opener = std::thread::spawn(move || {
                open(cv as VixDiskLibConnection, &p, 0).map(|h| h as usize)
            });
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(code(close(h)), VIX_E_OBJECT_IS_BUSY);
            let h2 = opener
                .join()
                .unwrap()
                .expect("the first Open is unaffected") as VixDiskLibHandle;
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(close(h2)), VIX_OK);
            disconnect(conn);
            exit();
        },
    );
}

#[test]
fn close_on_another_thread_is_refused_when_asked() {
    let env = [("FAKE_VDDK_SAME_THREAD", "1")];
    rule(
        "close_on_another_thread_is_refused_when_asked",
        &env,
        "on another thread than its Open",
        || {
            let (conn, h, _) = setup("fake-rule-thread");
            let hv = h as usize;
            let err = std::thread::spawn(move || close(hv as VixDiskLibHandle))
                .join()
                .unwrap();
            assert_eq!(code(err), VIX_E_FAIL);
            assert_eq!(
                code(close(h)),
                VIX_OK,
                "closing from the opening thread works"
            );
            disconnect(conn);
            exit();
        },
    );
}

#[test]
fn close_on_another_thread_is_allowed_by_default() {
    scenario("close_on_another_thread_is_allowed_by_default", &[], || {
        let (conn, h, _) = setup("fake-rule-thread-ok");
        let hv = h as usize;
        let err = std::thread::spawn(move || close(hv as VixDiskLibHandle))
            .join()
            .unwrap();
        assert_eq!(code(err), VIX_OK);
        disconnect(conn);
        exit();
        assert!(!captured().contains(VIOLATION), "{}", captured());
    });
}

#[test]
fn double_free_is_refused() {
    rule(
        "double_free_is_refused",
        &[],
        "VixDiskLib_FreeInfo given",
        || {
            let (conn, h, _) = setup("fake-rule-free");
            let mut info: *mut VixDiskLibInfo = std::ptr::null_mut();
            // SAFETY: the second FreeInfo is the breach under test; the fake
            // recognises the pointer as already freed and does not touch it.
            unsafe {
                assert_eq!(code(lib().core().VixDiskLib_GetInfo(h, &mut info)), VIX_OK);
                lib().core().VixDiskLib_FreeInfo(info);
                lib().core().VixDiskLib_FreeInfo(info);
            }
            close(h);
            disconnect(conn);
            exit();
        },
    );
}
