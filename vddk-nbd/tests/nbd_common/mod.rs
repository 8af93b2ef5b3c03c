//! Shared by the nbd_* tests: an in-process server on a Unix socket and
//! helpers to run the real NBD clients against it.
#![allow(dead_code)]

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vddk_nbd::backend::Backend;
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::{Listener, Server, ServerConfig, ShutdownHandle};

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
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    /// Connections open right now.
    pub fn active(&self) -> usize {
        self.server.active_connections()
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

/// A deterministic, non-repeating-looking byte pattern.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Runs a command with /usr/bin first on PATH (Debian's python3 has the
/// nbd module) and returns its output, whatever the exit status.
pub fn output(cmd: &mut Command) -> Output {
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    cmd.env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command, asserts it succeeded, returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Python script under nbdsh (`h` is an unconnected handle, `nbd`
/// is imported, `sock` is the socket path); returns stdout.
pub fn nbdsh(socket: &Path, script: &str) -> String {
    let full = format!("sock = {:?}\n{script}", socket.display().to_string());
    run(Command::new("nbdsh").arg("-c").arg(full))
}

/// The byte-level NBD client the hostile suites use too.
#[path = "../support/rawclient.rs"]
pub mod rawclient;
#[allow(unused_imports)]
pub use rawclient::{Chunk, OptReply, Raw as RawClient};
