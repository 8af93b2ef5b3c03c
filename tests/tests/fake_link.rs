//! The fake VDDK's link model: bandwidth per NFC connection and per host,
//! lost connections, session expiry, the NFC connection limit, and the
//! `DISKLIB-LINK  : Opened` line that KubeVirt CDI reads, and the check of
//! the link knobs at InitEx. Each scenario
//! runs in a child process (fresh library state) with its environment.
//! Timings are checked as lower bounds only, with margin.

mod fake_support;

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake_support::*;
use vddk_sys::*;
use vddk_tests::inventory::Inventory;

const TP_ESX: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
const TP_VC: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";
const COOKIE: &str = "vmware_soap_session=\"52f3a1b2-9c1d\"";
const DISK: &str = "[ds1] vm1/vm1.vmdk";
const DISK2: &str = "[ds1] vm1/vm1_1.vmdk";
const MIB: usize = 1 << 20;

/// Where the child finds the world its parent made.
const DIR_VAR: &str = "FAKE_LINK_TEST_DIR";

/// A datastore with two 4 MiB flat disks (first MiB 0x11 and 0x22), an
/// ESXi host and a vCenter whose VM lives on `esx7.example.com`;
/// `esx_extra` is added to the ESXi host's section. Returns the env the
/// child needs.
fn world(name: &str, esx_extra: &str, vm_host: &str) -> Vec<(String, String)> {
    let dir = vddk_tests::scratch_dir(name);
    let vmdir = dir.join("ds1/vm1");
    std::fs::create_dir_all(&vmdir).unwrap();
    flat_disk(&vmdir, "vm1.vmdk", 4, 0x11);
    flat_disk(&vmdir, "vm1_1.vmdk", 4, 0x22);
    let path = Inventory::new()
        .server(
            "esx1.example.com",
            &[
                ("kind", "esxi"),
                ("thumbprint", TP_ESX),
                ("user", "root:s3cret"),
                ("cookie", COOKIE),
                ("transports", "nbdssl:nbd"),
            ],
        )
        .lines(esx_extra)
        .server(
            "vc.example.com",
            &[
                ("kind", "vcenter"),
                ("thumbprint", TP_VC),
                ("user", "admin@vsphere.local:pw"),
                ("cookie", COOKIE),
                ("transports", "nbd"),
            ],
        )
        .datastore("ds1", &dir.join("ds1"))
        .vm("esx1.example.com", "42", &[("disk", DISK), ("disk", DISK2)])
        .vm(
            "vc.example.com",
            "vm-42",
            &[("disk", DISK), ("disk", DISK2), ("esx_host", vm_host)],
        )
        .write(&dir.join("inventory.ini"));
    vec![
        (
            "FAKE_VDDK_INVENTORY".into(),
            path.to_str().unwrap().to_string(),
        ),
        (DIR_VAR.into(), dir.to_str().unwrap().to_string()),
    ]
}

/// Runs `body` as child scenario `name`, with a world (made in the parent
/// only) and `env`.
fn run(name: &str, esx_extra: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    let mut all: Vec<(String, String)> = if is_child(name) {
        Vec::new()
    } else {
        world(name, esx_extra, "esx7.example.com")
    };
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    scenario(name, &refs, body);
}

fn esx() -> Params {
    Params::password("esx1.example.com", "moref=42", TP_ESX, "root", "s3cret")
}

fn vc_cookie() -> Params {
    Params::cookie("vc.example.com", "moref=vm-42", TP_VC, COOKIE)
}

fn vc_password() -> Params {
    Params::password(
        "vc.example.com",
        "moref=vm-42",
        TP_VC,
        "admin@vsphere.local",
        "pw",
    )
}

/// Reads `bytes` from sector 0 in 256 KiB requests; returns the time taken.
fn read_all(h: VixDiskLibHandle, bytes: usize, fill: u8) -> Duration {
    let chunk = 512u64;
    let t = Instant::now();
    for i in 0..(bytes / (chunk as usize * 512)) as u64 {
        let data = read(h, i * chunk, chunk).expect("read through the link");
        if i * chunk * 512 < MIB as u64 {
            assert!(data.iter().all(|b| *b == fill), "right bytes at {i}");
        }
    }
    t.elapsed()
}

