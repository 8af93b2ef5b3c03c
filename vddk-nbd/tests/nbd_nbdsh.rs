//! libnbd (through nbdsh) as the client: structured reply chunks, block
//! status with REQ_ONE, unaligned requests with strict mode off, errors.

mod nbd_common;

use std::sync::Arc;

use nbd_common::{memory, TestServer};
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::ServerConfig;
use vddk_tests::images::noise;
use vddk_tests::nbd::nbdsh;

/// 4 MiB disk: data in the 64 KiB cluster at 1 MiB, holes elsewhere.
fn disk() -> Arc<MemoryBackend> {
    let d = memory(4 << 20);
    d.fill(1 << 20, &[0x42; 65536]);
    d
}

#[test]
fn structured_read_chunks() {
    let srv = TestServer::unix("nbd-sh-chunks", disk(), ServerConfig::default());
    let out = nbdsh(
        &srv.socket,
        r#"
h.connect_unix(sock)
assert h.get_structured_replies_negotiated()
chunks = []
def cb(buf, offset, status, err):
    chunks.append((offset, len(buf), status, bytes(buf[:1])))
    return 0
buf = h.pread_structured(3 * 65536, (1 << 20) - 65536, cb)
print(chunks)
assert buf == bytes(65536) + b"\x42" * 65536 + bytes(65536)
"#,
    );
    let hole = 2; // LIBNBD_READ_HOLE
    let data = 1; // LIBNBD_READ_DATA
    let want = format!(
        "[({}, 65536, {hole}, b'\\x00'), ({}, 65536, {data}, b'B'), ({}, 65536, {hole}, b'\\x00')]",
        (1 << 20) - 65536,
        1 << 20,
        (1 << 20) + 65536
    );
    assert_eq!(out.trim(), want);
    srv.stop();
}

#[test]
fn block_status_and_req_one() {
    let srv = TestServer::unix("nbd-sh-bs", disk(), ServerConfig::default());
    let out = nbdsh(
        &srv.socket,
        r#"
h.set_strict_mode(0)
h.add_meta_context("base:allocation")
h.connect_unix(sock)
assert h.can_meta_context("base:allocation")
seen = []
def cb(ctx, offset, entries, err):
    seen.append((ctx, offset, list(entries)))
    return 0
h.block_status(4 << 20, 0, cb)
h.block_status(4 << 20, 0, cb, nbd.CMD_FLAG_REQ_ONE)
h.block_status(65536, (1 << 20) + 4096, cb, nbd.CMD_FLAG_REQ_ONE)
h.block_status(512, 100, cb)
for s in seen: print(s)
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "('base:allocation', 0, [1048576, 3, 65536, 0, 3080192, 3])",
            "('base:allocation', 0, [1048576, 3])",
            "('base:allocation', 1052672, [61440, 0])",
            "('base:allocation', 100, [512, 3])",
        ]
    );
    srv.stop();
}

#[test]
fn unaligned_requests_with_strict_mode_off() {
    let d = disk();
    d.fill(0, &noise(8192, 9));
    let srv = TestServer::unix("nbd-sh-unaligned", d.clone(), ServerConfig::default());
    nbdsh(
        &srv.socket,
        r#"
h.set_strict_mode(0)
h.connect_unix(sock)
assert h.get_block_size(nbd.SIZE_MINIMUM) == 512
before = h.pread(8192, 0)
h.pwrite(b"abc", 511)
h.pwrite(b"Z" * 1000, 1000, nbd.CMD_FLAG_FUA)
h.zero(3, 7)
after = h.pread(8192, 0)
want = bytes(before[:7]) + bytes(3) + bytes(before[10:511]) + b"abc" + bytes(before[514:1000]) + b"Z" * 1000 + bytes(before[2000:])
assert after == want, "unaligned writes changed the wrong bytes"
assert h.pread(3, 511) == b"abc"
assert h.pread(1, 1999) == b"Z"
assert h.pread(5, (4 << 20) - 5) == bytes(5)
"#,
    );
    let mut want = noise(8192, 9);
    want[7..10].fill(0);
    want[511..514].copy_from_slice(b"abc");
    want[1000..2000].fill(b'Z');
    assert!(d.contents(0, 8192) == want, "server-side bytes differ");
    srv.stop();
}

#[test]
fn errors_seen_by_libnbd() {
    let srv = TestServer::unix("nbd-sh-errors", disk(), ServerConfig::default());
    let out = nbdsh(
        &srv.socket,
        r#"
import errno
h.set_strict_mode(0)
h.connect_unix(sock)
assert h.can_fast_zero()
assert not h.can_trim()
def err(f):
    try:
        f()
    except nbd.Error as e:
        return errno.errorcode[e.errnum]
    return "ok"
print(err(lambda: h.pread(512, 4 << 20)))
print(err(lambda: h.pwrite(b"x" * 512, (4 << 20) - 256)))
print(err(lambda: h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO)))
print(err(lambda: h.pread(512, 0)))
"#,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["EINVAL", "ENOSPC", "ENOTSUP", "ok"]
    );
    srv.stop();
}

#[test]
fn read_only_write_is_eperm() {
    let d = disk();
    let config = ServerConfig {
        read_only: true,
        ..Default::default()
    };
    let srv = TestServer::unix("nbd-sh-ro", d.clone(), config);
    let out = nbdsh(
        &srv.socket,
        r#"
import errno
h.set_strict_mode(0)
h.connect_unix(sock)
assert h.is_read_only()
assert not h.can_zero()
for f in (lambda: h.pwrite(b"x" * 512, 0), lambda: h.zero(512, 0)):
    try:
        f()
        print("ok")
    except nbd.Error as e:
        print(errno.errorcode[e.errnum])
h.flush()
"#,
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["EPERM", "EPERM"]);
    assert_eq!(d.contents(0, 512), vec![0; 512]);
    srv.stop();
}

#[test]
fn option_mode_listing() {
    let config = ServerConfig {
        export_name: "the-disk".into(),
        description: Some("desc".into()),
        ..Default::default()
    };
    let srv = TestServer::unix("nbd-sh-opt", disk(), config);
    let out = nbdsh(
        &srv.socket,
        r#"
h.set_opt_mode(True)
h.connect_unix(sock)
names = []
h.opt_list(lambda name, desc: names.append(name))
print(names)
ctxs = []
h.opt_list_meta_context(lambda name: ctxs.append(name))
print(ctxs)
h.set_export_name("anything")
h.set_full_info(True)
h.opt_info()
print(h.get_size(), h.get_canonical_export_name(), h.get_export_description())
h.opt_go()
print(bytes(h.pread(512, 1 << 20)[:4]))
h.shutdown()
"#,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "['the-disk']",
            "['base:allocation']",
            "4194304 the-disk desc",
            "b'BBBB'"
        ]
    );
    srv.stop();
}
