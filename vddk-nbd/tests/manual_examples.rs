//! The examples of nbdkit-vddk-plugin(1) for local disks, the library and
//! the debug flags, each run as printed against vddk-nbd installed as
//! `nbdkit`: the fake's libdir where the manual names VDDK's, scratch
//! files for its paths, a private socket (`-U -`) or a free port where it
//! uses 10809 (tests run in parallel). Editions: "current" is the manual
//! of nbdkit 1.42 and later (libguestfs.org), "1.30" the one that added
//! create=, "1.34" the one with "Troubleshooting performance problems",
//! "old" that of nbdkit 1.16 and before. The remote examples are in
//! manual_examples_remote.rs, nbdkit(1) and the walkthroughs in
//! manual_examples_nbdkit.rs.

mod callers_common;
mod manual_common;

use std::path::PathBuf;

use manual_common::{lines, Daemon, Manual};
use vddk_tests::images::{assert_same, qemu_data_extents, s};
use vddk_tests::openssl::free_port;
use vddk_tests::stats::FakeStats;

/// The manual's example prints this size.
const SIZE: u64 = 10485760;
/// Data in three places, holes between.
const LAYOUT: &[(u64, u64, u8)] = &[
    (64 << 10, 128 << 10, 0x40),
    (5 << 20, 1 << 20, 0x41),
    (SIZE - 4096, 4096, 0x42),
];

/// A scratch directory with `file.vmdk` (its path) and qemu's view of it.
fn local(name: &str) -> (Manual, PathBuf, Vec<u8>) {
    let m = Manual::new(name);
    let (vmdk, bytes) = m.disk("file.vmdk", SIZE, LAYOUT);
    (m, vmdk, bytes)
}

fn read(m: &Manual, file: &str) -> Vec<u8> {
    callers_common::read(&m.dir.join(file))
}

/// Current edition, EXAMPLES, "Open a local VMDK file":
///   $ nbdkit vddk libdir=/opt/vmware-vix-disklib-distrib \
///                 /absolute/path/to/file.vmdk
///   $ nbdinfo --size nbd://localhost
///   10485760
///   $ nbdcopy nbd://localhost outputfile.raw
/// The server goes to the background as in the manual; a free port and
/// 127.0.0.1 instead of 10809 on every interface, and a pid file to stop
/// it.
#[test]
fn current_open_a_local_vmdk_then_nbdinfo_and_nbdcopy() {
    let (m, vmdk, bytes) = local("manual-open-local");
    let port = free_port();
    m.ok(
        &[],
        &format!(
            "nbdkit -i 127.0.0.1 -p {port} -P pid vddk {} \\\n  {}",
            m.libdir(),
            vmdk.display()
        ),
    );
    let server = Daemon::from_pidfile(&m.dir.join("pid"));
    let (size, _) = m.ok(&[], &format!("nbdinfo --size nbd://localhost:{port}"));
    assert_eq!(size, "10485760\n");
    m.ok(
        &[],
        &format!("nbdcopy nbd://localhost:{port} outputfile.raw"),
    );
    assert_same("outputfile.raw", &read(&m, "outputfile.raw"), &bytes);
    server.stop();
}

/// Every edition since 1.18, EXAMPLES:
///   nbdkit -r vddk /absolute/path/to/file.vmdk
/// Read-only: the export says so, a write that reaches the server (libnbd
/// told not to refuse it itself) fails with EPERM, and the file is as it
/// was.
#[test]
fn read_only_with_r_refuses_writes_and_leaves_the_file_alone() {
    let (m, vmdk, bytes) = local("manual-read-only");
    let before = callers_common::read(&vmdk);
    let script = r#"
print(h.is_read_only())
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
except nbd.Error as e:
    print(e.errno)
print(h.pread(4096, 65536) == bytes([0x40]) * 4096)
"#;
    let (out, _) = m.ok(
        &[],
        &format!(
            "nbdkit -U - -r vddk {} {} --run 'nbdsh -u \"$uri\" -c '\\''{script}'\\'''",
            m.libdir(),
            vmdk.display()
        ),
    );
    assert_eq!(out, "True\nEPERM\nTrue\n");
    assert!(callers_common::read(&vmdk) == before, "the file changed");
    assert_eq!(vddk_tests::images::qemu_raw(&vmdk), bytes);
}

