//! The byte-addressed views of a disk on the fake library: `DiskStream`
//! (std::io) and, with the `tokio` feature, `AsyncDisk` (futures with a
//! bound on what is submitted) and `AsyncDiskStream` (tokio's async I/O
//! traits). Whole copies match qemu's reading of the disk; unaligned
//! writes land where they should; the bound holds; a future dropped
//! after submission gives its slot back when its request completes.
//! Async requests take 5 ms each here, so that many are in flight.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use vddk::{
    AsyncDisk, ConnectParams, Connection, DiskDriver, DiskStream, DriverOptions, Mode, OpenFlags,
    Vddk,
};
use vddk_tests::images::{make_vmdk, noise, qemu_raw};
use vddk_tests::library::fake_vddk;

const SIZE: u64 = 6 << 20;

struct World {
    vddk: Vddk,
    dir: PathBuf,
    source: PathBuf,
    bytes: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = vddk_tests::scratch_dir("vddk-streams");
        let source = make_vmdk(
            &dir.join("source.vmdk"),
            "monolithicSparse",
            SIZE,
            &[
                (0, 1 << 20, 0x11),
                (2 << 20, 3 << 20, 0x22),
                (SIZE - 4096, 4096, 0x33),
            ],
        );
        let bytes = qemu_raw(&source);
        let vddk = fake_vddk(&[("FAKE_VDDK_ASYNC_LATENCY_US", "5000")]);
        World {
            vddk,
            dir,
            source,
            bytes,
        }
    })
}

fn driver(path: &Path, flags: OpenFlags, mode: Mode) -> DiskDriver {
    let w = world();
    let read_only = flags.contains(OpenFlags::READ_ONLY);
    let conn = Connection::connect(&w.vddk, &ConnectParams::local().read_only(read_only))
        .expect("connect");
    let disk = conn
        .open(path.to_str().expect("UTF-8"), flags)
        .expect("open");
    DiskDriver::new(disk, DriverOptions::new().mode(mode)).expect("driver")
}

/// A fresh writable copy of the source, named `name`.
fn scratch_copy(name: &str) -> PathBuf {
    let w = world();
    let path = w.dir.join(name);
    make_vmdk(&path, "monolithicSparse", SIZE, &[])
}

#[test]
fn a_disk_stream_copies_seeks_and_writes_like_a_file() {
    let w = world();
    for mode in [Mode::Direct, Mode::Pipelined] {
        let mut s = DiskStream::new(driver(&w.source, OpenFlags::READ_ONLY, mode));
        let mut all = Vec::new();
        std::io::copy(&mut s, &mut all).expect("copy");
        assert!(all == w.bytes, "{mode:?}: the copy differs");
        assert_eq!(s.read(&mut [0u8; 16]).expect("read at the end"), 0);
        // Unaligned, across the boundary of two extents of data.
        s.seek(SeekFrom::Start((1 << 20) - 100)).expect("seek");
        let mut mid = vec![0u8; 300];
        s.read_exact(&mut mid).expect("read");
        assert!(mid[..] == w.bytes[(1 << 20) - 100..(1 << 20) + 200]);
        assert_eq!(s.seek(SeekFrom::End(-1)).expect("seek"), SIZE - 1);
    }

    let path = scratch_copy("stream-written.vmdk");
    let mut s = DiskStream::new(driver(&path, OpenFlags::empty(), Mode::Direct));
    let data = noise(3 << 20, 5);
    s.seek(SeekFrom::Start(777)).expect("seek");
    s.write_all(&data).expect("write");
    s.seek(SeekFrom::End(-10)).expect("seek");
    let e = s.write_all(&[1u8; 20]).expect_err("a disk does not grow");
    assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    s.flush().expect("flush");
    s.into_driver().close().expect("close");
    let got = qemu_raw(&path);
    assert!(got[777..777 + data.len()] == data[..], "written bytes");
    assert!(got[..777].iter().all(|&b| b == 0));
    assert!(got[SIZE as usize - 10..].iter().all(|&b| b == 1));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

#[test]
fn async_reads_stay_within_their_bound_and_match() {
    let w = world();
    let d = AsyncDisk::new(driver(&w.source, OpenFlags::READ_ONLY, Mode::Pipelined), 4);
    runtime().block_on(async {
        let piece = 64 << 10;
        let mut tasks = Vec::new();
        for i in 0..(SIZE as usize / piece) {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                (i, d.read_at((i * piece) as u64, piece, Vec::new()).await)
            }));
        }
        let mut most = 0;
        while tasks.iter().any(|t| !t.is_finished()) {
            most = most.max(d.outstanding());
            tokio::task::yield_now().await;
        }
        for t in tasks {
            let (i, r) = t.await.expect("task");
            let buf = r.expect("read");
            assert!(buf[..] == w.bytes[i * piece..(i + 1) * piece], "piece {i}");
        }
        assert!((2..=4).contains(&most), "{most} outstanding at most");
        d.close().await.expect("close");
        let e = d.read_at(0, 512, Vec::new()).await.expect_err("closed");
        assert!(matches!(e, vddk::Error::Closed), "{e}");
    });
}

