//! Server behaviour over real loopback sockets: stream sources, framing, keep-alive, failures and shutdown.

mod common;

use common::{Conn, TIMEOUT, connect, ids, roundtrip, spawn, spawn_with, wait_until};
use conduit::server::{Reply, Request, Response, Router, ServerConfig, Sse, StatusCode, Ticker};
use conduit::sse::{Event, EventSink};
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn config() -> ServerConfig {
    ServerConfig::new("127.0.0.1:0".parse().unwrap())
}

fn numbered(n: u64) -> impl Iterator<Item = Event> {
    (1..=n).map(|i| Event::new().id(i.to_string()).unwrap().data(format!("event {i}")))
}

#[test]
fn a_pulled_producer_delivers_every_event_in_order_with_bounded_buffering() {
    // Events are large enough that the whole stream (about 5 MiB) is far past the high-water mark, so it can
    // only arrive if the loop pulls again each time the client has read.
    let payload = "x".repeat(5000);
    let router = Router::new().get("/big", move |_: &Request| {
        let payload = payload.clone();
        Sse::from_iter((1..=1000u64).map(move |i| Event::new().id(i.to_string()).unwrap().data(payload.clone())))
    });
    let body = read_slowly(router);
    assert_eq!(ids(&body), (1..=1000).collect::<Vec<_>>());
}

/// `GET /big` from a server whose write queues hold 256 KiB, starting to read only after 200 ms: the server
/// must wait for the client rather than queue everything or cut it off. The chunked body, whole.
fn read_slowly(router: Router) -> Vec<u8> {
    let mut cfg = config();
    cfg.write_queue_limit = 256 * 1024;
    let server = spawn_with(cfg, router);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/big");
    assert_eq!(conn.read_head().status, 200);
    std::thread::sleep(Duration::from_millis(200));
    conn.read_chunked_body()
}

