//! The remote examples of nbdkit-vddk-plugin(1) (ESXi, vCenter,
//! thumbprints, morefs, finding the file with virsh) and the connection
//! URIs of libvirt's ESX driver (docs/drvesx.rst), run as printed against
//! vddk-nbd installed as `nbdkit`. The servers are the fake's simulated
//! ones under the manuals' names; where vddk-nbd itself must reach the
//! server over TLS (no_verify=1, the thumbprint tricks) an `openssl
//! s_server` on 127.0.0.1 stands in, and the host name becomes
//! 127.0.0.1 or localhost. `-U -` and `--run` read each disk, which is
//! compared with qemu-img's view of the VMDK behind it.

mod callers_common;
mod manual_common;

use std::path::PathBuf;

use manual_common::{lines, Manual};
use vddk_tests::images::{assert_same, s};
use vddk_tests::inventory::Inventory;
use vddk_tests::openssl::TlsServer;

const ESX_TP: &str = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78";
const VC_TP: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";
/// The manuals' file parameter.
const FEDORA: &str = "[datastore1] Fedora/Fedora.vmdk";
/// Reads the disk into out.raw.
const COPY: &str = "--run 'nbdcopy \"$uri\" out.raw'";

/// A VM whose disk is [`FEDORA`] on `datastore1`, known as moref 2 to
/// the ESXi hosts `esxi.example.com` and `example-esx.com` and as vm-16
/// to the vCenters `vcenter.example.com` and `example-vcenter.com`
/// (running on the first and the second host); root's password is in
/// `rootpw` (the manual's /tmp/rootpw), `vmware` on the vCenters as in
/// the manual. `extra` adds servers (the TLS stand-ins).
struct Remote {
    m: Manual,
    inventory: PathBuf,
    bytes: Vec<u8>,
}

impl Remote {
    fn new(name: &str, extra: impl FnOnce(Inventory) -> Inventory) -> Remote {
        let m = Manual::new(name);
        let size = 10 << 20;
        let writes = [(0, 4096, 0x51), (3 << 20, 1 << 20, 0x52)];
        let (_, bytes) = m.disk("datastore1/Fedora/Fedora.vmdk", size, &writes);
        std::fs::write(m.dir.join("rootpw"), "s3cret\n").expect("write rootpw");
        let esx = |tp| {
            vec![
                ("kind", "esxi"),
                ("thumbprint", tp),
                ("user", "root:s3cret"),
            ]
        };
        let vc = |tp| {
            vec![
                ("kind", "vcenter"),
                ("thumbprint", tp),
                ("user", "root:vmware"),
            ]
        };
        let disk = [("disk", FEDORA)];
        let inv = Inventory::new()
            .server("esxi.example.com", &esx(ESX_TP))
            .server("example-esx.com", &esx(ESX_TP))
            .server("vcenter.example.com", &vc(VC_TP))
            .server("example-vcenter.com", &vc(VC_TP))
            .datastore("datastore1", &m.dir.join("datastore1"))
            .vm("esxi.example.com", "2", &disk)
            .vm("example-esx.com", "2", &disk)
            .vm(
                "vcenter.example.com",
                "vm-16",
                &[disk[0], ("esx_host", "esxi.example.com")],
            )
            .vm(
                "example-vcenter.com",
                "vm-16",
                &[disk[0], ("esx_host", "example-esx.com")],
            );
        let inventory = extra(inv).write(&m.dir.join("inventory.ini"));
        Remote {
            m,
            inventory,
            bytes,
        }
    }

    /// [`Manual::sh`] with the simulated servers on the network.
    fn sh(&self, line: &str) -> std::process::Output {
        self.m
            .sh(&[("FAKE_VDDK_INVENTORY", s(&self.inventory))], line)
    }

    /// `nbdkit -U - [-v] vddk libdir=FAKE ARGS --run nbdcopy`, which must
    /// succeed and copy the disk; its stderr.
    fn copies(&self, args: &str) -> String {
        let line = format!("nbdkit -U - -v vddk {} {args} {COPY}", self.m.libdir());
        let (_, err) = self
            .m
            .ok(&[("FAKE_VDDK_INVENTORY", s(&self.inventory))], &line);
        let out = callers_common::read(&self.m.dir.join("out.raw"));
        assert_same("out.raw", &out, &self.bytes);
        std::fs::remove_file(self.m.dir.join("out.raw")).ok();
        err
    }

