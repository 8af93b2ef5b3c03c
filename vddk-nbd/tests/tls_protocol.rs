//! NBD_OPT_STARTTLS byte by byte: a raw client speaks plain NBD up to
//! STARTTLS, then a rustls client takes over the same socket. Checks the
//! three modes, the replies the spec asks for, state forgotten at the
//! upgrade, bytes pipelined behind STARTTLS, the handshake timeout, and
//! close_notify after NBD_CMD_DISC.

mod nbd_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nbd_common::{memory, TestServer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use vddk_nbd::plugins::MemoryBackend;
use vddk_nbd::tls::{Tls, TlsMode};
use vddk_nbd::ServerConfig;
use vddk_tests::certs;
use vddk_tests::images::noise;
use vddk_tests::nbd::rawclient::{Raw as RawClient, *};

const REP_ERR_TLS_REQD: u32 = (1 << 31) + 5;

/// One set of certificates for every test in this file.
fn certs() -> &'static certs::Certs {
    static CERTS: OnceLock<certs::Certs> = OnceLock::new();
    CERTS.get_or_init(|| certs::make(&vddk_tests::scratch_dir("tls-proto-certs")))
}

fn server(name: &str, mode: TlsMode, timeout: Duration) -> (TestServer, Arc<MemoryBackend>) {
    let tls = match mode {
        TlsMode::Off => None,
        m => Some(Tls::load(m, &certs().server, false).expect("load the test certificates")),
    };
    let disk = memory(1 << 20);
    disk.fill(0, &noise(4096, 7));
    let config = ServerConfig {
        tls,
        handshake_timeout: timeout,
        ..ServerConfig::default()
    };
    (TestServer::unix(name, disk.clone(), config), disk)
}

type TlsStream = StreamOwned<ClientConnection, UnixStream>;

/// Sends STARTTLS, expects its ACK, and runs the TLS handshake as a
/// client trusting the test CA.
fn starttls(mut c: RawClient) -> TlsStream {
    c.option(OPT_STARTTLS, &[]);
    assert_eq!(c.opt_reply(), (OPT_STARTTLS, REP_ACK, vec![]));
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(certs().server.join("ca-cert.pem")).expect("CA");
    roots.add(ca).expect("add the CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let mut s = StreamOwned::new(conn, c.s);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .expect("TLS handshake with the server");
    }
    s
}

fn send_option(s: &mut impl Write, opt: u32, payload: &[u8]) {
    let mut b = RawClient::option_header(opt, payload.len() as u32);
    b.extend_from_slice(payload);
    s.write_all(&b).expect("send an option");
}

