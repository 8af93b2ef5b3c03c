//! libvirt ESX URIs: every form parsed into server, port, user and path,
//! the refused ones with their reasons, and how `uri=` combines with the
//! other parameters.

use vddk_nbd::params::uri::{self, Scheme};
use vddk_nbd::params::vddk_plugin::{parse, validate};

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn accepted_forms() {
    type Row<'a> = (
        &'a str,
        Scheme,
        &'a str,
        Option<u16>,
        Option<&'a str>,
        &'a [&'a str],
        bool,
    );
    let table: &[Row] = &[
        (
            "esx://esx1.example.com",
            Scheme::Esx,
            "esx1.example.com",
            None,
            None,
            &[],
            false,
        ),
        (
            "esx://esx1.example.com/",
            Scheme::Esx,
            "esx1.example.com",
            None,
            None,
            &[],
            false,
        ),
        (
            "esx://root@esx1/?no_verify=1",
            Scheme::Esx,
            "esx1",
            None,
            Some("root"),
            &[],
            true,
        ),
        (
            "ESX://root@10.0.0.5:8443/?no_verify=0",
            Scheme::Esx,
            "10.0.0.5",
            Some(8443),
            Some("root"),
            &[],
            false,
        ),
        (
            "esx://[fe80::1]:444/",
            Scheme::Esx,
            "fe80::1",
            Some(444),
            None,
            &[],
            false,
        ),
        (
            "esx://root@esx1/?transport=https&auto_answer=1",
            Scheme::Esx,
            "esx1",
            None,
            Some("root"),
            &[],
            false,
        ),
        (
            "vpx://administrator%40vsphere.local@vc.example.com/DC1/esx1.example.com?no_verify=1",
            Scheme::Vpx,
            "vc.example.com",
            None,
            Some("administrator@vsphere.local"),
            &["DC1", "esx1.example.com"],
            true,
        ),
        (
            "vpx://user@vc:8443/Data%20Center/Folder%201/Sub/Cluster%20A/esx2/",
            Scheme::Vpx,
            "vc",
            Some(8443),
            Some("user"),
            &["Data Center", "Folder 1", "Sub", "Cluster A", "esx2"],
            false,
        ),
        (
            "vpx://vc/dc/h%C3%B4te",
            Scheme::Vpx,
            "vc",
            None,
            None,
            &["dc", "hôte"],
            false,
        ),
    ];
    for (text, scheme, server, port, user, path, no_verify) in table {
        let u = uri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(u.scheme, *scheme, "{text}");
        assert_eq!(u.server, *server, "{text}");
        assert_eq!(u.port, *port, "{text}");
        assert_eq!(u.user.as_deref(), *user, "{text}");
        assert_eq!(u.inventory_path, *path, "{text}");
        assert_eq!(u.no_verify, *no_verify, "{text}");
    }
}

/// libvirt documents `vcenter=` for esx:// URIs (the host's vCenter, or
/// `*` for the one the host reports); it does not matter to disk access.
#[test]
fn the_vcenter_parameter_of_esx_uris_is_accepted() {
    for text in [
        "esx://root@esx1/?vcenter=vc.example.com",
        "esx://esx1/?vcenter=*&no_verify=1",
    ] {
        let u = uri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(u.server, "esx1");
    }
}

#[test]
fn refused_forms_say_why() {
    let table: &[(&str, &str)] = &[
        ("gsx://server/", "VMware Server (GSX)"),
        ("http://esx1/", "not one of libvirt's ESX driver schemes"),
        ("esx1.example.com", "no scheme"),
        ("esx://esx1/dc/host", "use vpx://"),
        ("vpx://vc/", "needs the path /datacenter/.../host"),
        ("vpx://vc/dc", "needs the path /datacenter/.../host"),
        ("esx://esx1/?transport=http", "VDDK always talks HTTPS"),
        ("esx://esx1/?transport=ftp", "libvirt accepts http or https"),
        (
            "esx://esx1/?proxy=socks://p:1080",
            "VDDK cannot be sent through a proxy",
        ),
        ("esx://esx1/?no_verify=yes", "libvirt accepts 0 or 1"),
        ("esx://esx1/?verbose=1", "unknown parameter verbose"),
        ("esx://:443/", "no host name"),
        ("esx://esx1:0/", "not a number from 1 to 65535"),
        ("esx://esx1:99999/", "not a number from 1 to 65535"),
        ("esx://@esx1/", "the user before '@' is empty"),
        ("esx://ro%zzot@esx1/", "bad percent escape"),
        ("esx://esx1/#frag", "fragment"),
        (
            "vpx://vc/dc/h?vcenter=vc2",
            "vcenter= belongs to esx:// URIs",
        ),
    ];
    for (text, why) in table {
        let e = uri::parse(text).unwrap_err().to_string();
        assert!(e.contains(why), "{text}: {e}");
        assert!(e.starts_with(&format!("uri={text}")), "{text}: {e}");
    }
}

