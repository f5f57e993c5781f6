//! The event loop serving TLS over loopback: handlers see plaintext exactly as over TCP, with the same write
//! queue, and whatever goes wrong in TLS ends that connection alone, with a reason that says what.
#![cfg(feature = "tls")]

mod common;

use common::tls::{TestPki, TlsEnds, TlsStream, handshake, read_to_close_notify, tls_connect, tls_over};
use common::{Msg, assert_counter_pattern, connect, connect_small_rcvbuf, control, counter_bytes, poll_until, start};
use conduit_net::rustls::pki_types::pem::PemObject;
use conduit_net::rustls::pki_types::{CertificateDer, ServerName};
use conduit_net::rustls::{self, AlertDescription, CertificateError, ClientConnection};
use conduit_net::{CloseReason, ConnId, Context, Handler, LoopConfig, QueueFull, TlsFailure, WriteError};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// What the handler does with its connections.
#[derive(Clone, Copy)]
enum Mode {
    /// Writes every byte back.
    Echo,
    /// On the first input, writes `total` bytes of the counter pattern in writes of `block` bytes as fast as the
    /// queue takes them, goes on each time the queue drains, and closes gracefully at the end.
    Flood { total: usize, block: usize },
    /// Answers any input with `goodbye`, then closes gracefully (`close_after_flush`).
    Goodbye,
    /// Answers any input with `goodbye`, then closes at once (`close`).
    Abort,
}

/// What the handler saw.
#[derive(Default)]
struct Seen {
    connects: Vec<ConnId>,
    /// Plaintext received, per connection.
    input: HashMap<ConnId, Vec<u8>>,
    closes: Vec<(ConnId, CloseReason)>,
    /// Writes refused, with what `queued()` said at that moment.
    refused: Vec<(WriteError, usize)>,
    drained: usize,
}

struct Probe {
    mode: Mode,
    seen: Arc<Mutex<Seen>>,
    /// Flood: bytes queued so far per connection.
    sent: HashMap<ConnId, usize>,
}

impl Probe {
    fn new(mode: Mode) -> (Self, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (Probe { mode, seen: Arc::clone(&seen), sent: HashMap::new() }, seen)
    }

    fn flood(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        let Mode::Flood { total, block } = self.mode else { return };
        let sent = self.sent.entry(conn).or_default();
        while *sent < total {
            let n = block.min(total - *sent);
            match cx.write_vec(conn, counter_bytes(*sent, n)) {
                Ok(()) => *sent += n,
                Err(e) => {
                    self.seen.lock().unwrap().refused.push((e, cx.queued(conn).unwrap_or(0)));
                    cx.notify_drained(conn);
                    return;
                }
            }
        }
        cx.close_after_flush(conn);
    }
}

impl Handler for Probe {
    type Message = Msg<()>;

    fn on_connect(&mut self, _cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        self.seen.lock().unwrap().connects.push(conn);
    }

    fn on_data(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId, data: &[u8]) {
        self.seen.lock().unwrap().input.entry(conn).or_default().extend_from_slice(data);
        match self.mode {
            Mode::Echo => {
                if let Err(e) = cx.write(conn, data) {
                    self.seen.lock().unwrap().refused.push((e, cx.queued(conn).unwrap_or(0)));
                    cx.close(conn);
                }
            }
            Mode::Flood { .. } => {
                if !self.sent.contains_key(&conn) {
                    self.flood(cx, conn);
                }
            }
            Mode::Goodbye => {
                cx.write(conn, b"goodbye").unwrap();
                cx.close_after_flush(conn);
            }
            Mode::Abort => {
                cx.write(conn, b"goodbye").unwrap();
                cx.close(conn);
            }
        }
    }

    fn on_drained(&mut self, cx: &mut Context<'_, Msg<()>>, conn: ConnId) {
        self.seen.lock().unwrap().drained += 1;
        self.flood(cx, conn);
    }

    fn on_message(&mut self, cx: &mut Context<'_, Msg<()>>, msg: Msg<()>) {
        let _ = control(cx, msg);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Msg<()>>, conn: ConnId, reason: CloseReason) {
        self.seen.lock().unwrap().closes.push((conn, reason));
    }
}