fn read_exact(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("read from the server");
    b
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn opt_reply(s: &mut impl Read) -> OptReply {
    let h = read_exact(s, 20);
    assert_eq!(&h[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
    let len = be32(&h[16..]) as usize;
    (be32(&h[8..]), be32(&h[12..]), read_exact(s, len))
}

/// Replies up to the first that is not SERVER, INFO or META_CONTEXT.
fn opt_replies(s: &mut impl Read) -> Vec<OptReply> {
    let mut v = Vec::new();
    loop {
        let r = opt_reply(s);
        let last = !matches!(r.1, REP_SERVER..=REP_META);
        v.push(r);
        if last {
            return v;
        }
    }
}

fn connect(socket: &Path) -> RawClient {
    RawClient::start(socket)
}

#[test]
fn require_answers_tls_reqd_until_starttls() {
    let (srv, _) = server(
        "tls-proto-require",
        TlsMode::Require,
        Duration::from_secs(60),
    );
    let mut c = connect(&srv.socket);
    for (opt, payload) in [
        (OPT_GO, RawClient::info_payload(b"", &[])),
        (OPT_LIST, Vec::new()),
        (OPT_INFO, RawClient::info_payload(b"", &[1])),
        (OPT_STRUCTURED_REPLY, Vec::new()),
        (OPT_LIST_META, RawClient::meta_payload("", &[])),
        (0x4242, b"unknown".to_vec()),
    ] {
        c.option(opt, &payload);
        let (o, t, msg) = c.opt_reply();
        assert_eq!((o, t), (opt, REP_ERR_TLS_REQD), "option {opt}");
        assert!(
            String::from_utf8_lossy(&msg).contains("requires TLS"),
            "the refusal says why: {msg:?}"
        );
    }
    c.option(OPT_ABORT, &[]);
    assert_eq!(c.opt_reply(), (OPT_ABORT, REP_ACK, vec![]));
    assert!(c.closed(), "the server hangs up after ABORT");

    // EXPORT_NAME cannot be refused with a reply: the server hangs up.
    let mut c = connect(&srv.socket);
    c.option(OPT_EXPORT_NAME, b"");
    assert!(
        c.closed(),
        "EXPORT_NAME without TLS must close, sending nothing"
    );
}

#[test]
fn off_refuses_starttls_and_on_serves_plain_clients() {
    let (off, _) = server("tls-proto-off", TlsMode::Off, Duration::from_secs(60));
    let mut c = connect(&off.socket);
    c.option(OPT_STARTTLS, &[]);
    assert_eq!(c.opt_reply().1, REP_ERR_UNSUP);
    // The connection stays usable in plain text.
    c.go_now();
    c.request(CMD_DISC, 0, 1, 0, 0, &[]);
    assert!(c.closed());

    let (on, _) = server("tls-proto-on", TlsMode::On, Duration::from_secs(60));
    served_normally(&on.socket);
}

#[test]
fn starttls_twice_is_invalid_and_transmission_runs_over_tls() {
    let (srv, disk) = server(
        "tls-proto-upgrade",
        TlsMode::Require,
        Duration::from_secs(60),
    );
    let mut c = connect(&srv.socket);
    c.option(OPT_STARTTLS, b"junk");
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID, "STARTTLS takes no data");
    let mut s = starttls(c);

    send_option(&mut s, OPT_STARTTLS, &[]);
    let (o, t, _) = opt_reply(&mut s);
    assert_eq!((o, t), (OPT_STARTTLS, REP_ERR_INVALID), "STARTTLS twice");
    send_option(&mut s, OPT_LIST, &[]);
    let r = opt_replies(&mut s);
    assert_eq!(r.last().map(|r| r.1), Some(REP_ACK), "LIST over TLS: {r:?}");
    send_option(&mut s, OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(opt_reply(&mut s).1, REP_ACK);
    send_option(&mut s, OPT_GO, &RawClient::info_payload(b"", &[]));
    let r = opt_replies(&mut s);
    assert_eq!(r.last().map(|r| r.1), Some(REP_ACK), "GO over TLS: {r:?}");

    // A write and a read back, larger than one TLS record.
    let data = noise(256 * 1024, 11);
    let mut req = Vec::new();
    req.request(CMD_WRITE, F_FUA, 5, 65536, data.len() as u32, &data);
    s.write_all(&req).expect("send a write");
    let h = read_exact(&mut s, 16);
    assert_eq!((be32(&h), be32(&h[4..])), (SIMPLE_MAGIC, 0), "write done");
    assert_eq!(disk.contents(65536, data.len()), data);
    let mut req = Vec::new();
    req.request(CMD_READ, 0, 6, 0, 4096, &[]);
    s.write_all(&req).expect("send a read");
    let h = read_exact(&mut s, 20);
    assert_eq!(be32(&h), STRUCTURED_MAGIC);
    let payload = read_exact(&mut s, be32(&h[16..]) as usize);
    assert_eq!(&payload[8..], &noise(4096, 7)[..]);

    // DISC: the server ends TLS with close_notify, which rustls reports
    // as a clean end (Ok(0)) rather than UnexpectedEof.
    let mut req = Vec::new();
    req.request(CMD_DISC, 0, 7, 0, 0, &[]);
    s.write_all(&req).expect("send DISC");
    let mut b = [0u8; 1];
    let end = s.read(&mut b);
    assert!(
        matches!(end, Ok(0)),
        "expected close_notify then end of stream, got {end:?}"
    );
}

#[test]
fn plain_text_options_are_forgotten_at_starttls() {
    let (srv, _) = server("tls-proto-forget", TlsMode::On, Duration::from_secs(60));
    let mut c = connect(&srv.socket);
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    let mut s = starttls(c);
    send_option(&mut s, OPT_GO, &RawClient::info_payload(b"", &[]));
    assert_eq!(opt_replies(&mut s).last().map(|r| r.1), Some(REP_ACK));
    // Structured replies were agreed in plain text only: a read gets a
    // simple reply.
    let mut req = Vec::new();
    req.request(CMD_READ, 0, 9, 0, 512, &[]);
    s.write_all(&req).expect("send a read");
    let h = read_exact(&mut s, 16);
    assert_eq!(
        be32(&h),
        SIMPLE_MAGIC,
        "structured replies were not renegotiated"
    );
    assert_eq!(be32(&h[4..]), 0);
    assert_eq!(read_exact(&mut s, 512), noise(4096, 7)[..512]);
}

#[test]
fn bytes_pipelined_behind_starttls_drop_the_connection() {
    let (srv, _) = server(
        "tls-proto-pipelined",
        TlsMode::Require,
        Duration::from_secs(60),
    );
    let mut c = connect(&srv.socket);
    let mut b = RawClient::option_header(OPT_STARTTLS, 0);
    b.extend(RawClient::option_header(OPT_LIST, 0));
    c.send(&b);
    assert!(
        c.closed(),
        "plain bytes behind STARTTLS must drop the connection without an ACK"
    );
    srv.wait_idle();
}

#[test]
fn garbage_instead_of_a_tls_handshake_is_dropped() {
    let (srv, _) = server("tls-proto-garbage", TlsMode::On, Duration::from_secs(60));
    let mut c = connect(&srv.socket);
    c.option(OPT_STARTTLS, &[]);
    assert_eq!(c.opt_reply(), (OPT_STARTTLS, REP_ACK, vec![]));
    c.send(&RawClient::option_header(OPT_GO, 0));
    let mut rest = Vec::new();
    let _ = c.s.read_to_end(&mut rest);
    // At most a TLS alert (content type 21) comes back, never NBD bytes.
    assert!(
        rest.is_empty() || rest[0] == 21,
        "expected an alert or nothing, got {rest:?}"
    );
    srv.wait_idle();
    served_normally(&srv.socket);
}

#[test]
fn handshake_timeout_covers_the_tls_handshake() {
    let (srv, _) = server("tls-proto-timeout", TlsMode::On, Duration::from_secs(1));
    let mut c = connect(&srv.socket);
    c.option(OPT_STARTTLS, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    // The start of a ClientHello, then nothing.
    c.send(&[0x16, 0x03, 0x01]);
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "a stalled TLS handshake must be dropped"
    );
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "dropped after {waited:?}, expected about 1 s"
    );
}

#[test]
fn shutdown_ends_tls_connections_with_close_notify() {
    let (srv, _) = server(
        "tls-proto-shutdown",
        TlsMode::Require,
        Duration::from_secs(60),
    );
    let mut s = starttls(connect(&srv.socket));
    send_option(&mut s, OPT_GO, &RawClient::info_payload(b"", &[]));
    assert_eq!(opt_replies(&mut s).last().map(|r| r.1), Some(REP_ACK));
    let mut req = Vec::new();
    req.request(CMD_READ, 0, 3, 0, 512, &[]);
    s.write_all(&req).expect("send a read");
    assert_eq!(read_exact(&mut s, 16)[..4], SIMPLE_MAGIC.to_be_bytes());
    read_exact(&mut s, 512);
    srv.begin_shutdown();
    let mut b = [0u8; 1];
    let end = s.read(&mut b);
    assert!(matches!(end, Ok(0)), "expected close_notify, got {end:?}");
    srv.stop();
}
