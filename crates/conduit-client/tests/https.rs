//! The client over `https://` against a small rustls server on a std thread (an implementation other than
//! Conduit's own loop): trust from a CA file, a root store or a whole configuration; reconnection with
//! `Last-Event-ID` over TLS; certificates refused at once with a typed error, even on a reconnection.
#![cfg(feature = "tls")]

mod common;
#[path = "../../conduit-net/tests/common/pki.rs"]
mod pki;

use common::{accept_before, read_request_head};
use conduit_client::rustls::crypto::ring;
use conduit_client::rustls::pki_types::pem::PemObject;
use conduit_client::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use conduit_client::rustls::{
    CertificateError, ClientConfig, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};
use conduit_client::{ClientError, EventSource, EventSourceBuilder};
use pki::TestPki;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// Bounds every wait on both sides.
const TIMEOUT: Duration = Duration::from_secs(5);
const FAST_RETRY: Duration = Duration::from_millis(20);

type ServerStream = StreamOwned<ServerConnection, TcpStream>;

/// Answers one connection after its handshake and request head.
type Responder = Box<dyn FnOnce(&mut ServerStream) + Send>;

/// What the server saw of one connection.
#[derive(Debug)]
enum Attempt {
    /// The handshake completed and a request head arrived.
    Request { head: String, sni: Option<String>, alpn: Option<Vec<u8>> },
    /// The handshake failed; what rustls said on the server's side.
    Refused(String),
}

impl Attempt {
    fn last_event_id(&self) -> Option<String> {
        let Attempt::Request { head, .. } = self else { panic!("no request: {self:?}") };
        head.lines()
            .find_map(|line| line.strip_prefix("Last-Event-ID: ").or_else(|| line.strip_prefix("last-event-id: ")))
            .map(str::to_owned)
    }
}

/// A TLS server on 127.0.0.1 that serves its connections in order, each with its own certificate and
/// responder, and reports what it saw of each.
struct TlsServer {
    addr: SocketAddr,
    attempts: mpsc::Receiver<Attempt>,
}

impl TlsServer {
    fn start(connections: Vec<(Arc<ServerConfig>, Responder)>) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (tx, attempts) = mpsc::channel();
        thread::spawn(move || {
            let deadline = Instant::now() + 4 * TIMEOUT;
            for (config, responder) in connections {
                let Some(socket) = accept_before(&listener, deadline, TIMEOUT) else {
                    return;
                };
                let mut stream = StreamOwned::new(ServerConnection::new(config).unwrap(), socket);
                let attempt = match handshake(&mut stream) {
                    Ok(()) => {
                        let Some(head) = read_request_head(&mut stream) else {
                            return;
                        };
                        Attempt::Request {
                            head,
                            sni: stream.conn.server_name().map(str::to_owned),
                            alpn: stream.conn.alpn_protocol().map(<[u8]>::to_vec),
                        }
                    }
                    Err(e) => Attempt::Refused(e.to_string()),
                };
                let refused = matches!(attempt, Attempt::Refused(_));
                if tx.send(attempt).is_err() {
                    return;
                }
                if !refused {
                    responder(&mut stream);
                }
            }
        });
        TlsServer { addr, attempts }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }

    /// What the server saw of its next connection.
    fn next_attempt(&self) -> Attempt {
        self.attempts.recv_timeout(2 * TIMEOUT).expect("no connection reached the server")
    }

    /// Asserts that no further connection arrives within `wait`.
    fn assert_quiet(&self, wait: Duration) {
        if let Ok(attempt) = self.attempts.recv_timeout(wait) {
            panic!("an unexpected connection: {attempt:?}");
        }
    }
}

/// Completes the server's side of the handshake.
fn handshake(stream: &mut ServerStream) -> std::io::Result<()> {
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(())
}

