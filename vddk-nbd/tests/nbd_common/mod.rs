//! Shared by the nbd_* tests: an in-process server on a Unix socket and
//! helpers to run the real NBD clients against it.
#![allow(dead_code)]

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vddk_nbd::backend::{Backend, MemoryBackend};
use vddk_nbd::{Listener, Server, ServerConfig, ShutdownHandle};

/// A server running in a thread until dropped.
pub struct TestServer {
    /// Scratch directory holding the socket and any files a test makes.
    pub dir: PathBuf,
    /// The Unix socket.
    pub socket: PathBuf,
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

/// A byte-level NBD client for precise protocol cases.
pub struct RawClient {
    /// The connection.
    pub s: std::os::unix::net::UnixStream,
}

/// One option reply: (option, reply type, payload).
pub type OptReply = (u32, u32, Vec<u8>);

/// One structured reply chunk: (flags, type, cookie, payload).
pub type Chunk = (u16, u16, u64, Vec<u8>);

impl RawClient {
    /// Connects and checks the greeting.
    pub fn connect(socket: &Path) -> RawClient {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut g = [0u8; 18];
        s.read_exact(&mut g).expect("greeting");
        assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
        assert_eq!(
            &g[16..],
            &[0, 3],
            "handshake flags: fixed newstyle + no zeroes"
        );
        RawClient { s }
    }

    /// Connects and sends client flags (fixed newstyle + no zeroes).
    pub fn start(socket: &Path) -> RawClient {
        let mut c = RawClient::connect(socket);
        c.send(&3u32.to_be_bytes());
        c
    }

    /// Writes bytes.
    pub fn send(&mut self, b: &[u8]) {
        use std::io::Write;
        self.s.write_all(b).expect("send");
    }

    /// Reads exactly `n` bytes.
    pub fn recv(&mut self, n: usize) -> Vec<u8> {
        use std::io::Read;
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).expect("receive");
        b
    }

    /// True if the server closed the connection (EOF on the next read).
    pub fn closed(&mut self) -> bool {
        use std::io::Read;
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }

    /// Sends an option.
    pub fn option(&mut self, opt: u32, payload: &[u8]) {
        let mut b = 0x4948_4156_454f_5054u64.to_be_bytes().to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        b.extend_from_slice(payload);
        self.send(&b);
    }

    /// Reads one option reply.
    pub fn opt_reply(&mut self) -> OptReply {
        let h = self.recv(20);
        assert_eq!(
            &h[..8],
            &0x0003_e889_0455_65a9u64.to_be_bytes(),
            "option reply magic"
        );
        let o = u32::from_be_bytes(h[8..12].try_into().unwrap());
        let t = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let l = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        (o, t, self.recv(l))
    }

    /// Reads option replies up to and including the first that is not
    /// INFO, SERVER or META_CONTEXT.
    pub fn opt_replies(&mut self) -> Vec<OptReply> {
        let mut v = Vec::new();
        loop {
            let r = self.opt_reply();
            let last = !matches!(r.1, 2..=4);
            v.push(r);
            if last {
                return v;
            }
        }
    }

    /// Sends a request header and payload.
    pub fn request(
        &mut self,
        command: u16,
        flags: u16,
        cookie: u64,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) {
        let mut b = 0x2560_9513u32.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&command.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(payload);
        self.send(&b);
    }

    /// Reads a simple reply header: (error, cookie).
    pub fn simple_reply(&mut self) -> (u32, u64) {
        let h = self.recv(16);
        assert_eq!(&h[..4], &0x6744_6698u32.to_be_bytes(), "simple reply magic");
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }

    /// Reads one structured chunk.
    pub fn chunk(&mut self) -> Chunk {
        let h = self.recv(20);
        assert_eq!(
            &h[..4],
            &0x668e_33efu32.to_be_bytes(),
            "structured reply magic"
        );
        let flags = u16::from_be_bytes(h[4..6].try_into().unwrap());
        let kind = u16::from_be_bytes(h[6..8].try_into().unwrap());
        let cookie = u64::from_be_bytes(h[8..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        (flags, kind, cookie, self.recv(len))
    }

    /// INFO/GO payload for `name` with the given info requests.
    pub fn info_payload(name: &str, requests: &[u16]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(&(requests.len() as u16).to_be_bytes());
        for r in requests {
            p.extend_from_slice(&r.to_be_bytes());
        }
        p
    }

    /// Meta context payload.
    pub fn meta_payload(name: &str, queries: &[&str]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(&(queries.len() as u32).to_be_bytes());
        for q in queries {
            p.extend_from_slice(&(q.len() as u32).to_be_bytes());
            p.extend_from_slice(q.as_bytes());
        }
        p
    }

    /// Negotiates with GO, optionally structured replies and base:allocation.
    pub fn go(socket: &Path, structured: bool, meta: bool) -> RawClient {
        let mut c = RawClient::start(socket);
        if structured {
            c.option(8, &[]);
            assert_eq!(c.opt_reply().1, 1);
        }
        if meta {
            c.option(10, &RawClient::meta_payload("", &["base:allocation"]));
            let r = c.opt_replies();
            assert_eq!(r.len(), 2);
        }
        c.option(7, &RawClient::info_payload("", &[]));
        let r = c.opt_replies();
        assert_eq!(r.last().unwrap().1, 1, "GO acknowledged");
        c
    }
}
