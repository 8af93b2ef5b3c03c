//! Durability through the binary on sparse and flat VMDKs: a stream of
//! writes (some with FUA, with flushes between) is cut by SIGTERM to the
//! server, or by SIGKILL to the client; afterwards every write that was
//! acknowledged is on disk, as read back by `qemu-img convert`, and
//! sparse disks pass `qemu-img check`.

mod nbd_common;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nbd_common::serve_disk;
use vddk_tests::cmd::command;
use vddk_tests::images::{convert_to_raw, make_vmdk, qemu_check};
use vddk_tests::nbd::rawclient::*;
use vddk_tests::process::wait_until;

/// Virtual size: room for thousands of writes that never overlap.
const SIZE: u64 = 256 << 20;
/// Each write has a slot of its own, so what is on disk is unambiguous.
const SLOT: u64 = 128 << 10;
/// The first slot, clear of the region other checks use.
const FIRST: u64 = 8;

/// One write: its number picks its slot, offset, length and contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wr {
    k: u64,
    offset: u64,
    len: usize,
}

impl Wr {
    fn new(k: u64) -> Wr {
        // Sector-aligned but not grain-aligned, of varying length.
        Wr {
            k,
            offset: (FIRST + k) * SLOT + (k % 7) * 512,
            len: 4096 + (k % 5) as usize * 8192,
        }
    }

    /// Every 8-byte word holds the write's number and the word's index,
    /// so a misplaced or torn write cannot pass for this one.
    fn data(&self) -> Vec<u8> {
        (0..self.len as u64 / 8)
            .flat_map(|i| ((self.k + 1) << 32 | i).to_be_bytes())
            .collect()
    }
}

/// Checks every acknowledged write against the disk as qemu-img reads it.
fn verify(disk: &Path, acked: &[Wr], sparse: bool) {
    let raw = disk.with_extension("check.raw");
    convert_to_raw(disk, &raw);
    let f = File::open(&raw).expect("open the converted disk");
    for w in acked {
        let mut got = vec![0u8; w.len];
        f.read_exact_at(&mut got, w.offset)
            .expect("read a written range");
        assert!(got == w.data(), "acknowledged write {w:?} is not on disk");
    }
    let _ = std::fs::remove_file(&raw);
    if sparse {
        qemu_check(disk);
    }
}

/// Streams pipelined writes (every third with FUA, a flush every tenth
/// request) until the server ends the connection; returns the writes it
/// acknowledged, also appended to `log` as they arrive.
fn stream(socket: &Path, progress: &AtomicUsize, log: &mut File) -> Vec<Wr> {
    let mut c = Raw::go(socket, false, false);
    let mut inflight: HashMap<u64, Option<Wr>> = HashMap::new();
    let mut acked = Vec::new();
    let mut k = 0u64;
    let mut cookie = 0u64;
    let slots = SIZE / SLOT - FIRST;
    loop {
        while inflight.len() < 8 {
            cookie += 1;
            if cookie % 10 == 0 {
                c.request(CMD_FLUSH, 0, cookie, 0, 0, &[]);
                inflight.insert(cookie, None);
                continue;
            }
            assert!(k < slots, "the server was never stopped");
            let w = Wr::new(k);
            k += 1;
            let fua = if k % 3 == 0 { F_FUA } else { 0 };
            c.request(CMD_WRITE, fua, cookie, w.offset, w.len as u32, &w.data());
            inflight.insert(cookie, Some(w));
        }
        let Some((errno, got)) = c.try_simple_reply() else {
            return acked;
        };
        let w = inflight
            .remove(&got)
            .expect("a reply for a request in flight");
        if let (0, Some(w)) = (errno, w) {
            writeln!(log, "{} {} {}", w.k, w.offset, w.len).expect("log a write");
            acked.push(w);
            progress.store(acked.len(), Ordering::SeqCst);
        }
    }
}

