//! `password=-` on a real terminal: `script` gives the server a
//! pseudo-terminal with echo on, the test types at the prompt, and what
//! the terminal shows must hold the prompt but not the password, while
//! the session works (so the password typed is the one VDDK got).

mod nbd_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nbd_common::BIN;
use vddk_tests::cmd::command;
use vddk_tests::images::make_vmdk;
use vddk_tests::inventory::one_vm;
use vddk_tests::process::wait_timeout;
use vddk_tests::{fake_libdir, scratch_dir};
const PASSWORD: &str = "typed 9b4e2d71";
const MARK: &str = "9b4e2d71";
const THUMBPRINT: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";

/// A program running on a pseudo-terminal (util-linux `script`, with the
/// terminal's echo on as a login terminal has it), its screen collected.
struct Terminal {
    child: Child,
    input: ChildStdin,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn start(shell_command: &str, env: &[(&str, &Path)]) -> Terminal {
        let mut child = command("script")
            .args(["-q", "-e", "-E", "always", "-c", shell_command, "/dev/null"])
            .env_remove("LD_LIBRARY_PATH")
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run script (util-linux)");
        let input = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            input,
            screen,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, text: &str) {
        let t = Instant::now();
        while !self.screen().contains(text) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{text:?} never appeared; the screen shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.input
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        self.input.flush().unwrap();
    }

    /// Waits for the program to end; returns its success and the screen.
    fn finish(mut self) -> (bool, String) {
        let Some(status) = wait_timeout(&mut self.child, Duration::from_secs(30)) else {
            panic!("still running; the screen shows:\n{}", self.screen());
        };
        // The reader thread sees end-of-file once script has gone.
        std::thread::sleep(Duration::from_millis(100));
        (status.success(), self.screen())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // A failed test must not leave the program running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A simulated ESXi host `esx1` where root's password is [`PASSWORD`].
fn inventory(dir: &Path) -> std::path::PathBuf {
    let user = format!("root:{PASSWORD}");
    one_vm(dir, "esx1", &[("thumbprint", THUMBPRINT), ("user", &user)])
}

/// [`inventory`] with VM 42's disk made: 8 MiB, never written.
fn inventory_with_disk(dir: &Path) -> std::path::PathBuf {
    let inv = inventory(dir);
    make_vmdk(
        &dir.join("ds1/web/web.vmdk"),
        "monolithicSparse",
        8 << 20,
        &[],
    );
    inv
}

/// The method itself: on this terminal, a line typed at a plain `read`
/// is echoed back, so a password echoed at the prompt would be seen.
#[test]
fn the_terminal_echoes_what_is_typed() {
    let mut term = Terminal::start("echo ready; read x; echo got", &[]);
    term.wait_for("ready");
    term.type_line("visible 5c1f");
    let (ok, screen) = term.finish();
    assert!(ok, "{screen}");
    assert!(screen.contains("visible 5c1f"), "{screen}");
    assert!(screen.contains("got"), "{screen}");
}

#[test]
fn prompt_reads_the_password_without_echo() {
    let dir = scratch_dir("secrets-prompt");
    let inv = inventory_with_disk(&dir);
    let command = format!(
        "'{BIN}' -v -U - libdir='{}' server=esx1 user=root password=- \
         thumbprint={THUMBPRINT} vm=moref=42 '[ds1] web/web.vmdk' \
         --run 'nbdinfo --size \"$uri\"'; rc=$?; \
         stty -a | tr ' ;' '\\n\\n' | grep -x -e echo -e -echo | sed 's/^/state: /'; exit $rc",
        fake_libdir().display()
    );
    let mut term = Terminal::start(&command, &[("FAKE_VDDK_INVENTORY", &inv)]);
    term.wait_for("password: ");
    term.type_line(PASSWORD);
    let (ok, screen) = term.finish();
    assert!(ok, "the session failed:\n{screen}");
    assert!(screen.contains("8388608"), "{screen}");
    assert!(!screen.contains(MARK), "the password was echoed:\n{screen}");
    // Echo is back on afterwards: the terminal is left as it was found.
    assert!(screen.contains("state: echo"), "{screen}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A wrong password typed at the prompt fails with the credentials hint.
#[test]
fn prompt_with_a_wrong_password_fails_clearly() {
    let dir = scratch_dir("secrets-prompt-wrong");
    let inv = inventory(&dir);
    let command = format!(
        "'{BIN}' -f -U - libdir='{}' server=esx1 user=root password=- \
         thumbprint={THUMBPRINT} vm=moref=42 '[ds1] web/web.vmdk'",
        fake_libdir().display()
    );
    let mut term = Terminal::start(&command, &[("FAKE_VDDK_INVENTORY", &inv)]);
    term.wait_for("password: ");
    term.type_line("wrong 9b4e2d71");
    let (ok, screen) = term.finish();
    assert!(!ok, "{screen}");
    assert!(screen.contains("check the credentials"), "{screen}");
    assert!(!screen.contains(MARK), "{screen}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `uri=esx://esx1/` names no user: as libvirt does, the user is asked
/// for (an empty answer takes `root`), then the password; without a
/// terminal, the error says where to write the user.
#[test]
fn a_uri_without_a_user_asks_for_it() {
    let dir = scratch_dir("secrets-prompt-user");
    let inv = inventory_with_disk(&dir);
    let args = format!(
        "-U - libdir='{}' uri=esx://esx1/ password=- thumbprint={THUMBPRINT} vm=moref=42 \
         '[ds1] web/web.vmdk' --run 'nbdinfo --size \"$uri\"'",
        fake_libdir().display()
    );
    let mut term = Terminal::start(&format!("'{BIN}' {args}"), &[("FAKE_VDDK_INVENTORY", &inv)]);
    term.wait_for("Enter username for esx1 [root]: ");
    term.type_line("");
    term.wait_for("password: ");
    term.type_line(PASSWORD);
    let (ok, screen) = term.finish();
    assert!(ok, "the session failed:\n{screen}");
    assert!(screen.contains("8388608"), "{screen}");

    let o = command(BIN)
        .args(["-U", "-", "uri=esx://esx1/", "password=+/nonexistent"])
        .args([
            &format!("thumbprint={THUMBPRINT}"),
            "vm=moref=42",
            "[ds1] web/web.vmdk",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("names no user") && err.contains("esx://root@esx1/"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
