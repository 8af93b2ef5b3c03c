//! What the caller replays share: vddk-nbd installed under the name
//! `nbdkit` (a link first on PATH, as a user would install it for
//! virt-v2v, CDI or Forklift), started and waited for the way those
//! programs do (a pid file polled with their deadline, one log for stdout
//! and stderr), and a simulated vSphere with a VM whose disks hold known
//! data.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use vddk_tests::images::{make_vmdk, qemu_raw};
use vddk_tests::inventory::{TwoServers, ESX};
use vddk_tests::process::{signal, wait_timeout};

/// The `vddk-nbd` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_vddk-nbd");

/// The thumbprints of the simulated host and vCenter.
pub const ESX_TP: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
pub const VC_TP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01";
/// The vCenter user and password the callers log in with.
pub const VC_USER: &str = "administrator@vsphere.local";
pub const PASSWORD: &str = "Passw0rd!";

/// A scratch directory with `bin/nbdkit`, a link to vddk-nbd.
#[derive(Clone)]
pub struct AsNbdkit {
    pub dir: PathBuf,
    bin: PathBuf,
    /// A file the server gets open as descriptor 3 (`password=-3`).
    fd3: Option<PathBuf>,
}

impl AsNbdkit {
    pub fn install(name: &str) -> AsNbdkit {
        let dir = vddk_tests::scratch_dir(name);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("create bin/");
        std::os::unix::fs::symlink(BIN, bin.join("nbdkit")).expect("link nbdkit");
        AsNbdkit {
            dir,
            bin,
            fd3: None,
        }
    }

    /// Servers started from now on get `file` open as descriptor 3, as a
    /// caller passes `password=-3`.
    pub fn with_fd3(mut self, file: &Path) -> AsNbdkit {
        self.fd3 = Some(file.to_path_buf());
        self
    }

    /// PATH with our `nbdkit` first, then the system's tools.
    fn path(&self) -> String {
        format!("{}:{}", self.bin.display(), vddk_tests::cmd::system_path())
    }

    /// `program` with PATH as a caller's would be, `LANG=C` (virt-v2v sets
    /// it) and nothing inherited that would point at a library or a
    /// simulated server the caller did not ask for.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PATH", self.path())
            .env("LANG", "C")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("VDDK_LIBDIR")
            .env_remove("FAKE_VDDK_INVENTORY")
            .env_remove("FAKE_VDDK_FAIL")
            .env_remove("FAKE_VDDK_FAIL_PROB")
            .stdin(Stdio::null());
        cmd
    }

    /// A caller's probe, a shell line (pipes and redirections as the
    /// caller writes them); true when it exits 0.
    pub fn probe(&self, line: &str) -> bool {
        let out = self.sh(line);
        out.status.success()
    }

    /// `sh -c line`, its output.
    pub fn sh(&self, line: &str) -> Output {
        self.command("sh")
            .args(["-c", line])
            .output()
            .expect("run sh")
    }

    /// Starts `nbdkit args` with `env`, stdout and stderr into one log (as
    /// CDI reads them), and waits for the pid file as the callers do:
    /// polled every 500 ms, at most `patience`. The socket must be there
    /// when the pid file is, since callers chmod it at once.
    pub fn start(
        &self,
        args: &[String],
        env: &[(&str, &str)],
        pidfile: &Path,
        socket: &Path,
        patience: Duration,
    ) -> Running {
        let log = self.dir.join(format!(
            "nbdkit-{}.log",
            socket
                .file_name()
                .map_or("x".into(), |n| n.to_string_lossy())
        ));
        let out = File::create(&log).expect("create the log");
        let err = out.try_clone().expect("dup the log");
        let mut cmd = match &self.fd3 {
            None => self.command("nbdkit"),
            // The shell opens descriptor 3 and becomes nbdkit (same pid).
            Some(file) => {
                let mut c = self.command("sh");
                c.args(["-c", "exec 3<\"$0\" && exec nbdkit \"$@\""])
                    .arg(file);
                c
            }
        };
        let child = cmd
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start nbdkit");
        let mut running = Running {
            child,
            log,
            socket: socket.to_path_buf(),
        };
        let t = Instant::now();
        while !pidfile.exists() {
            if let Some(status) = running.child.try_wait().expect("wait") {
                panic!(
                    "nbdkit exited with {status} before it was ready:\n{}",
                    running.log()
                );
            }
            assert!(
                t.elapsed() < patience,
                "no pid file after {patience:?}:\n{}",
                running.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let pid = std::fs::read_to_string(pidfile).expect("read the pid file");
        assert_eq!(
            pid.trim(),
            running.child.id().to_string(),
            "the pid file names another process"
        );
        assert!(
            socket.exists(),
            "the pid file came before the socket:\n{}",
            running.log()
        );
        running
    }
}

/// A started server.
pub struct Running {
    child: Child,
    log: PathBuf,
    pub socket: PathBuf,
}

impl Running {
    /// What it has written so far, stdout and stderr interleaved.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` (`INT`, `TERM`) and waits up to 30 s; the exit status
    /// and the whole log.
    pub fn stop(mut self, sig: &str) -> (ExitStatus, String) {
        signal(self.child.id(), sig);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("nbdkit did not exit on SIG{sig}:\n{}", self.log()));
        (status, self.log())
    }
}

