//! The command line without a disk being served: usage, version, and the
//! parameter checks nbdkit's vddk plugin makes, run on the real binary.

use std::process::{Command, Output};

use vddk_tests::cmd::{output_into_closed_pipe, stderr};

fn vddk_nbd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vddk-nbd"))
        .args(args)
        .output()
        .expect("run vddk-nbd")
}

/// Runs, expects exit status 1, and returns stderr.
fn fails(args: &[&str]) -> String {
    let o = vddk_nbd(args);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
    assert!(o.stdout.is_empty(), "{args:?} printed on stdout: {o:?}");
    stderr(&o)
}

#[test]
fn version_and_help() {
    let o = vddk_nbd(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("vddk-nbd {}", env!("CARGO_PKG_VERSION"))
    );
    let o = vddk_nbd(&["-V"]);
    assert!(o.status.success());

    let o = vddk_nbd(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--run",
        "--dump-plugin",
        "-U, --unix",
        "password=PASSWORD|-|+FILE|-FD",
        "create-hwversion",
    ] {
        assert!(help.contains(needle), "help lacks {needle}: {help}");
    }
}

#[test]
fn bad_flags_point_to_help() {
    let e = fails(&["--no-such-flag", "/x.vmdk"]);
    assert!(e.contains("unrecognized option '--no-such-flag'"), "{e}");
    assert!(e.contains("--help"), "{e}");
    let e = fails(&["-p", "notaport", "/x.vmdk"]);
    assert!(e.contains("not a port number"), "{e}");
}

#[test]
fn unknown_plugins_and_filters_are_refused_with_the_known_ones() {
    let e = fails(&["curl", "url=http://h/d"]);
    assert!(e.contains("plugin 'curl' is not supported"), "{e}");
    assert!(e.contains("vddk, file, null, memory"), "{e}");
    let e = fails(&["--filter=xz", "vddk", "/x.vmdk"]);
    assert!(e.contains("filter 'xz' is not supported"), "{e}");
    for f in [
        "blocksize",
        "cacheextents",
        "count",
        "cow",
        "multi-conn",
        "rate",
        "retry",
    ] {
        assert!(e.contains(f), "{f} missing from: {e}");
    }
}

#[test]
fn file_is_required_and_must_be_absolute_locally() {
    let e = fails(&["vddk", "-f"]);
    assert!(e.contains("file=<FILENAME>"), "{e}");
    let e = fails(&["vddk", "-f", "file=relative/disk.vmdk"]);
    assert!(e.contains("absolute path"), "{e}");
}

#[test]
fn unknown_keys_list_valid_ones() {
    let e = fails(&["vddk", "-f", "/x.vmdk", "flie=/y"]);
    assert!(e.contains("unknown parameter 'flie'"), "{e}");
    for k in [
        "file",
        "libdir",
        "thumbprint",
        "vm",
        "transports",
        "create-size",
    ] {
        assert!(e.contains(k), "list lacks {k}: {e}");
    }
}

#[test]
fn remote_needs_server_user_password_and_vm() {
    let e = fails(&[
        "-f",
        "vddk",
        "user=root",
        "password=x",
        "vm=moref=2",
        "[ds] a/a.vmdk",
    ]);
    assert!(
        e.contains("remote connection requested, missing parameter: server"),
        "{e}"
    );
    let e = fails(&[
        "-f",
        "vddk",
        "server=esx",
        "password=x",
        "vm=moref=2",
        "[ds] a/a.vmdk",
    ]);
    assert!(e.contains("missing parameter: user"), "{e}");
    let e = fails(&[
        "-f",
        "vddk",
        "server=esx",
        "user=root",
        "vm=moref=2",
        "[ds] a/a.vmdk",
    ]);
    assert!(e.contains("missing parameter: password"), "{e}");
    let e = fails(&[
        "-f",
        "vddk",
        "server=esx",
        "user=root",
        "password=x",
        "[ds] a/a.vmdk",
    ]);
    assert!(e.contains("missing parameter: vm"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = fails(&["-f", "/x.vmdk", "compression=lz4"]);
    assert!(e.contains("compression=lz4") && e.contains("zlib"), "{e}");
    let e = fails(&["-f", "/x.vmdk", "create=true"]);
    assert!(e.contains("create-size"), "{e}");
    let e = fails(&["-f", "/x.vmdk", "create=true", "create-size=1Q"]);
    assert!(e.contains("unknown size suffix"), "{e}");
    let e = fails(&[
        "-f",
        "/x.vmdk",
        "create=true",
        "create-size=1M",
        "create-hwversion=esx99",
    ]);
    assert!(e.contains("esx65"), "{e}");
}

#[test]
fn remote_values_are_checked_before_anything_starts() {
    let e = fails(&[
        "server=esx",
        "user=root",
        "password=x",
        "thumbprint=zz",
        "vm=moref=2",
        "[ds] a/a.vmdk",
    ]);
    assert!(e.contains("error: thumbprint=zz: "), "{e}");
}

#[test]
fn unreadable_password_file_is_reported() {
    let e = fails(&[
        "-f",
        "server=esx",
        "user=root",
        "password=+/nonexistent/pw",
        "vm=moref=2",
        "[ds] a/a.vmdk",
    ]);
    assert!(
        e.contains("password=+/nonexistent/pw") && e.contains("cannot read"),
        "{e}"
    );
}

/// `vddk-nbd --help | true`: a reader that has gone is not an error, and
/// certainly not a panic.
#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["--dump-config"],
        &["--long-options"],
    ] {
        for _ in 0..10 {
            let o =
                output_into_closed_pipe(Command::new(env!("CARGO_BIN_EXE_vddk-nbd")).args(args));
            assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
            assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
        }
    }
}