    /// Like [`Remote::copies`] but it must exit 1: its stderr.
    fn refused(&self, args: &str) -> String {
        let line = format!("nbdkit -U - vddk {} {args} {COPY}", self.m.libdir());
        let (_, err) = self
            .m
            .fails(&[("FAKE_VDDK_INVENTORY", s(&self.inventory))], &line, 1);
        assert!(!self.m.dir.join("out.raw").exists(), "{err}");
        err
    }

    /// `password=+FILE` of root's password.
    fn rootpw(&self) -> String {
        format!("password=+{}/rootpw", self.m.dir.display())
    }
}

/// The TLS stand-in as a server of the inventory, named `name`.
fn stand_in(tls: &TlsServer, name: &str, kind: &str) -> impl FnOnce(Inventory) -> Inventory {
    let (name, kind) = (name.to_string(), kind.to_string());
    let (port, tp) = (tls.port.to_string(), tls.fingerprint("-sha1"));
    move |inv: Inventory| {
        let (user, moref) = match kind.as_str() {
            "esxi" => ("root:s3cret", "2"),
            _ => ("root:vmware", "vm-16"),
        };
        let keys = [
            ("kind", kind.as_str()),
            ("port", &port),
            ("thumbprint", &tp),
        ];
        inv.server(&name, &[keys[0], keys[1], keys[2], ("user", user)])
            .vm(
                &name,
                moref,
                &[("disk", FEDORA), ("esx_host", "esxi.example.com")],
            )
    }
}

/// Every edition since 1.18, EXAMPLES, "Open a file on a remote VMware
/// ESXi hypervisor":
///   nbdkit vddk user=root password=+/tmp/rootpw \
///               server=esxi.example.com thumbprint=xx:xx:xx:... \
///               vm=moref=2 \
///               "[datastore1] Fedora/Fedora.vmdk"
#[test]
fn esxi_with_the_password_in_a_file() {
    let r = Remote::new("manual-esxi", |i| i);
    let log = r.copies(&format!(
        "user=root {} \\\n server=esxi.example.com thumbprint={ESX_TP} \\\n vm=moref=2 \\\n \"{FEDORA}\"",
        r.rootpw()
    ));
    assert!(!log.contains("warning"), "{log}");
    assert!(
        log.contains(&format!(
            "Opened 'vpxa-nfcssl://{FEDORA}@esxi.example.com:902'"
        )),
        "{log}"
    );
}

/// Every edition since 1.18, EXAMPLES, "Open a file on a remote VMware
/// vCenter server":
///   nbdkit vddk user=root password=vmware \
///               server=vcenter.example.com thumbprint=xx:xx:xx:... \
///               vm=moref=vm-16 \
///               "[datastore1] Fedora/Fedora.vmdk"
/// The password on the command line works, with the warning the manual's
/// "not secure on shared machines" asks for.
#[test]
fn vcenter_with_the_password_on_the_command_line() {
    let r = Remote::new("manual-vcenter", |i| i);
    let log = r.copies(&format!(
        "user=root password=vmware \\\n server=vcenter.example.com thumbprint={VC_TP} \\\n \
         vm=moref=vm-16 \\\n \"{FEDORA}\""
    ));
    assert_eq!(
        lines(&log, "warning: password= given on the command line").len(),
        1,
        "{log}"
    );
}

/// Every edition since 1.18, MANAGED OBJECT REFERENCE: "For VMware ESXi
/// hypervisors, the vm moref is a number (eg. vm=moref=2). For VMware
/// VCenter it is a string beginning with "vm-" (eg. vm=moref=vm-16).
/// Across ESXi and vCenter the numbers are different even for the same
/// virtual machine." Swapped, each fails and says which form goes where.
#[test]
fn morefs_are_numbers_on_esxi_and_vm_n_on_vcenter() {
    let r = Remote::new("manual-moref", |i| i);
    let esx = format!(
        "user=root {} server=esxi.example.com thumbprint={ESX_TP}",
        r.rootpw()
    );
    let vc = format!("user=root password=vmware server=vcenter.example.com thumbprint={VC_TP}");
    r.copies(&format!("{esx} vm=moref=2 \"{FEDORA}\""));
    r.copies(&format!("{vc} vm=moref=vm-16 \"{FEDORA}\""));
    for wrong in [
        format!("{esx} vm=moref=vm-16 \"{FEDORA}\""),
        format!("{vc} vm=moref=2 \"{FEDORA}\""),
    ] {
        let err = r.refused(&wrong);
        assert!(
            err.contains("VIX_E_VM_NOT_FOUND") && err.contains("on ESXi it is a number"),
            "{err}"
        );
    }
}

