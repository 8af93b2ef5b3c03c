//! Unix sockets are owner-only from the moment they appear, and `-u`/`-g`
//! change the server's identity once it listens, or stop it.
//!
//! The identity tests need root (as CI runs them); as another user they
//! check only the refusal.

mod nbd_common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbd_common::{through_sh as server, BIN};
use vddk_tests::cmd::{output, stdout};
use vddk_tests::images::make_vmdk;
use vddk_tests::nbd::unix_uri;
use vddk_tests::process::{signal, wait_exit, wait_for_path, wait_until};
use vddk_tests::{libdir_param, scratch_dir};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

fn disk(dir: &Path) -> PathBuf {
    make_vmdk(&dir.join("d.vmdk"), "monolithicSparse", 4 << 20, &[])
}

fn base_args(disk: &Path) -> Vec<String> {
    vec![libdir_param(), disk.display().to_string()]
}

/// A running server, killed if the test fails before stopping it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }
}

fn stop(mut running: Running) -> Output {
    let mut child = running.0.take().expect("running");
    signal(child.id(), "TERM");
    wait_exit(&mut child, Duration::from_secs(20));
    child.wait_with_output().unwrap()
}

/// The `Uid:`, `Gid:` and `Groups:` lines of a process or thread.
fn ids(status_file: &Path) -> (String, String, String) {
    let s = std::fs::read_to_string(status_file).unwrap();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn unix_socket_is_owner_only_from_the_start() {
    let dir = scratch_dir("sock-mode");
    let d = disk(&dir);
    let sock = dir.join("s.sock");
    // Every mode the socket shows while the server starts, watched from
    // before it exists.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, done, sock) = (seen.clone(), done.clone(), sock.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&sock) {
                    seen.lock().unwrap().push(m.permissions().mode() & 0o7777);
                }
            }
        })
    };
    let mut args = vec!["-f".into(), "-U".into(), sock.display().to_string()];
    args.extend(base_args(&d));
    // With umask 000 a socket would be created 0777.
    let mut child = Running(Some(
        server("umask 000; exec", &args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_for_path(&sock, child.child());
    std::thread::sleep(Duration::from_millis(50));
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    let mut distinct: Vec<String> = seen.iter().map(|m| format!("{m:o}")).collect();
    distinct.dedup();
    assert!(seen.iter().all(|m| *m == 0o600), "modes seen: {distinct:?}");
    // Clients still connect, and nothing is left of the staging.
    let info = output(vddk_tests::cmd::command("nbdinfo").args(["--size", &unix_uri(&sock)]));
    assert!(info.status.success(), "{info:?}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let o = stop(child);
    assert!(o.status.success(), "{o:?}");
    assert!(!sock.exists(), "the socket is removed at exit");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_file_already_at_the_socket_path_is_not_replaced() {
    let dir = scratch_dir("sock-exists");
    let d = disk(&dir);
    let sock = dir.join("s.sock");
    std::fs::write(&sock, "keep me").unwrap();
    let mut args = vec!["-f".into(), "-U".into(), sock.display().to_string()];
    args.extend(base_args(&d));
    let o = server("exec", &args).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("a socket file is left there"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "keep me");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn private_socket_is_owner_only() {
    let dir = scratch_dir("sock-private");
    let d = disk(&dir);
    let mut args = vec!["-U".into(), "-".into()];
    args.extend(base_args(&d));
    args.push("--run".into());
    args.push(r#"stat -c '%a %F' "$unixsocket" "$(dirname "$unixsocket")""#.into());
    let o = server("umask 000; exec", &args).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out, "600 socket\n700 directory\n", "{o:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_user_or_group_refuses_to_start() {
    let dir = scratch_dir("priv-unknown");
    let d = disk(&dir);
    let sock = dir.join("s.sock");
    for (flag, name, want) in [
        ("-u", "no-such-user-q7", "no such user"),
        ("--group", "no-such-group-q7", "no such group"),
    ] {
        // In the foreground, and in the background (the launcher reports).
        for fg in [true, false] {
            let mut args = vec![flag.to_string(), name.to_string()];
            if fg {
                args.push("-f".into());
            }
            args.extend(["-U".into(), sock.display().to_string()]);
            args.extend(base_args(&d));
            let o = server("exec", &args).output().unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains(want), "{stderr}");
            assert!(!sock.exists(), "a socket was left behind");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn root_becomes_nobody_after_binding() {
    if !is_root() {
        eprintln!("skipped: changing user needs root");
        return;
    }
    let dir = scratch_dir("priv-nobody");
    let d = disk(&dir);
    // The server, once nobody, must be able to remove its socket at exit.
    let sockdir = dir.join("run");
    std::fs::create_dir(&sockdir).unwrap();
    std::os::unix::fs::chown(&sockdir, Some(NOBODY), Some(NOBODY)).unwrap();
    let sock = sockdir.join("s.sock");
    let mut args = vec![
        "-f".into(),
        "-v".into(),
        "-u".into(),
        "nobody".into(),
        "-U".into(),
        sock.display().to_string(),
    ];
    args.extend(base_args(&d));
    let mut child = Running(Some(
        server("exec", &args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_for_path(&sock, child.child());
    let pid = child.child().id();
    // Serving (and ready) only once the change is made: poll until then.
    let status = PathBuf::from(format!("/proc/{pid}/status"));
    wait_until("the change of user", Duration::from_secs(20), || {
        ids(&status).0 == "65534 65534 65534 65534"
    });
    // Every thread, not just the main one, has changed.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let (uid, gid, groups) = ids(&task.unwrap().path().join("status"));
        assert_eq!(uid, "65534 65534 65534 65534");
        assert_eq!(gid, "65534 65534 65534 65534");
        assert_eq!(groups, "65534", "root's groups are dropped");
    }
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // Root, as a client, still reads the disk.
    let info = output(vddk_tests::cmd::command("nbdinfo").args(["--size", &unix_uri(&sock)]));
    assert_eq!(stdout(&info).trim(), "4194304");
    let o = stop(child);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("now running as user nobody (65534)"),
        "{stderr}"
    );
    assert!(!sock.exists(), "nobody removed its socket at exit");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_command_keeps_the_callers_identity() {
    if !is_root() {
        eprintln!("skipped: changing group needs root");
        return;
    }
    let dir = scratch_dir("priv-group");
    let d = disk(&dir);
    let mut args = vec!["-g".into(), "nogroup".into(), "-U".into(), "-".into()];
    args.extend(base_args(&d));
    args.push("--run".into());
    // Once the server is ready, $PPID has changed group; the command,
    // started before the change, has not.
    args.push(
        r#"nbdinfo --size "$uri" && grep -E '^(Uid|Gid|Groups):' /proc/$PPID/status && id -g \
           && stat -c '%g %a' "$unixsocket" "$(dirname "$unixsocket")""#
            .into(),
    );
    let o = server("exec", &args).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "4194304",
            "Uid: 0 0 0 0",
            "Gid: 65534 65534 65534 65534",
            "Groups: 65534",
            "0",
            "65534 600",
            "65534 700",
        ],
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_user_who_is_not_root_cannot_change_user() {
    if !is_root() {
        // Run directly: this process is already the unprivileged case.
        let o = Command::new(BIN)
            .args(["-f", "-u", "root", "-U", "/nonexistent/s", "/d.vmdk"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("only root may change user"));
        return;
    }
    let dir = scratch_dir("priv-nonroot");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = disk(&dir);
    let sock = dir.join("s.sock");
    let mut args = vec![
        "-f".into(),
        "-u".into(),
        "root".into(),
        "-U".into(),
        sock.display().to_string(),
    ];
    args.extend(base_args(&d));
    let o = server(
        "exec setpriv --reuid=nobody --regid=nogroup --clear-groups",
        &args,
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot become user root (0), group 0: only root may change user"),
        "{stderr}"
    );
    assert!(!sock.exists(), "a socket was left behind");
    std::fs::remove_dir_all(&dir).ok();
}
