//! Passwords and session cookies reach VDDK (the simulated server accepts
//! only the right ones) and nothing else: not the server's output with
//! every debug switch on, not `/proc/PID/cmdline` or `/proc/PID/environ`
//! of the serving process (after its re-exec) or of the `--run` command,
//! not error messages.

mod nbd_common;

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nbd_common::{through_sh, BIN};
use vddk_tests::cmd::{output, run};
use vddk_tests::images::{make_vmdk, qemu_raw};
use vddk_tests::inventory::{one_vm, ONE_VM_DISK as DISK};
use vddk_tests::nbd::unix_uri;
use vddk_tests::process::{signal, wait_until};
use vddk_tests::{libdir_param, scratch_dir};

/// Distinctive parts of the secrets: none may show up anywhere.
const PASSWORD_MARK: &str = "7f3c9e1a";
const COOKIE_MARK: &str = "51d2e8b4";
const PASSWORD: &str = "Pw 7f3c9e1a!";
const COOKIE: &str = "vmware_soap_session=\"ck-51d2e8b4\"";
const THUMBPRINT: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";

/// A simulated ESXi host whose one VM has a 16 MiB disk with data in it.
fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let user = format!("root:{PASSWORD}");
    let inv = one_vm(
        dir,
        "esx1.example.com",
        &[
            ("thumbprint", THUMBPRINT),
            ("user", &user),
            ("cookie", COOKIE),
        ],
    );
    let disk = make_vmdk(
        &dir.join("ds1/web/web.vmdk"),
        "monolithicSparse",
        16 << 20,
        &[(1 << 20, 2 << 20, 0x5a)],
    );
    (inv, disk)
}

/// The server's arguments for `creds` (the credential words), serving on
/// a socket in `dir`, with every debug switch there is.
fn server_args(dir: &Path, creds: &[String]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-f",
        "-v",
        "-D",
        "vddk.stats=1",
        "-D",
        "vddk.datapath=1",
        "-D",
        "nbdkit.backend.controlpath=1",
        "-U",
    ]
    .map(String::from)
    .to_vec();
    a.push(dir.join("sock").display().to_string());
    a.push(libdir_param());
    a.push("server=esx1.example.com".into());
    a.extend(creds.iter().cloned());
    a.push(format!("thumbprint={THUMBPRINT}"));
    a.push("vm=moref=42".into());
    a.push(DISK.into());
    a
}

/// What `--run` records while the server runs: the clients' work, and
/// the server's and its own command line and environment.
fn run_command(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "nbdinfo \"$uri\" && nbdcopy \"$uri\" {d}/copy.raw && \
         cat /proc/$PPID/cmdline > {d}/server.cmdline && \
         cat /proc/$PPID/environ > {d}/server.environ && \
         cat /proc/$$/cmdline > {d}/run.cmdline && \
         cat /proc/$$/environ > {d}/run.environ"
    )
}