#[test]
fn uri_fills_server_port_and_user() {
    let p = parse(&kv(&[
        ("uri", "esx://root@esx1.example.com:8443/?no_verify=1"),
        ("password", "x"),
        ("vm", "moref=42"),
        ("file", "[datastore1] web/web.vmdk"),
    ]))
    .unwrap();
    validate(&p).unwrap();
    assert!(p.is_remote());
    assert_eq!(p.server.as_deref(), Some("esx1.example.com"));
    assert_eq!(p.port, Some(8443));
    assert_eq!(p.user.as_deref(), Some("root"));
    assert!(p.fetch_thumbprint, "no_verify=1 fetches the thumbprint");
    assert_eq!(p.thumbprint, None);

    // A pinned thumbprint wins over no_verify.
    let t = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
    let p = parse(&kv(&[
        ("uri", "esx://esx1/?no_verify=1"),
        ("thumbprint", t),
    ]))
    .unwrap();
    assert!(!p.fetch_thumbprint);
    assert_eq!(p.thumbprint.as_deref(), Some(t));

    // Agreeing values are fine; contradicting ones are not.
    assert!(parse(&kv(&[("server", "esx1"), ("uri", "esx://esx1/")])).is_ok());
    let e = parse(&kv(&[("server", "esx2"), ("uri", "esx://esx1/")])).unwrap_err();
    assert!(e.0.contains("contradicts uri="), "{e}");
    let e = parse(&kv(&[("user", "a"), ("uri", "esx://b@esx1/")])).unwrap_err();
    assert!(e.0.contains("contradicts uri="), "{e}");

    // Without no_verify a thumbprint is required, or thumbprint=auto.
    let base = [
        ("uri", "esx://root@esx1/"),
        ("password", "x"),
        ("vm", "moref=1"),
        ("file", "[ds] a/a.vmdk"),
    ];
    let e = validate(&parse(&kv(&base)).unwrap()).unwrap_err();
    assert!(e.0.contains("vddk-nbd thumbprint HOST[:PORT]"), "{e}");
    let mut auto = base.to_vec();
    auto.push(("thumbprint", "auto"));
    let p = parse(&kv(&auto)).unwrap();
    validate(&p).unwrap();
    assert!(p.fetch_thumbprint);

    // gsx:// stops at parse time with its reason.
    let e = parse(&kv(&[("uri", "gsx://old/")])).unwrap_err();
    assert!(e.0.contains("GSX"), "{e}");
}

#[test]
fn libvirt_disk_sources_are_taken_as_they_are() {
    let p = parse(&kv(&[
        ("uri", "esx://root@esx1/?no_verify=1"),
        (
            "file",
            "<source file='[datastore 1] Tom &amp; Jerry/Tom &amp; Jerry.vmdk'/>",
        ),
    ]))
    .unwrap();
    assert_eq!(
        p.file.as_deref(),
        Some("[datastore 1] Tom & Jerry/Tom & Jerry.vmdk")
    );
    let p = parse(&kv(&[("server", "esx1"), ("file", "[ds]vm/vm.vmdk")])).unwrap();
    assert_eq!(p.file.as_deref(), Some("[ds] vm/vm.vmdk"));
    let e = parse(&kv(&[("server", "esx1"), ("file", "[ds] ../x.vmdk")])).unwrap_err();
    assert!(e.0.contains("[datastore] dir/disk.vmdk"), "{e}");
    // The bare form of the libvirt line is a file, not a key.
    assert_eq!(
        vddk_nbd::params::split_param("<source file='[ds] a/a.vmdk'/>").0,
        "file"
    );
}
