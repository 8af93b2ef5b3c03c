//! Helpers shared by the example tests: running the programs against the
//! fake VDDK, making VMDKs with qemu-img, and asking real tools (qemu-img,
//! sha256sum, python3's json module) for the expected answers.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::Command;

use vddk_tests::cmd::{run, run_cmd, run_fails, stderr};
use vddk_tests::inventory::{one_vm, ONE_VM_DISK};
use vddk_tests::libdir_param;
use vddk_tests::stats::FakeStats;

/// A command for one of the example programs, with no inherited knobs.
pub fn example(bin: &str) -> Command {
    let mut c = Command::new(bin);
    for var in [
        "LD_LIBRARY_PATH",
        "VDDK_LIBDIR",
        "FAKE_VDDK_INVENTORY",
        "FAKE_VDDK_FAIL",
        "FAKE_VDDK_FAIL_PROB",
        "FAKE_VDDK_STATS",
        "FAKE_VDDK_LATENCY_US",
        "FAKE_VDDK_ASYNC_LATENCY_US",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.env("FAKE_VDDK_STRICT", "1");
    c
}

/// Runs, insisting on success; returns stdout.
pub fn ok(c: &mut Command) -> String {
    String::from_utf8(run_cmd(c).stdout).expect("stdout is UTF-8")
}

/// Runs, insisting on failure with `code`; returns stderr.
pub fn fails(c: &mut Command, code: i32) -> String {
    stderr(&run_fails(c, code))
}

/// `sha256sum FILE`'s digest.
pub fn sha256sum(path: &Path) -> String {
    let out = run("sha256sum", [path]);
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Evaluates a Python expression over the JSON document `json` (bound to
/// `d`) with python3's own parser; prints its value.
pub fn json_eval(json: &str, expr: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import json,sys\nd=json.load(sys.stdin)\nv={expr}\nprint(v if isinstance(v,str) else json.dumps(v))"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "python3 could not evaluate {expr} over {json}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The value after `key: ` on a line of a program's text output.
pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no '{key}:' line in:\n{text}"))
}

/// Bytes actually allocated to a file (st_blocks * 512).
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Sum of the bytes column of the fake's stats file for functions whose
/// name contains `what` (e.g. "Read" counts Read and ReadAsync).
pub fn stats_bytes(stats: &Path, what: &str) -> u64 {
    FakeStats::read(stats)
        .rows
        .iter()
        .filter(|(name, _)| name.contains(what))
        .map(|(_, row)| row.bytes)
        .sum()
}

/// The thumbprint of the host in [`inventory`].
pub const THUMBPRINT: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";

/// An inventory for the fake's simulated vSphere: ESXi host
/// `esx1.example.com`, user root/secret, VM 42 with `[ds1] web/web.vmdk`
/// in `dir/ds1`. Returns the inventory path and the thumbprint.
pub fn inventory(dir: &Path) -> (std::path::PathBuf, &'static str) {
    let inv = one_vm(
        dir,
        "esx1.example.com",
        &[
            ("thumbprint", THUMBPRINT),
            ("user", "root:secret"),
            ("transports", "nbdssl:nbd"),
        ],
    );
    (inv, THUMBPRINT)
}

/// The connection parameters for the inventory's VM.
pub fn remote_params(thumbprint: &str) -> Vec<String> {
    vec![
        libdir_param(),
        "server=esx1.example.com".into(),
        "user=root".into(),
        "password=secret".into(),
        format!("thumbprint={thumbprint}"),
        "vm=moref=42".into(),
        ONE_VM_DISK.into(),
    ]
}
