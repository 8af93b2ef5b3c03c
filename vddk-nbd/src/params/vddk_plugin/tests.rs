use super::*;

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check(pairs: &[(&str, &str)]) -> Result<VddkParams, ParamError> {
    let p = parse(&kv(pairs))?;
    validate(&p)?;
    Ok(p)
}

#[test]
fn local_file_must_be_absolute() {
    assert!(check(&[("file", "/a/b.vmdk")]).is_ok());
    let e = check(&[("file", "b.vmdk")]).unwrap_err();
    assert!(e.0.contains("absolute path"), "{e}");
    let e = check(&[("libdir", "/x")]).unwrap_err();
    assert!(e.0.contains("file=<FILENAME>"), "{e}");
}

#[test]
fn remote_needs_server_user_password_vm() {
    let full = [
        ("server", "esx"),
        ("user", "root"),
        ("password", "secret"),
        ("vm", "moref=2"),
        ("file", "[ds] v/v.vmdk"),
    ];
    let p = check(&full).unwrap();
    assert!(p.is_remote());
    assert_eq!(p.password, Some(Password::parse("secret")));
    assert!(p.has_literal_secret());
    for drop in ["server", "user", "password", "vm"] {
        let partial: Vec<_> = full.iter().copied().filter(|(k, _)| *k != drop).collect();
        let e = check(&partial).unwrap_err();
        assert_eq!(
            e.0,
            format!("remote connection requested, missing parameter: {drop}")
        );
    }
    // A cookie replaces user and password.
    assert!(check(&[
        ("server", "h"),
        ("cookie", "c"),
        ("vm", "moref=1"),
        ("file", "[d] x")
    ])
    .is_ok());
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let e = parse(&kv(&[("fiel", "/x")])).unwrap_err();
    assert!(e.0.starts_with("unknown parameter 'fiel'"), "{e}");
    assert!(
        e.0.contains("thumbprint") && e.0.contains("create-hwversion"),
        "{e}"
    );
}

#[test]
fn typed_values() {
    let p = check(&[
        ("file", "/d.vmdk"),
        ("compression", "fastlz"),
        ("single-link", "true"),
        ("unbuffered", "on"),
        ("vimapiver", "6.7"),
        ("libdir", "/opt/vddk"),
    ])
    .unwrap();
    assert_eq!(p.compression, Compression::Fastlz);
    assert!(p.single_link && p.unbuffered);
    assert_eq!(p.libdir, Some(PathBuf::from("/opt/vddk")));
    assert!(parse(&kv(&[("compression", "lz4")]))
        .unwrap_err()
        .0
        .contains("none, zlib, fastlz, skipz"));
    assert!(parse(&kv(&[("port", "x")]))
        .unwrap_err()
        .0
        .contains("cannot parse port"));
    assert!(parse(&kv(&[("unbuffered", "maybe")])).is_err());
}

#[test]
fn io_modes() {
    assert_eq!(check(&[("file", "/d.vmdk")]).unwrap().io, IoMode::Auto);
    let p = check(&[("file", "/d.vmdk"), ("io", "pipelined")]).unwrap();
    assert_eq!(p.io, IoMode::Pipelined);
    assert_eq!(p.io.mode(), Some(vddk::Mode::Pipelined));
    assert_eq!(IoMode::Auto.mode(), None, "the driver chooses by transport");
    assert_eq!(IoMode::Direct.mode(), Some(vddk::Mode::Direct));
    let e = parse(&kv(&[("io", "async")])).unwrap_err().0;
    assert!(
        e.contains("io=async") && e.contains("auto, direct, pipelined"),
        "{e}"
    );
}

#[test]
fn create_parameters() {
    let p = check(&[
        ("file", "/n.vmdk"),
        ("create", "true"),
        ("create-size", "1G"),
        ("create-type", "monolithic-flat"),
        ("create-adapter-type", "ide"),
        ("create-hwversion", "esx65"),
    ])
    .unwrap();
    let c = p.create.unwrap();
    assert_eq!(c.size, 1 << 30);
    assert_eq!(c.disk_type, vddk::DiskType::MonolithicFlat);
    assert_eq!(c.adapter, vddk::AdapterType::Ide);
    assert_eq!(c.hw_version, vddk::HwVersion::ESX65);
    let c = check(&[("file", "/n.vmdk"), ("create", "1"), ("create-size", "512")])
        .unwrap()
        .create
        .unwrap();
    assert_eq!(c.disk_type, vddk::DiskType::MonolithicSparse);
    assert_eq!(c.adapter, vddk::AdapterType::ScsiBusLogic);
    assert_eq!(c.hw_version, vddk::HwVersion(4));
    assert_eq!(
        typed::<vddk::HwVersion>("create-hwversion", "17").unwrap(),
        vddk::HwVersion(17)
    );
    let e = typed::<vddk::DiskType>("create-type", "floppy")
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("create-type=floppy: unknown disk type"),
        "{e}"
    );
    assert!(check(&[("file", "/n.vmdk"), ("create", "true")])
        .unwrap_err()
        .0
        .contains("create-size"));
    assert!(check(&[
        ("file", "/n.vmdk"),
        ("create", "true"),
        ("create-size", "1000")
    ])
    .unwrap_err()
    .0
    .contains("multiple of 512"));
    assert!(check(&[("file", "/n.vmdk"), ("create-size", "1M")])
        .unwrap_err()
        .0
        .contains("create=true"));
    assert!(parse(&kv(&[("create-hwversion", "esx99")]))
        .unwrap_err()
        .0
        .contains("esx65"));
}