#[test]
fn a_channel_feeds_a_stream_from_another_thread_and_learns_when_the_client_leaves() {
    let (tx, rx) = mpsc::channel();
    let router = Router::new().get("/feed", move |_: &Request| {
        let (sender, sse) = Sse::channel_with_capacity(8);
        tx.send(sender).unwrap();
        sse
    });
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/feed");
    assert_eq!(conn.read_head().status, 200);
    let sender = rx.recv_timeout(TIMEOUT).unwrap();
    let producer = std::thread::spawn(move || {
        for i in 1..=500u64 {
            sender.send(Event::new().id(i.to_string()).unwrap().data("x")).expect("client is there");
        }
        sender
    });
    let body = conn.read_events(500);
    assert_eq!(ids(body.as_bytes()), (1..=500).collect::<Vec<_>>());
    let sender = producer.join().unwrap();
    drop(conn);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match sender.send(Event::new().data("after")) {
            Err(_) => break,
            Ok(()) => assert!(Instant::now() < deadline, "sender never learned the client left"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(sender.is_closed());
    wait_until("the connection is freed", || server.handle().connections() == 0);
}

#[test]
fn dropping_every_sender_ends_the_stream_after_buffered_events() {
    let router = Router::new().get("/feed", |_: &Request| {
        let (sender, sse) = Sse::channel();
        std::thread::spawn(move || {
            for i in 1..=3u64 {
                sender.send(Event::new().id(i.to_string()).unwrap().data("x")).unwrap();
            }
        });
        sse
    });
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/feed");
    assert_eq!(conn.read_head().status, 200);
    assert_eq!(ids(&conn.read_chunked_body()), vec![1, 2, 3]);
}

#[test]
fn keep_alive_comments_flow_only_when_idle_and_retry_is_sent_first() {
    let router = Router::new().get("/quiet", |_: &Request| {
        Sse::interval(Duration::from_secs(3600), |_: &mut Ticker| {}).retry(Duration::from_millis(2500))
    });
    let mut cfg = config();
    cfg.keep_alive = Some(Duration::from_millis(50));
    let server = spawn_with(cfg, router);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/quiet");
    assert_eq!(conn.read_head().status, 200);
    assert_eq!(conn.read_chunk().unwrap(), b"retry: 2500\n\n");
    for _ in 0..3 {
        assert_eq!(conn.read_chunk().unwrap(), b": keep-alive\n\n");
    }
}

#[test]
fn keep_alives_are_skipped_while_events_flow() {
    let router = Router::new().get("/busy", |_: &Request| {
        Sse::interval(Duration::from_millis(10), |t: &mut Ticker| {
            t.send(Event::new().data(t.tick().to_string()));
            if t.tick() == 40 {
                t.end();
            }
        })
    });
    let mut cfg = config();
    cfg.keep_alive = Some(Duration::from_millis(100));
    let server = spawn_with(cfg, router);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/busy");
    conn.read_head();
    let body = String::from_utf8(conn.read_chunked_body()).unwrap();
    assert_eq!(body.matches("data: ").count(), 41);
    assert!(!body.contains("keep-alive"), "{body}");
}

#[test]
fn http_1_0_streams_are_delimited_by_close() {
    let router = Router::new().get("/n", |_: &Request| Sse::from_iter(numbered(3)));
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"GET /n HTTP/1.0\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), None);
    assert_eq!(head.header("connection"), Some("close"));
    let body = conn.read_to_end();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let router = Router::new()
        .get("/a", |_: &Request| Response::text("first"))
        .get("/n", |_: &Request| Sse::from_iter(numbered(2)))
        .post("/echo", |req: &Request| Response::text(String::from_utf8_lossy(req.body()).into_owned()));
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.send(
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /n HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    let (_, body) = conn.read_response();
    assert_eq!(body, b"first");
    assert_eq!(conn.read_head().status, 200);
    assert_eq!(ids(&conn.read_chunked_body()), vec![1, 2]);
    assert_eq!(conn.read_response().1, b"hello");
    assert_eq!(conn.read_response().1, b"abc");
}

#[test]
fn input_pipelined_behind_an_endless_stream_is_held_only_up_to_the_head_limit() {
    let router = Router::new().get("/forever", |_: &Request| {
        Sse::interval(Duration::from_millis(50), |t: &mut Ticker| t.send(Event::new().data("tick")))
    });
    let mut config = config();
    config.limits.max_head_bytes = 16 * 1024;
    let server = spawn_with(config, router);
    // One write: a stream request, then 40 KiB of further requests (one read of up to 64 KiB takes it all).
    let mut raw = b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    while raw.len() < 40 * 1024 {
        raw.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    let mut conn = Conn::open(server.local_addr());
    conn.send(&raw);
    // The connection is closed (the stream may or may not have begun): reading reaches EOF in time.
    let (mut socket, _) = conn.into_parts();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "the server streams on, holding 40 KiB of input");
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading: {e}"),
        }
    }
    wait_until("the connection is gone", || server.handle().connections() == 0);
}

#[test]
fn a_little_input_behind_an_endless_stream_is_kept_for_after_it() {
    let router = Router::new().get("/forever", |_: &Request| {
        Sse::interval(Duration::from_millis(20), |t: &mut Ticker| t.send(Event::new().data("tick")))
    });
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.read_head().status, 200);
    conn.read_events(3);
    assert_eq!(server.handle().streams(), 1, "a pipelined head within the limit does not end the stream");
}

#[test]
fn head_requests_get_the_head_only() {
    let router = Router::new().get("/a", |_: &Request| Response::text("body"));
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.header("content-length"), Some("4"));
    let (_, body) = conn.read_response();
    assert_eq!(body, b"body", "the HEAD response carried no body");
}

#[test]
fn expect_100_continue_is_answered() {
    let router =
        Router::new().post("/echo", |req: &Request| Response::text(String::from_utf8_lossy(req.body()).into_owned()));
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(conn.read_head().status, 100);
    conn.send(b"ping");
    assert_eq!(conn.read_response().1, b"ping");
}

