//! `DiskDriver::reopen` and the `Reconnect` policy against a simulated
//! host that loses each NFC connection after 1 MiB: the loss is told as
//! such (`Error::is_connection_lost`), the handle stays broken, and a
//! reopen through the opener (a new connection and handle) lets the same
//! request succeed with the right bytes, in both driver modes; with the
//! policy, reads and writes many times the connection's budget complete
//! by themselves, byte-exact, and a host that cannot be reached again
//! fails the waiting requests after the policy's tries.

use std::sync::{Arc, OnceLock};

use std::sync::mpsc;
use std::time::Duration;

use vddk::{
    ConnectParams, Connection, Credentials, DiskDriver, DriverOptions, Error, Mode, OpenFlags,
    Reconnect, Secret, Vddk,
};
use vddk_tests::images::{make_vmdk, noise, qemu_raw};
use vddk_tests::inventory::{one_vm, ONE_VM_DISK};
use vddk_tests::library::{fake_vddk, wait};

/// A second disk of the VM, written by the tests.
const DATA_DISK: &str = "[ds1] web/data.vmdk";

const HOST: &str = "esx9.example.com";
const TP: &str = "0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D";

struct World {
    vddk: Vddk,
    bytes: Vec<u8>,
    data_file: std::path::PathBuf,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = vddk_tests::scratch_dir("vddk-reopen");
        let inv = one_vm(
            &dir,
            HOST,
            &[
                ("thumbprint", TP),
                ("user", "root:pw"),
                ("drop_after_bytes", "1M"),
            ],
        );
        // The VM gets a second disk, to be written.
        let text = std::fs::read_to_string(&inv).expect("inventory");
        std::fs::write(&inv, format!("{text}disk = {DATA_DISK}\n")).expect("inventory");
        let data_file = make_vmdk(
            &dir.join("ds1/web/data.vmdk"),
            "monolithicSparse",
            4 << 20,
            &[],
        );
        let file = make_vmdk(
            &dir.join("ds1/web/web.vmdk"),
            "monolithicSparse",
            4 << 20,
            &[(0, 4 << 20, 0x5c)],
        );
        let vddk = fake_vddk(&[("FAKE_VDDK_INVENTORY", inv.to_str().expect("UTF-8"))]);
        World {
            vddk,
            bytes: qemu_raw(&file),
            data_file,
        }
    })
}

fn params() -> ConnectParams {
    writable_params().read_only(true)
}

fn writable_params() -> ConnectParams {
    ConnectParams::remote(HOST)
        .credentials(Credentials::UserPassword {
            user: "root".into(),
            password: Secret::new("pw".into()),
        })
        .thumbprint(TP.parse().expect("thumbprint"))
        .vm("42".parse().expect("moref"))
}

fn open() -> vddk::Result<vddk::Disk> {
    let conn = Connection::connect(&world().vddk, &params())?;
    conn.open(ONE_VM_DISK, OpenFlags::READ_ONLY)
}

fn driver(mode: Mode, reopen: bool) -> DiskDriver {
    let mut opts = DriverOptions::new().mode(mode);
    if reopen {
        opts = opts.reopen_with(Arc::new(open));
    }
    DiskDriver::new(open().expect("open"), opts).expect("driver")
}

fn read(d: &DiskDriver, offset: u64) -> vddk::Result<Vec<u8>> {
    wait(|done| d.read(offset, 512 << 10, Vec::new(), done))
}

#[test]
fn a_lost_connection_is_survived_by_reopening() {
    let want = &world().bytes;
    for mode in [Mode::Direct, Mode::Pipelined] {
        let d = driver(mode, true);
        // Two half-MiB reads fit in the first connection's budget.
        for at in [0, 512 << 10] {
            let got = read(&d, at).expect("within the budget");
            assert!(got[..] == want[at as usize..at as usize + (512 << 10)]);
        }
        let err = read(&d, 1 << 20).expect_err("the connection is gone");
        assert!(err.is_connection_lost(), "{mode:?}: {err}");
        // The handle does not come back by itself.
        assert!(read(&d, 1 << 20).is_err(), "{mode:?}");

        d.reopen().expect("reopen");
        let got = read(&d, 1 << 20).expect("the same read after the reopen");
        assert!(
            got[..] == want[1 << 20..(1 << 20) + (512 << 10)],
            "{mode:?}"
        );
        d.close().expect("close");
    }
}

#[test]
fn without_an_opener_reopen_says_how_to_give_one() {
    let d = driver(Mode::Pipelined, false);
    match d.reopen() {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("reopen_with"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Opens the data disk for writing through a new connection.
/// Held by each test that writes the data disk: they compare it after.
static DATA_DISK_USE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_data() -> vddk::Result<vddk::Disk> {
    let conn = Connection::connect(&world().vddk, &writable_params())?;
    conn.open(DATA_DISK, OpenFlags::empty())
}

fn quick() -> Reconnect {
    Reconnect::new().delay(Duration::from_millis(10))
}

/// Submits every request at once and waits for them all.
fn all_at_once<T: Send + 'static>(
    n: usize,
    submit: impl Fn(usize, vddk::driver::Done<T>),
) -> Vec<vddk::Result<T>> {
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        submit(i, Box::new(move |r| drop(tx.send((i, r)))));
    }
    let mut out: Vec<Option<vddk::Result<T>>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (i, r) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every request completes");
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.expect("answered")).collect()
}