fn tls_config(pki: &TestPki) -> LoopConfig {
    LoopConfig { tls: Some(pki.server()), ..LoopConfig::default() }
}

/// Writes `bytes` and reads as many back.
fn tls_round_trip(stream: &mut TlsStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).expect("write");
    let mut back = vec![0u8; bytes.len()];
    stream.read_exact(&mut back).expect("read echo");
    back
}

/// Several clients at once, small messages and 1 MiB sent before reading a byte: the echo comes back intact
/// through records of every size, the handler saw exactly the plaintext sent, and ALPN chose `http/1.1`.
#[test]
fn tls_echo_carries_plaintext_both_ways() {
    let pki = TestPki::new();
    let (probe, seen) = Probe::new(Mode::Echo);
    let config = LoopConfig { write_queue_limit: 4 * MIB, ..tls_config(&pki) };
    let server = start(config, probe);
    let addr = server.addr;

    let clients: Vec<_> = (0..4)
        .map(|i| {
            let client = pki.client();
            thread::spawn(move || {
                let mut s = tls_connect(addr, &client);
                handshake(&mut s).expect("handshake");
                assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
                let mut sent = Vec::new();
                for round in 0..50 {
                    let msg = format!("client {i} round {round};").repeat(round % 7 + 1);
                    assert_eq!(tls_round_trip(&mut s, msg.as_bytes()), msg.as_bytes());
                    sent.extend_from_slice(msg.as_bytes());
                }
                // Far larger than one record (16 KiB), all written before any of the echo is read.
                let payload = counter_bytes(0, MIB);
                s.write_all(&payload).expect("write 1 MiB");
                let mut back = vec![0u8; MIB];
                s.read_exact(&mut back).expect("read 1 MiB back");
                assert_counter_pattern(&back, MIB);
                sent.extend_from_slice(&payload);
                sent
            })
        })
        .collect();
    let sent: Vec<Vec<u8>> = clients.into_iter().map(|t| t.join().unwrap()).collect();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.connects.len(), 4);
    let mut received: Vec<&Vec<u8>> = seen.connects.iter().map(|id| &seen.input[id]).collect();
    let mut expected: Vec<&Vec<u8>> = sent.iter().collect();
    received.sort();
    expected.sort();
    assert!(received == expected, "the handler saw other bytes than the clients' plaintext");
    assert!(seen.refused.is_empty(), "{:?}", seen.refused);
    drop(seen);
    server.stop();
}

/// A client that stops reading: the plaintext queue fills to its limit (the session holding only a bounded
/// amount beyond it), writes are refused with the limit in the error, `on_drained` follows once the client
/// reads again, and every byte arrives in order before a clean close.
#[test]
fn slow_tls_reader_fills_the_queue_then_drains() {
    let pki = TestPki::new();
    let total = 8 * MIB;
    let limit = 256 * KIB;
    let block = 16 * KIB;
    let (probe, seen) = Probe::new(Mode::Flood { total, block });
    let config = LoopConfig { write_queue_limit: limit, low_water: 16 * KIB, ..tls_config(&pki) };
    let server = start(config, probe);

    let mut s = tls_over(connect_small_rcvbuf(server.addr, 32 * KIB), &pki.client());
    handshake(&mut s).expect("handshake");
    s.write_all(b"go").unwrap();
    s.flush().unwrap();
    poll_until("a write is refused", || !seen.lock().unwrap().refused.is_empty());
    {
        let seen = seen.lock().unwrap();
        let (error, queued) = seen.refused[0];
        let WriteError::Full(QueueFull { limit: refused_limit, attempted, .. }) = error else {
            panic!("refused with {error:?}");
        };
        assert_eq!((refused_limit, attempted), (limit, block));
        assert!(queued > limit - block && queued <= limit, "queued {queued} when refused");
        assert_eq!(seen.drained, 0, "the client has read nothing yet");
    }

    let data = read_to_close_notify(&mut s, total).expect("a clean end");
    assert_counter_pattern(&data, total);
    poll_until("the connection closes", || !seen.lock().unwrap().closes.is_empty());
    let seen = seen.lock().unwrap();
    assert!(seen.drained >= 1, "on_drained never came");
    assert_eq!(seen.drained, seen.refused.len(), "one on_drained per refusal");
    assert_eq!(seen.closes[0].1, CloseReason::Local);
    drop(seen);
    server.stop();
}