/// Current and 1.30 editions, EXAMPLES, "Create a new local VMDK file":
///   nbdkit -U - vddk \
///          /absolute/path/to/output.vmdk \
///          create=true create-size=100M \
///          --run 'qemu-img convert input.qcow2 $uri'
/// (the current edition drops `-U -`, which then means port 10809).
#[test]
fn create_a_new_local_vmdk_filled_by_qemu_img_convert() {
    let m = Manual::new("manual-create");
    m.ok(&[], "qemu-img create -q -f qcow2 input.qcow2 8M");
    m.ok(&[], "qemu-io -c 'write -q -P 9 1M 2M' input.qcow2");
    m.ok(
        &[],
        &format!(
            "nbdkit -U - vddk {} \\\n  {}/output.vmdk \\\n  create=true create-size=100M \\\n  \
             --run 'qemu-img convert input.qcow2 $uri'",
            m.libdir(),
            m.dir.display()
        ),
    );
    let (info, _) = m.ok(&[], "qemu-img info --output=json output.vmdk");
    assert!(info.contains("\"virtual-size\": 104857600"), "{info}");
    assert!(
        info.contains("\"create-type\": \"monolithicSparse\""),
        "{info}"
    );
    // The input is 8M: the first 8M are the same, the rest reads as zero.
    let (cmp, _) = m.ok(&[], "qemu-img compare input.qcow2 output.vmdk");
    assert!(cmp.contains("Images are identical."), "{cmp}");
}

/// Every edition since 1.18, LIBRARY LOCATION:
///   $ nbdkit vddk --dump-plugin | grep ^vddk_default_libdir
///   vddk_default_libdir=/usr/lib64/vmware-vix-disklib
/// On a machine without VDDK (as here: nothing at the default libdir):
/// the pipeline still succeeds, so the default can be found out before
/// VDDK is installed.
#[test]
fn library_location_grep_vddk_default_libdir_without_vddk() {
    let m = Manual::new("manual-default-libdir");
    assert!(!std::path::Path::new("/usr/lib64/vmware-vix-disklib").exists());
    let (out, _) = m.ok(&[], "nbdkit vddk --dump-plugin | grep ^vddk_default_libdir");
    assert_eq!(out, "vddk_default_libdir=/usr/lib64/vmware-vix-disklib\n");
}

/// Every edition since 1.18, LIBRARY LOCATION:
///   nbdkit vddk \
///          libdir=/opt/vmware-vix-disklib-distrib \
///          /path/to/file.vmdk
/// With -v the server says the library came from that libdir.
#[test]
fn library_location_libdir_names_the_distribution() {
    let (m, vmdk, bytes) = local("manual-libdir");
    let (_, log) = m.ok(
        &[],
        &format!(
            "nbdkit -U - -v vddk \\\n  {} \\\n  {} --run 'nbdcopy \"$uri\" out.raw'",
            m.libdir(),
            vmdk.display()
        ),
    );
    let lib64 = vddk_tests::fake_libdir().join("lib64");
    let loaded = lines(&log, "debug: loaded ");
    assert!(
        loaded.len() == 1
            && loaded[0].contains(&format!("{}/libvixDiskLib.so.", lib64.display()))
            && loaded[0].contains("found in the libdir given explicitly"),
        "{log}"
    );
    assert_same("out.raw", &read(&m, "out.raw"), &bytes);
}

/// Old edition (nbdkit 1.16 and before), "LIBRARY AND CONFIG FILE
/// LOCATIONS": set LD_LIBRARY_PATH to the distribution's lib64, then
///   export LD_LIBRARY_PATH=/path/to/vmware-vix-disklib-distrib/lib64
///   nbdkit vddk libdir=/path/to/vmware-vix-disklib-distrib file=...
/// Still works, with no warning.
#[test]
fn old_ld_library_path_and_libdir() {
    let (m, vmdk, bytes) = local("manual-old-ldpath-libdir");
    let lib64 = vddk_tests::fake_libdir().join("lib64");
    let (_, log) = m.ok(
        &[],
        &format!(
            "export LD_LIBRARY_PATH={}\nnbdkit -U - vddk {} file={} --run 'nbdcopy \"$uri\" out.raw'",
            lib64.display(),
            m.libdir(),
            vmdk.display()
        ),
    );
    assert!(!log.contains("warning"), "{log}");
    assert_same("out.raw", &read(&m, "out.raw"), &bytes);
}

