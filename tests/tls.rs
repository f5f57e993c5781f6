//! Conduit serving HTTPS on its own loop, with certificates made at test time: the example with
//! `--tls-cert`/`--tls-key` read by curl, conduit-client reading and resuming over TLS, CORS telling `https`
//! pages from `http` ones, and what goes wrong in TLS (plaintext sent to the port, a stalled handshake, a
//! certificate the client refuses) ending that connection alone, counted as `tls_handshake`.

mod common;
#[path = "../crates/conduit-net/tests/common/pki.rs"]
mod pki;
#[allow(dead_code)]
#[path = "../examples/sse_simple_server/main.rs"]
mod example;

use common::{ExampleProcess, TIMEOUT, connect, ids, local_config, metric, spawn_with_hub, wait_until};
use conduit::client::rustls::crypto::ring;
use conduit::client::rustls::pki_types::{CertificateDer, ServerName};
use conduit::client::rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use conduit::client::{ClientError, EventSource};
use conduit::server::{CorsConfig, Hub, HubConfig, Metrics, ServerConfig, SpawnedServer, TlsConfig};
use pki::TestPki;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token";
const TLS_HANDSHAKE_DISCONNECTS: &str = "conduit_disconnects_total{reason=\"tls_handshake\"}";

/// The example's routes over TLS with `pki`'s leaf, in process, counting into the returned registry.
fn serve(pki: &TestPki, configure: impl FnOnce(ServerConfig) -> ServerConfig) -> (SpawnedServer, Metrics) {
    let tls = TlsConfig::from_pem(pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes()).unwrap();
    let metrics = Metrics::new();
    let config = configure(ServerConfig { tls: Some(tls), metrics: Some(metrics.clone()), ..local_config() });
    let hub = Hub::new(HubConfig::default());
    (spawn_with_hub(config, example::router(TOKEN, &hub), &hub), metrics)
}

/// A rustls client that trusts `pki`'s CA alone and offers ALPN `http/1.1`, as browsers do.
fn client_config(pki: &TestPki) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der.clone())).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Sends `GET target` with `headers` and `Connection: close` over TLS to `localhost`, and reads the whole
/// response, which must end with the server's `close_notify`.
fn https_get(addr: SocketAddr, pki: &TestPki, target: &str, headers: &[(&str, &str)]) -> String {
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = StreamOwned::new(ClientConnection::new(client_config(pki), name).unwrap(), connect(addr));
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n", addr.port());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    tls.write_all(format!("{request}\r\n").as_bytes()).expect("write the request over TLS");
    let mut response = String::new();
    tls.read_to_string(&mut response).expect("a response ended by close_notify");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    response
}

/// The `tls_handshake` disconnects counted so far.
fn tls_handshake_disconnects(metrics: &Metrics) -> f64 {
    metric(&metrics.render(), TLS_HANDSHAKE_DISCONNECTS).expect("the series is rendered")
}

