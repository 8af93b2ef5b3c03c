//! What a READ costs in heap allocations on its way from the socket to
//! VDDK and back: the connection's reader, the layered backend, the VDDK
//! disk, the pipelined driver and its completion, the reply. The budget is
//! one allocation per request besides the payload buffer. Counted with a
//! global allocator around reads from a client in another process (nbdsh),
//! as the difference between two runs of different lengths, so that
//! connecting, negotiating and starting the client cancel out. VDDK's own
//! allocations (here the fake library's) are not ours and are not seen.

mod nbd_common;

use std::alloc::System;
use std::sync::Arc;

use nbd_common::TestServer;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use vddk::{ConnectParams, Connection, DiskDriver, DriverOptions, Mode, OpenFlags};
use vddk_nbd::plugins::VddkDisk;
use vddk_nbd::ServerConfig;
use vddk_tests::images::{noise, vmdk_from_raw};
use vddk_tests::nbd::nbdsh;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and reallocations so far, in every thread.
fn allocations() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

/// Allocations made while a client reads `n` 4 KiB blocks, one at a time.
fn allocations_for(server: &TestServer, n: u32) -> u64 {
    let script = format!(
        "h.connect_unix(sock)\n\
         for i in range({n}):\n\
         \x20   h.pread(4096, (i * 4096 * 7) % (4 << 20))\n\
         h.shutdown()\n"
    );
    let before = allocations();
    nbdsh(&server.socket, &script);
    // The connection's thread may still be winding down.
    std::thread::sleep(std::time::Duration::from_millis(200));
    allocations() - before
}

#[test]
fn a_read_costs_one_allocation_besides_its_buffer() {
    let dir = vddk_tests::scratch_dir("alloc-per-request");
    let raw = dir.join("src.raw");
    std::fs::write(&raw, noise(4 << 20, 3)).expect("write");
    let vmdk = dir.join("disk.vmdk");
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");

    let lib = vddk_tests::library::fake_vddk(&[]);
    let conn = Connection::connect(&lib, &ConnectParams::local().read_only(true)).expect("connect");
    let disk = conn
        .open(vmdk.to_str().expect("UTF-8"), OpenFlags::READ_ONLY)
        .expect("open");
    // Pipelined, as a remote disk is served.
    let driver = DiskDriver::new(disk, DriverOptions::new().mode(Mode::Pipelined)).expect("driver");
    let backend = Arc::new(VddkDisk::new(driver, true));
    let server = TestServer::unix("alloc-per-request", backend, ServerConfig::default());

    allocations_for(&server, 200);
    let short = allocations_for(&server, 1000);
    let long = allocations_for(&server, 5000);
    let per_read = long.saturating_sub(short) as f64 / 4000.0;
    println!("heap allocations per 4 KiB READ: {per_read:.2} (payload buffer included)");
    assert!(
        per_read <= 2.0,
        "{per_read:.2} allocations per READ: the budget is the payload buffer and one more"
    );
}