/// Runs the server through `sh`, with `fd 3` open on `fd3` when given
/// (for `password=-3`), the fake's inventory set and fake logging on.
fn run_server(inv: &Path, args: &[String], fd3: Option<&Path>) -> Output {
    let redirect = fd3
        .map(|p| format!("exec 3< '{}'; ", p.display()))
        .unwrap_or_default();
    output(through_sh(&format!("{redirect}exec"), args).env("FAKE_VDDK_INVENTORY", inv))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_clean(what: &str, s: &str) {
    for mark in [PASSWORD_MARK, COOKIE_MARK] {
        assert!(!s.contains(mark), "a secret is in {what}:\n{s}");
    }
}

fn read(dir: &Path, name: &str) -> String {
    text(&std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// One verbose session with `creds`; checks that the client read the
/// whole disk (so VDDK got the right secret) and that the secret is in
/// none of the places anyone could look. Returns the server's command
/// line as `/proc` showed it.
fn clean_session(name: &str, creds: &[String], fd3_contents: Option<&str>) -> String {
    let dir = scratch_dir(&format!("secrets-{name}"));
    let (inv, disk) = fixture(&dir);
    let fd3 = fd3_contents.map(|c| {
        let f = dir.join("fd3");
        std::fs::write(&f, c).unwrap();
        f
    });
    let mut args = server_args(&dir, creds);
    args.push("--run".into());
    args.push(run_command(&dir));
    let o = run_server(&inv, &args, fd3.as_deref());
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(
        o.status.success(),
        "{name}: {}\n{stdout}\n{stderr}",
        o.status
    );
    // The debug output is really on (the fake library's log lines and
    // the statistics table come through), so a leak would show.
    assert!(stderr.contains("debug:"), "{stderr}");
    assert!(stderr.contains("VixDiskLib: Opened"), "{stderr}");
    assert!(stderr.contains("VDDK function stats"), "{stderr}");
    assert!(stdout.contains("export-size: 16777216"), "{stdout}");
    assert_clean("the server's stdout", &stdout);
    assert_clean("the server's stderr", &stderr);
    let cmdline = read(&dir, "server.cmdline");
    assert!(cmdline.contains("server=esx1.example.com"), "{cmdline}");
    for f in [
        "server.cmdline",
        "server.environ",
        "run.cmdline",
        "run.environ",
    ] {
        assert_clean(f, &read(&dir, f));
    }
    let copied = std::fs::read(dir.join("copy.raw")).unwrap();
    assert!(copied == qemu_raw(&disk), "the copy differs from the disk");
    std::fs::remove_dir_all(&dir).ok();
    cmdline
}

#[test]
fn literal_password_leaves_the_command_line() {
    let cmdline = clean_session(
        "literal",
        &["user=root".into(), format!("password={PASSWORD}")],
        None,
    );
    // Scrubbed to a descriptor, rather than dropped.
    assert!(cmdline.contains("\0password=-"), "{cmdline:?}");
}

#[test]
fn password_file_and_descriptor() {
    let dir = scratch_dir("secrets-pwfile");
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    clean_session(
        "file",
        &["user=root".into(), format!("password=+{}", pw.display())],
        None,
    );
    clean_session(
        "fd",
        &["user=root".into(), "password=-3".into()],
        Some(&format!("{PASSWORD}\n")),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn session_cookie_literal_and_descriptor() {
    let cmdline = clean_session("cookie", &[format!("cookie={COOKIE}")], None);
    assert!(cmdline.contains("\0cookie=-"), "{cmdline:?}");
    clean_session(
        "cookie-fd",
        &["cookie=-3".into()],
        Some(&format!("{COOKIE}\n")),
    );
}

#[test]
fn literal_password_warns_before_the_scrub() {
    let dir = scratch_dir("secrets-warn");
    let (inv, _) = fixture(&dir);
    let mut args = server_args(&dir, &["user=root".into(), format!("password={PASSWORD}")]);
    args.retain(|a| a != "-v");
    args.extend(["--run".into(), "true".into()]);
    let o = run_server(&inv, &args, None);
    assert!(o.status.success(), "{o:?}");
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("warning: password= given on the command line is visible"),
        "{stderr}"
    );
    assert!(stderr.contains("password=+FILE"), "{stderr}");
    assert_clean("stderr", &stderr);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wrong_password_is_refused_with_a_clear_message() {
    let dir = scratch_dir("secrets-wrong");
    let (inv, _) = fixture(&dir);
    let mut args = server_args(
        &dir,
        &["user=root".into(), "password=Wrong-7f3c9e1a".into()],
    );
    args.extend(["--run".into(), "true".into()]);
    let o = run_server(&inv, &args, None);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("check the credentials"), "{stderr}");
    assert_clean("stderr", &stderr);
    std::fs::remove_dir_all(&dir).ok();
}

/// Secrets that cannot be used are refused without being repeated.
#[test]
fn unusable_secrets_are_not_repeated() {
    let dir = scratch_dir("secrets-unusable");
    let (inv, _) = fixture(&dir);
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("a{PASSWORD}\0b\n")).unwrap();
    let mut args = server_args(
        &dir,
        &["user=root".into(), format!("password=+{}", pw.display())],
    );
    args.extend(["--run".into(), "true".into()]);
    let o = run_server(&inv, &args, None);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NUL byte"), "{stderr}");
    assert_clean("stderr", &stderr);

    let o = Command::new(BIN)
        .arg("-f")
        .arg(OsString::from_vec(
            [b"password=\xff", PASSWORD_MARK.as_bytes()].concat(),
        ))
        .arg("/d.vmdk")
        .output()
        .unwrap();
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("password=: the value is not valid UTF-8"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD_MARK), "{stderr}");

    let o = Command::new(BIN)
        .args(["-f", "-v"])
        .arg(format!(
            "uri=esx://root:{PASSWORD_MARK}@esx1.example.com/?no_verify=1"
        ))
        .args(["vm=moref=42", DISK])
        .output()
        .unwrap();
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds a password"), "{stderr}");
    assert!(!stderr.contains(PASSWORD_MARK), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Sends SIGTERM to a background server when dropped, so a failed test
/// does not leave it running.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// The background server gets the secret through a pipe too: its command
/// line and environment never hold it.
#[test]
fn background_server_never_shows_the_secret() {
    let dir = scratch_dir("secrets-daemon");
    let (inv, _) = fixture(&dir);
    let pidfile = dir.join("pid");
    let mut args = server_args(&dir, &["user=root".into(), format!("password={PASSWORD}")]);
    args.retain(|a| a != "-f");
    args.extend(["-P".into(), pidfile.display().to_string()]);
    let (out, err) = (dir.join("launcher.out"), dir.join("launcher.err"));
    // Files, not pipes: the background server keeps its inherited stderr.
    let status = through_sh("exec", &args)
        .env("FAKE_VDDK_INVENTORY", &inv)
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{}", read(&dir, "launcher.err"));
    let pid = read(&dir, "pid").trim().to_string();
    let _stop = StopOnDrop(pid.clone());
    let cmdline = text(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap());
    assert!(cmdline.contains("\0password=-"), "{cmdline:?}");
    assert_clean("the background server's cmdline", &cmdline);
    let environ = text(&std::fs::read(format!("/proc/{pid}/environ")).unwrap());
    assert_clean("the background server's environment", &environ);
    let socket = dir.join("sock");
    let info = run("nbdinfo", ["--size", &unix_uri(&socket)]);
    assert_eq!(info.trim(), "16777216");
    signal(pid.parse().expect("a pid"), "TERM");
    wait_until("the server to stop", Duration::from_secs(20), || {
        !pidfile.exists()
    });
    assert_clean("the launcher's stdout", &read(&dir, "launcher.out"));
    assert_clean("the launcher's stderr", &read(&dir, "launcher.err"));
    std::fs::remove_dir_all(&dir).ok();
}
