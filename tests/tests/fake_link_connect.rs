//! The fake VDDK's link model on logins and opens: session expiry, the
//! NFC connection limit, the `DISKLIB-LINK  : Opened` line that KubeVirt
//! CDI reads, and the check of the link knobs at InitEx. Each scenario
//! runs in a child process (fresh library state) with its environment.

mod fake_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_support::link_world::*;
use fake_support::*;
use vddk_sys::*;

#[test]
fn session_expiry_refuses_a_cookie_but_not_open_handles() {
    let env = [("FAKE_VDDK_SESSION_TTL_S", "1")];
    in_world(
        "session_expiry_refuses_a_cookie_but_not_open_handles",
        &[],
        "esx7.example.com",
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
    in_world(
        "nfc_connection_limit_refuses_one_more_open",
        &[("max_nfc_connections", "2")],
        "esx1.example.com",
        &[("FAKE_VDDK_OPEN_COST_MS", "20")],
        || {
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
        },
    );
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
    in_world(name, &[], "esx7.example.com", &[], || {
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
    in_world(
        "a_bad_link_knob_fails_initex_naming_the_variable",
        &[],
        "esx7.example.com",
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
