//! What the vddk-nbd tests share that needs vddk-nbd itself: an
//! in-process server over a [`Backend`] on a Unix socket or a TCP port,
//! and the `vddk-nbd` binary over the fake VDDK. Clients, tools, images
//! and processes come from `vddk_tests`.
#![allow(dead_code)] // each test binary uses its own subset

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vddk_nbd::backend::Backend;
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::{Listener, Server, ServerConfig, ShutdownHandle};
use vddk_tests::process::ServerProcess;

/// The `vddk-nbd` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_vddk-nbd");

/// The binary with /usr/bin first on PATH, no inherited library path and
/// none of the fake's inventory and fault knobs from the environment.
pub fn vddk_nbd() -> Command {
    let mut cmd = vddk_tests::cmd::command(BIN);
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("FAKE_VDDK_INVENTORY")
        .env_remove("FAKE_VDDK_FAIL")
        .env_remove("FAKE_VDDK_FAIL_PROB");
    cmd
}

/// `vddk-nbd ARGS` through `sh -c`, after `prefix` (a shell command ending
/// in `exec`, which may open descriptors, set limits or change user
/// first), with the environment of [`vddk_nbd`] and stdin closed.
pub fn through_sh(prefix: &str, args: &[String]) -> Command {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let mut cmd = vddk_tests::cmd::command("sh");
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("FAKE_VDDK_INVENTORY")
        .env_remove("FAKE_VDDK_FAIL")
        .env_remove("FAKE_VDDK_FAIL_PROB")
        .arg("-c")
        .arg(format!("{prefix} '{BIN}' {}", quoted.join(" ")))
        .stdin(Stdio::null());
    cmd
}

/// `vddk-nbd -U - -r libdir=FAKE ARGS --run SCRIPT` with `env` set, run to
/// its end: the read-only server on a private socket for as long as
/// `SCRIPT` (a shell command that finds it at `$uri`) runs.
pub fn run_script(env: &[(&str, &str)], args: &[String], script: &str) -> Output {
    vddk_tests::cmd::output(
        vddk_nbd()
            .envs(env.iter().copied())
            .args(["-U", "-", "-r"])
            .arg(vddk_tests::libdir_param())
            .args(args)
            .args(["--run", script]),
    )
}

/// `vddk-nbd -f -v -U dir/nbd.sock vddk libdir=FAKE DISK` with `env`
/// (fault knobs) set, for tests that run it to completion themselves.
pub fn disk_command(dir: &Path, disk: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = vddk_nbd();
    cmd.envs(env.iter().copied())
        .args(["-f", "-v", "-U"])
        .arg(dir.join("nbd.sock"))
        .arg("vddk")
        .arg(vddk_tests::libdir_param())
        .arg(disk)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// [`disk_command`] with extra disk `params` (`io=direct`), started, its
/// stderr in `dir/server.stderr`, once its socket is there.
pub fn serve_disk(dir: &Path, disk: &Path, env: &[(&str, &str)], params: &[&str]) -> ServerProcess {
    ServerProcess::spawn(
        disk_command(dir, disk, env).args(params),
        dir.join("nbd.sock"),
        dir.join("server.stderr"),
    )
}

/// A server running in a thread until dropped.
pub struct TestServer {
    /// Scratch directory holding the socket and any files a test makes.
    pub dir: PathBuf,
    /// The Unix socket.
    pub socket: PathBuf,
    /// The TCP port on 127.0.0.1 ([`TestServer::tcp`]), or 0.
    pub port: u16,
    server: Arc<Server>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Serves `backend` on a Unix socket in a fresh scratch directory.
    pub fn unix(name: &str, backend: Arc<dyn Backend>, config: ServerConfig) -> TestServer {
        let dir = vddk_tests::scratch_dir(name);
        let socket = dir.join("nbd.sock");
        let listener = UnixListener::bind(&socket).expect("bind the test socket");
        TestServer::start(dir, socket, backend, config, vec![Listener::Unix(listener)])
    }

    /// Serves `backend` on 127.0.0.1, on a port the system chooses.
    pub fn tcp(name: &str, backend: Arc<dyn Backend>, config: ServerConfig) -> TestServer {
        let dir = vddk_tests::scratch_dir(name);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let port = listener.local_addr().expect("the test port").port();
        let socket = dir.join("no-unix-socket");
        let mut s = TestServer::start(dir, socket, backend, config, vec![Listener::Tcp(listener)]);
        s.port = port;
        s
    }

    /// Serves with the given listeners.
    pub fn start(
        dir: PathBuf,
        socket: PathBuf,
        backend: Arc<dyn Backend>,
        config: ServerConfig,
        listeners: Vec<Listener>,
    ) -> TestServer {
        let server = Arc::new(Server::new(backend, config));
        let handle = server.shutdown_handle();
        let s2 = Arc::clone(&server);
        let thread = std::thread::spawn(move || s2.serve(listeners));
        TestServer {
            dir,
            socket,
            port: 0,
            server,
            handle,
            thread: Some(thread),
        }
    }

    /// The NBD URI of the socket.
    pub fn uri(&self) -> String {
        vddk_tests::nbd::unix_uri(&self.socket)
    }

    /// Connections open right now.
    pub fn active(&self) -> usize {
        self.server.active_connections()
    }

    /// Bytes of request data the server holds right now.
    pub fn memory_held(&self) -> usize {
        self.server.request_memory_held()
    }

    /// Waits (up to 10 s) until no connection is open.
    pub fn wait_idle(&self) {
        let t = Instant::now();
        while self.active() > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "connections did not close"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the server to shut down, without waiting.
    pub fn begin_shutdown(&self) {
        self.handle.shutdown();
    }

    /// After a hostile client: a well-behaved client is still served
    /// normally, every connection closes, the server stops cleanly, and
    /// its scratch directory goes.
    pub fn finish(self) {
        let dir = self.dir.clone();
        vddk_tests::nbd::rawclient::served_normally(&self.socket);
        self.wait_idle();
        self.stop();
        std::fs::remove_dir_all(dir).ok();
    }

    /// Shuts down and checks `serve` returned Ok.
    pub fn stop(mut self) {
        self.handle.shutdown();
        let r = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("server thread panicked");
        r.expect("serve returned an error");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A memory disk of `size` bytes shared with the test.
pub fn memory(size: u64) -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::new(size))
}
