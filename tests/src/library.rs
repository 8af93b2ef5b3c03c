//! The `vddk` crate over the fake library, as its tests use it.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use vddk::{Disk, InitOptions, Vddk};

/// The process's one `Vddk`, initialised against the fake in strict mode
/// with `env` set first (the fake reads its knobs at InitEx). Every test in
/// a binary must pass the same `env`.
pub fn fake_vddk(env: &[(&str, &str)]) -> Vddk {
    static V: OnceLock<Vddk> = OnceLock::new();
    V.get_or_init(|| {
        let dir = crate::fake_libdir();
        // Set while every other test thread is blocked on this OnceLock.
        std::env::set_var("FAKE_VDDK_STRICT", "1");
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        Vddk::init(InitOptions::new().libdir(dir)).expect("initialise the fake VDDK")
    })
    .clone()
}

/// Calls `submit` with a completion and waits (up to 30 s) for its outcome.
pub fn wait<T: Send + 'static>(submit: impl FnOnce(vddk::driver::Done<T>)) -> vddk::Result<T> {
    let (tx, rx) = mpsc::channel();
    submit(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the request completed")
}

/// The whole disk read through VDDK, 1 MiB at a time.
pub fn read_all(disk: &Disk) -> Vec<u8> {
    let size = disk.capacity().expect("capacity");
    let mut out = vec![0u8; size as usize];
    for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
        disk.read_at(i as u64 * (1 << 20), chunk).expect("read");
    }
    out
}