/// Every edition since 1.18, THUMBPRINTS, "Using openssl remotely":
///   $ openssl s_client -connect SERVER-NAME:443 </dev/null |
///     openssl x509 -in /dev/stdin -fingerprint -sha1 -noout
/// The value it prints opens the disk, and is what `vddk-nbd thumbprint`
/// prints.
#[test]
fn thumbprint_from_openssl_remotely_opens_the_disk() {
    let dir = vddk_tests::scratch_dir("manual-openssl-tls");
    let tls = TlsServer::start(&dir);
    let r = Remote::new("manual-openssl", stand_in(&tls, "127.0.0.1", "esxi"));
    let port = tls.port;
    let out = r.sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null |\n  \
         openssl x509 -in /dev/stdin -fingerprint -sha1 -noout"
    ));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let tp = printed
        .trim()
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("{printed}"));
    assert_eq!(tp, tls.fingerprint("-sha1"));
    r.copies(&format!(
        "user=root {} server=127.0.0.1 port={port} thumbprint={tp} vm=moref=2 \"{FEDORA}\"",
        r.rootpw()
    ));
    let (ours, _) = r.m.ok(&[], &format!("nbdkit thumbprint 127.0.0.1:{port}"));
    assert!(ours.starts_with(&format!("thumbprint={tp}\n")), "{ours}");
}