/// Old edition, same section: the library found through LD_LIBRARY_PATH
/// alone ("you may need to set LD_LIBRARY_PATH", libdir being an
/// addition). It loads, with a warning that libdir= would be better.
#[test]
fn old_ld_library_path_without_libdir() {
    let (m, vmdk, bytes) = local("manual-old-ldpath");
    let lib64 = vddk_tests::fake_libdir().join("lib64");
    let (_, log) = m.ok(
        &[],
        &format!(
            "export LD_LIBRARY_PATH={}\nnbdkit -U - vddk file={} --run 'nbdcopy \"$uri\" out.raw'",
            lib64.display(),
            vmdk.display()
        ),
    );
    assert!(
        log.contains("VDDK was not in the libdir") && log.contains("set libdir="),
        "{log}"
    );
    assert_same("out.raw", &read(&m, "out.raw"), &bytes);
}

/// Every edition since 1.18, FILE PARAMETER, "Optional file= prefix":
///   nbdkit vddk file=/path/to/file.vmdk
///   nbdkit vddk /path/to/file.vmdk
/// Both serve the same disk.
#[test]
fn optional_file_prefix_gives_the_same_disk() {
    let (m, vmdk, bytes) = local("manual-file-prefix");
    for (form, out) in [("file=", "a.raw"), ("", "b.raw")] {
        m.ok(
            &[],
            &format!(
                "nbdkit -U - vddk {} {form}{} --run 'nbdcopy \"$uri\" {out}'",
                m.libdir(),
                vmdk.display()
            ),
        );
        assert_same(out, &read(&m, out), &bytes);
    }
}

/// 1.34 and current editions, DUMP-PLUGIN OUTPUT:
///   nbdkit vddk --dump-plugin libdir=/opt/vmware-vix-disklib-distrib
/// The keys the manual lists: the default libdir, nfchostport, the
/// library's major version, the file loaded and a line per function.
#[test]
fn dump_plugin_with_libdir_describes_the_library() {
    let m = Manual::new("manual-dump-libdir");
    let (out, _) = m.ok(&[], &format!("nbdkit vddk --dump-plugin {}", m.libdir()));
    let lib64 = vddk_tests::fake_libdir().join("lib64");
    for want in [
        "vddk_default_libdir=/usr/lib64/vmware-vix-disklib",
        "vddk_has_nfchostport=1",
        "vddk_library_version=8",
        &format!("vddk_dll={}/libvixDiskLib.so.", lib64.display()),
        "VixDiskLib_Flush=1",
        "VixDiskLib_QueryAllocatedBlocks=1",
    ] {
        assert!(out.lines().any(|l| l.starts_with(want)), "{want}:\n{out}");
    }
}

/// 1.34 and current editions, DUMP-PLUGIN OUTPUT:
///   nbdkit vddk --dump-plugin
/// without VDDK: "If this [vddk_library_version] is omitted it means the
/// library could not be loaded" — so exit 0, the plugin's keys, none of
/// the library's.
#[test]
fn dump_plugin_without_vddk_leaves_out_the_library_keys() {
    let m = Manual::new("manual-dump-novddk");
    let (out, err) = m.ok(&[], "nbdkit vddk --dump-plugin");
    assert!(out.contains("\nvddk_has_nfchostport=1\n"), "{out}");
    for absent in ["vddk_library_version=", "vddk_dll=", "VixDiskLib_"] {
        assert!(!out.contains(absent), "{absent}:\n{out}");
    }
    assert!(err.contains("VDDK was not loaded"), "{err}");
}

/// Every edition, PARAMETERS, transports=: "Possible values include
/// ‘nbd’, ‘nbdssl’, ‘san’, ‘hotadd’, ‘file’ (there may be others)". A mode
/// VDDK is not documented to have is passed on with a warning naming it
/// (a local disk ignores the list).
#[test]
fn transports_with_an_unknown_mode_are_passed_on_with_a_warning() {
    let (m, vmdk, bytes) = local("manual-transports");
    let (_, log) = m.ok(
        &[],
        &format!(
            "nbdkit -U - vddk {} {} transports=bogus:nbd --run 'nbdcopy \"$uri\" out.raw'",
            m.libdir(),
            vmdk.display()
        ),
    );
    let warned = lines(&log, "warning: transports:");
    assert!(
        warned.len() == 1 && warned[0].contains("\"bogus\"") && !warned[0].contains("\"nbd\""),
        "{log}"
    );
    assert_same("out.raw", &read(&m, "out.raw"), &bytes);
}

