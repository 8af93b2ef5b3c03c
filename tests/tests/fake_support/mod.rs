//! Shared helpers for the fake-VDDK tests: loading the installed fake,
//! a C log sink, child processes for scenarios that need a fresh library
//! state (InitEx and Exit happen once per process), and small wrappers
//! over the raw calls.
#![allow(dead_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use vddk_sys::*;

pub mod link_world;
use vddk_tests::images::make_vmdk;

/// Masks a VixError down to its code.
pub fn code(err: VixError) -> u32 {
    (err & 0xFFFF) as u32
}

/// The fake, loaded once per process from the installed libdir.
pub fn lib() -> &'static Library {
    static LIB: OnceLock<Library> = OnceLock::new();
    LIB.get_or_init(|| {
        Library::load(&LoadOptions::default().libdir(vddk_tests::fake_libdir()))
            .expect("load the installed fake VDDK")
    })
}

type LogFn = unsafe extern "C" fn(*const c_char, *mut __va_list_tag);

struct Capture {
    log: LogFn,
    warn: LogFn,
    panic: LogFn,
    copy: unsafe extern "C" fn(*mut c_char, usize) -> usize,
}

/// Compiles capture.c with gcc (once per process) and loads it.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_support/capture.c");
        let dir = vddk_tests::scratch_dir("capture");
        let so = dir.join("libcapture.so");
        let status = Command::new("gcc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-lpthread")
            .status()
            .expect("run gcc");
        assert!(
            status.success(),
            "gcc failed to build the log capture library"
        );
        let path = CString::new(so.to_str().expect("utf-8 path")).expect("no NUL");
        // SAFETY: dlopen of the library just built; it stays loaded for the
        // life of the process (never dlclosed).
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        assert!(!handle.is_null(), "dlopen libcapture.so");
        let sym = |name: &CStr| {
            // SAFETY: looking up a symbol in a loaded library.
            let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
            assert!(!p.is_null(), "libcapture.so lacks {name:?}");
            p
        };
        // SAFETY: the symbols are C functions with exactly these signatures
        // (see capture.c); a va_list parameter is a pointer on x86_64.
        unsafe {
            Capture {
                log: std::mem::transmute::<*mut c_void, LogFn>(sym(c"capture_log")),
                warn: std::mem::transmute::<*mut c_void, LogFn>(sym(c"capture_warn")),
                panic: std::mem::transmute::<*mut c_void, LogFn>(sym(c"capture_panic")),
                copy: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(*mut c_char, usize) -> usize,
                >(sym(c"capture_copy")),
            }
        }
    })
}

/// Everything the library sent to the capture callbacks so far, each line
/// tagged `[log] `, `[warn] ` or `[panic] `.
pub fn captured() -> String {
    let c = capture();
    // SAFETY: asks only for the length.
    let n = unsafe { (c.copy)(std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; n];
    // SAFETY: `buf` has room for `n` bytes.
    let n = unsafe { (c.copy)(buf.as_mut_ptr() as *mut c_char, n) };
    buf.truncate(n);
    String::from_utf8_lossy(&buf).into_owned()
}

/// InitEx with the C capture callbacks.
pub fn init() -> VixError {
    let c = capture();
    // SAFETY: valid callbacks; NULL libDir/configFile are allowed.
    unsafe {
        lib().core().VixDiskLib_InitEx(
            8,
            0,
            Some(c.log),
            Some(c.warn),
            Some(c.panic),
            std::ptr::null(),
            std::ptr::null(),
        )
    }
}

/// InitEx that must succeed.
pub fn init_ok() {
    let err = init();
    assert_eq!(code(err), VIX_OK, "InitEx failed; log:\n{}", captured());
}

/// Exit.
pub fn exit() {
    // SAFETY: plain call; the rules it checks are what tests exercise.
    unsafe { lib().core().VixDiskLib_Exit() }
}

/// Owned strings behind a VixDiskLibConnectParams.
#[derive(Default, Clone)]
pub struct Params {
    pub vmx_spec: Option<String>,
    pub server: Option<String>,
    pub thumbprint: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub cookie: Option<String>,
    pub port: u32,
}

impl Params {
    /// A remote connection with a user name and password.
    pub fn password(
        server: &str,
        vmx: &str,
        thumbprint: &str,
        user: &str,
        password: &str,
    ) -> Params {
        Params {
            server: Some(server.into()),
            vmx_spec: Some(vmx.into()),
            thumbprint: Some(thumbprint.into()),
            user: Some(user.into()),
            password: Some(password.into()),
            ..Params::default()
        }
    }

    /// A remote connection with a session cookie.
    pub fn cookie(server: &str, vmx: &str, thumbprint: &str, cookie: &str) -> Params {
        Params {
            server: Some(server.into()),
            vmx_spec: Some(vmx.into()),
            thumbprint: Some(thumbprint.into()),
            cookie: Some(cookie.into()),
            ..Params::default()
        }
    }

    /// Calls `f` with a C view of these parameters.
    pub fn with<T>(&self, f: impl FnOnce(*const VixDiskLibConnectParams) -> T) -> T {
        let c = |s: &Option<String>| s.as_deref().map(|s| CString::new(s).expect("no NUL"));
        let owned = [
            c(&self.vmx_spec),
            c(&self.server),
            c(&self.thumbprint),
            c(&self.user),
            c(&self.password),
            c(&self.cookie),
        ];
        let p = |i: usize| {
            owned[i]
                .as_ref()
                .map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut c_char)
        };
        // SAFETY: all-zero is a valid ConnectParams (NULL pointers, zero enums).
        let mut params: VixDiskLibConnectParams = unsafe { std::mem::zeroed() };
        params.vmxSpec = p(0);
        params.serverName = p(1);
        params.thumbPrint = p(2);
        params.port = self.port;
        if self.cookie.is_some() {
            params.credType = VIXDISKLIB_CRED_SESSIONID;
            params.creds.sessionId = VixDiskLibSessionIdCreds {
                cookie: p(5),
                userName: p(3),
                key: std::ptr::null_mut(),
            };
        } else {
            params.credType = VIXDISKLIB_CRED_UID;
            params.creds.uid = VixDiskLibUidPasswdCreds {
                userName: p(3),
                password: p(4),
            };
        }
        f(&params)
    }
}