/// The first flight a real client sends: its ClientHello.
fn client_hello(pki: &TestPki) -> Vec<u8> {
    let mut conn = ClientConnection::new(pki.client(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Reads what the server sends until it closes; a reset counts as a close.
fn drain_until_closed(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
    }
}

/// Runs a handshake that must fail and returns the client's error.
fn failed_handshake(addr: std::net::SocketAddr, client: &Arc<rustls::ClientConfig>) -> rustls::Error {
    let mut s = tls_connect(addr, client);
    let err = handshake(&mut s).expect_err("the handshake succeeded");
    match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.clone(),
        None => panic!("not a TLS error: {err}"),
    }
}

/// Handshakes that fail: each closes its own connection with the reason a server can count, while a
/// connection already open goes on echoing.
#[test]
fn failed_handshakes_close_only_their_connection() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let (probe, seen) = Probe::new(Mode::Echo);
    let server = start(tls_config(&pki), probe);
    let addr = server.addr;

    let mut good = tls_connect(addr, &pki.client());
    assert_eq!(tls_round_trip(&mut good, b"before"), b"before");

    type Attempt<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Attempt<'_>, TlsFailure)> = vec![
        (
            "plaintext HTTP sent to the TLS port",
            Box::new(|| {
                let mut raw = connect(addr);
                raw.write_all(b"GET /count HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
                let answer = drain_until_closed(&mut raw);
                assert!(!answer.windows(5).any(|w| w == b"HTTP/"), "answered in HTTP: {answer:?}");
            }),
            TlsFailure::NotTls,
        ),
        (
            "a client that does not trust our certificate",
            Box::new(|| {
                let client_error = failed_handshake(addr, &stranger.client());
                assert_eq!(client_error, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
            }),
            TlsFailure::PeerAlert,
        ),
        (
            "a client that offers only h2",
            Box::new(|| {
                let client_error = failed_handshake(addr, &pki.client_with_alpn(&[b"h2"]));
                assert_eq!(client_error, rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol));
            }),
            TlsFailure::Handshake,
        ),
    ];
    for (i, (what, attempt, expected)) in cases.iter().enumerate() {
        attempt();
        poll_until(what, || seen.lock().unwrap().closes.len() == i + 1);
        let seen = seen.lock().unwrap();
        let (conn, reason) = seen.closes[i];
        assert_eq!(reason, CloseReason::Tls(*expected), "{what}");
        assert_ne!(conn, seen.connects[0], "{what}: the good connection was closed");
        assert!(!seen.input.contains_key(&conn), "{what}: the handler was handed bytes");
        drop(seen);
        let message = format!("still here after {what}");
        assert_eq!(tls_round_trip(&mut good, message.as_bytes()), message.as_bytes());
    }
    server.wait_counts((1, 0), "only the good connection is left, with no timer");
    server.stop();
}

