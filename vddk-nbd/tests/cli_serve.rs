//! The binary serving real disks on the fake VDDK, checked with real
//! clients: `--run` and its variables, `-U -`, `-s`, socket activation,
//! the background mode with a pid file, the library-path re-exec,
//! password forms against the simulated server, and SIGTERM durability.

mod nbd_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nbd_common::{through_sh, vddk_nbd, BIN};
use vddk_tests::cmd::{command, run_cmd, stderr, stdout};
use vddk_tests::images::{assert_same_as_raw, convert_to_raw, make_vmdk, s};
use vddk_tests::inventory::{one_vm, ONE_VM_DISK};
use vddk_tests::nbd::unix_uri;
use vddk_tests::process::{signal, wait_exit, wait_until};
use vddk_tests::{fake_libdir, libdir_param, scratch_dir};

const DISK_SIZE: u64 = 64 << 20;

/// A 64 MiB monolithic sparse VMDK with 0xab in its second MiB.
fn sample_disk(dir: &Path, name: &str) -> PathBuf {
    make_vmdk(
        &dir.join(name),
        "monolithicSparse",
        DISK_SIZE,
        &[(1 << 20, 1 << 20, 0xab)],
    )
}

#[test]
fn run_sets_uri_and_passes_exit_status() {
    let dir = scratch_dir("cli-run");
    let disk = sample_disk(&dir, "run.vmdk");
    let o = run_cmd(
        vddk_nbd()
            .args(["-U", "-", "vddk", &libdir_param()])
            .arg(&disk)
            .args([
                "--run",
                r#"nbdinfo --size "$uri"; echo "socket=$unixsocket""#,
            ]),
    );
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(DISK_SIZE.to_string().as_str()), "{o:?}");
    let socket = PathBuf::from(
        lines
            .next()
            .and_then(|l| l.strip_prefix("socket="))
            .expect("socket line"),
    );
    assert!(socket.is_absolute(), "{}", socket.display());
    assert!(
        !socket.exists(),
        "private socket left behind: {}",
        socket.display()
    );
    assert!(
        !socket.parent().unwrap().exists(),
        "private directory left behind"
    );

    let o = vddk_nbd()
        .args(["-U", "-", &libdir_param()])
        .arg(&disk)
        .args(["--run", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{o:?}");

    // TCP on a port the system picks; $port and $uri agree.
    let o = run_cmd(
        vddk_nbd()
            .args(["-p", "0", "-i", "127.0.0.1", "-r", &libdir_param()])
            .arg(&disk)
            .args(["--run", r#"test "$uri" = "nbd://127.0.0.1:$port" && nbdinfo --is read-only "$uri" && qemu-img info --output=json "$uri""#]),
    );
    assert!(
        stdout(&o).contains(&format!("\"virtual-size\": {DISK_SIZE}")),
        "{o:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn create_then_fill_through_run() {
    let dir = scratch_dir("cli-create");
    let source = dir.join("source.raw");
    let mut data = vec![0u8; 8 << 20];
    data[1 << 20..3 << 20].fill(0x3c);
    std::fs::write(&source, data).expect("write the source");
    let disk = dir.join("created.vmdk");
    let o = run_cmd(
        vddk_nbd()
            .args(["-U", "-", "-D", "vddk.stats=1", "-t", "4", &libdir_param()])
            .arg(&disk)
            .args([
                "create=true",
                "create-size=8M",
                "create-type=monolithic-sparse",
            ])
            .args([
                "create-adapter-type=scsi-lsilogic",
                "create-hwversion=esx60",
            ])
            .arg("--run")
            .arg(format!(
                r#"nbdinfo --size "$uri" && qemu-img convert -n -f raw -O raw {} "$uri""#,
                source.display()
            )),
    );
    assert_eq!(stdout(&o).trim(), (8u64 << 20).to_string());
    let info = vddk_tests::run("qemu-img", ["info", "--output=json", s(&disk)]);
    assert!(info.contains("\"format\": \"vmdk\""), "{info}");
    assert_same_as_raw(&source, &disk);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn single_mode_and_socket_activation() {
    let dir = scratch_dir("cli-single");
    let disk = sample_disk(&dir, "single.vmdk");
    let pidfile = dir.join("pid");
    // SIGTERM ends an idle -s server at once (no need for another request)
    // and it cleans up after itself.
    let script = format!(
        "import os, time\n\
         h.connect_command([{BIN:?}, '-s', '-r', '-P', {pid:?}, {libdir:?}, {disk:?}])\n\
         assert h.get_size() == {DISK_SIZE}\n\
         assert h.pread(512, 1 << 20) == b'\\xab' * 512\n\
         pid = int(open({pid:?}).read())\n\
         os.kill(pid, 15)\n\
         t = time.time()\n\
         while os.path.exists({pid:?}) and time.time() - t < 10: time.sleep(0.02)\n\
         assert not os.path.exists({pid:?})\n\
         print('ok')\n",
        libdir = libdir_param(),
        disk = disk.to_string_lossy(),
        pid = pidfile.to_string_lossy(),
    );
    let o = run_cmd(
        command("nbdsh")
            .env_remove("LD_LIBRARY_PATH")
            .args(["-c", &script]),
    );
    assert_eq!(stdout(&o).trim(), "ok");

    // nbdinfo's [ CMD ] form starts the server with LISTEN_FDS.
    let o = run_cmd(
        command("nbdinfo")
            .args(["--size", "--", "[", BIN, &libdir_param()])
            .arg(&disk)
            .arg("]"),
    );
    assert_eq!(stdout(&o).trim(), DISK_SIZE.to_string());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reexec_puts_lib64_first_and_run_sees_the_original() {
    let dir = scratch_dir("cli-reexec");
    let disk = sample_disk(&dir, "reexec.vmdk");
    let lib64 = fake_libdir().join("lib64");
    let script = r#"echo "child=${LD_LIBRARY_PATH-unset}"; tr '\0' '\n' < /proc/$PPID/environ | grep '^LD_LIBRARY_PATH='"#;
    let o = run_cmd(
        vddk_nbd()
            .env("LD_LIBRARY_PATH", "/user/lib")
            .args(["-U", "-", &libdir_param()])
            .arg(&disk)
            .args(["--run", script]),
    );
    let out = stdout(&o);
    assert!(out.contains("child=/user/lib\n"), "{out}");
    assert!(
        out.contains(&format!("LD_LIBRARY_PATH={}:/user/lib\n", lib64.display())),
        "{out}"
    );

    let o = run_cmd(
        vddk_nbd()
            .args(["-U", "-", &libdir_param()])
            .arg(&disk)
            .args(["--run", script]),
    );
    let out = stdout(&o);
    assert!(out.contains("child=unset\n"), "{out}");
    assert!(
        out.contains(&format!("LD_LIBRARY_PATH={}\n", lib64.display())),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn background_mode_with_pidfile_then_sigterm() {
    let dir = scratch_dir("cli-daemon");
    let disk = sample_disk(&dir, "bg.vmdk");
    let sock = dir.join("sock");
    let pidfile = dir.join("pid");
    let o = run_cmd(
        vddk_nbd()
            .arg("-U")
            .arg(&sock)
            .arg("-P")
            .arg(&pidfile)
            .arg(libdir_param())
            .arg(&disk),
    );
    assert!(o.stdout.is_empty(), "{o:?}");
    // Ready when the parent returned: the pid file and the socket exist.
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .unwrap();
    assert!(sock.exists());
    let size = vddk_tests::run("nbdinfo", ["--size", &unix_uri(&sock)]);
    assert_eq!(size.trim(), DISK_SIZE.to_string());
    // The serving process runs with libdir/lib64 first on its library path.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    let lib64 = fake_libdir().join("lib64");
    assert!(
        environ
            .split('\0')
            .any(|v| v == format!("LD_LIBRARY_PATH={}", lib64.display())),
        "{environ}"
    );
    signal(pid, "TERM");
    wait_until("the server to exit", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(!pidfile.exists(), "pid file left behind");
    assert!(!sock.exists(), "socket left behind");

    // A start-up error in the background copy reaches the user.
    let o = vddk_nbd()
        .arg("-U")
        .arg(dir.join("sock2"))
        .arg(libdir_param())
        .arg(dir.join("missing.vmdk"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("missing.vmdk"), "{o:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn exit_with_parent_stops_when_the_parent_goes() {
    let dir = scratch_dir("cli-parent");
    let disk = sample_disk(&dir, "parent.vmdk");
    let sock = dir.join("sock");
    let pidfile = dir.join("pid");
    // The shell starts the server, waits until it is listening, then exits.
    let script = format!(
        "'{BIN}' --exit-with-parent -U '{}' -P '{}' '{}' '{}' </dev/null >/dev/null 2>&1 &\n\
         i=0; while [ ! -s '{}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat '{}'",
        sock.display(),
        pidfile.display(),
        libdir_param(),
        disk.display(),
        pidfile.display(),
        pidfile.display()
    );
    let o = run_cmd(
        command("sh")
            .env_remove("LD_LIBRARY_PATH")
            .arg("-c")
            .arg(script),
    );
    let pid: u32 = stdout(&o).trim().parse().expect("pid printed by the shell");
    wait_until(
        "the orphaned server to exit",
        Duration::from_secs(10),
        || !Path::new(&format!("/proc/{pid}")).exists(),
    );
    assert!(
        !pidfile.exists() && !sock.exists(),
        "left behind after exiting with its parent"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sigterm_keeps_acknowledged_writes() {
    let dir = scratch_dir("cli-durable");
    let disk = sample_disk(&dir, "durable.vmdk");
    let reference = dir.join("reference.raw");
    convert_to_raw(&disk, &reference);
    let writes = [
        "write -q -P 0x5a 3M 1M",
        "write -q -P 0x17 7340544 4096",
        "write -q -z 1M 64k",
    ];
    let sock = dir.join("sock");
    let mut server = vddk_nbd()
        .arg("-f")
        .arg("-U")
        .arg(&sock)
        .arg(libdir_param())
        .arg(&disk)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the socket", Duration::from_secs(10), || sock.exists());
    let uri = unix_uri(&sock);
    let mut io = Command::new("qemu-io");
    io.args(["-f", "raw"]);
    let mut refio = Command::new("qemu-io");
    refio.args(["-f", "raw"]);
    for w in writes {
        io.args(["-c", w]);
        refio.args(["-c", w]);
    }
    run_cmd(io.args(["-c", "flush", &uri]));
    run_cmd(refio.arg(&reference));
    signal(server.id(), "TERM");
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_same_as_raw(&reference, &disk);
    std::fs::remove_dir_all(&dir).ok();
}

const THUMBPRINT: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";

/// A simulated ESXi host with one VM whose disk lives in `dir/ds1`.
fn inventory(dir: &Path) -> PathBuf {
    let inv = one_vm(
        dir,
        "esx1.example.com",
        &[
            ("kind", "esxi"),
            ("thumbprint", THUMBPRINT),
            ("user", "root:pa ss"),
            ("cookie", "sess-123"),
        ],
    );
    sample_disk(&dir.join("ds1/web"), "web.vmdk");
    inv
}

fn remote_args(password: &str) -> Vec<String> {
    vec![
        "-U".into(),
        "-".into(),
        "-r".into(),
        libdir_param(),
        "server=esx1.example.com".into(),
        "user=root".into(),
        format!("password={password}"),
        format!("thumbprint={THUMBPRINT}"),
        "vm=moref=42".into(),
        ONE_VM_DISK.into(),
        "--run".into(),
        r#"nbdinfo --size "$uri""#.into(),
    ]
}

#[test]
fn password_forms_reach_the_server() {
    let dir = scratch_dir("cli-password");
    let inv = inventory(&dir);
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, "pa ss\n").unwrap();
    let size = DISK_SIZE.to_string();

    let o = run_cmd(
        vddk_nbd()
            .env("FAKE_VDDK_INVENTORY", &inv)
            .args(remote_args("pa ss")),
    );
    assert_eq!(stdout(&o).trim(), size);

    let o = run_cmd(
        vddk_nbd()
            .env("FAKE_VDDK_INVENTORY", &inv)
            .args(remote_args(&format!("+{}", pwfile.display()))),
    );
    assert_eq!(stdout(&o).trim(), size);

    // -FD: descriptor 3 opened by the shell that starts us, read after the re-exec.
    let prefix = format!("exec 3< '{}'; exec", pwfile.display());
    let o = run_cmd(through_sh(&prefix, &remote_args("-3")).env("FAKE_VDDK_INVENTORY", &inv));
    assert_eq!(stdout(&o).trim(), size);

    // -: prompt; stdin is not a terminal here, so the line is read as is.
    let mut child = vddk_nbd()
        .env("FAKE_VDDK_INVENTORY", &inv)
        .args(remote_args("-"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"pa ss\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), size);

    // A session cookie replaces user and password.
    let mut cookie_args = remote_args("unused");
    cookie_args.retain(|a| !a.starts_with("user=") && !a.starts_with("password="));
    cookie_args.insert(4, "cookie=sess-123".into());
    let o = run_cmd(
        vddk_nbd()
            .env("FAKE_VDDK_INVENTORY", &inv)
            .args(&cookie_args),
    );
    assert_eq!(stdout(&o).trim(), size);

    // A wrong thumbprint fails at open, and the message gives the right one.
    let wrong_thumb: Vec<String> = remote_args("pa ss")
        .into_iter()
        .map(|a| {
            if a.starts_with("thumbprint=") {
                format!("{}00", &a[..a.len() - 2])
            } else {
                a
            }
        })
        .collect();
    let o = vddk_nbd()
        .env("FAKE_VDDK_INVENTORY", &inv)
        .args(&wrong_thumb)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("error: cannot open [ds1] web/web.vmdk"),
        "{o:?}"
    );
    assert!(stderr(&o).contains(THUMBPRINT), "{o:?}");

    let o = vddk_nbd()
        .env("FAKE_VDDK_INVENTORY", &inv)
        .args(remote_args("wrong"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("VIX_E_AUTHENTICATION_FAIL")
            || stderr(&o).to_lowercase().contains("authentication"),
        "{o:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