fn sigterm_mid_stream(subformat: &str) {
    let dir = vddk_tests::scratch_dir(&format!("durable-term-{subformat}"));
    let disk = make_vmdk(&dir.join("d.vmdk"), subformat, SIZE, &[]);
    let mut srv = serve_disk(&dir, &disk, &[], &[]);
    let progress = AtomicUsize::new(0);
    let mut log = File::create(dir.join("acked.log")).expect("create the ack log");
    let (acked, at_signal) = std::thread::scope(|s| {
        let writer = s.spawn(|| stream(&srv.socket, &progress, &mut log));
        wait_until("50 acknowledged writes", Duration::from_secs(30), || {
            progress.load(Ordering::SeqCst) >= 50
        });
        srv.signal("TERM");
        let at_signal = progress.load(Ordering::SeqCst);
        (writer.join().expect("writer"), at_signal)
    });
    let status = srv.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", srv.log());
    assert!(acked.len() >= at_signal, "{} < {at_signal}", acked.len());
    verify(&disk, &acked, subformat == "monolithicSparse");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sigterm_mid_stream_sparse() {
    sigterm_mid_stream("monolithicSparse");
}

#[test]
fn sigterm_mid_stream_flat() {
    sigterm_mid_stream("monolithicFlat");
}

/// A client of its own process: nbdsh writing `Wr`-shaped data, printing
/// each write once it is acknowledged.
const NBDSH_WRITER: &str = r#"
import struct, sys
h.connect_uri(uri)
for k in range(count):
    slot, off, n = first + k, (first + k) * slotsize + (k % 7) * 512, 4096 + (k % 5) * 8192
    data = b"".join(struct.pack(">Q", ((k + 1) << 32) | i) for i in range(n // 8))
    h.pwrite(data, off, nbd.CMD_FLAG_FUA if k % 3 == 2 else 0)
    if k % 9 == 8:
        h.flush()
    print(k, off, n, flush=True)
"#;

fn client_killed_mid_stream(subformat: &str) {
    let dir = vddk_tests::scratch_dir(&format!("durable-kill-{subformat}"));
    let disk = make_vmdk(&dir.join("d.vmdk"), subformat, SIZE, &[]);
    let srv = serve_disk(&dir, &disk, &[], &[]);
    let script = format!(
        "uri = {:?}\ncount = {}\nfirst = {FIRST}\nslotsize = {SLOT}\n{NBDSH_WRITER}",
        srv.uri(),
        SIZE / SLOT - FIRST
    );
    let mut client = command("nbdsh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nbdsh");
    let out = BufReader::new(client.stdout.take().expect("stdout"));
    let mut log = File::create(dir.join("acked.log")).expect("create the ack log");
    let mut acked = Vec::new();
    let t = Instant::now();
    for line in out.lines() {
        let line = line.expect("read nbdsh output");
        let v: Vec<u64> = line
            .split(' ')
            .map(|x| x.parse().expect("a number"))
            .collect();
        let w = Wr::new(v[0]);
        assert_eq!(
            (w.offset, w.len as u64),
            (v[1], v[2]),
            "the script agrees with Wr"
        );
        writeln!(log, "{line}").expect("log a write");
        acked.push(w);
        if acked.len() == 30 {
            client.kill().expect("SIGKILL the client");
        }
        assert!(t.elapsed() < Duration::from_secs(60), "nbdsh too slow");
    }
    let status = client.wait().expect("reap nbdsh");
    assert!(
        !status.success(),
        "the client was killed, not finished: {status}"
    );
    assert!(acked.len() >= 30);
    // The server shrugs the dead client off and serves the next one.
    served_normally(&srv.socket);
    srv.stop();
    verify(&disk, &acked, subformat == "monolithicSparse");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn client_killed_mid_stream_sparse() {
    client_killed_mid_stream("monolithicSparse");
}

#[test]
fn client_killed_mid_stream_flat() {
    client_killed_mid_stream("monolithicFlat");
}