/// A certificate replaced while the loop runs (a renewal): the next handshakes get the new one, a client that
/// trusts only the old one is refused, and a connection made before keeps its session.
#[test]
fn a_replaced_certificate_is_presented_from_the_next_handshake_on() {
    let (old, renewed) = (TestPki::new(), TestPki::new());
    let config = old.server();
    let (probe, _seen) = Probe::new(Mode::Echo);
    let server = start(LoopConfig { tls: Some(config.clone()), ..LoopConfig::default() }, probe);
    let addr = server.addr;
    let mut before = tls_connect(addr, &old.client());
    assert_eq!(tls_round_trip(&mut before, b"before"), b"before");
    assert_eq!(
        failed_handshake(addr, &renewed.client()),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );

    config.replace_pem(renewed.leaf_pem.as_bytes(), renewed.leaf_key_pem.as_bytes()).unwrap();
    let mut after = tls_connect(addr, &renewed.client());
    assert_eq!(tls_round_trip(&mut after, b"after"), b"after");
    let presented = after.conn.peer_certificates().unwrap()[0].to_vec();
    let renewed_der = CertificateDer::from_pem_slice(renewed.leaf_pem.as_bytes()).unwrap();
    assert_eq!(presented, renewed_der.to_vec());
    assert_eq!(
        failed_handshake(addr, &old.client()),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    assert_eq!(tls_round_trip(&mut before, b"still here"), b"still here");
    server.stop();
}

/// Clients that connect and stall, silent or half-way through their ClientHello, are cut at the handshake
/// deadline; a completed handshake disarms its deadline; the open connection never notices.
#[test]
fn a_stalled_handshake_is_cut_at_the_deadline() {
    let pki = TestPki::new();
    let timeout = Duration::from_millis(300);
    let (probe, seen) = Probe::new(Mode::Echo);
    let config = LoopConfig { tls: Some(pki.server().with_handshake_timeout(timeout)), ..LoopConfig::default() };
    let server = start(config, probe);

    let mut good = tls_connect(server.addr, &pki.client());
    assert_eq!(tls_round_trip(&mut good, b"hello"), b"hello");
    server.wait_counts((1, 0), "the completed handshake's deadline is disarmed");

    let started = Instant::now();
    let mut silent = connect(server.addr);
    let mut halfway = connect(server.addr);
    let hello = client_hello(&pki);
    halfway.write_all(&hello[..hello.len() / 2]).unwrap();
    server.wait_counts((3, 2), "two handshakes under way, each with its deadline");
    assert!(drain_until_closed(&mut silent).is_empty());
    drain_until_closed(&mut halfway);
    let waited = started.elapsed();
    assert!(waited >= timeout - Duration::from_millis(50), "cut after {waited:?}, before the deadline");

    poll_until("both stalled connections are closed", || seen.lock().unwrap().closes.len() == 2);
    let reasons: Vec<CloseReason> = seen.lock().unwrap().closes.iter().map(|c| c.1).collect();
    assert_eq!(reasons, [CloseReason::Tls(TlsFailure::HandshakeTimeout); 2]);
    server.wait_counts((1, 0), "the open connection is left, with no timer");
    assert_eq!(tls_round_trip(&mut good, b"still here"), b"still here");
    server.stop();
}

/// A graceful close ends the TLS session with `close_notify` (the client reads a clean end); an abrupt one
/// does not (the client sees the truncation), so the test tells the two apart.
#[test]
fn graceful_close_sends_close_notify() {
    let pki = TestPki::new();
    for (mode, clean) in [(Mode::Goodbye, true), (Mode::Abort, false)] {
        let (probe, seen) = Probe::new(mode);
        let server = start(tls_config(&pki), probe);
        let mut s = tls_connect(server.addr, &pki.client());
        s.write_all(b"bye").unwrap();
        match read_to_close_notify(&mut s, 64) {
            Ok(data) => {
                assert!(clean, "an abrupt close ended with close_notify");
                assert_eq!(data, b"goodbye");
            }
            Err(e) => {
                assert!(!clean, "a graceful close ended without close_notify: {e}");
                assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
            }
        }
        poll_until("the close", || !seen.lock().unwrap().closes.is_empty());
        assert_eq!(seen.lock().unwrap().closes[0].1, CloseReason::Local);
        server.stop();
    }
}

/// At the connection limit a TLS listener closes new connections without writing the plain-text overload
/// response, which a TLS client would take for a broken handshake anyway.
#[test]
fn overload_on_a_tls_listener_writes_no_plaintext() {
    let pki = TestPki::new();
    let (probe, _seen) = Probe::new(Mode::Echo);
    let config = LoopConfig {
        max_connections: 1,
        overload_response: b"HTTP/1.1 503 Service Unavailable\r\n\r\n".to_vec(),
        ..tls_config(&pki)
    };
    let server = start(config, probe);
    let mut first = tls_connect(server.addr, &pki.client());
    assert_eq!(tls_round_trip(&mut first, b"one"), b"one");
    let mut second = connect(server.addr);
    assert_eq!(drain_until_closed(&mut second), b"");
    assert_eq!(tls_round_trip(&mut first, b"two"), b"two");
    server.stop();
}