static DONE: AtomicUsize = AtomicUsize::new(0);
static OK: AtomicUsize = AtomicUsize::new(0);
static LAST_ERR: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn on_done(_data: *mut c_void, result: VixError) {
    if code(result) == VIX_OK {
        OK.fetch_add(1, Ordering::SeqCst);
    } else {
        LAST_ERR.store(result, Ordering::SeqCst);
    }
    DONE.fetch_add(1, Ordering::SeqCst);
}

fn read_async(h: VixDiskLibHandle, start: u64, buf: &mut [u8]) -> VixError {
    // SAFETY: `buf` lives until the caller's Wait returns.
    unsafe {
        lib().core().VixDiskLib_ReadAsync(
            h,
            start,
            (buf.len() / 512) as u64,
            buf.as_mut_ptr(),
            Some(on_done),
            std::ptr::null_mut(),
        )
    }
}

fn wait(h: VixDiskLibHandle) {
    // SAFETY: plain call on a live handle.
    assert_eq!(code(unsafe { lib().core().VixDiskLib_Wait(h) }), VIX_OK);
}

fn get_info(h: VixDiskLibHandle) -> VixError {
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

fn flush(h: VixDiskLibHandle) -> VixError {
    // SAFETY: plain call on a live handle.
    unsafe { lib().core().VixDiskLib_Flush(h) }
}

fn query(h: VixDiskLibHandle) -> VixError {
    let mut list: *mut VixDiskLibBlockList = std::ptr::null_mut();
    // SAFETY: valid out slot; freed when returned.
    unsafe {
        let err = lib()
            .core()
            .VixDiskLib_QueryAllocatedBlocks(h, 0, 8192, 128, &mut list);
        if !list.is_null() {
            lib().core().VixDiskLib_FreeBlockList(list);
        }
        err
    }
}

#[test]
fn bandwidth_makes_a_transfer_take_size_over_rate() {
    let env = [
        ("FAKE_VDDK_BANDWIDTH", "8M"),
        ("FAKE_VDDK_ASYNC_LATENCY_US", "100000"),
    ];
    run(
        "bandwidth_makes_a_transfer_take_size_over_rate",
        "",
        &env,
        || {
            init_ok();
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            let took = read_all(h, 4 * MIB, 0x11);
            assert!(
                took >= Duration::from_millis(450),
                "4 MiB at 8 MiB/s took {took:?}"
            );

            // Pipelined async reads: the latency overlaps, the transfers follow
            // each other: 2 MiB at 8 MiB/s plus one latency.
            let mut bufs = vec![vec![0u8; 256 * 1024]; 8];
            let t = Instant::now();
            for (i, b) in bufs.iter_mut().enumerate() {
                assert_eq!(code(read_async(h, i as u64 * 512, b)), VIX_ASYNC);
            }
            wait(h);
            let took = t.elapsed();
            assert_eq!(OK.load(Ordering::SeqCst), 8);
            for (i, b) in bufs.iter().enumerate() {
                let fill = if i < 4 { 0x11 } else { 0 };
                assert!(b.iter().all(|x| *x == fill), "request {i}");
            }
            assert!(
                took >= Duration::from_millis(300),
                "2 MiB pipelined at 8 MiB/s + 100 ms latency took {took:?}"
            );
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);
            exit();
            let log = captured();
            assert!(log.contains("bandwidth=8388608 B/s"), "{log}");
            assert!(!log.contains("RULE VIOLATION"), "{log}");
        },
    );
}