impl Running {
    /// [`Running::stop`], which must end in exit status 0; the log.
    pub fn stop_clean(self, sig: &str) -> String {
        let (status, log) = self.stop(sig);
        assert!(status.success(), "SIG{sig}: {status}:\n{log}");
        log
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A disk of the simulated VM: its datastore path and what it holds.
pub struct VmDisk {
    pub name: String,
    pub file: PathBuf,
    pub bytes: Vec<u8>,
}

/// An ESXi host and a vCenter sharing datastore `ds-1`, whose VM (moref
/// `42` on the host, `vm-42` on the vCenter, running on the host) has the
/// disks `names` (`web/web.vmdk`, ...), each `mib` MiB with data in a few
/// places and holes between.
pub struct World {
    pub dir: PathBuf,
    pub inventory: PathBuf,
    pub disks: Vec<VmDisk>,
    /// `+FILE`: the password as callers pass it.
    pub password_param: String,
}

impl World {
    /// Disks of `mib` MiB (at least 10) with data at 1 MiB (2 MiB of it),
    /// 8 MiB (512 KiB) and in the last MiB.
    pub fn new(dir: &Path, names: &[&str], mib: u64) -> World {
        assert!(mib >= 10, "the layout needs 10 MiB");
        let size = mib << 20;
        let data = [
            (1 << 20, 2 << 20),
            (8 << 20, 512 << 10),
            (size - (1 << 20), 1 << 20),
        ];
        World::with_layout(dir, names, size, &data, &[])
    }

    /// Disks of `size` bytes with data in the ranges `data` (offset,
    /// length), the rest never written; `vm_keys` are more keys of the VM
    /// on both servers (`snapshot`).
    pub fn with_layout(
        dir: &Path,
        names: &[&str],
        size: u64,
        data: &[(u64, u64)],
        vm_keys: &[(&str, &str)],
    ) -> World {
        let store = dir.join("store");
        let disks: Vec<VmDisk> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let writes: Vec<(u64, u64, u8)> = data
                    .iter()
                    .enumerate()
                    .map(|(j, &(at, len))| (at, len, 0x40 + (i * 8 + j) as u8))
                    .collect();
                let file = make_vmdk(&store.join(n), "monolithicSparse", size, &writes);
                VmDisk {
                    name: format!("[ds-1] {n}"),
                    bytes: qemu_raw(&file),
                    file,
                }
            })
            .collect();
        let mut esx_vm: Vec<(&str, &str)> =
            disks.iter().map(|d| ("disk", d.name.as_str())).collect();
        esx_vm.extend_from_slice(vm_keys);
        let mut vc_vm = esx_vm.clone();
        vc_vm.push(("esx_host", ESX));
        let esx_user = format!("root:{PASSWORD}");
        let vc_user = format!("{VC_USER}:{PASSWORD}");
        let inventory = TwoServers {
            esx: &[("thumbprint", ESX_TP), ("user", &esx_user)],
            vcenter: &[("thumbprint", VC_TP), ("user", &vc_user)],
            datastore: ("ds-1", &store),
            esx_vm: &esx_vm,
            vcenter_vm: &vc_vm,
        }
        .inventory()
        .write(&dir.join("inventory.ini"));
        // Callers write the password to a file of their own; nbdkit reads
        // its first line.
        let pw = dir.join("password");
        std::fs::write(&pw, format!("{PASSWORD}\n")).expect("write the password file");
        World {
            dir: dir.to_path_buf(),
            inventory,
            disks,
            password_param: format!("password=+{}", pw.display()),
        }
    }

    /// The datastore's directory.
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// The environment that puts the simulated servers on the network.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        vec![(
            "FAKE_VDDK_INVENTORY",
            self.inventory.to_str().expect("UTF-8 path"),
        )]
    }
}

/// `libdir=` of the fake library, where callers pass VDDK's.
pub fn libdir() -> String {
    vddk_tests::libdir_param()
}

/// The bytes of a raw file.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Arguments as owned strings.
pub fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}
