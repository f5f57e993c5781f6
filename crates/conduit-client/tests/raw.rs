//! The client against hand-written servers that answer with exact bytes: every body framing, silence, drops
//! in the middle of an event, and broken HTTP.

mod common;

use common::{accept_before, read_request_head};
use conduit_client::{ClientError, EventSource, EventSourceBuilder};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Bounds every wait on both sides.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers one connection, given the request head it sent.
type Responder = Box<dyn FnOnce(TcpStream) + Send>;

/// A server that answers its connections in order, one responder each, and reports every request head.
struct RawServer {
    addr: SocketAddr,
    heads: mpsc::Receiver<String>,
}

impl RawServer {
    fn start(bind: &str, responders: Vec<Responder>) -> std::io::Result<RawServer> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let (tx, heads) = mpsc::channel();
        thread::spawn(move || {
            let deadline = Instant::now() + 4 * TIMEOUT;
            for responder in responders {
                let Some(mut stream) = accept_before(&listener, deadline, TIMEOUT) else {
                    return;
                };
                let Some(head) = read_request_head(&mut stream) else {
                    return;
                };
                if tx.send(head).is_err() {
                    return;
                }
                responder(stream);
            }
        });
        Ok(RawServer { addr, heads })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next request head the server received.
    fn head(&self) -> String {
        self.heads.recv_timeout(TIMEOUT).expect("no request arrived")
    }
}