#[test]
fn host_bandwidth_is_shared_by_two_handles() {
    let env = [("FAKE_VDDK_HOST_BANDWIDTH", "8M")];
    run("host_bandwidth_is_shared_by_two_handles", "", &env, || {
        init_ok();
        let c = connect(&esx(), true, None, None).expect("login");
        let h1 = open(c, DISK, 0).expect("open disk 1");
        let h2 = open(c, DISK2, 0).expect("open disk 2");
        let alone = read_all(h1, 2 * MIB, 0x11);
        assert!(
            alone >= Duration::from_millis(220),
            "one handle alone: 2 MiB at 8 MiB/s took {alone:?}"
        );
        // Handles are pointers; each thread uses only its own.
        let (a, b) = (h1 as usize, h2 as usize);
        let t = Instant::now();
        let t1 = std::thread::spawn(move || read_all(a as VixDiskLibHandle, 2 * MIB, 0x11));
        let t2 = std::thread::spawn(move || read_all(b as VixDiskLibHandle, 2 * MIB, 0x22));
        t1.join().expect("reader 1");
        t2.join().expect("reader 2");
        let both = t.elapsed();
        assert!(
            both >= Duration::from_millis(420),
            "two handles sharing 8 MiB/s: 4 MiB took {both:?}"
        );
        assert_eq!(code(close(h1)), VIX_OK);
        assert_eq!(code(close(h2)), VIX_OK);
        assert_eq!(code(disconnect(c)), VIX_OK);
        exit();
    });
}

#[test]
fn drop_after_bytes_loses_the_connection_until_reconnect() {
    let env = [
        ("FAKE_VDDK_DROP_AFTER_BYTES", "1M"),
        ("FAKE_VDDK_BANDWIDTH", "8M"),
    ];
    run(
        "drop_after_bytes_loses_the_connection_until_reconnect",
        "",
        &env,
        || {
            init_ok();
            let lost = VIX_E_HOST_TCP_CONN_LOST;
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            assert!(read(h, 0, 1024).is_ok(), "bytes 1..=512K");
            assert!(read(h, 1024, 1024).is_ok(), "bytes ..=1M");
            assert_eq!(code(read(h, 2048, 1).unwrap_err()), lost, "byte 1M+1");
            // It does not heal: every later call on the handle fails.
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost);
            assert_eq!(code(write(h, 0, &[0u8; 512])), lost);
            assert_eq!(code(get_info(h)), lost);
            assert_eq!(code(flush(h)), lost);
            assert_eq!(code(query(h)), lost);
            let mut buf = vec![0u8; 512];
            assert_eq!(code(read_async(h, 0, &mut buf)), lost);
            assert_eq!(
                code(open(c, DISK2, 0).unwrap_err()),
                lost,
                "Open on the lost connection"
            );
            assert_eq!(code(close(h)), VIX_OK, "Close of a lost disk succeeds");
            assert_eq!(code(disconnect(c)), VIX_OK, "so does Disconnect");

            // Async requests in flight when the loss happens call back with
            // the error: 4 x 512 KiB at 8 MiB/s, the connection dies at 1 MiB.
            let c = connect(&esx(), false, None, None).expect("new login");
            let h = open(c, DISK, 0).expect("new open");
            let mut bufs = vec![vec![0u8; 512 * 1024]; 4];
            for (i, b) in bufs.iter_mut().enumerate() {
                assert_eq!(code(read_async(h, i as u64 * 1024, b)), VIX_ASYNC);
            }
            wait(h);
            assert_eq!(DONE.load(Ordering::SeqCst), 4);
            assert_eq!(OK.load(Ordering::SeqCst), 2, "the first MiB arrives");
            assert_eq!(code(LAST_ERR.load(Ordering::SeqCst)), lost);
            assert!(bufs[0].iter().all(|b| *b == 0x11));
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost);
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);

            // A new ConnectEx and Open work again, with the right bytes.
            let c = connect(&esx(), false, None, None).expect("login again");
            let h = open(c, DISK, 0).expect("open again");
            assert!(read(h, 0, 8).unwrap().iter().all(|b| *b == 0x11));
            assert!(read(h, 2048, 8).unwrap().iter().all(|b| *b == 0));
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);
            exit();
            let log = captured();
            assert!(log.contains("[NFC ERROR]NfcNetTcpRead: bRead: -1"), "{log}");
            assert!(log.contains("Error 14011"), "{log}");
            assert!(log.contains("drop_after_bytes"), "{log}");
            assert!(!log.contains("RULE VIOLATION"), "{log}");
        },
    );
}

