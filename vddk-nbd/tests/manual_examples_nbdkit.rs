//! nbdkit(1)'s and nbdkit-captive(1)'s examples that apply to a vddk
//! server (as in nbdkit 1.32's manuals), the "loop mount a VMDK with
//! nbdkit" walkthrough (rwmj's blog), and sub-sector writes from strict
//! libnbd clients (nbdsh, qemu-io, nbdfuse under ext4 tools), run against
//! vddk-nbd installed as `nbdkit` with the fake's libdir.
//!
//! Not run: `nbdkit memory 1T` + `nbd-client localhost /dev/nbd0`
//! (nbdkit(1), nbdkit-loop(1)): this machine's kernel has no nbd driver
//! (CONFIG_BLK_DEV_NBD is not set, there is no /dev/nbd0 and no module to
//! load), so nbdfuse(1) stands in for nbd-client and a loop device with an
//! offset for the partition device; `qemu -drive file=$nbd` and guestfish
//! (nbdkit-captive(1), nbdkit(1)): no qemu-system or libguestfs here, so
//! qemu-img reads `$nbd` instead.

mod callers_common;
mod manual_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use manual_common::{lines, Daemon, Manual};
use vddk_tests::cmd::command;
use vddk_tests::images::{assert_same, qemu_raw, s};
use vddk_tests::openssl::free_port;
use vddk_tests::process::{wait_timeout, wait_until};

const SIZE: u64 = 10 << 20;

/// A scratch directory with `file.vmdk` holding data at 0 and 1 MiB.
fn local(name: &str) -> (Manual, PathBuf, Vec<u8>) {
    let m = Manual::new(name);
    let (vmdk, bytes) = m.disk(
        "file.vmdk",
        SIZE,
        &[(0, 4096, 0x51), (1 << 20, 1 << 20, 0x52)],
    );
    (m, vmdk, bytes)
}

/// nbdkit-captive(1), "CAPTIVE NBDKIT", for unit testing:
///   nbdkit -U - memory 1 --run 'nbdsh -u "$uri" -c "print(h.pread(1, 0))"'
/// As printed (the memory plugin), then with the vddk plugin: one byte,
/// read by a strict client, is the disk's first.
#[test]
fn captive_nbdsh_reads_one_byte() {
    let (m, vmdk, _) = local("manual-captive-nbdsh");
    let run = "--run 'nbdsh -u \"$uri\" -c \"print(h.pread(1, 0))\"'";
    // libnbd 1.14 (Debian 12) returns a bytearray, later ones bytes.
    let printed = |out: String| {
        let out = out.trim_end().to_string();
        match out
            .strip_prefix("bytearray(")
            .and_then(|o| o.strip_suffix(')'))
        {
            Some(inner) => inner.to_string(),
            None => out,
        }
    };
    let (out, _) = m.ok(&[], &format!("nbdkit -U - memory 1 {run}"));
    assert_eq!(printed(out), "b'\\x00'");
    let (out, _) = m.ok(
        &[],
        &format!("nbdkit -U - vddk {} {} {run}", m.libdir(), vmdk.display()),
    );
    assert_eq!(printed(out), "b'Q'");
}

/// nbdkit-captive(1):
///   nbdkit file disk.img --run 'qemu -drive file=$nbd,if=virtio'
/// with qemu-img in qemu's place (see above) and `-U -`: `$nbd` names
/// the vddk export.
#[test]
fn captive_dollar_nbd_for_qemu() {
    let (m, vmdk, _) = local("manual-captive-qemu");
    let (out, _) = m.ok(
        &[],
        &format!(
            "nbdkit -U - vddk {} {} --run 'qemu-img info --output=json $nbd'",
            m.libdir(),
            vmdk.display()
        ),
    );
    assert!(out.contains(&format!("\"virtual-size\": {SIZE}")), "{out}");
}