#[test]
fn a_panicking_handler_gets_500_and_the_server_goes_on() {
    let router = Router::new()
        .get("/boom", |_: &Request| -> Response { panic!("handler bug") })
        .get("/ok", |_: &Request| Response::text("ok"));
    let server = spawn(router);
    let (head, _) = roundtrip(server.local_addr(), b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 500);
    let (head, body) = roundtrip(server.local_addr(), b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((head.status, body.as_slice()), (200, &b"ok"[..]));
}

#[test]
fn a_writing_function_is_called_as_the_client_reads_and_ends_the_stream_when_it_says() {
    // As for the iterator above: the stream is far past the high-water mark, so it only arrives whole if the
    // loop calls the function again each time the client has read. Each call writes two events.
    let payload = "x".repeat(5000);
    let router = Router::new().get("/big", move |_: &Request| {
        let payload = payload.clone();
        let mut next = 1u64;
        Sse::from_fn(move |out: &mut EventSink<'_>| {
            for _ in 0..2 {
                out.event().event("big")?.id_u64(next).data_fmt(format_args!("{next} {payload}"));
                next += 1;
            }
            Ok(if next > 1000 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
    });
    let body = read_slowly(router);
    assert_eq!(ids(&body), (1..=1000).collect::<Vec<_>>());
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with(&format!("event: big\nid: 1\ndata: 1 {}\n\n", "x".repeat(5000))), "{}", &text[..40]);
    assert!(!text.contains("event: error"));
}

#[test]
fn a_writing_function_that_fails_ends_its_stream_with_an_error_event_and_no_half_event() {
    // (route, what the failing call does after its good events)
    type Failing = fn(&mut EventSink<'_>) -> Result<ControlFlow<()>, conduit::sse::EventError>;
    let table: [(&str, Failing); 3] = [
        ("/refused", |out| {
            out.event().id_u64(3).event("bad\nname")?.data("never");
            Ok(ControlFlow::Continue(()))
        }),
        ("/panics", |out| {
            let _half = out.event().id_u64(3);
            panic!("producer bug")
        }),
        ("/silent", |_| Ok(ControlFlow::Continue(()))),
    ];
    let mut router = Router::new();
    for (path, fail) in table {
        router = router.get(path, move |_: &Request| {
            let mut calls = 0u64;
            Sse::from_fn(move |out: &mut EventSink<'_>| {
                calls += 1;
                if calls <= 2 {
                    out.event().id_u64(calls).data_fmt(format_args!("event {calls}"));
                    return Ok(ControlFlow::Continue(()));
                }
                fail(out)
            })
        });
    }
    let server = spawn(router);
    for (path, _) in table {
        let mut conn = Conn::open(server.local_addr());
        conn.get(path);
        assert_eq!(conn.read_head().status, 200, "{path}");
        let rest = String::from_utf8(conn.read_to_end()).unwrap();
        assert!(rest.contains("id: 1\ndata: event 1\n\n"), "{path}: {rest}");
        assert!(rest.contains("id: 2\ndata: event 2\n\n"), "{path}: {rest}");
        assert!(!rest.contains("id: 3"), "{path}: the half-written event is not sent: {rest}");
        assert!(rest.contains("event: error\ndata: {\"error\":\"internal error\"}\n\n"), "{path}: {rest}");
        assert!(rest.ends_with("0\r\n\r\n"), "{path}: the stream is terminated: {rest:?}");
    }
    // The server goes on.
    let mut conn = Conn::open(server.local_addr());
    conn.get("/silent");
    assert_eq!(conn.read_head().status, 200);
}

#[test]
fn a_panicking_producer_ends_its_stream_with_an_error_event() {
    let router = Router::new().get("/bad", |_: &Request| {
        Sse::from_iter(numbered(2).chain(std::iter::from_fn(|| -> Option<Event> { panic!("producer bug") })))
    });
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/bad");
    conn.read_head();
    let rest = String::from_utf8(conn.read_to_end()).unwrap();
    assert!(rest.contains("id: 2\ndata: event 2\n\n"), "{rest}");
    assert!(rest.contains("event: error\ndata: {\"error\":\"internal error\"}\n\n"), "{rest}");
    assert!(rest.ends_with("0\r\n\r\n"), "the stream is terminated: {rest:?}");
}

#[test]
fn a_client_that_stops_reading_is_cut_off_at_its_queue_limit() {
    let router = Router::new().get("/flood", |_: &Request| {
        Sse::interval(Duration::from_millis(1), |t: &mut Ticker| {
            // About 4 MB/s: nothing for a reader on loopback, fatal for one that reads nothing.
            for _ in 0..4 {
                t.send(Event::new().data("y".repeat(1000)));
            }
        })
    });
    let mut cfg = config();
    cfg.write_queue_limit = 64 * 1024;
    let server = spawn_with(cfg, router);
    let mut stalled = connect(server.local_addr());
    // A small receive buffer makes the kernel stop taking data early.
    socket2::SockRef::from(&stalled).set_recv_buffer_size(4096).unwrap();
    stalled.write_all(b"GET /flood HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    wait_until("the stalled client's stream opens", || server.handle().streams() == 1);
    wait_until("the stalled client is disconnected", || server.handle().connections() == 0);
    // A client that reads keeps its stream.
    let mut reader = Conn::open(server.local_addr());
    reader.get("/flood");
    assert_eq!(reader.read_head().status, 200);
    reader.read_events(2000);
    assert_eq!(server.handle().connections(), 1);
    drop(stalled);
}

#[test]
fn an_incomplete_request_times_out_with_408() {
    let router = Router::new().get("/a", |_: &Request| Response::text("a"));
    let mut cfg = config();
    cfg.request_timeout = Duration::from_millis(100);
    let server = spawn_with(cfg, router);
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"GET /a HTTP/1.1\r\nHost:");
    let (head, body) = conn.read_response();
    assert_eq!(head.status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(conn.read_to_end().is_empty(), "connection closed after the 408");
    wait_until("the connection is freed", || server.handle().connections() == 0);
}

#[test]
fn idle_keep_alive_connections_are_closed_quietly() {
    let router = Router::new().get("/a", |_: &Request| Response::text("a"));
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(100);
    let server = spawn_with(cfg, router);
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.read_response().0.status, 200);
    let mut rest = Vec::new();
    conn.stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no response is sent on an idle close: {rest:?}");
}

#[test]
fn the_connection_cap_answers_503_and_the_server_stays_healthy() {
    let router =
        Router::new().get("/wait", |_: &Request| Sse::interval(Duration::from_secs(3600), |_: &mut Ticker| {}));
    let mut cfg = config();
    cfg.max_connections = 2;
    let server = spawn_with(cfg, router);
    let mut held: Vec<Conn> = (0..2).map(|_| Conn::open(server.local_addr())).collect();
    for c in &mut held {
        c.get("/wait");
        assert_eq!(c.read_head().status, 200);
    }
    let (head, _) = Conn::open(server.local_addr()).read_response();
    assert_eq!(head.status, 503);
    assert_eq!(head.header("retry-after"), Some("1"));
    drop(held);
    wait_until("the held connections are freed", || server.handle().connections() == 0);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/wait");
    assert_eq!(conn.read_head().status, 200);
}

#[test]
fn shutdown_ends_open_streams_cleanly_and_stops() {
    let router = Router::new().get("/forever", |_: &Request| {
        Sse::interval(Duration::from_millis(20), |t: &mut Ticker| t.send(Event::new().data("tick")))
    });
    let server = spawn(router);
    let handle = server.handle().clone();
    let mut conns: Vec<Conn> = (0..20).map(|_| Conn::open(server.local_addr())).collect();
    for c in &mut conns {
        c.get("/forever");
        assert_eq!(c.read_head().status, 200);
        c.read_events(1);
    }
    let started = Instant::now();
    server.shutdown().expect("the loop ends without error");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited for the grace period");
    for c in &mut conns {
        // Every stream ends with the chunked terminator, not a reset.
        while c.read_chunk().is_some() {}
    }
    assert!(!handle.is_running());
    assert!(std::net::TcpStream::connect(handle.local_addr()).is_err(), "the listener is closed");
}

#[test]
fn options_lists_allowed_methods() {
    let router = Router::new().get("/a", |_: &Request| Response::text("a"));
    let server = spawn(router);
    let (head, _) = roundtrip(server.local_addr(), b"OPTIONS /a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, StatusCode::NO_CONTENT.as_u16());
    assert_eq!(head.header("allow"), Some("GET, HEAD, OPTIONS"));
}

/// A handler that answers from another thread after `delay`, with whatever `answer` makes.
fn deferred_route(delay: Duration, answer: fn() -> Option<Reply>) -> Router {
    Router::new()
        .get("/later", move |_: &Request| {
            let (responder, reply) = Reply::deferred();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                if let Some(reply) = answer() {
                    let _ = responder.send(reply);
                }
                // Otherwise the responder is dropped without answering.
            });
            reply
        })
        .get("/now", |_: &Request| Response::text("now"))
}

#[test]
fn a_deferred_answer_comes_from_another_thread_and_pipelined_requests_wait_their_turn() {
    let server = spawn(deferred_route(Duration::from_millis(100), || Some(Response::text("later").into())));
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.read_response().1, b"later");
    assert_eq!(conn.read_response().1, b"now");
}