#[test]
fn drop_after_ms_and_drop_every_bytes_lose_connections() {
    let env = [("FAKE_VDDK_DROP_AFTER_MS", "400")];
    let extra = "drop_every_bytes = 1M";
    run(
        "drop_after_ms_and_drop_every_bytes_lose_connections",
        extra,
        &env,
        || {
            init_ok();
            let lost = VIX_E_HOST_TCP_CONN_LOST;
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            assert!(read(h, 0, 2048).is_ok(), "the host's first MiB");
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost, "byte 1M+1");
            close(h);
            disconnect(c);

            // The next connection carries the host's second MiB, then dies;
            // the one after that runs out of time instead.
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            assert!(read(h, 0, 2048).is_ok(), "the host's second MiB");
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost, "byte 2M+1");
            close(h);
            disconnect(c);
            let c = connect(&esx(), false, None, None).expect("login");
            let h = open(c, DISK, 0).expect("open");
            assert!(read(h, 0, 1).is_ok());
            std::thread::sleep(Duration::from_millis(450));
            assert_eq!(code(read(h, 0, 1).unwrap_err()), lost, "after 400 ms");
            close(h);
            disconnect(c);
            exit();
            let log = captured();
            assert!(log.contains("drop_every_bytes"), "{log}");
            assert!(log.contains("drop_after_ms"), "{log}");
        },
    );
}

#[test]
fn session_expiry_refuses_a_cookie_but_not_open_handles() {
    let env = [("FAKE_VDDK_SESSION_TTL_S", "1")];
    run(
        "session_expiry_refuses_a_cookie_but_not_open_handles",
        "",
        &env,
        || {
            init_ok();
            let t0 = Instant::now();
            let c = connect(&vc_cookie(), true, None, None).expect("cookie login in time");
            let h = open(c, DISK, 0).expect("open in time");
            std::thread::sleep(Duration::from_millis(1200).saturating_sub(t0.elapsed()));
            assert_eq!(
                code(connect(&vc_cookie(), true, None, None).unwrap_err()),
                VIX_E_AUTHENTICATION_FAIL,
                "the cookie's session has expired"
            );
            assert_eq!(
                read(h, 0, 1).expect("the open handle keeps working")[0],
                0x11
            );
            assert_eq!(
                code(open(c, DISK2, 0).unwrap_err()),
                VIX_E_AUTHENTICATION_FAIL,
                "a new Open needs the session"
            );
            let p = connect(&vc_password(), true, None, None).expect("a password login is new");
            let h2 = open(p, DISK2, 0).expect("open with the password session");
            assert_eq!(read(h2, 0, 1).unwrap()[0], 0x22);
            assert_eq!(code(close(h2)), VIX_OK);
            assert_eq!(code(disconnect(p)), VIX_OK);
            assert_eq!(code(close(h)), VIX_OK);
            assert_eq!(code(disconnect(c)), VIX_OK);
            exit();
            let log = captured();
            assert!(log.contains("The session is not authenticated."), "{log}");
        },
    );
}

#[test]
fn nfc_connection_limit_refuses_one_more_open() {
    // The limit is the ESXi host's; the vCenter's VM lives on that host.
    let name = "nfc_connection_limit_refuses_one_more_open";
    let mut env: Vec<(String, String)> = if is_child(name) {
        Vec::new()
    } else {
        world(name, "max_nfc_connections = 2", "esx1.example.com")
    };
    env.push(("FAKE_VDDK_OPEN_COST_MS".into(), "20".into()));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    scenario(name, &refs, || {
        init_ok();
        let c = connect(&esx(), true, None, None).expect("login");
        let h1 = open(c, DISK, 0).expect("connection 1");
        let t = Instant::now();
        let h2 = open(c, DISK2, 0).expect("connection 2");
        assert!(t.elapsed() >= Duration::from_millis(20), "open_cost_ms");
        assert_eq!(code(open(c, DISK, 0).unwrap_err()), VIX_E_FAIL);
        let v = connect(&vc_password(), true, None, None).expect("vCenter login");
        assert_eq!(
            code(open(v, DISK, 0).unwrap_err()),
            VIX_E_FAIL,
            "through the vCenter to the same host"
        );
        assert_eq!(code(close(h1)), VIX_OK);
        let h3 = open(v, DISK, 0).expect("a freed slot admits a new Open");
        assert_eq!(read(h3, 0, 1).unwrap()[0], 0x11);
        for h in [h2, h3] {
            assert_eq!(code(close(h)), VIX_OK);
        }
        assert_eq!(code(disconnect(v)), VIX_OK);
        assert_eq!(code(disconnect(c)), VIX_OK);
        exit();
        let log = captured();
        assert!(
            log.contains("DescriptorOpenNbd: Failed to open NBD extent 'vpxa-nfcssl://[ds1] vm1/vm1.vmdk@esx1.example.com:902': NBD_ERR_GENERIC"),
            "{log}"
        );
        assert!(log.contains("max_nfc_connections"), "{log}");
    });
}