/// nbdkit(1), EXAMPLES, "Basic file serving":
///   nbdkit --tls=require file disk.img
/// with the vddk plugin (the test certificates given with
/// --tls-certificates, a free port on 127.0.0.1): a client without TLS is
/// refused, one with TLS copies the disk.
#[test]
fn tls_require() {
    let (m, vmdk, bytes) = local("manual-tls");
    let certs = vddk_tests::certs::make(&m.dir.join("certs"));
    let port = free_port();
    m.ok(
        &[],
        &format!(
            "nbdkit --tls=require --tls-certificates {} -i 127.0.0.1 -p {port} -P pid vddk {} {}",
            certs.server.display(),
            m.libdir(),
            vmdk.display()
        ),
    );
    let server = Daemon::from_pidfile(&m.dir.join("pid"));
    m.fails(&[], &format!("nbdinfo --size nbd://localhost:{port}"), 1);
    let nbds = format!(
        "nbds://localhost:{port}/?tls-certificates={}",
        certs.anonymous.display()
    );
    m.ok(&[], &format!("nbdcopy '{nbds}' out.raw"));
    assert_same(
        "out.raw",
        &callers_common::read(&m.dir.join("out.raw")),
        &bytes,
    );
    server.stop();
}

/// nbdkit(1), EXAMPLES, "Display information", with the vddk plugin in
/// example1's place:
///   nbdkit --help; nbdkit --version; nbdkit --dump-config
///   nbdkit example1 --help; nbdkit example1 --dump-plugin
#[test]
fn display_information() {
    let m = Manual::new("manual-display");
    let (help, _) = m.ok(&[], "nbdkit --help");
    assert!(help.contains("--dump-plugin"), "{help}");
    let (version, _) = m.ok(&[], "nbdkit --version");
    assert!(version.starts_with("nbdkit 1."), "{version}");
    let (config, _) = m.ok(&[], "nbdkit --dump-config");
    assert!(config.lines().any(|l| l == "version_major=1"), "{config}");
    let (help, _) = m.ok(&[], "nbdkit vddk --help");
    assert!(help.contains("libdir="), "{help}");
    let (dump, _) = m.ok(&[], "nbdkit vddk --dump-plugin");
    assert!(dump.lines().any(|l| l == "name=vddk"), "{dump}");
}

/// nbdkit(1), SERVER DEBUG FLAGS:
///   -D nbdkit.backend.datapath=0 / -D nbdkit.backend.datapath=1
/// "the ones which show every request processed by the server": with =1
/// a line per request at the top of the stack, with =0 none.
#[test]
fn server_debug_flag_backend_datapath() {
    let (m, vmdk, _) = local("manual-backend-datapath");
    let run = |flag: &str| {
        m.ok(
            &[],
            &format!(
                "nbdkit -U - -v -D nbdkit.backend.datapath={flag} vddk {} {} \
                 --run 'nbdsh -u \"$uri\" -c \"h.pread(4096, 8192)\"'",
                m.libdir(),
                vmdk.display()
            ),
        )
        .1
    };
    let on = run("1");
    assert_eq!(
        lines(&on, "debug: backend: pread count=4096 offset=8192").len(),
        1,
        "{on}"
    );
    let off = run("0");
    assert!(lines(&off, "backend: pread").is_empty(), "{off}");
}

/// nbdfuse(1) serving an NBD export as the file `mnt/nbd`; unmounted and
/// stopped when dropped.
struct Fuse {
    child: Child,
    mnt: PathBuf,
    log: PathBuf,
}