/// The server's configuration presenting `pki`'s leaf.
fn server_config(pki: &TestPki) -> Arc<ServerConfig> {
    let chain = vec![CertificateDer::from_pem_slice(pki.leaf_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.leaf_key_pem.as_bytes()).unwrap();
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A root store holding `pki`'s CA.
fn roots(pki: &TestPki) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der.clone())).unwrap();
    roots
}

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("conduit-client-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to the file `name` in it and returns its path.
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A GET builder with bounded timeouts and quick reconnection.
fn client(url: &str) -> EventSourceBuilder {
    EventSource::get(url).connect_timeout(TIMEOUT).read_timeout(Some(TIMEOUT)).default_retry(FAST_RETRY)
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";

/// `text` as one chunk of a chunked body.
fn chunk(text: &str) -> Vec<u8> {
    format!("{:x}\r\n{text}\r\n", text.len()).into_bytes()
}

/// How a responder ends its connection.
#[derive(Clone, Copy)]
enum End {
    /// The chunked terminator, then `close_notify`.
    Clean,
    /// TCP closed in the middle of the body, without `close_notify`.
    Cut,
}

/// A 200 event stream with `body`, ended as `end` says.
fn stream(body: &'static str, end: End) -> Responder {
    Box::new(move |s: &mut ServerStream| {
        s.write_all(SSE_HEAD).unwrap();
        s.write_all(&chunk(body)).unwrap();
        match end {
            End::Clean => {
                s.write_all(b"0\r\n\r\n").unwrap();
                s.conn.send_close_notify();
                s.flush().unwrap();
            }
            End::Cut => {
                s.flush().unwrap();
                s.sock.shutdown(Shutdown::Both).unwrap();
            }
        }
    })
}

/// `204 No Content`: stop reconnecting.
fn no_content() -> Responder {
    Box::new(|s: &mut ServerStream| {
        s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").unwrap();
        s.conn.send_close_notify();
        s.flush().unwrap();
    })
}

#[test]
fn reads_a_stream_over_https_with_the_trust_it_is_given() {
    let pki = TestPki::new();
    let dir = TempDir::new("https-reads");
    let ca_path = dir.file("ca.pem", &pki.ca_pem);
    let whole_config = {
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(&pki))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    };
    type Trust<'a> = Box<dyn Fn(EventSourceBuilder) -> EventSourceBuilder + 'a>;
    let trusts: Vec<(&str, Trust<'_>)> = vec![
        ("a CA file", Box::new(move |b| b.tls_ca_file(ca_path.clone()))),
        ("a root store", Box::new(|b| b.tls_roots(roots(&pki)))),
        ("a whole configuration", Box::new(move |b| b.tls_config(Arc::clone(&whole_config)))),
    ];
    for (what, trust) in trusts {
        let server = TlsServer::start(vec![
            (server_config(&pki), stream("retry: 20\nid: 1\ndata: one\n\nid: 2\ndata: two\n\n", End::Clean)),
            (server_config(&pki), no_content()),
        ]);
        let events = trust(client(&server.url("/events"))).connect().unwrap_or_else(|e| panic!("{what}: {e}"));
        let got: Vec<(String, String)> = events.map(|e| e.unwrap()).map(|e| (e.last_event_id, e.data)).collect();
        assert_eq!(got, [("1".into(), "one".into()), ("2".into(), "two".into())], "{what}");

        let Attempt::Request { head, sni, alpn } = server.next_attempt() else { panic!("{what}: refused") };
        assert!(head.starts_with("GET /events HTTP/1.1\r\n"), "{what}: {head}");
        assert!(head.contains(&format!("Host: localhost:{}\r\n", server.addr.port())), "{what}: {head}");
        assert_eq!(sni.as_deref(), Some("localhost"), "{what}: the URL's host goes out as SNI");
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "{what}");
        assert_eq!(server.next_attempt().last_event_id().as_deref(), Some("2"), "{what}");
    }
}

#[test]
fn reconnects_over_https_with_last_event_id() {
    let pki = TestPki::new();
    let server = TlsServer::start(vec![
        // Cut after event 3, in the middle of event 4, which must be dropped.
        (
            server_config(&pki),
            stream("retry: 20\nid: 1\ndata: 1\n\nid: 2\ndata: 2\n\nid: 3\ndata: 3\n\nid: 4\nda", End::Cut),
        ),
        (server_config(&pki), stream("id: 4\ndata: 4\n\nid: 5\ndata: 5\n\n", End::Clean)),
        (server_config(&pki), no_content()),
    ]);
    let mut events = client(&server.url("/count")).tls_roots(roots(&pki)).connect().unwrap();
    let mut ids = Vec::new();
    while let Some(event) = events.next_event().unwrap() {
        assert_eq!(event.data, event.last_event_id);
        ids.push(event.last_event_id);
    }
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    assert_eq!(events.reconnects(), 1, "one reopened stream; the 204 ends it");
    let sent: Vec<Option<String>> = (0..3).map(|_| server.next_attempt().last_event_id()).collect();
    assert_eq!(sent, [None, Some("3".to_owned()), Some("5".to_owned())]);
}

