//! Many requests in flight, replies out of order, several clients, clients
//! that vanish, a panicking connection, and shutdown draining requests.

mod nbd_common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nbd_common::{memory, TestServer};
use vddk_nbd::backend::{Backend, Caps, Done, Error, Extent, ZeroFlags};
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::ServerConfig;
use vddk_tests::cmd::run;
use vddk_tests::images::{noise, s};
use vddk_tests::nbd::nbdsh;
use vddk_tests::nbd::rawclient::{Raw as RawClient, Requests};

/// Completes requests on other threads after a delay chosen per request;
/// reads at `PANIC_AT` panic in the calling thread.
struct Slow {
    inner: Arc<MemoryBackend>,
    delay: fn(u64) -> Duration,
}

const PANIC_AT: u64 = 3 << 20;

impl Slow {
    fn later<T: Send + 'static>(
        &self,
        offset: u64,
        f: impl FnOnce() -> T + Send + 'static,
        done: Box<dyn FnOnce(T) + Send>,
    ) {
        let d = (self.delay)(offset);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            done(f());
        });
    }
}

impl Backend for Slow {
    fn caps(&self) -> Caps {
        Caps {
            inline: false,
            ..self.inner.caps()
        }
    }
    fn read(&self, offset: u64, length: u32, buf: Vec<u8>, done: Done<Vec<u8>>) {
        assert!(offset != PANIC_AT, "deliberate panic for the test");
        let inner = Arc::clone(&self.inner);
        self.later(
            offset,
            move || {
                let (tx, rx) = std::sync::mpsc::channel();
                inner.read(offset, length, buf, Box::new(move |r| tx.send(r).unwrap()));
                rx.recv().unwrap()
            },
            done,
        );
    }
    fn write(&self, offset: u64, data: Vec<u8>, fua: bool, done: Done<Vec<u8>>) {
        let inner = Arc::clone(&self.inner);
        self.later(
            offset,
            move || {
                let (tx, rx) = std::sync::mpsc::channel();
                inner.write(offset, data, fua, Box::new(move |r| tx.send(r).unwrap()));
                rx.recv().unwrap()
            },
            done,
        );
    }
    fn zero(&self, offset: u64, length: u64, flags: ZeroFlags, done: Done<()>) {
        self.inner.zero(offset, length, flags, done)
    }
    fn flush(&self, done: Done<()>) {
        self.inner.flush(done)
    }
    fn extents(&self, offset: u64, length: u64, done: Done<Vec<Extent>>) {
        self.inner.extents(offset, length, done)
    }
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn slow_at_zero(offset: u64) -> Duration {
    if offset == 0 {
        Duration::from_millis(400)
    } else {
        Duration::ZERO
    }
}

fn jitter(offset: u64) -> Duration {
    Duration::from_millis((offset / 4096 * 7919) % 23)
}

#[test]
fn replies_come_back_out_of_order() {
    let mem = memory(8 << 20);
    mem.fill(0, b"first");
    mem.fill(4096, b"second");
    let srv = TestServer::unix(
        "nbd-cc-order",
        Arc::new(Slow {
            inner: mem,
            delay: slow_at_zero,
        }),
        ServerConfig::default(),
    );
    let mut c = RawClient::go(&srv.socket, false, false);
    c.request(0, 0, 1, 0, 5, &[]);
    c.request(0, 0, 2, 4096, 6, &[]);
    assert_eq!(
        c.simple_reply(),
        (0, 2),
        "the fast request is answered first"
    );
    assert_eq!(c.recv(6), b"second");
    assert_eq!(c.simple_reply(), (0, 1));
    assert_eq!(c.recv(5), b"first");
    srv.stop();
}

#[test]
fn many_requests_in_flight_with_libnbd() {
    let mem = memory(8 << 20);
    let srv = TestServer::unix(
        "nbd-cc-aio",
        Arc::new(Slow {
            inner: mem.clone(),
            delay: jitter,
        }),
        ServerConfig::default(),
    );
    nbdsh(
        &srv.socket,
        r#"
h.connect_unix(sock)
n = 128
bufs = [nbd.Buffer.from_bytearray(bytearray([i % 251 + 1]) * 4096) for i in range(n)]
cookies = [h.aio_pwrite(bufs[i], i * 4096) for i in range(n)]
assert h.aio_in_flight() > 1, "requests should pipeline"
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    assert h.aio_command_completed(c)
reads = [nbd.Buffer(4096) for i in range(n)]
rc = [h.aio_pread(reads[i], i * 4096) for i in range(n)]
while h.aio_in_flight() > 0:
    h.poll(-1)
for i in range(n):
    h.aio_command_completed(rc[i])
    assert reads[i].to_bytearray() == bytearray([i % 251 + 1]) * 4096, i
"#,
    );
    for i in 0..128u64 {
        assert_eq!(
            mem.contents(i * 4096, 4096),
            vec![(i % 251 + 1) as u8; 4096],
            "block {i}"
        );
    }
    srv.stop();
}

#[test]
fn overlapping_unaligned_writes_lose_nothing() {
    let mem = memory(8 << 20);
    let srv = TestServer::unix(
        "nbd-cc-rmw",
        Arc::new(Slow {
            inner: mem.clone(),
            delay: |_| Duration::from_millis(5),
        }),
        ServerConfig::default(),
    );
    // 64 one-byte writes into the same two sectors, all in flight at once:
    // each is a read-modify-write of a shared sector.
    nbdsh(
        &srv.socket,
        r#"
h.set_strict_mode(0)
h.connect_unix(sock)
cookies = []
for i in range(64):
    b = nbd.Buffer.from_bytearray(bytearray([i + 1]))
    cookies.append(h.aio_pwrite(b, 480 + i))
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    assert h.aio_command_completed(c)
"#,
    );
    let want: Vec<u8> = (1..=64).collect();
    assert_eq!(mem.contents(480, 64), want);
    assert_eq!(mem.contents(0, 480), vec![0; 480]);
    srv.stop();
}

#[test]
fn several_clients_at_once() {
    let mem = memory(32 << 20);
    let image = noise(32 << 20, 7);
    mem.fill(0, &image);
    let srv = TestServer::unix("nbd-cc-clients", mem, ServerConfig::default());
    let input = srv.dir.join("image.raw");
    std::fs::write(&input, &image).unwrap();
    let mut children = Vec::new();
    for i in 0..4 {
        let out = srv.dir.join(format!("copy{i}.raw"));
        children.push((
            out.clone(),
            Command::new("nbdcopy")
                .arg(srv.uri())
                .arg(&out)
                .env("PATH", "/usr/bin:/bin")
                .spawn()
                .unwrap(),
        ));
    }
    let uri = srv.uri();
    run(
        "qemu-img",
        ["compare", "-f", "raw", "-F", "raw", s(&input), &uri],
    );
    for (out, mut child) in children {
        assert!(child.wait().unwrap().success());
        assert!(
            std::fs::read(&out).unwrap() == image,
            "{} differs",
            out.display()
        );
    }
    srv.wait_idle();
    srv.stop();
}

#[test]
fn vanishing_clients_do_not_disturb_others() {
    let mem = memory(8 << 20);
    let srv = TestServer::unix(
        "nbd-cc-vanish",
        Arc::new(Slow {
            inner: mem.clone(),
            delay: jitter,
        }),
        ServerConfig::default(),
    );
    // One leaves mid-payload, one leaves with replies unread, one mid-handshake.
    let mut a = RawClient::go(&srv.socket, true, false);
    let mut req = Vec::new();
    req.extend_from_slice(&vec![1u8; 1000]);
    a.request(1, 0, 1, 0, 4096, &req);
    let mut b = RawClient::go(&srv.socket, true, false);
    for i in 0..32 {
        b.request(0, 0, i, i * 65536, 65536, &[]);
    }
    let mut c = RawClient::start(&srv.socket);
    c.option(8, &[]);
    drop((a, b, c));
    // Meanwhile another client works normally.
    let out = run(
        "qemu-io",
        [
            "-f",
            "raw",
            "-c",
            "write -P 0x77 1M 1M",
            "-c",
            "read -P 0x77 1M 1M",
            &srv.uri(),
        ],
    );
    assert!(!out.contains("failed"), "{out}");
    srv.wait_idle();
    assert_eq!(
        mem.contents(0, 4096),
        vec![0; 4096],
        "a half-sent write is not applied"
    );
    assert_eq!(mem.contents(1 << 20, 1 << 20), vec![0x77; 1 << 20]);
    srv.stop();
}

#[test]
fn a_panicking_connection_leaves_the_server_up() {
    let mem = memory(8 << 20);
    let srv = TestServer::unix(
        "nbd-cc-panic",
        Arc::new(Slow {
            inner: mem,
            delay: jitter,
        }),
        ServerConfig::default(),
    );
    let mut c = RawClient::go(&srv.socket, false, false);
    c.request(0, 0, 1, PANIC_AT, 512, &[]);
    // The request caught in the panic is answered EIO, then the connection ends.
    assert_eq!(c.simple_reply(), (5, 1));
    assert!(c.closed(), "the connection ends");
    srv.wait_idle();
    let mut d = RawClient::go(&srv.socket, false, false);
    d.request(0, 0, 2, 0, 512, &[]);
    assert_eq!(d.simple_reply(), (0, 2));
    assert_eq!(d.recv(512), vec![0; 512]);
    drop(d);
    srv.stop();
}

#[test]
fn shutdown_answers_requests_in_flight() {
    let mem = memory(8 << 20);
    mem.fill(0, b"drained");
    let srv = TestServer::unix(
        "nbd-cc-shutdown",
        Arc::new(Slow {
            inner: mem,
            delay: slow_at_zero,
        }),
        ServerConfig::default(),
    );
    let mut c = RawClient::go(&srv.socket, false, false);
    c.request(0, 0, 9, 0, 7, &[]);
    std::thread::sleep(Duration::from_millis(100));
    srv.begin_shutdown();
    assert_eq!(c.simple_reply(), (0, 9));
    assert_eq!(c.recv(7), b"drained");
    assert!(c.closed());
    srv.stop();
}