#[test]
fn a_deferred_answer_may_be_a_stream() {
    let server = spawn(deferred_route(Duration::from_millis(20), || Some(Sse::from_iter(numbered(3)).into())));
    let mut conn = Conn::open(server.local_addr());
    conn.get("/later");
    assert_eq!(conn.read_head().status, 200);
    assert_eq!(ids(&conn.read_chunked_body()), vec![1, 2, 3]);
}

#[test]
fn a_responder_dropped_without_answering_gets_500_and_a_slow_one_504() {
    let server = spawn(deferred_route(Duration::from_millis(10), || None));
    let (head, _) = roundtrip(server.local_addr(), b"GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 500);

    let mut config = config();
    config.deferred_timeout = Duration::from_millis(200);
    let (sent, results) = mpsc::channel();
    let router = Router::new().get("/later", move |_: &Request| {
        let (responder, reply) = Reply::deferred();
        let sent = sent.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            let closed = responder.is_closed();
            sent.send((closed, responder.send(Response::text("too late")).is_ok())).unwrap();
        });
        reply
    });
    let server = spawn_with(config, router);
    let started = Instant::now();
    let (head, _) = roundtrip(server.local_addr(), b"GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 504);
    assert!(started.elapsed() < Duration::from_millis(550), "answered at the timeout, not when the work ended");
    assert_eq!(results.recv_timeout(TIMEOUT).unwrap(), (true, false), "the late answer is refused");
}

#[test]
fn a_responder_learns_that_its_client_left() {
    let (sent, results) = mpsc::channel();
    let router = Router::new().get("/later", move |_: &Request| {
        let (responder, reply) = Reply::deferred();
        let sent = sent.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + TIMEOUT;
            while !responder.is_closed() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            sent.send(responder.is_closed()).unwrap();
        });
        reply
    });
    let server = spawn(router);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/later");
    wait_until("the request waits", || server.handle().requests() == 1);
    drop(conn);
    assert!(results.recv_timeout(TIMEOUT).unwrap(), "the responder saw the client leave");
}