/// A backtracking matcher for the regular expressions CDI uses: literal
/// characters, `\` escapes, `.*` and named groups `(?P<name>...)`.
/// Leftmost match, greedy stars, as Go's regexp finds it.
mod cdi_regex {
    #[derive(Debug, Clone)]
    enum Tok {
        Lit(char),
        Any,
        Star,
        Open(String),
        Close,
    }

    fn compile(re: &str) -> Vec<Tok> {
        let mut out = Vec::new();
        let mut chars = re.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(Tok::Lit(chars.next().expect("escaped char"))),
                '.' => out.push(Tok::Any),
                '*' => out.push(Tok::Star),
                ')' => out.push(Tok::Close),
                '(' => {
                    let head: String = chars.by_ref().take(3).collect();
                    assert_eq!(head, "?P<", "only named groups");
                    let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                    out.push(Tok::Open(name));
                }
                c => out.push(Tok::Lit(c)),
            }
        }
        out
    }

    fn at(toks: &[Tok], s: &[char], i: usize, caps: &mut Vec<(String, usize, usize)>) -> bool {
        match toks {
            [] => true,
            [Tok::Any, Tok::Star, rest @ ..] => {
                let mut end = i;
                while end < s.len() && s[end] != '\n' {
                    end += 1;
                }
                (i..=end).rev().any(|j| at(rest, s, j, caps))
            }
            [Tok::Lit(c), rest @ ..] => i < s.len() && s[i] == *c && at(rest, s, i + 1, caps),
            [Tok::Any, rest @ ..] => i < s.len() && s[i] != '\n' && at(rest, s, i + 1, caps),
            [Tok::Open(name), rest @ ..] => {
                caps.push((name.clone(), i, usize::MAX));
                if at(rest, s, i, caps) {
                    return true;
                }
                caps.pop();
                false
            }
            [Tok::Close, rest @ ..] => {
                let k = caps
                    .iter()
                    .rposition(|c| c.2 == usize::MAX)
                    .expect("open group");
                caps[k].2 = i;
                if at(rest, s, i, caps) {
                    return true;
                }
                caps[k].2 = usize::MAX;
                false
            }
            [Tok::Star, ..] => panic!("only .* is supported"),
        }
    }

    /// The named group of the first match of `re` in `line`.
    pub fn find(re: &str, line: &str, group: &str) -> Option<String> {
        let toks = compile(re);
        let s: Vec<char> = line.chars().collect();
        (0..=s.len()).find_map(|i| {
            let mut caps = Vec::new();
            at(&toks, &s, i, &mut caps).then(|| {
                caps.iter()
                    .find(|c| c.0 == group)
                    .map(|c| s[c.1..c.2].iter().collect())
            })?
        })
    }
}

/// KubeVirt CDI (pkg/importer/vddk-datasource_amd64.go) reads nbdkit's
/// debug output: a line starting with this prefix, then this regex.
const CDI_PREFIX: &str = "nbdkit: vddk[1]: debug: DISKLIB-LINK  : Opened ";
const CDI_HOST_RE: &str = r"Opened '.*@(?P<host>.*):.*' \(0x";