/// ConnectEx; returns the connection or the error.
pub fn connect(
    params: &Params,
    read_only: bool,
    snapshot: Option<&str>,
    transports: Option<&str>,
) -> Result<VixDiskLibConnection, VixError> {
    let snap = snapshot.map(|s| CString::new(s).expect("no NUL"));
    let modes = transports.map(|s| CString::new(s).expect("no NUL"));
    let mut conn: VixDiskLibConnection = std::ptr::null_mut();
    let err = params.with(|p| {
        // SAFETY: valid params and strings for the call; `conn` is a valid out slot.
        unsafe {
            lib().core().VixDiskLib_ConnectEx(
                p,
                read_only as Bool,
                snap.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                modes.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                &mut conn,
            )
        }
    });
    if code(err) == VIX_OK {
        Ok(conn)
    } else {
        Err(err)
    }
}

/// A local connection.
pub fn connect_local() -> VixDiskLibConnection {
    connect(&Params::default(), false, None, None).expect("local ConnectEx")
}

/// Open; returns the handle or the error.
pub fn open(
    conn: VixDiskLibConnection,
    path: &str,
    flags: u32,
) -> Result<VixDiskLibHandle, VixError> {
    let path = CString::new(path).expect("no NUL");
    let mut handle: VixDiskLibHandle = std::ptr::null_mut();
    // SAFETY: valid string and out slot; `conn` came from ConnectEx (or is
    // deliberately bogus: the fake never dereferences handles).
    let err = unsafe {
        lib()
            .core()
            .VixDiskLib_Open(conn, path.as_ptr(), flags, &mut handle)
    };
    if code(err) == VIX_OK {
        Ok(handle)
    } else {
        Err(err)
    }
}

/// Read into a fresh buffer.
pub fn read(h: VixDiskLibHandle, start: u64, count: u64) -> Result<Vec<u8>, VixError> {
    let mut buf = vec![0u8; (count * 512) as usize];
    // SAFETY: `buf` holds `count` sectors.
    let err = unsafe {
        lib()
            .core()
            .VixDiskLib_Read(h, start, count, buf.as_mut_ptr())
    };
    if code(err) == VIX_OK {
        Ok(buf)
    } else {
        Err(err)
    }
}

/// Write a buffer of whole sectors.
pub fn write(h: VixDiskLibHandle, start: u64, data: &[u8]) -> VixError {
    // SAFETY: `data` holds `len / 512` sectors.
    unsafe {
        lib()
            .core()
            .VixDiskLib_Write(h, start, (data.len() / 512) as u64, data.as_ptr())
    }
}

/// ReadAsync of whole sectors into `buf`, completing through `done`
/// with `data`; the caller keeps `buf` alive until its Wait returns.
pub fn read_async(
    h: VixDiskLibHandle,
    start: u64,
    buf: &mut [u8],
    done: VixDiskLibCompletionCB,
    data: *mut c_void,
) -> VixError {
    // SAFETY: `buf` holds `len / 512` sectors and outlives the request
    // (the caller waits for it).
    unsafe {
        lib().core().VixDiskLib_ReadAsync(
            h,
            start,
            (buf.len() / 512) as u64,
            buf.as_mut_ptr(),
            done,
            data,
        )
    }
}