/// The example as a process with `--tls-cert`/`--tls-key`: curl trusting the test CA reads `/count`; curl
/// without it refuses the certificate, and plaintext HTTP gets no answer; both are counted in `/metrics`.
#[test]
fn curl_reads_count_over_tls_from_the_example() {
    let pki = TestPki::new();
    let files = pki.write_files("curl");
    let (cert, key, ca) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap(), files.ca.to_str().unwrap());
    let args = ["--token", TOKEN, "--tls-cert", cert, "--tls-key", key, "--allowed-host", "localhost"];
    let server = ExampleProcess::start(&args);
    assert_eq!(server.scheme, "https", "the example logs an https:// address");
    let port = server.addr.port();
    // The certificate is for localhost; --resolve keeps curl on 127.0.0.1 whatever localhost resolves to.
    let resolve = format!("localhost:{port}:127.0.0.1");
    let curl = |args: &[&str]| -> Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--resolve", &resolve])
            .args(args)
            .output()
            .expect("curl runs")
    };
    let url = |scheme: &str, path: &str| format!("{scheme}://localhost:{port}{path}");

    let out = curl(&["-N", "--cacert", ca, &url("https", "/count?n=3&interval_ms=0")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(ids(&out.stdout), [1, 2, 3], "{out:?}");
    let body = String::from_utf8(out.stdout).unwrap();
    assert!(
        body.contains("data: {\"count\":3}\n\n") && body.ends_with("event: done\ndata: {\"status\":\"complete\"}\n\n")
    );

    // Plaintext HTTP to the TLS port: no HTTP answer, only the TLS alert before the close, which curl takes
    // for an HTTP/0.9 reply and refuses.
    let out = curl(&[&url("http", "/count?n=1&interval_ms=0")]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    // Without the test CA curl refuses the certificate (60) and tells the server with an alert.
    let out = curl(&[&url("https", "/count?n=1&interval_ms=0")]);
    assert_eq!(out.status.code(), Some(60), "{out:?}");

    let scrape = || {
        let out = curl(&["--cacert", ca, &url("https", "/metrics")]);
        assert!(out.status.success(), "{out:?}");
        metric(&String::from_utf8(out.stdout).unwrap(), TLS_HANDSHAKE_DISCONNECTS)
    };
    wait_until("both failed handshakes are counted", || scrape() == Some(2.0));
}

/// Whether a TLS handshake with the server at `addr`, as `localhost`, succeeds for a client trusting `pki`.
fn handshake_succeeds(addr: SocketAddr, pki: &TestPki) -> bool {
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = ClientConnection::new(client_config(pki), name).unwrap();
    let mut socket = connect(addr);
    while tls.is_handshaking() {
        if tls.complete_io(&mut socket).is_err() {
            return false;
        }
    }
    true
}

/// A certificate renewed on disk while the example runs (`--tls-reload-interval 1`): new connections get it
/// within the interval, without a restart, and a client that trusts only the old one is refused from then on.
#[test]
fn the_example_serves_a_renewed_certificate_without_a_restart() {
    let (old, renewed) = (TestPki::new(), TestPki::new());
    let files = old.write_files("reload");
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let args = ["--token", TOKEN, "--tls-cert", cert, "--tls-key", key, "--tls-reload-interval", "1"];
    let server = ExampleProcess::start(&[&args[..], &["--allowed-host", "localhost"]].concat());
    let addr = server.addr;
    assert!(https_get(addr, &old, "/healthz", &[]).starts_with("HTTP/1.1 200"));
    assert!(!handshake_succeeds(addr, &renewed), "the renewed certificate is not on disk yet");

    // A renewal as ACME clients make it: the new files written over the old ones, the key last.
    std::fs::write(&files.cert, &renewed.leaf_pem).unwrap();
    std::fs::write(&files.key, &renewed.leaf_key_pem).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !handshake_succeeds(addr, &renewed) {
        assert!(Instant::now() < deadline, "the renewed certificate was not served within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(https_get(addr, &renewed, "/healthz", &[]).starts_with("HTTP/1.1 200"));
    assert!(!handshake_succeeds(addr, &old), "the old certificate is no longer presented");
}

/// conduit-client over TLS, trusting the test CA from a file: `/count?drop_after=2` drops each connection after
/// two events, and the client reconnects over TLS with `Last-Event-ID` until it has every count exactly once.
#[test]
fn the_client_reads_over_tls_and_resumes_with_last_event_id() {
    let pki = TestPki::new();
    let files = pki.write_files("client-resume");
    let (server, metrics) = serve(&pki, |c| c);
    let url = format!("https://localhost:{}/count?n=6&interval_ms=0&drop_after=2", server.local_addr().port());
    let mut events = EventSource::get(&url)
        .tls_ca_file(&files.ca)
        .read_timeout(Some(TIMEOUT))
        .max_reconnects(Some(3))
        .connect()
        .expect("connect over TLS");
    let mut counts = Vec::new();
    while let Some(event) = events.next_event().expect("events over TLS") {
        match event.event_type.as_str() {
            "counter" => counts.push((event.last_event_id.clone(), event.data.clone())),
            "done" => break,
            other => panic!("unexpected event {other}: {event:?}"),
        }
    }
    let expected: Vec<_> = (1..=6).map(|i| (i.to_string(), format!("{{\"count\":{i}}}"))).collect();
    assert_eq!(counts, expected, "every count once, in order, across the drops");
    assert_eq!(events.reconnects(), 2, "three connections of two events each");
    events.close();
    assert_eq!(tls_handshake_disconnects(&metrics), 0.0);
}

/// On a TLS listener the server's origin is `https://`: a page served over plain `http` on the same host and
/// port is another origin and meets the allow list, while the `https` page is same-origin.
#[test]
fn cors_on_a_tls_listener_compares_the_scheme() {
    let pki = TestPki::new();
    let (server, _) =
        serve(&pki, |c| ServerConfig { cors: Some(CorsConfig::allow_origins(["https://app.test"])), ..c });
    let addr = server.local_addr();
    let own = format!("localhost:{}", addr.port());
    for (origin, status, allow_origin) in [
        (format!("https://{own}"), "200", None),
        (format!("http://{own}"), "403", None),
        ("https://app.test".to_owned(), "200", Some("https://app.test")),
    ] {
        let response = https_get(addr, &pki, "/count?n=1&interval_ms=0", &[("Origin", &origin)]);
        let status_line = response.lines().next().unwrap_or_default();
        assert!(status_line.starts_with(&format!("HTTP/1.1 {status} ")), "Origin {origin}: {response}");
        let header = response.lines().find_map(|l| l.strip_prefix("Access-Control-Allow-Origin: "));
        assert_eq!(header, allow_origin, "Origin {origin}: {response}");
    }
}

/// Plaintext HTTP sent to the TLS port never reaches the router: the connection is closed with at most a TLS
/// alert, and counted as a failed handshake.
#[test]
fn plaintext_sent_to_the_tls_port_is_closed_and_counted() {
    let pki = TestPki::new();
    let (server, metrics) = serve(&pki, |c| c);
    let mut plain = connect(server.local_addr());
    plain.write_all(b"GET /count?n=1&interval_ms=0 HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer); // EOF, or a reset after the alert
    assert!(answer.is_empty() || answer[0] == 0x15, "only a TLS alert record may come back: {answer:?}");
    wait_until("the failed handshake is counted", || tls_handshake_disconnects(&metrics) == 1.0);
    wait_until("the connection is gone", || server.handle().connections() == 0);
    assert_eq!(server.handle().requests(), 0, "no request was parsed");
}

/// A client that sends half a ClientHello and stalls is cut at the handshake deadline, and the other clients
/// are served meanwhile.
#[test]
fn a_stalled_handshake_is_cut_at_the_deadline() {
    let pki = TestPki::new();
    let deadline = Duration::from_millis(300);
    let (server, metrics) = serve(&pki, |c| {
        let tls = c.tls.map(|t| t.with_handshake_timeout(deadline));
        ServerConfig { tls, ..c }
    });
    let mut hello = Vec::new();
    let name = ServerName::try_from("localhost").unwrap();
    ClientConnection::new(client_config(&pki), name).unwrap().write_tls(&mut hello).unwrap();
    let mut stalled = connect(server.local_addr());
    let started = Instant::now();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();

    let response = https_get(server.local_addr(), &pki, "/count?n=1&interval_ms=0", &[]);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest); // EOF, or a reset
    let waited = started.elapsed();
    assert!(waited >= deadline, "cut after {waited:?}, before the {deadline:?} deadline");
    assert!(waited < TIMEOUT, "cut only after {waited:?}");
    assert!(rest.is_empty() || rest[0] == 0x15, "only a TLS alert record may come back: {rest:?}");
    wait_until("the stalled handshake is counted", || tls_handshake_disconnects(&metrics) == 1.0);
}

/// A server certificate the client does not accept is refused at once with a typed error that says so, and
/// the server counts the handshake the client aborted.
#[test]
fn certificates_the_client_refuses_end_with_a_clear_error() {
    let (stranger, trusted) = (TestPki::new(), TestPki::new());
    let elsewhere = TestPki::for_names(&["example.org"]);
    let expired = TestPki::expired();
    // What the server presents, and whose CA the client's CA file holds: for the wrong name and the expired
    // leaf their own, so that the certificate is refused for its name or its dates, not for its issuer.
    for (what, presented, trusted, expected) in [
        ("a leaf of a CA the client does not trust", &stranger, &trusted, "UnknownIssuer"),
        ("a leaf for another name", &elsewhere, &elsewhere, "NotValidForName"),
        ("an expired leaf", &expired, &expired, "Expired"),
    ] {
        let (server, metrics) = serve(presented, |c| c);
        let files = trusted.write_files(&format!("refused-{expected}"));
        let url = format!("https://localhost:{}/count?n=1", server.local_addr().port());
        let error = EventSource::get(&url).tls_ca_file(&files.ca).connect().expect_err(what);
        let ClientError::Certificate(refusal) = &error else { panic!("{what}: {error:?}") };
        let kind = match refusal {
            CertificateError::UnknownIssuer => "UnknownIssuer",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => "NotValidForName",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "Expired",
            other => panic!("{what}: {other:?}"),
        };
        assert_eq!(kind, expected, "{what}");
        let message = error.to_string();
        assert!(message.starts_with("the server's TLS certificate was refused: "), "{what}: {message}");
        wait_until("the aborted handshake is counted", || tls_handshake_disconnects(&metrics) == 1.0);
    }
}
