use super::*;

fn p(args: &[&str]) -> Result<Options, UsageError> {
    parse(args.iter().map(OsString::from))
}

#[test]
fn plugin_name_is_optional_and_file_may_be_bare() {
    let a = p(&["vddk", "/d.vmdk", "libdir=/x"]).unwrap();
    let b = p(&["file=/d.vmdk", "libdir=/x"]).unwrap();
    let c = p(&["/d.vmdk", "libdir=/x"]).unwrap();
    assert_eq!(a.params, b.params);
    assert_eq!(b.params, c.params);
    assert_eq!(a.params[0], ("file".into(), "/d.vmdk".into()));
}

#[test]
fn plugins_and_filters_are_known_by_name() {
    let o = p(&["--filter=cow", "--filter", "retry", "memory", "1G"]).unwrap();
    assert_eq!(o.plugin.name, "memory");
    let names: Vec<_> = o.filters.iter().map(|f| f.name).collect();
    assert_eq!(names, ["cow", "retry"]);
    let e = p(&["curl", "url=http://h/d"]).unwrap_err();
    assert!(e.0.contains("plugin 'curl' is not supported"), "{e}");
    assert!(e.0.contains("vddk, file, null, memory"), "{e}");
    let e = p(&["--filter=xz", "vddk", "/d.vmdk"]).unwrap_err();
    assert!(e.0.contains("filter 'xz' is not supported"), "{e}");
    assert!(e.0.contains("cow"), "{e}");
}

#[test]
fn remote_path_with_spaces_is_a_file() {
    let o = p(&["vddk", "server=h", "[datastore1] vm/vm.vmdk"]).unwrap();
    assert_eq!(
        o.params[1],
        ("file".into(), "[datastore1] vm/vm.vmdk".into())
    );
}

#[test]
fn flags_anywhere_bundled_and_long_forms() {
    let with = |last| p(&["-fvr", "vddk", "/d.vmdk", "--port=1234", "-e", "x", last]);
    assert!(with("-Usock").is_err(), "-U with -p is refused");
    let o = with("-P/tmp/p").unwrap();
    assert!(o.foreground && o.verbose && o.read_only);
    assert_eq!(o.port, Some(1234));
    assert_eq!(o.export_name, "x");
    assert_eq!(o.pidfile, Some(PathBuf::from("/tmp/p")));
    let o = p(&["--port", "99", "--read-only", "--exportname=e", "/d.vmdk"]).unwrap();
    assert_eq!(o.port, Some(99));
    assert!(o.read_only);
    assert_eq!(o.export_name, "e");
}

#[test]
fn private_unix_socket_and_run() {
    let o = p(&["-U", "-", "vddk", "/d.vmdk", "--run", "nbdinfo \"$uri\""]).unwrap();
    assert_eq!(o.unix, Some(UnixSocket::Private));
    assert_eq!(o.run.as_deref(), Some("nbdinfo \"$uri\""));
    assert!(o.stays_in_foreground());
    let o = p(&["--exit-with-parent", "/d.vmdk"]).unwrap();
    assert!(o.exit_with_parent && o.stays_in_foreground());
    let o = p(&["-fU", "-", "/d.vmdk"]).unwrap();
    assert_eq!(o.unix, Some(UnixSocket::Private));
}

#[test]
fn info_actions() {
    assert_eq!(p(&["--help"]).unwrap().action, Action::Help);
    assert_eq!(p(&["-V"]).unwrap().action, Action::Version);
    assert_eq!(p(&["--version"]).unwrap().action, Action::Version);
    assert_eq!(
        p(&["vddk", "--dump-plugin"]).unwrap().action,
        Action::DumpPlugin
    );
}

#[test]
fn bad_options_say_what_is_wrong() {
    assert!(p(&["--bogus"])
        .unwrap_err()
        .0
        .contains("unrecognized option '--bogus'"));
    assert!(p(&["-X"]).unwrap_err().0.contains("invalid option -- 'X'"));
    assert!(p(&["-p"]).unwrap_err().0.contains("requires an argument"));
    assert!(p(&["-p", "70000"])
        .unwrap_err()
        .0
        .contains("not a port number"));
    assert!(p(&["-t", "0"]).unwrap_err().0.contains("positive"));
    assert!(p(&["--verbose=1"])
        .unwrap_err()
        .0
        .contains("doesn't allow an argument"));
    assert!(p(&["/a.vmdk", "/b.vmdk"])
        .unwrap_err()
        .0
        .contains("more than one bare"));
    assert!(p(&["--tls-psk=/k.psk", "/a.vmdk"])
        .unwrap_err()
        .0
        .contains("pre-shared keys is not supported"));
    assert!(p(&["--tls=maybe", "/a.vmdk"])
        .unwrap_err()
        .0
        .contains("'maybe' is not a TLS mode"));
    assert!(p(&["--tls", "/a.vmdk"]).unwrap_err().0.contains("TLS mode"));
}

#[test]
fn tls_options_as_nbdkit_spells_them() {
    for (args, mode) in [
        (&["--tls=off"][..], TlsMode::Off),
        (&["--tls", "no"], TlsMode::Off),
        (&["--tls=on"], TlsMode::On),
        (&["--tls=YES"], TlsMode::On),
        (&["--tls", "1"], TlsMode::On),
        (&["--tls=require"], TlsMode::Require),
        (&["--tls=required"], TlsMode::Require),
        (&["--tls", "force"], TlsMode::Require),
    ] {
        let mut a = args.to_vec();
        a.push("/a.vmdk");
        assert_eq!(p(&a).unwrap().tls, Some(mode), "{args:?}");
    }
    let o = p(&[
        "--tls-certificates",
        "/certs",
        "--tls-verify-peer",
        "/a.vmdk",
    ])
    .unwrap();
    assert_eq!(o.tls, None);
    assert_eq!(o.tls_certificates, Some(PathBuf::from("/certs")));
    assert!(o.tls_verify_peer);
    assert_eq!(o.params, vec![("file".into(), "/a.vmdk".into())]);
    assert!(p(&["--tls-verify-peer=yes", "/a.vmdk"]).is_err());
}

#[test]
fn debug_flags() {
    let o = p(&[
        "-D",
        "vddk.stats=1",
        "-Dnbdkit.backend.datapath=0",
        "/d.vmdk",
    ])
    .unwrap();
    assert_eq!(o.debug_flags.len(), 2);
    assert_eq!(o.debug_flags[0].scope, "vddk");
    assert_eq!(o.debug_flags[0].name, "stats");
    assert_eq!(o.debug_flags[0].value, "1");
    assert_eq!(o.debug_flags[1].name, "backend.datapath");
    assert!(p(&["-D", "stats", "/d.vmdk"]).is_err());
}

#[test]
fn user_and_group() {
    let o = p(&["-u", "nobody", "--group=nogroup", "/d.vmdk"]).unwrap();
    assert_eq!(o.user.as_deref(), Some("nobody"));
    assert_eq!(o.group.as_deref(), Some("nogroup"));
    let o = p(&["--user", "65534", "-g65534", "/d.vmdk"]).unwrap();
    assert_eq!(o.user.as_deref(), Some("65534"));
    assert_eq!(o.group.as_deref(), Some("65534"));
    assert!(p(&["-u", "", "/d.vmdk"]).unwrap_err().0.contains("empty"));
}

#[test]
fn double_dash_ends_options() {
    let o = p(&["--", "/d.vmdk"]).unwrap();
    assert_eq!(o.params, vec![("file".into(), "/d.vmdk".into())]);
}