/// WriteAsync of whole sectors from `buf`, like [`read_async`].
pub fn write_async(
    h: VixDiskLibHandle,
    start: u64,
    buf: &[u8],
    done: VixDiskLibCompletionCB,
    data: *mut c_void,
) -> VixError {
    // SAFETY: as for `read_async`.
    unsafe {
        lib().core().VixDiskLib_WriteAsync(
            h,
            start,
            (buf.len() / 512) as u64,
            buf.as_ptr(),
            done,
            data,
        )
    }
}

/// Wait, which must succeed.
pub fn wait(h: VixDiskLibHandle) {
    // SAFETY: plain call on a live handle.
    assert_eq!(code(unsafe { lib().core().VixDiskLib_Wait(h) }), VIX_OK);
}

/// Flush.
pub fn flush(h: VixDiskLibHandle) -> VixError {
    // SAFETY: plain call on a handle from Open.
    unsafe { lib().core().VixDiskLib_Flush(h) }
}

/// GetInfo, the info freed at once.
pub fn get_info(h: VixDiskLibHandle) -> VixError {
    let mut info: *mut VixDiskLibInfo = std::ptr::null_mut();
    // SAFETY: valid out slot; freed when returned.
    unsafe {
        let err = lib().core().VixDiskLib_GetInfo(h, &mut info);
        if !info.is_null() {
            lib().core().VixDiskLib_FreeInfo(info);
        }
        err
    }
}

/// QueryAllocatedBlocks, the list freed at once.
pub fn query(h: VixDiskLibHandle, start: u64, count: u64, chunk: u64) -> VixError {
    let mut list: *mut VixDiskLibBlockList = std::ptr::null_mut();
    // SAFETY: valid out slot; freed when returned.
    unsafe {
        let err = lib()
            .core()
            .VixDiskLib_QueryAllocatedBlocks(h, start, count, chunk, &mut list);
        if !list.is_null() {
            lib().core().VixDiskLib_FreeBlockList(list);
        }
        err
    }
}

/// Close.
pub fn close(h: VixDiskLibHandle) -> VixError {
    // SAFETY: plain call on a handle from Open (or a bogus one on purpose).
    unsafe { lib().core().VixDiskLib_Close(h) }
}

/// Disconnect.
pub fn disconnect(c: VixDiskLibConnection) -> VixError {
    // SAFETY: plain call on a connection from ConnectEx.
    unsafe { lib().core().VixDiskLib_Disconnect(c) }
}

/// GetTransportMode as a String.
pub fn transport(h: VixDiskLibHandle) -> String {
    // SAFETY: the result is a static NUL-terminated string.
    unsafe { CStr::from_ptr(lib().core().VixDiskLib_GetTransportMode(h)) }
        .to_string_lossy()
        .into_owned()
}

/// A monolithicFlat VMDK of `mib` MiB made by qemu-img, filled by qemu-io
/// with byte `fill` in its first MiB.
pub fn flat_disk(dir: &Path, name: &str, mib: u64, fill: u8) -> PathBuf {
    make_vmdk(
        &dir.join(name),
        "monolithicFlat",
        mib << 20,
        &[(0, 1 << 20, fill)],
    )
}

/// Env var that tells a re-invoked test binary which scenario to run.
const CHILD_VAR: &str = "FAKE_VDDK_TEST_CHILD";

/// Whether this process is the child running `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(name)
}

/// Re-runs this test binary with only test `name`, as a child process with
/// `env` set; returns its output.
pub fn spawn_child(name: &str, env: &[(&str, &str)]) -> Output {
    let libdir = vddk_tests::fake_libdir();
    let exe = std::env::current_exe().expect("current test executable");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .env("FAKE_VDDK_LIBDIR", &libdir);
    for var in [
        "FAKE_VDDK_STRICT",
        "FAKE_VDDK_INVENTORY",
        "FAKE_VDDK_STATS",
        "FAKE_VDDK_FAIL",
        "FAKE_VDDK_FAIL_PROB",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn the test binary as a child")
}

/// Output as text, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the child passed.
pub fn assert_passed(out: &Output) {
    assert!(
        out.status.success(),
        "child scenario failed ({:?}):\n{}",
        out.status,
        text(out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran no scenario (name mismatch?):\n{}",
        text(out)
    );
}

/// Asserts the child was killed by SIGABRT.
pub fn assert_aborted(out: &Output) {
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "expected an abort, got {:?}:\n{}",
        out.status,
        text(out)
    );
}

/// Runs `body` in a child process (fresh library state) with `env`, and
/// asserts it passed. In the child itself, runs `body`.
pub fn scenario(name: &str, env: &[(&str, &str)], body: impl FnOnce()) -> Option<Output> {
    if is_child(name) {
        body();
        return None;
    }
    let out = spawn_child(name, env);
    assert_passed(&out);
    Some(out)
}
