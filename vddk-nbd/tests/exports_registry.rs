//! The export registry inside a running server, with real clients: each
//! export is its own backend, an export that is slow to open holds up no
//! other, a failed open is reported and retried, and the empty name is
//! the first export.

use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vddk_nbd::backend::Backend;
use vddk_nbd::exports::ExportRegistry;
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::{Listener, Server, ServerConfig};
use vddk_tests::cmd::{command, output};
use vddk_tests::nbd::export_uri as nbd;

#[test]
fn exports_are_independent() {
    let dir = vddk_tests::scratch_dir("exports-registry");
    let socket = dir.join("nbd.sock");

    let a = Arc::new(MemoryBackend::new(1 << 20));
    a.fill(0, &[0x5a; 4096]);
    let b = Arc::new(MemoryBackend::new(2 << 20));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let attempts = Arc::new(Mutex::new(0));
    let attempts2 = Arc::clone(&attempts);

    let mut reg = ExportRegistry::new();
    reg.add("a", Some("first".into()), a.clone() as Arc<dyn Backend>);
    reg.add("b", None, b.clone() as Arc<dyn Backend>);
    reg.add_lazy(
        "slow",
        Some("opens when released".into()),
        Box::new(move || {
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(60));
            Ok(Arc::new(MemoryBackend::new(3 << 20)) as Arc<dyn Backend>)
        }),
    );
    reg.add_lazy(
        "flaky",
        None,
        Box::new(move || {
            let mut n = attempts2.lock().unwrap();
            *n += 1;
            if *n == 1 {
                Err(vddk_nbd::backend::Error::Failed(
                    "the disk is locked by another program".into(),
                ))
            } else {
                Ok(Arc::new(MemoryBackend::new(4 << 20)) as Arc<dyn Backend>)
            }
        }),
    );
    let reg = Arc::new(reg);
    let server = Arc::new(Server::with_exports(
        Arc::clone(&reg),
        ServerConfig::default(),
    ));
    let listener = UnixListener::bind(&socket).unwrap();
    let s2 = Arc::clone(&server);
    let serving = std::thread::spawn(move || s2.serve(vec![Listener::Unix(listener)]));

    // A client of "slow" waits in negotiation while its disk opens...
    let slow_uri = nbd(&socket, "slow");
    let slow = std::thread::spawn(move || output(command("nbdinfo").args(["--size", &slow_uri])));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !slow.is_finished(),
        "the slow export answered before it was opened"
    );

    // ...while other exports are served, each from its own backend.
    let o = output(command("nbdinfo").args(["--size", &nbd(&socket, "b")]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        (2 << 20).to_string(),
        "{o:?}"
    );
    let o = output(command("nbdinfo").args(["--size", &nbd(&socket, "")]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        (1 << 20).to_string(),
        "{o:?}"
    );
    let img = dir.join("b.raw");
    std::fs::write(&img, vec![0xc3u8; 2 << 20]).unwrap();
    let o = output(command("nbdcopy").arg(&img).arg(nbd(&socket, "b")));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(b.contents(0, 8), vec![0xc3; 8]);
    assert_eq!(a.contents(0, 8), vec![0x5a; 8], "a write to b reached a");
    assert!(!slow.is_finished());

    release.send(()).unwrap();
    let o = slow.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        (3 << 20).to_string(),
        "{o:?}"
    );

    // A failed open is refused to that client and tried again for the next.
    let o = output(command("nbdinfo").args(["--size", &nbd(&socket, "flaky")]));
    assert!(!o.status.success(), "{o:?}");
    let o = output(command("nbdinfo").args(["--size", &nbd(&socket, "flaky")]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        (4 << 20).to_string(),
        "{o:?}"
    );
    assert_eq!(*attempts.lock().unwrap(), 2);

    // The listing keeps registration order, with descriptions.
    let o = output(command("nbdinfo").args(["--list", "--json", &nbd(&socket, "")]));
    let json = String::from_utf8_lossy(&o.stdout);
    let order: Vec<usize> = ["\"a\"", "\"b\"", "\"slow\"", "\"flaky\""]
        .iter()
        .map(|n| {
            json.find(&format!("\"export-name\": {n}"))
                .unwrap_or_else(|| panic!("{n}: {json}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
    assert!(
        json.contains("\"description\": \"opens when released\""),
        "{json}"
    );

    server.shutdown_handle().shutdown();
    serving.join().unwrap().unwrap();
    let opened: Vec<String> = reg.opened().into_iter().map(|(n, _)| n).collect();
    assert_eq!(opened, ["a", "b", "slow", "flaky"]);
    reg.close_all().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