fn reads_and_writes_carried_over_many_losses(mode: Mode) {
    let want = &world().bytes;
    let piece = 256 << 10;
    let opts = DriverOptions::new()
        .mode(mode)
        .max_in_flight(8)
        .reopen_with(Arc::new(open))
        .reconnect(quick());
    let d: DiskDriver = DiskDriver::new(open().expect("open"), opts).expect("driver");
    // 4 MiB read, 1 MiB allowed per connection: at least three losses.
    let got = all_at_once(16, |i, done| {
        d.read((i * piece) as u64, piece, Vec::new(), done)
    });
    for (i, r) in got.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("{mode:?}: read {i}: {e}"));
        assert!(r[..] == want[i * piece..(i + 1) * piece], "read {i}");
    }
    assert!(
        d.reconnections() >= 3,
        "{mode:?}: {} reconnections",
        d.reconnections()
    );
    d.close().expect("close");

    let data = noise(4 << 20, 17);
    let _data_disk = DATA_DISK_USE.lock().unwrap_or_else(|e| e.into_inner());
    let opts = DriverOptions::new()
        .mode(mode)
        .max_in_flight(8)
        .reopen_with(Arc::new(open_data))
        .reconnect(quick());
    let d: DiskDriver = DiskDriver::new(open_data().expect("open"), opts).expect("driver");
    let written = all_at_once(16, |i, done| {
        d.write(
            (i * piece) as u64,
            data[i * piece..(i + 1) * piece].to_vec(),
            done,
        )
    });
    for (i, r) in written.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    wait(|done| d.flush(done)).expect("flush");
    assert!(
        d.reconnections() >= 3,
        "{mode:?}: {} reconnections",
        d.reconnections()
    );
    d.close().expect("close");
    assert!(
        qemu_raw(&world().data_file) == data,
        "the disk differs from what was acknowledged"
    );
}

/// An opener for a host that cannot be reached again, and how many times
/// it was tried.
fn unreachable_host() -> (Arc<std::sync::atomic::AtomicU32>, vddk::driver::Opener) {
    let tried = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = Arc::clone(&tried);
    let refuse: vddk::driver::Opener = Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(Error::InvalidArgument(
            "the host is unreachable (test)".into(),
        ))
    });
    (tried, refuse)
}

fn requests_failed_after_the_tries_when_the_host_stays_away(mode: Mode) {
    let (reached, refuse) = unreachable_host();
    let opts = DriverOptions::new()
        .mode(mode)
        .reopen_with(refuse)
        .reconnect(quick().tries(3));
    let d: DiskDriver = DiskDriver::new(open().expect("open"), opts).expect("driver");
    let got = all_at_once(8, |i, done| {
        d.read((i << 19) as u64, 512 << 10, Vec::new(), done)
    });
    let failed: Vec<String> = got
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    assert!(
        !failed.is_empty(),
        "2 MiB over a 1 MiB connection cannot all succeed"
    );
    for e in &failed {
        assert!(
            e.contains("3 reconnections failed") && e.contains("unreachable"),
            "{e}"
        );
    }
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Later requests are told the same, at once.
    let e = read(&d, 0).expect_err("no disk");
    assert!(e.to_string().contains("reconnections failed"), "{e}");
}

#[test]
fn the_policy_carries_reads_and_writes_over_many_losses_in_both_modes() {
    for mode in [Mode::Pipelined, Mode::Direct] {
        reads_and_writes_carried_over_many_losses(mode);
    }
}

#[test]
fn a_host_that_stays_away_fails_the_requests_after_the_tries_in_both_modes() {
    for mode in [Mode::Pipelined, Mode::Direct] {
        requests_failed_after_the_tries_when_the_host_stays_away(mode);
    }
}

#[test]
fn a_policy_needs_an_opener() {
    let opts = DriverOptions::new().reconnect(Reconnect::new());
    match DiskDriver::<Error>::new(open().expect("open"), opts) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("reopen_with"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
}

/// A driver that reconnects through `opener` with a minute between tries:
/// closing must not wait that out.
fn waiting_a_minute_between_tries(mode: Mode, opener: vddk::driver::Opener) -> DiskDriver {
    let opts = DriverOptions::new()
        .mode(mode)
        .reopen_with(opener)
        .reconnect(Reconnect::new().tries(5).delay(Duration::from_secs(60)));
    DiskDriver::new(open().expect("open"), opts).expect("driver")
}

/// Closes `d`, which must not wait for a reconnection's next try.
fn close_at_once(d: &DiskDriver) {
    let asked = std::time::Instant::now();
    d.close().expect("close");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "close waited {:?}",
        asked.elapsed()
    );
}