impl Fuse {
    fn mount(dir: &Path, uri: &str) -> Fuse {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).expect("create the mount point");
        let log = dir.join("nbdfuse.log");
        let child = command("nbdfuse")
            .arg(&mnt)
            .arg(uri)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the nbdfuse log"))
            .spawn()
            .expect("start nbdfuse");
        let mut f = Fuse { child, mnt, log };
        let file = f.file();
        wait_until("nbdfuse's file", Duration::from_secs(20), || {
            if let Ok(Some(status)) = f.child.try_wait() {
                panic!("nbdfuse exited with {status}: {}", f.log());
            }
            file.exists()
        });
        f
    }

    fn file(&self) -> PathBuf {
        self.mnt.join("nbd")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts (again while a loop device still lets go of the file);
    /// nbdfuse must exit 0 having said nothing.
    fn unmount(mut self) {
        let mnt = self.mnt.clone();
        wait_until(
            "the FUSE mount to be released",
            Duration::from_secs(20),
            || {
                command("umount")
                    .arg(&mnt)
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
        let status = wait_timeout(&mut self.child, Duration::from_secs(20)).expect("nbdfuse exits");
        assert!(
            status.success() && self.log().is_empty(),
            "{status}: {}",
            self.log()
        );
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = command("umount")
                .arg("-l")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A kernel mount, lazily unmounted if the test fails before it does.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = command("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// "Loop mount a VMDK with nbdkit" (rwmj's blog, the loopback tag), with
/// nbdfuse for nbd-client and a loop device at the partition's offset for
/// /dev/nbd0p1 (see above), and a free port:
///   $ export LD_LIBRARY_PATH=~/tmp/vddk/vmware-vix-disklib-distrib/lib64
///   $ nbdkit -fv vddk libdir=~/tmp/vddk/vmware-vix-disklib-distrib \
///       file=/var/tmp/fedora.17.x86-64.20120529.vmdk
///   # nbd-client -b 512 localhost /dev/nbd0
///   # fdisk -l /dev/nbd0            (dos label, one partition from 2048)
///   # mount /dev/nbd0p1 /mnt
///   # ls -l /mnt
///   # touch /mnt/hello
/// The file made through the mount is in the VMDK afterwards, and the
/// filesystem is clean.
#[test]
fn loop_mount_walkthrough() {
    let m = Manual::new("manual-loop-mount");
    let raw = m.dir.join("disk.raw");
    let part = format!("{}?offset=1048576", raw.display());
    m.ok(
        &[],
        "truncate -s 64M disk.raw && echo 'start=2048, type=83' | sfdisk -q disk.raw",
    );
    m.ok(&[], "mkfs.ext4 -q -F -E offset=1048576 disk.raw 63M");
    m.ok(
        &[],
        &format!("echo motd > motd && debugfs -w -R 'write motd motd' '{part}'"),
    );
    let vmdk = m.dir.join("fedora.17.x86-64.20120529.vmdk");
    vddk_tests::images::vmdk_from_raw(&raw, &vmdk, "monolithicSparse");

    let port = free_port();
    let lib64 = vddk_tests::fake_libdir().join("lib64");
    let server = m.foreground(
        &[("LD_LIBRARY_PATH", s(&lib64))],
        &format!(
            "nbdkit -fv -i 127.0.0.1 -p {port} vddk {} \\\n file={}",
            m.libdir(),
            vmdk.display()
        ),
        port,
    );
    let fuse = Fuse::mount(&m.dir, &format!("nbd://localhost:{port}"));
    let (fdisk, _) = m.ok(&[], "fdisk -l mnt/nbd");
    assert!(fdisk.contains("Disklabel type: dos"), "{fdisk}");
    let p1: Vec<&str> = lines(&fdisk, "mnt/nbd1")
        .first()
        .map_or(vec![], |l| l.split_whitespace().collect());
    assert_eq!(p1.get(1..3), Some(&["2048", "131071"][..]), "{fdisk}");

    let target = m.dir.join("m");
    std::fs::create_dir_all(&target).expect("create the mount point");
    m.ok(&[], "mount -o loop,offset=$((2048 * 512)) mnt/nbd m");
    let mounted = Mounted(target);
    let (ls, _) = m.ok(&[], "ls -l m");
    assert!(ls.contains("lost+found") && ls.contains("motd"), "{ls}");
    m.ok(&[], "touch m/hello && umount m");
    drop(mounted);
    fuse.unmount();
    server.stop();

    let back = m.dir.join("back.raw");
    vddk_tests::images::convert_to_raw(&vmdk, &back);
    let part = format!("{}?offset=1048576", back.display());
    let (ls, _) = m.ok(&[], &format!("debugfs -R 'ls -l' '{part}'"));
    assert!(ls.contains(" hello") && ls.contains(" motd"), "{ls}");
    m.ok(&[], &format!("e2fsck -fn '{part}'"));
}

/// Sub-sector writes (the export's minimum block size is 1, so libnbd in
/// its default strict mode sends them): nbdsh writes 100 bytes at offset
/// 7 of a vddk export and reads them back; they reach the VMDK.
#[test]
fn nbdsh_writes_100_bytes_at_offset_7() {
    let (m, vmdk, mut bytes) = local("manual-pwrite-7");
    let script = r#"
print(h.get_block_size(nbd.SIZE_MINIMUM))
h.pwrite(b"x" * 100, 7)
print(h.pread(110, 0) == bytes([0x51]) * 7 + b"x" * 100 + bytes([0x51]) * 3)
"#;
    let (out, _) = m.ok(
        &[],
        &format!(
            "nbdkit -U - vddk {} {} --run 'nbdsh -u \"$uri\" -c '\\''{script}'\\'''",
            m.libdir(),
            vmdk.display()
        ),
    );
    assert_eq!(out, "1\nTrue\n");
    bytes[7..107].fill(b'x');
    assert_same("the VMDK", &qemu_raw(&vmdk), &bytes);
}

/// The same with qemu-io through an `nbd+unix://` URI: write 100 bytes
/// of 0x78 at offset 7, read them back with a pattern check.
#[test]
fn qemu_io_writes_100_bytes_at_offset_7() {
    let (m, vmdk, mut bytes) = local("manual-qemu-io-7");
    let (out, log) = m.ok(
        &[],
        &format!(
            "nbdkit -U - -v -D nbdkit.backend.datapath=1 vddk {} {} \
             --run 'qemu-io -f raw -c \"write -P 0x78 7 100\" \
             -c \"read -P 0x78 7 100\" -c \"read -P 0x51 107 3989\" \"$uri\"'",
            m.libdir(),
            vmdk.display()
        ),
    );
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert_eq!(lines(&out, "100 bytes at offset 7").len(), 2, "{out}");
    // qemu sends the write as it is: with a 512-byte minimum it would
    // read-modify-write the sector itself.
    assert_eq!(
        lines(&log, "backend: pwrite count=100 offset=7 ").len(),
        1,
        "{log}"
    );
    bytes[7..107].fill(0x78);
    assert_same("the VMDK", &qemu_raw(&vmdk), &bytes);
}

/// The superblock's free inode count, as dumpe2fs reads it.
fn free_inodes(m: &Manual, image: &str) -> u64 {
    let (out, _) = m.ok(&[], &format!("dumpe2fs -h '{image}' 2>/dev/null"));
    lines(&out, "Free inodes:")
        .first()
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

/// An ext4 filesystem in a VMDK, served, mounted through nbdfuse, and a
/// file written into it with `debugfs -w` (which updates the superblock
/// by the byte: libnbd refused those writes while the export said 512):
/// no error on the way, the file is there, the superblock counts it and
/// `e2fsck -fn` finds the result clean.
#[test]
fn ext4_through_nbdfuse_debugfs_write_then_e2fsck_clean() {
    let m = Manual::new("manual-nbdfuse-ext4");
    m.ok(&[], "truncate -s 64M fs.raw && mkfs.ext4 -q -F fs.raw");
    let before = free_inodes(&m, "fs.raw");
    let vmdk = m.dir.join("fs.vmdk");
    vddk_tests::images::vmdk_from_raw(&m.dir.join("fs.raw"), &vmdk, "monolithicSparse");
    let port = free_port();
    let server = m.foreground(
        &[],
        &format!(
            "nbdkit -f -i 127.0.0.1 -p {port} vddk {} {}",
            m.libdir(),
            vmdk.display()
        ),
        port,
    );
    let fuse = Fuse::mount(&m.dir, &format!("nbd://localhost:{port}"));
    let (_, err) = m.ok(
        &[],
        "echo 'hello, world' > hello.txt && debugfs -w -R 'write hello.txt hello' mnt/nbd",
    );
    assert!(err.lines().all(|l| l.starts_with("debugfs ")), "{err}");
    m.ok(&[], "e2fsck -fn mnt/nbd");
    fuse.unmount();
    server.stop();

    let back = m.dir.join("back.raw");
    vddk_tests::images::convert_to_raw(&vmdk, &back);
    m.ok(&[], "e2fsck -fn back.raw");
    assert_eq!(free_inodes(&m, "back.raw"), before - 1);
    let (cat, _) = m.ok(&[], "debugfs -R 'cat hello' back.raw 2>/dev/null");
    assert_eq!(cat, "hello, world\n");
}