/// 1.34 and current editions, THUMBPRINTS, "Trick: Get VDDK to tell you
/// the thumbprint" (1.26 has `-U -` too):
///   nbdkit -fv vddk server=esxi.example.com [...] thumbprint=12 \
///          --run 'qemu-img info "$uri"'
/// "12" is no thumbprint, so the server is asked for its certificate and
/// the error gives the real one; qemu-img never runs.
#[test]
fn trick_a_bogus_thumbprint_gets_the_real_one() {
    let dir = vddk_tests::scratch_dir("manual-trick-tls");
    let tls = TlsServer::start(&dir);
    let r = Remote::new("manual-trick", stand_in(&tls, "127.0.0.1", "esxi"));
    let out = r.sh(&format!(
        "nbdkit -U - -fv vddk {} server=127.0.0.1 port={} user=root {} vm=moref=2 \
         \"{FEDORA}\" thumbprint=12 \\\n --run 'qemu-img info \"$uri\"'",
        r.m.libdir(),
        tls.port,
        r.rootpw()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "qemu-img ran: {out:?}");
    assert!(
        err.contains(&format!("use thumbprint={}", tls.fingerprint("-sha1"))),
        "{err}"
    );
}

/// The same section's expected debug output, with a thumbprint that is
/// one but not the server's:
///   nbdkit: debug: VixDiskLibVim: Failed to verify SSL certificate:
///   actual thumbprint=B2:31:...:C8:DD expected=12
/// (the fake's VDDK logs it so; no TLS server is needed).
#[test]
fn trick_the_debug_output_has_the_actual_thumbprint() {
    let r = Remote::new("manual-trick-debug", |i| i);
    let wrong = format!("00{}", &ESX_TP[2..]);
    let out = r.sh(&format!(
        "nbdkit -U - -fv vddk {} server=esxi.example.com user=root {} vm=moref=2 \
         \"{FEDORA}\" thumbprint={wrong} --run 'qemu-img info \"$uri\"'",
        r.m.libdir(),
        r.rootpw()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want =
        format!("Failed to verify SSL certificate: actual thumbprint={ESX_TP} expected={wrong}");
    let found = lines(&err, &want);
    assert!(
        found.len() == 1 && found[0].starts_with("nbdkit: "),
        "{err}"
    );
}

/// Every edition since 1.18, FILE PARAMETER, "Finding the remote filename"
/// and MANAGED OBJECT REFERENCE:
///   $ virsh -c 'esx://esxi.example.com?no_verify=1' dumpxml guestname
///     <source file='[datastore] vmname/vmname.vmdk'/>
///     <vmware:moref>2</vmware:moref>
/// The same URI as uri= (host: the TLS stand-in), the source line pasted
/// as it is, indentation included, and the moref.
#[test]
fn virsh_esx_uri_and_its_source_line() {
    let dir = vddk_tests::scratch_dir("manual-virsh-esx-tls");
    let tls = TlsServer::start(&dir);
    let r = Remote::new("manual-virsh-esx", stand_in(&tls, "localhost", "esxi"));
    let log = r.copies(&format!(
        "'uri=esx://root@localhost:{}?no_verify=1' {} vm=moref=2 \"  <source file='{FEDORA}'/>\"",
        tls.port,
        r.rootpw()
    ));
    let sha1 = tls.fingerprint("-sha1");
    assert!(
        lines(&log, "warning: no_verify=1")
            .iter()
            .any(|l| l.contains(&sha1)),
        "{log}"
    );
}

/// The same, for vCenter:
///   $ virsh -c 'vpx://vcenter.example.com/Datacenter/esxi.example.com?no_verify=1' \
///         dumpxml guestname
///     <vmware:moref>vm-16</vmware:moref>
#[test]
fn virsh_vpx_uri_and_its_moref() {
    let dir = vddk_tests::scratch_dir("manual-virsh-vpx-tls");
    let tls = TlsServer::start(&dir);
    let r = Remote::new("manual-virsh-vpx", stand_in(&tls, "localhost", "vcenter"));
    let log = r.copies(&format!(
        "'uri=vpx://root@localhost:{}/Datacenter/esxi.example.com?no_verify=1' password=vmware \
         vm=moref=vm-16 \"{FEDORA}\"",
        tls.port
    ));
    assert!(log.contains("@esxi.example.com:902'"), "{log}");
}

/// libvirt drvesx.rst, "Connections to the VMware ESX driver":
///   vpx://example-vcenter.com/dc1/srv1  (VPX over HTTPS, select ESX server 'srv1' in datacenter 'dc1')
/// The path is shown, VDDK finds the VM by its moref (here on
/// example-esx.com: the path names the host the VM should be on, which
/// the log lets one compare).
#[test]
fn libvirt_vpx_datacenter_and_server() {
    let r = Remote::new("manual-libvirt-vpx", |i| i);
    let log = r.copies(&format!(
        "uri=vpx://root@example-vcenter.com/dc1/srv1 password=vmware thumbprint={VC_TP} \
         vm=moref=vm-16 \"{FEDORA}\""
    ));
    assert_eq!(
        lines(&log, "inventory path /dc1/srv1: the VM should run on srv1").len(),
        1,
        "{log}"
    );
    assert!(log.contains("@example-esx.com:902'"), "{log}");
}

/// drvesx.rst: `esx://example-esx.com  (ESX over HTTPS)`. No user in it:
/// virsh asks on a terminal; without one the error says where to write
/// it, and with user=root the disk opens.
#[test]
fn libvirt_esx_without_a_user() {
    let r = Remote::new("manual-libvirt-esx", |i| i);
    let rest = format!("{} thumbprint={ESX_TP} vm=moref=2 \"{FEDORA}\"", r.rootpw());
    let err = r.refused(&format!("uri=esx://example-esx.com {rest}"));
    assert!(err.contains("esx://root@example-esx.com/"), "{err}");
    r.copies(&format!("uri=esx://example-esx.com user=root {rest}"));
}

/// drvesx.rst: `gsx://example-gsx.com  (GSX over HTTPS)`: VDDK cannot
/// reach VMware Server.
#[test]
fn libvirt_gsx_is_refused() {
    let r = Remote::new("manual-libvirt-gsx", |i| i);
    let err = r.refused(&format!(
        "uri=gsx://example-gsx.com vm=moref=2 \"{FEDORA}\""
    ));
    assert!(err.contains("gsx:// is VMware Server (GSX)"), "{err}");
}

/// drvesx.rst: `esx://example-esx.com/?transport=http  (ESX over HTTP)`:
/// VDDK has no plain HTTP; the error tells libvirt's transport from
/// VDDK's transports=.
#[test]
fn libvirt_transport_http_is_refused() {
    let r = Remote::new("manual-libvirt-http", |i| i);
    let err = r.refused(&format!(
        "'uri=esx://root@example-esx.com/?transport=http' {} vm=moref=2 \"{FEDORA}\"",
        r.rootpw()
    ));
    assert!(
        err.contains("transport=http is refused") && err.contains("transports="),
        "{err}"
    );
}

/// drvesx.rst: `esx://example-esx.com/?no_verify=1  (ESX over HTTPS, but
/// doesn't verify the server's SSL certificate)` (host: the TLS stand-in).
#[test]
fn libvirt_esx_no_verify() {
    let dir = vddk_tests::scratch_dir("manual-libvirt-noverify-tls");
    let tls = TlsServer::start(&dir);
    let r = Remote::new(
        "manual-libvirt-noverify",
        stand_in(&tls, "localhost", "esxi"),
    );
    let log = r.copies(&format!(
        "'uri=esx://root@localhost:{}/?no_verify=1' {} vm=moref=2 \"{FEDORA}\"",
        tls.port,
        r.rootpw()
    ));
    assert!(
        log.contains(&format!("thumbprint={}", tls.fingerprint("-sha1"))),
        "{log}"
    );
}

/// drvesx.rst, "URI Format": a host in a cluster, and folders:
///   vpx://example-vcenter.com/dc1/cluster1/example-esx.com
///   vpx://example-vcenter.com/folder1/dc1/folder2/example-esx.com
#[test]
fn libvirt_vpx_cluster_and_folders() {
    let r = Remote::new("manual-libvirt-paths", |i| i);
    for path in [
        "dc1/cluster1/example-esx.com",
        "folder1/dc1/folder2/example-esx.com",
    ] {
        let log = r.copies(&format!(
            "uri=vpx://root@example-vcenter.com/{path} password=vmware thumbprint={VC_TP} \
             vm=moref=vm-16 \"{FEDORA}\""
        ));
        let shown = format!("inventory path /{path}: the VM should run on example-esx.com");
        assert!(log.contains(&shown), "{log}");
        assert!(log.contains("@example-esx.com:902'"), "{log}");
    }
}

/// drvesx.rst, "Extra parameters":
///   ?no_verify=1&auto_answer=1&proxy=socks://example-proxy.com:23456&cacert=certs/ca-bundle.pem
/// The proxy is refused (VDDK connects by itself); without it the rest is
/// taken: cacert= does nothing with no_verify=1, as in libvirt.
#[test]
fn libvirt_extra_parameters() {
    let dir = vddk_tests::scratch_dir("manual-libvirt-extra-tls");
    let tls = TlsServer::start(&dir);
    let r = Remote::new("manual-libvirt-extra", stand_in(&tls, "localhost", "esxi"));
    let uri = format!("esx://root@localhost:{}/", tls.port);
    let rest = format!("{} vm=moref=2 \"{FEDORA}\"", r.rootpw());
    let err = r.refused(&format!(
        "'uri={uri}?no_verify=1&auto_answer=1&proxy=socks://example-proxy.com:23456&cacert=certs/ca-bundle.pem' {rest}"
    ));
    assert!(err.contains("proxy= is refused"), "{err}");
    let log = r.copies(&format!(
        "'uri={uri}?no_verify=1&auto_answer=1&cacert=certs/ca-bundle.pem' {rest}"
    ));
    assert!(
        !log.contains("cacert=certs/ca-bundle.pem is not used"),
        "{log}"
    );
}

/// drvesx.rst, "Connection problems": `virsh -c esx+tcp://example.com/`,
/// `esx+tls://`, `esx+ssh://` — transports the ESX driver does not have.
#[test]
fn libvirt_remote_transport_schemes_are_refused() {
    let r = Remote::new("manual-libvirt-schemes", |i| i);
    for scheme in ["esx+tcp", "esx+tls", "esx+ssh"] {
        let err = r.refused(&format!(
            "uri={scheme}://example.com/ vm=moref=2 \"{FEDORA}\""
        ));
        let want = format!("scheme {scheme}:// is not one of libvirt's ESX driver schemes");
        assert!(err.contains(&want), "{err}");
    }
}
