//! Case 55 of the hostile-client suite: 1000 connect/disconnect cycles of
//! assorted kinds leave no threads, descriptors or memory behind.
//!
//! Alone in its file so that this process holds only this test's threads
//! and descriptors while they are counted.

mod nbd_common;

use std::time::Duration;

use nbd_common::{memory, TestServer};
use vddk_nbd::ServerConfig;
use vddk_tests::nbd::rawclient::*;
use vddk_tests::process::{process_usage, wait_until};

/// One short-lived client; `i` picks how it ends.
fn cycle(socket: &std::path::Path, i: usize) {
    match i % 5 {
        // Connect and hang up at once.
        0 => drop(Raw::bare(socket)),
        // Leave after the greeting.
        1 => drop(Raw::connect(socket)),
        // Leave mid-option.
        2 => {
            let mut c = Raw::start(socket);
            c.send(&Raw::option_header(OPT_GO, 6));
        }
        // A full session with one request, then DISC.
        3 => {
            let mut c = Raw::go(socket, true, false);
            c.request(CMD_READ, 0, 1, 0, 4096, &[]);
            assert_eq!(c.read_reply(1, 4096).len(), 4096);
            c.request(CMD_DISC, 0, 2, 0, 0, &[]);
            assert!(c.closed());
        }
        // A session dropped with a read in flight.
        _ => {
            let mut c = Raw::go(socket, false, false);
            c.request(CMD_READ, 0, 1, 0, 65536, &[]);
        }
    }
}

/// `n` cycles, eight clients at a time, so the run takes seconds.
fn cycles(socket: &std::path::Path, n: usize) {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in (t..n).step_by(8) {
                    cycle(socket, i);
                }
            });
        }
    });
}

#[test]
fn a_thousand_cycles_leak_nothing() {
    let srv = TestServer::unix(
        "hostile-cycles",
        memory(1 << 20),
        ServerConfig {
            handshake_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    );
    // Warm up with the same shape of load: the allocator's per-thread
    // arenas, the accept loop and lazy statics settle.
    cycles(&srv.socket, 200);
    srv.wait_idle();
    let settle = || std::thread::sleep(Duration::from_millis(200));
    settle();
    let (threads0, fds0, rss0) = process_usage();
    cycles(&srv.socket, 1000);
    srv.wait_idle();
    // Connection threads exit just after they stop counting as active.
    wait_until("connection threads to exit", Duration::from_secs(5), || {
        process_usage().0 <= threads0
    });
    settle();
    let (threads1, fds1, rss1) = process_usage();
    assert!(
        threads0 > 1 && fds0 > 3 && rss0 > 0,
        "usage readable: {threads0} {fds0} {rss0}"
    );
    assert_eq!(threads1, threads0, "threads before and after");
    assert_eq!(fds1, fds0, "open descriptors before and after");
    // A leak of one 4 KiB buffer per connection would be 4 MiB.
    assert!(
        rss1 < rss0 + 2048,
        "resident memory grew from {rss0} KiB to {rss1} KiB"
    );
    served_normally(&srv.socket);
    srv.stop();
}