/// The host CDI would record from a log line our log callback received
/// (nbdkit prefixes what the callback gets with `nbdkit: vddk[1]: debug: `).
fn cdi_host(line: &str) -> Option<String> {
    let nbdkit = format!("nbdkit: vddk[1]: debug: {line}");
    if !nbdkit.starts_with(CDI_PREFIX) {
        return None;
    }
    cdi_regex::find(CDI_HOST_RE, &nbdkit, "host")
}

#[test]
fn cdi_regex_emulation_matches_cdi_own_test_lines() {
    // The lines of CDI's own unit tests and their expected hosts.
    let host = |l: &str| cdi_regex::find(CDI_HOST_RE, l, "host");
    assert_eq!(
        host("nbdkit: vddk[1]: debug: DISKLIB-LINK  : Opened 'vpxa-nfcssl://[iSCSI_Datastore] test/test.vmdk@esx15.test.lan:902' (0xa): custom, 50331648 sectors / 24 GB.").as_deref(),
        Some("esx15.test.lan")
    );
    assert_eq!(
        host("nbdkit: vddk[1]: debug: DISKLIB-LINK  : Opened 'http://disk@esx:1234' (0xa): custom, 50331648 sectors / 24 GB.").as_deref(),
        Some("esx")
    );
    assert_eq!(
        host("DISKLIB-LINK  : Opened '/no/host.vmdk' (0xa): x"),
        None
    );
}

#[test]
fn disklib_link_line_is_logged_on_open() {
    let name = "disklib_link_line_is_logged_on_open";
    run(name, "", &[], || {
        let dir = PathBuf::from(std::env::var(DIR_VAR).expect("world dir"));
        let local = dir.join("ds1/vm1/vm1.vmdk");
        init_ok();
        let l = connect_local();
        let h = open(l, local.to_str().unwrap(), 0).expect("local open");
        close(h);
        let h = open(l, local.to_str().unwrap(), VIXDISKLIB_FLAG_OPEN_READ_ONLY).unwrap();
        close(h);
        disconnect(l);
        let c = connect(&esx(), false, None, None).expect("esx login");
        let h = open(c, DISK, 0).expect("remote open (nbdssl)");
        close(h);
        disconnect(c);
        let v = connect(&vc_cookie(), true, None, None).expect("vCenter login");
        let h = open(v, DISK2, 0).expect("open through the vCenter (nbd)");
        close(h);
        disconnect(v);
        exit();
        let log = captured();
        let lines: Vec<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("[log] "))
            .filter(|l| l.starts_with("DISKLIB-LINK"))
            .collect();
        let expected = [
            format!(
                "DISKLIB-LINK  : Opened '{}' (0xa): monolithicFlat, 8192 sectors / 4 MB.",
                local.display()
            ),
            format!(
                "DISKLIB-LINK  : Opened '{}' (0xe): monolithicFlat, 8192 sectors / 4 MB.",
                local.display()
            ),
            "DISKLIB-LINK  : Opened 'vpxa-nfcssl://[ds1] vm1/vm1.vmdk@esx1.example.com:902' (0xa): custom, 8192 sectors / 4 MB."
                .to_string(),
            "DISKLIB-LINK  : Opened 'vpxa-nfc://[ds1] vm1/vm1_1.vmdk@esx7.example.com:902' (0xe): custom, 8192 sectors / 4 MB."
                .to_string(),
        ];
        assert_eq!(lines, expected, "{log}");
        assert_eq!(cdi_host(lines[0]), None, "a local path names no host");
        assert_eq!(cdi_host(lines[2]).as_deref(), Some("esx1.example.com"));
        assert_eq!(cdi_host(lines[3]).as_deref(), Some("esx7.example.com"));
    });
}

#[test]
fn a_bad_link_knob_fails_initex_naming_the_variable() {
    let env = [("FAKE_VDDK_HOST_BANDWIDTH", "fast")];
    run(
        "a_bad_link_knob_fails_initex_naming_the_variable",
        "",
        &env,
        || {
            assert_eq!(code(init()), VIX_E_INVALID_ARG);
            let log = captured();
            assert!(log.contains("FAKE_VDDK_HOST_BANDWIDTH=\"fast\""), "{log}");
            assert!(
                log.contains("1Gbit"),
                "the message shows a valid value: {log}"
            );
        },
    );
}