/// Which certificate error a refusal must carry.
fn is_expected(error: &CertificateError, expected: &str) -> bool {
    match expected {
        "unknown issuer" => matches!(error, CertificateError::UnknownIssuer),
        "wrong name" => {
            matches!(error, CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })
        }
        "expired" => matches!(error, CertificateError::Expired | CertificateError::ExpiredContext { .. }),
        _ => unreachable!("{expected}"),
    }
}

#[test]
fn certificates_not_trusted_are_refused_at_once_with_a_typed_error() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let elsewhere = TestPki::for_names(&["example.org"]);
    let expired = TestPki::expired();
    let cases: Vec<(&str, &TestPki, Option<&TestPki>, &str)> = vec![
        ("a leaf from a CA the client does not trust", &stranger, Some(&pki), "unknown issuer"),
        ("a leaf for another name", &elsewhere, Some(&elsewhere), "wrong name"),
        ("an expired leaf", &expired, Some(&expired), "expired"),
        ("the default roots, which know no test CA", &pki, None, "unknown issuer"),
    ];
    for (what, presented, trusted, expected) in cases {
        let server = TlsServer::start(vec![(server_config(presented), stream("data: never\n\n", End::Clean))]);
        let mut builder = client(&server.url("/events"));
        if let Some(trusted) = trusted {
            builder = builder.tls_roots(roots(trusted));
        }
        let err = builder.connect().unwrap_err();
        match &err {
            ClientError::Certificate(cert) => assert!(is_expected(cert, expected), "{what}: {cert:?}"),
            other => panic!("{what}: {other:?}"),
        }
        assert!(err.to_string().starts_with("the server's TLS certificate was refused: "), "{err}");
        // The client told the server why, with an alert.
        match server.next_attempt() {
            Attempt::Refused(reason) => assert!(reason.contains("alert"), "{what}: {reason}"),
            request => panic!("{what}: the server completed a handshake: {request:?}"),
        }
    }
}

#[test]
fn a_certificate_refused_on_reconnection_ends_the_stream() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let server = TlsServer::start(vec![
        (server_config(&pki), stream("retry: 20\nid: 1\ndata: one\n\n", End::Cut)),
        // The same address now presents a certificate the client does not trust.
        (server_config(&stranger), no_content()),
        (server_config(&pki), stream("id: 2\ndata: never\n\n", End::Clean)),
    ]);
    // Reconnecting without limit: only the nature of the error can stop it.
    let mut events = client(&server.url("/events")).tls_roots(roots(&pki)).max_reconnects(None).connect().unwrap();
    assert_eq!(events.next_event().unwrap().map(|e| e.data).as_deref(), Some("one"));
    let err = events.next_event().unwrap_err();
    assert!(matches!(err, ClientError::Certificate(CertificateError::UnknownIssuer)), "{err:?}");
    assert!(events.next_event().unwrap().is_none(), "the stream is over");
    assert!(matches!(server.next_attempt(), Attempt::Request { .. }));
    assert!(matches!(server.next_attempt(), Attempt::Refused(_)));
    server.assert_quiet(10 * FAST_RETRY);
}

#[test]
fn unusable_ca_files_are_typed_errors_naming_the_file() {
    let pki = TestPki::new();
    let dir = TempDir::new("https-ca-files");
    for (path, message) in [
        (dir.0.join("missing.pem"), "cannot read CA file"),
        (dir.file("empty.pem", ""), "no PEM certificate in CA file"),
        (dir.file("key-only.pem", &pki.leaf_key_pem), "no PEM certificate in CA file"),
        (dir.0.clone(), "cannot read CA file"),
    ] {
        // Refused before connecting: nothing listens on this port.
        let err = client("https://127.0.0.1:9/events").tls_ca_file(path.clone()).connect().unwrap_err();
        let ClientError::TlsConfig(text) = &err else { panic!("{path:?}: {err:?}") };
        assert!(text.contains(message) && text.contains(&path.display().to_string()), "{text}");
    }
}