/// Writes `parts` one at a time, pausing between them so they arrive in separate reads.
fn write_parts(stream: &mut TcpStream, parts: &[&[u8]]) {
    for part in parts {
        if stream.write_all(part).and_then(|()| stream.flush()).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Keeps the connection open, silent, until the client closes it (or the timeout passes).
fn hold(mut stream: TcpStream) {
    let mut sink = [0u8; 64];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

fn respond(bytes: &'static [u8]) -> Responder {
    Box::new(move |mut stream: TcpStream| {
        let _ = stream.write_all(bytes);
    })
}

fn respond_and_hold(parts: Vec<&'static [u8]>) -> Responder {
    Box::new(move |mut stream: TcpStream| {
        write_parts(&mut stream, &parts);
        hold(stream);
    })
}

const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

fn client(url: &str) -> EventSourceBuilder {
    EventSource::get(url).connect_timeout(TIMEOUT).read_timeout(Some(TIMEOUT)).default_retry(Duration::from_secs(4))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().filter_map(|line| line.split_once(": ")).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

#[test]
fn close_delimited_content_length_and_chunked_bodies() {
    // A chunked body written a few bytes at a time, with a chunk extension and a trailer.
    let body: &[u8] = "id: 3\r\ndata: chunked é\r\n\r\n".as_bytes();
    let mut chunked = Vec::new();
    for piece in [&body[..1], &body[1..3], &body[3..17], &body[17..]] {
        chunked.extend_from_slice(format!("{:x};piece=yes\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let chunked: &'static [u8] = chunked.leak();

    let server = RawServer::start(
        "127.0.0.1:0",
        vec![
            // HTTP/1.0 style: no length, the body ends when the server closes. The partial event at the end is
            // dropped. `retry: 10` makes the reconnections quick.
            respond(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n\
                  retry: 10\nid: 1\ndata: close-delimited\n\nid: 99\ndata: partial, dropp",
            ),
            // Content-Length: the body ends at the length even though the connection stays open, and bytes
            // past it are not events.
            respond_and_hold(vec![
                b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=UTF-8\r\nContent-Length: 20\r\n\r\n",
                b"id: 2\ndata: len",
                b"gth\n\nid: 98\ndata: beyond the body\n\n",
            ]),
            // Chunked, in small pieces.
            Box::new(move |mut stream: TcpStream| {
                let mut parts: Vec<&[u8]> =
                    vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"];
                parts.extend(chunked.chunks(3));
                write_parts(&mut stream, &parts);
                hold(stream);
            }),
            respond(NO_CONTENT),
        ],
    )
    .unwrap();

    let mut events = client(&server.url("/stream?x=1")).connect().unwrap();
    let got: Vec<(String, String)> = events.by_ref().map(|e| e.map(|e| (e.last_event_id, e.data)).unwrap()).collect();
    assert_eq!(
        got,
        [
            ("1".to_owned(), "close-delimited".to_owned()),
            ("2".to_owned(), "length".to_owned()),
            ("3".to_owned(), "chunked é".to_owned()),
        ]
    );
    assert_eq!(events.reconnects(), 2);
    assert_eq!(events.retry(), Duration::from_millis(10));

    let first = server.head();
    assert!(first.starts_with("GET /stream?x=1 HTTP/1.1\r\n"), "{first}");
    assert_eq!(header(&first, "host"), Some(server.addr.to_string().as_str()));
    assert_eq!(header(&first, "accept"), Some("text/event-stream"));
    assert_eq!(header(&first, "cache-control"), Some("no-cache"));
    assert_eq!(header(&first, "last-event-id"), None);
    assert_eq!(header(&first, "content-length"), None);
    for expected in ["1", "2", "3"] {
        assert_eq!(header(&server.head(), "last-event-id"), Some(expected));
    }
}

#[test]
fn a_silent_server_is_a_drop_after_the_read_timeout() {
    let server = RawServer::start(
        "127.0.0.1:0",
        vec![
            respond_and_hold(vec![
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 10\nid: 1\ndata: a\n\n",
            ]),
            respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 2\ndata: b\n\n"),
            respond(NO_CONTENT),
        ],
    )
    .unwrap();
    let read_timeout = Duration::from_millis(200);
    let mut events = client(&server.url("/")).read_timeout(Some(read_timeout)).connect().unwrap();
    assert_eq!(events.next_event().unwrap().unwrap().data, "a");
    let start = Instant::now();
    assert_eq!(events.next_event().unwrap().unwrap().data, "b");
    assert!(start.elapsed() >= read_timeout, "{:?}", start.elapsed());
    assert!(events.next_event().unwrap().is_none());
    assert_eq!(events.reconnects(), 1);
    server.head();
    assert_eq!(header(&server.head(), "last-event-id"), Some("1"));
    assert_eq!(header(&server.head(), "last-event-id"), Some("2"));
}

#[test]
fn without_reconnecting_a_timeout_is_an_error() {
    let server = RawServer::start(
        "127.0.0.1:0",
        vec![respond_and_hold(vec![b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: only\n\n"])],
    )
    .unwrap();
    let mut events =
        client(&server.url("/")).read_timeout(Some(Duration::from_millis(100))).reconnect(false).connect().unwrap();
    assert_eq!(events.next_event().unwrap().unwrap().data, "only");
    let err = events.next_event().unwrap_err();
    assert!(matches!(err, ClientError::Io(ref e) if e.kind() == ErrorKind::TimedOut), "{err:?}");
    assert!(events.next_event().unwrap().is_none());
    assert!(events.next().is_none());
}

#[test]
fn a_drop_mid_event_discards_it_and_resumes_from_the_last_complete_one() {
    let server = RawServer::start(
        "127.0.0.1:0",
        vec![
            // The connection dies in the middle of event 2 and of its chunk.
            respond(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
                  40\r\nretry: 10\nid: 1\ndata: one\n\nid: 2\ndata: tw",
            ),
            respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 2\ndata: two\n\n"),
            respond(NO_CONTENT),
        ],
    )
    .unwrap();
    let events = client(&server.url("/")).connect().unwrap();
    let got: Vec<String> = events.map(|e| e.unwrap().data).collect();
    assert_eq!(got, ["one", "two"]);
    server.head();
    assert_eq!(header(&server.head(), "last-event-id"), Some("1"));
}

#[test]
fn broken_http_is_a_protocol_error() {
    let mut huge_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Pad: ".to_vec();
    huge_head.resize(70 * 1024, b'p');
    huge_head.extend_from_slice(b"\r\n\r\n");
    let huge_head: &'static [u8] = huge_head.leak();
    let server = RawServer::start(
        "127.0.0.1:0",
        vec![
            respond(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
            respond(huge_head),
            respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n\r\n"),
            respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ],
    )
    .unwrap();
    let url = server.url("/");
    for expected in ["invalid response head", "larger than 64 KiB", "Content-Encoding"] {
        let err = client(&url).connect().unwrap_err();
        assert!(matches!(err, ClientError::Protocol(ref m) if m.contains(expected)), "{expected}: {err:?}");
    }
    let mut events = client(&url).reconnect(false).connect().unwrap();
    let err = events.next_event().unwrap_err();
    assert!(matches!(err, ClientError::Protocol(ref m) if m.contains("bad chunked encoding")), "{err:?}");
    assert!(events.next_event().unwrap().is_none());
}

#[test]
fn interim_responses_are_skipped() {
    let server = RawServer::start(
        "127.0.0.1:0",
        vec![respond(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: x\n\n",
        )],
    )
    .unwrap();
    let mut events = client(&server.url("/")).reconnect(false).connect().unwrap();
    assert_eq!(events.next_event().unwrap().unwrap().data, "x");
    assert!(events.next_event().unwrap().is_none());
}

#[test]
fn ipv6_loopback() {
    let server = match RawServer::start(
        "[::1]:0",
        vec![respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: over v6\n\n")],
    ) {
        Ok(server) => server,
        // No IPv6 on this machine: nothing to test.
        Err(_) => return,
    };
    let url = server.url("/v6");
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let mut events = client(&url).reconnect(false).connect().unwrap();
    assert_eq!(events.next_event().unwrap().unwrap().data, "over v6");
    assert!(events.next_event().unwrap().is_none());
    assert_eq!(header(&server.head(), "host"), Some(&url["http://".len()..url.len() - "/v6".len()]));
}