#[test]
fn closing_the_driver_ends_a_reconnection_wait() {
    let (_, refuse) = unreachable_host();
    let d = waiting_a_minute_between_tries(Mode::Pipelined, refuse);
    let (tx, rx) = mpsc::channel();
    for i in 0..8u64 {
        let tx = tx.clone();
        d.read(
            i << 19,
            512 << 10,
            Vec::new(),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
    }
    drop(tx);
    // The first read back is one that fit in the connection's 1 MiB; the
    // others wait for the connection, whose second try is a minute away.
    let mut got = Vec::new();
    while let Ok(r) = rx.recv_timeout(Duration::from_millis(500)) {
        got.push(r);
    }
    assert!(got.len() < 8, "every read completed over a lost connection");
    close_at_once(&d);
    while got.len() < 8 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => got.push(r),
            Err(e) => panic!("{} of 8 reads answered: {e}", got.len()),
        }
    }
    let closed: Vec<String> = got
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(!closed.is_empty());
    for e in &closed {
        assert!(e.contains("closed before it could be made again"), "{e}");
    }
}

/// An opener that counts its calls made on the standby thread.
fn counting(
    open: fn() -> vddk::Result<vddk::Disk>,
) -> (vddk::driver::Opener, Arc<std::sync::atomic::AtomicU32>) {
    let on_standby = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = Arc::clone(&on_standby);
    let opener: vddk::driver::Opener = Arc::new(move || {
        if std::thread::current().name() == Some("vddk-standby") {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        open()
    });
    (opener, on_standby)
}

#[test]
fn after_a_loss_a_standby_handle_takes_over_the_next_ones() {
    let (opener, on_standby) = counting(open);
    let opts = DriverOptions::new()
        .mode(Mode::Pipelined)
        .reopen_with(opener)
        .reconnect(quick().standby(true));
    let d: DiskDriver = DiskDriver::new(open().expect("open"), opts).expect("driver");
    // 4 MiB in half-MiB reads, one at a time, over connections that carry
    // 1 MiB each: three losses.
    let want = &world().bytes;
    for at in (0..4u64 << 20).step_by(512 << 10) {
        let got = read(&d, at).unwrap_or_else(|e| panic!("read at {at}: {e}"));
        assert!(
            got[..] == want[at as usize..at as usize + (512 << 10)],
            "at {at}"
        );
    }
    assert_eq!(d.reconnections(), 3);
    // The first loss opens anew; it and each switch start a standby: 3.
    assert_eq!(on_standby.load(std::sync::atomic::Ordering::SeqCst), 3);
    d.close().expect("close");
}

#[test]
fn a_writable_disk_gets_no_standby_handle() {
    let _data_disk = DATA_DISK_USE.lock().unwrap_or_else(|e| e.into_inner());
    let (opener, on_standby) = counting(open_data);
    let opts = DriverOptions::new()
        .mode(Mode::Pipelined)
        .reopen_with(opener)
        .reconnect(quick().standby(true));
    let d: DiskDriver = DiskDriver::new(open_data().expect("open"), opts).expect("driver");
    let data = noise(3 << 20, 77);
    for (i, piece) in data.chunks(512 << 10).enumerate() {
        wait(|done| d.write((i << 19) as u64, piece.to_vec(), done))
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    wait(|done| d.flush(done)).expect("flush");
    assert!(d.reconnections() >= 2, "{}", d.reconnections());
    assert_eq!(on_standby.load(std::sync::atomic::Ordering::SeqCst), 0);
    d.close().expect("close");
    assert!(qemu_raw(&world().data_file)[..3 << 20] == data[..]);
}

#[test]
fn in_direct_mode_closing_ends_a_reconnection_wait() {
    let (tried, refuse) = unreachable_host();
    let d = waiting_a_minute_between_tries(Mode::Direct, refuse);
    let reader = d.clone();
    // Two half-MiB reads fit in the connection's MiB; the third meets the
    // loss, its first reconnection is refused, and the next is a minute away.
    let caller = std::thread::spawn(move || {
        (0..3u64)
            .map(|i| read(&reader, i << 19))
            .collect::<Vec<_>>()
    });
    // The first try, at once, has been refused: the wait has begun.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tried.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no reconnection tried"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    close_at_once(&d);
    let got = caller.join().expect("the reading thread");
    assert!(got[0].is_ok() && got[1].is_ok(), "{got:?}");
    let e = got[2].as_ref().expect_err("the third read meets the loss");
    assert!(
        e.to_string()
            .contains("closed before it could be made again"),
        "{e}"
    );
    let later = read(&d, 0).expect_err("closed");
    assert!(matches!(later, Error::Closed), "{later}");
}
