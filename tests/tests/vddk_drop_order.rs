//! Exit runs only after the last disk is gone, whatever order the caller
//! drops things in. Strict mode: an early Exit (with a disk open) or a call
//! after Exit would abort this process. The fake writes its statistics file
//! at Exit, which tells when Exit ran. One test: InitEx is once per process.

use vddk::{
    ConnectParams, Connection, DiskDriver, DriverOptions, InitOptions, Mode, OpenFlags, Vddk,
};
use vddk_tests::images::{pattern_raw, vmdk_from_raw};
use vddk_tests::library::wait;

#[test]
fn exit_waits_for_the_last_disk_and_driver() {
    let libdir = vddk_tests::fake_libdir();
    let dir = vddk_tests::scratch_dir("vddk-drop-order");
    let stats = dir.join("stats.txt");
    let raw = dir.join("a.raw");
    let vmdk = dir.join("a.vmdk");
    let bytes = pattern_raw(&raw, 2048, 41);
    vmdk_from_raw(&raw, &vmdk, "monolithicSparse");
    // The only test in this binary: no other thread reads the environment.
    std::env::set_var("FAKE_VDDK_STRICT", "1");
    std::env::set_var("FAKE_VDDK_STATS", &stats);

    let vddk = Vddk::init(InitOptions::new().libdir(libdir)).unwrap();
    let conn = Connection::connect(&vddk, &ConnectParams::local()).unwrap();
    let disk = conn.open(&vmdk, OpenFlags::READ_ONLY).unwrap();
    let driver_disk = conn.open(&vmdk, OpenFlags::READ_ONLY).unwrap();
    let opts = DriverOptions::new().mode(Mode::Pipelined);
    let driver: DiskDriver = DiskDriver::new(driver_disk, opts).unwrap();

    // Drop the library and the connection first.
    drop(vddk);
    drop(conn);
    assert!(!stats.exists(), "Exit ran while disks were open");
    let mut buf = vec![0u8; 4096];
    disk.read_at(8 * 512, &mut buf)
        .expect("the disk still works");
    assert_eq!(buf[..], bytes[8 * 512..8 * 512 + 4096]);

    drop(disk);
    assert!(!stats.exists(), "Exit ran while the driver's disk was open");
    let data = wait(|f| driver.read(0, 4096, Vec::new(), f)).unwrap();
    assert_eq!(data[..], bytes[..4096]);

    // The last owner: Exit runs during this drop, which waits for the driver.
    drop(driver);
    let text = std::fs::read_to_string(&stats).expect("Exit ran and wrote the statistics");
    let calls = |f: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(f))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(calls("VixDiskLib_Exit"), 1, "{text}");
    assert_eq!(calls("VixDiskLib_Close"), 2, "{text}");
    assert_eq!(calls("VixDiskLib_Disconnect"), 1, "{text}");
}
