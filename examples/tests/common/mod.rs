//! Helpers shared by the example tests: running the programs against the
//! fake VDDK, making VMDKs with qemu-img, and asking real tools (qemu-img,
//! sha256sum, python3's json module) for the expected answers.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use vddk_tests::{fake_libdir, scratch_dir};

/// The `libdir=` parameter for the fake library.
pub fn libdir() -> String {
    format!("libdir={}", fake_libdir().display())
}

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

/// Runs and returns the output, whatever the status.
pub fn output(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// Runs, insisting on success; returns stdout.
pub fn ok(c: &mut Command) -> String {
    let o = output(c);
    assert!(
        o.status.success(),
        "{c:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("stdout is UTF-8")
}

/// Runs, insisting on failure with `code`; returns stderr.
pub fn fails(c: &mut Command, code: i32) -> String {
    let o = output(c);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{c:?}: expected exit status {code}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs an external tool, insisting on success; returns stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    ok(Command::new(program).args(args))
}

/// A monolithicSparse VMDK made by qemu-img, with `writes` of
/// (offset, length, byte) applied by qemu-io.
pub fn make_vmdk(dir: &Path, name: &str, size: u64, writes: &[(u64, u64, u8)]) -> PathBuf {
    let path = dir.join(name);
    let p = path.to_str().expect("UTF-8 path");
    tool(
        "qemu-img",
        &["create", "-q", "-f", "vmdk", p, &size.to_string()],
    );
    if !writes.is_empty() {
        let mut args = vec!["-f".to_string(), "vmdk".to_string()];
        for (off, len, byte) in writes {
            args.push("-c".into());
            args.push(format!("write -P {byte} {off} {len}"));
        }
        args.push(p.to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tool("qemu-io", &refs);
    }
    path
}

/// `qemu-img convert -O raw` of a VMDK: the expected bytes.
pub fn qemu_raw(vmdk: &Path, raw: &Path) {
    tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "vmdk",
            "-O",
            "raw",
            vmdk.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
}

/// Whether two files have the same bytes, by `cmp`.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .arg(a)
        .arg(b)
        .status()
        .expect("run cmp")
        .success()
}

/// `sha256sum FILE`'s digest.
pub fn sha256sum(path: &Path) -> String {
    let out = tool("sha256sum", &[path.to_str().unwrap()]);
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
    let text = std::fs::read_to_string(stats).expect("stats file written at Exit");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 5 && cols[0].contains(what)).then(|| cols[3].parse::<u64>().unwrap())
        })
        .sum()
}

/// An inventory for the fake's simulated vSphere: ESXi host
/// `esx1.example.com`, user root/secret, VM 42 with `[ds1] web/web.vmdk`
/// in `dir/ds1`. Returns the inventory path and the thumbprint.
pub fn inventory(dir: &Path) -> (PathBuf, &'static str) {
    const THUMBPRINT: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
    std::fs::create_dir_all(dir.join("ds1/web")).unwrap();
    let inv = dir.join("inventory.ini");
    std::fs::write(
        &inv,
        format!(
            "[server esx1.example.com]\nthumbprint = {THUMBPRINT}\nuser = root:secret\n\
             transports = nbdssl:nbd\n\n[datastore ds1]\ndir = {}\n\n\
             [vm esx1.example.com 42]\ndisk = [ds1] web/web.vmdk\n",
            dir.join("ds1").display()
        ),
    )
    .unwrap();
    (inv, THUMBPRINT)
}

/// The connection parameters for the inventory's VM.
pub fn remote_params(thumbprint: &str) -> Vec<String> {
    vec![
        libdir(),
        "server=esx1.example.com".into(),
        "user=root".into(),
        "password=secret".into(),
        format!("thumbprint={thumbprint}"),
        "vm=moref=42".into(),
        "[ds1] web/web.vmdk".into(),
    ]
}