/// 1.34 edition, NOTES, "Sector size limitation":
///   nbdkit vddk ... --filter=blocksize minblock=512
/// The filter is taken as written (here it changes nothing that clients
/// see but the preferred size: the export already serves any alignment).
/// 100 bytes written at offset 7 are read back and reach the file.
#[test]
fn sector_size_limitation_blocksize_minblock_512() {
    let (m, vmdk, mut bytes) = local("manual-minblock");
    let script = r#"
h.pwrite(b"x" * 100, 7)
print(h.pread(110, 0) == bytes(7) + b"x" * 100 + bytes(3))
print(h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED) >= 512)
"#;
    let (out, _) = m.ok(
        &[],
        &format!(
            "nbdkit -U - vddk {} {} --filter=blocksize minblock=512 \
             --run 'nbdsh -u \"$uri\" -c '\\''{script}'\\'''",
            m.libdir(),
            vmdk.display()
        ),
    );
    assert_eq!(out, "True\n1 True\n");
    bytes[7..107].fill(b'x');
    assert_same("the VMDK", &vddk_tests::images::qemu_raw(&vmdk), &bytes);
}

/// 1.34 and current editions, NOTES, "Out of memory errors" / "Limit
/// request sizes":
///   nbdkit vddk ... --filter=blocksize minblock=512 maxdata=2M
/// The fake refuses requests over 2 MiB as that server does (NFC error
/// 5). An 8 MiB read fails without the filter; with it VDDK sees reads of
/// at most 2 MiB and the data arrives.
#[test]
fn limit_request_sizes_blocksize_maxdata_2m() {
    let (m, vmdk, bytes) = local("manual-maxdata");
    let stats = m.dir.join("stats");
    let env = [
        ("FAKE_VDDK_MAX_REQUEST", "2097152"),
        ("FAKE_VDDK_STATS", s(&stats)),
    ];
    let read8m = "--run 'nbdsh -u \"$uri\" -c \"open(\\\"big.raw\\\", \\\"wb\\\").write(h.pread(8 << 20, 0))\"'";
    let base = format!("nbdkit -U - -r -v vddk {} {}", m.libdir(), vmdk.display());
    let (_, log) = m.fails(&env, &format!("{base} {read8m}"), 1);
    assert!(
        log.contains("Failed to allocate the requested") && log.contains("at most 2 MiB"),
        "{log}"
    );
    m.ok(
        &env,
        &format!("{base} --filter=blocksize minblock=512 maxdata=2M {read8m}"),
    );
    assert_same("big.raw", &read(&m, "big.raw"), &bytes[..8 << 20]);
    let reads = FakeStats::read(&stats).row("Read");
    assert!(reads.errors == 0 && reads.calls >= 4, "{reads:?}");
}

/// 1.34 and current editions, "Troubleshooting performance problems":
///   -v -D nbdkit.backend.datapath=0 -D vddk.datapath=0 -D vddk.stats=1
/// (also DEBUG FLAGS' -D vddk.stats=1): no line per request, and at exit
/// a line per VDDK function with its time, calls and bytes.
#[test]
fn troubleshooting_flags_keep_the_stats_and_drop_request_lines() {
    let (m, vmdk, bytes) = local("manual-troubleshoot");
    let (_, log) = m.ok(
        &[],
        &format!(
            "nbdkit -U - -v -D nbdkit.backend.datapath=0 -D vddk.datapath=0 -D vddk.stats=1 \
             vddk {} {} --run 'nbdcopy \"$uri\" out.raw'",
            m.libdir(),
            vmdk.display()
        ),
    );
    assert_same("out.raw", &read(&m, "out.raw"), &bytes);
    assert!(lines(&log, "pread count=").is_empty(), "{log}");
    assert!(
        log.contains("VDDK function stats (-D vddk.stats=1)"),
        "{log}"
    );
    // Read moved what nbdcopy asked for: the data, not the holes (it
    // reads whole requests around the data, so a little more).
    let data: u64 = qemu_data_extents(&vmdk).iter().map(|e| e.1).sum();
    let read_bytes: u64 = lines(&log, "debug:   Read ")
        .first()
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Read line:\n{log}"));
    assert!((data..SIZE).contains(&read_bytes), "{read_bytes}:\n{log}");
    assert_eq!(
        lines(&log, "debug:   QueryAllocatedBlocks ").len(),
        1,
        "{log}"
    );
}