#[test]
fn a_dropped_future_gives_its_slot_back_when_the_request_ends() {
    let w = world();
    let d = AsyncDisk::new(driver(&w.source, OpenFlags::READ_ONLY, Mode::Pipelined), 1);
    runtime().block_on(async {
        let d2 = d.clone();
        let task = tokio::spawn(async move { d2.read_at(0, 1 << 20, Vec::new()).await });
        let mut waited = 0;
        while d.outstanding() == 0 {
            tokio::task::yield_now().await;
            waited += 1;
            assert!(waited < 1_000_000, "the read was never submitted");
        }
        task.abort();
        // The request cannot be called back from VDDK: its slot returns
        // when it completes (5 ms), and the disk goes on.
        assert!(all_slots_back(&d).await, "the slot did not come back");
        let buf = d.read_at(2 << 20, 4096, Vec::new()).await.expect("read");
        assert!(buf[..] == w.bytes[2 << 20..(2 << 20) + 4096]);
    });
}

/// Polls `d` until nothing is outstanding, for at most 10 s.
async fn all_slots_back(d: &AsyncDisk) -> bool {
    let start = Instant::now();
    while d.outstanding() > 0 {
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        tokio::task::yield_now().await;
    }
    true
}

#[test]
fn an_async_stream_copies_seeks_and_writes_behind() {
    let w = world();
    let rt = runtime();
    let src = AsyncDisk::new(driver(&w.source, OpenFlags::READ_ONLY, Mode::Pipelined), 8);
    let path = scratch_copy("async-written.vmdk");
    let dst = AsyncDisk::new(driver(&path, OpenFlags::empty(), Mode::Pipelined), 8);
    rt.block_on(async {
        // Disk to disk, as tokio::io::copy drives it.
        let mut from = src.stream();
        let mut to = dst.stream().depth(4);
        let n = tokio::io::copy(&mut from, &mut to).await.expect("copy");
        assert_eq!(n, SIZE);
        to.flush().await.expect("flush");

        // Reads ahead are dropped by a seek, and start again there.
        from.seek(SeekFrom::Start(SIZE - 5000)).await.expect("seek");
        let mut tail = Vec::new();
        from.read_to_end(&mut tail).await.expect("read");
        assert!(tail[..] == w.bytes[SIZE as usize - 5000..]);

        // An unaligned write in the middle, read back through the stream
        // that wrote it.
        let mut rw = dst.stream();
        rw.seek(SeekFrom::Start(12345)).await.expect("seek");
        rw.write_all(&[0xee; 1000]).await.expect("write");
        rw.seek(SeekFrom::Start(12000)).await.expect("seek");
        let mut back = vec![0u8; 2000];
        rw.read_exact(&mut back).await.expect("read");
        assert!(back[..345] == w.bytes[12000..12345]);
        assert!(back[345..1345].iter().all(|&b| b == 0xee));
        assert!(back[1345..] == w.bytes[13345..14000]);
        rw.shutdown().await.expect("shutdown");
        dst.close().await.expect("close");
    });
    let mut want = w.bytes.clone();
    want[12345..13345].fill(0xee);
    assert!(qemu_raw(&path) == want, "the written disk differs");
}