/// Every edition, DEBUG FLAGS:
///   nbdkit -f -v vddk file=FILENAME [...]
/// "to find the list of available transport modes": VDDK's own messages
/// and the mode the disk was opened with. In the foreground on a free port.
#[test]
fn debug_f_v_shows_vddk_and_the_transport_mode() {
    let (m, vmdk, _) = local("manual-fv");
    let port = free_port();
    let server = m.foreground(
        &[],
        &format!(
            "nbdkit -f -v -i 127.0.0.1 -p {port} vddk {} file={}",
            m.libdir(),
            vmdk.display()
        ),
        port,
    );
    let (size, _) = m.ok(&[], &format!("nbdinfo --size nbd://localhost:{port}"));
    assert_eq!(size, "10485760\n");
    let log = server.stop();
    for want in [
        "nbdkit: debug: VMware VixDiskLib (8.0.2) Release build-22394481",
        "transport mode file",
    ] {
        assert!(log.contains(want), "{want}:\n{log}");
    }
}

/// Runs `nbdkit -U - -v FLAGS vddk FILE --run 'nbdinfo --map "$uri"'`:
/// the map and the log.
fn with_flags(m: &Manual, vmdk: &std::path::Path, flags: &str) -> (String, String) {
    m.ok(
        &[],
        &format!(
            "nbdkit -U - -v {flags} vddk {} {} --run 'nbdinfo --map \"$uri\"; nbdinfo --size \"$uri\"'",
            m.libdir(),
            vmdk.display()
        ),
    )
}

/// Every edition since 1.18, DEBUG FLAGS: -D vddk.diskinfo=1, "Debug disk
/// information returned by GetInfo": at open, the capacity in sectors and
/// the geometries; nothing of it without the flag.
#[test]
fn debug_diskinfo_logs_the_disk_at_open() {
    let (m, vmdk, _) = local("manual-diskinfo");
    let (_, log) = with_flags(&m, &vmdk, "-D vddk.diskinfo=1");
    let info = lines(&log, "debug: disk info: ");
    assert!(
        info.iter().any(|l| l.ends_with(&format!(
            "{}: capacity: {} sectors",
            vmdk.display(),
            SIZE / 512
        ))) && info.iter().any(|l| l.contains("biosGeo: C:"))
            && info.iter().any(|l| l.contains("num links: 1")),
        "{log}"
    );
    let (_, quiet) = with_flags(&m, &vmdk, "");
    assert!(lines(&quiet, "disk info").is_empty(), "{quiet}");
}

/// Every edition since 1.18, DEBUG FLAGS: -D vddk.extents=1, "Debug
/// extents returned by QueryAllocatedBlocks": the query and each
/// allocated run, which are qemu-img map's data runs.
#[test]
fn debug_extents_logs_the_allocation_queries() {
    let (m, vmdk, _) = local("manual-extents");
    let (_, log) = with_flags(&m, &vmdk, "-D vddk.extents=1");
    assert!(
        lines(&log, "debug: extents: querying allocated blocks of [0...").len() == 1,
        "{log}"
    );
    for (offset, len) in qemu_data_extents(&vmdk) {
        let want = format!("allocated data at [{offset}...{}]", offset + len);
        assert_eq!(lines(&log, &want).len(), 1, "{want}:\n{log}");
    }
    let (_, quiet) = with_flags(&m, &vmdk, "");
    assert!(lines(&quiet, "allocated").is_empty(), "{quiet}");
}

/// Every edition since 1.18, DEBUG FLAGS: -D vddk.datapath=0, "Suppress
/// debugging of datapath calls": with =0 no line per request; with =1 a
/// line per request reaching the plugin (here block status).
#[test]
fn debug_vddk_datapath_gates_the_request_lines() {
    let (m, vmdk, _) = local("manual-datapath");
    let (_, off) = with_flags(&m, &vmdk, "-D vddk.datapath=0");
    assert!(lines(&off, "vddk: extents count=").is_empty(), "{off}");
    let (_, on) = with_flags(&m, &vmdk, "-D vddk.datapath=1");
    assert!(
        lines(&on, &format!("debug: vddk: extents count={SIZE} offset=0")).len() == 1,
        "{on}"
    );
}
