//! Request bodies are decided from the head: a request that will be refused (no token, a route that takes no
//! body, a body past the route's limit, a host the server does not serve) is answered before any of its body
//! is read, `100 Continue` comes only after the head passed, and the memory all bodies in progress hold is
//! bounded server-wide.

mod common;

use common::{Conn, TIMEOUT, local_config, spawn_with, wait_until};
use conduit::http::AllowedHosts;
use conduit::server::auth::require_bearer;
use conduit::server::{Request, Response, Router, ServerConfig, Sse, StatusCode};
use conduit::sse::Event;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret";

fn router() -> Router {
    Router::new()
        .post("/publish", |req: &Request| {
            Response::text(format!("{} bytes", req.body().len())).status(StatusCode::ACCEPTED)
        })
        .body_limit(1 << 20)
        .guard(|req: &Request| require_bearer(req, TOKEN))
        .post("/small", |req: &Request| Response::text(format!("{} bytes", req.body().len())))
        .body_limit(10)
        .get("/stream", |_: &Request| Sse::from_iter([Event::new().data("x")]))
}

fn head(target: &str, extra: &str, length: usize) -> Vec<u8> {
    format!("POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n{extra}\r\n").into_bytes()
}

/// The response to a head sent without its body, read within `limit`.
fn answered_before_the_body(conn: &mut Conn, limit: Duration) -> u16 {
    let started = Instant::now();
    let status = conn.read_head().status;
    assert!(started.elapsed() < limit, "answered only after {:?}", started.elapsed());
    status
}

#[test]
fn a_request_without_its_token_is_refused_from_the_head_before_its_body() {
    let server = spawn_with(local_config(), router());
    let mut conn = Conn::open(server.local_addr());
    // A megabyte announced, not one byte of it sent: the 401 must not wait for it (or for the 10 s timeout).
    conn.send(&head("/publish", "", 1 << 20));
    assert_eq!(answered_before_the_body(&mut conn, Duration::from_secs(2)), 401);
    let (mut socket, _) = conn.into_parts();
    let mut rest = Vec::new();
    match socket.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading to the close: {e}"),
    }
}

#[test]
fn a_route_that_takes_no_body_or_less_refuses_with_413_at_once() {
    let server = spawn_with(local_config(), router());
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"GET /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 1048575\r\n\r\nabc");
    assert_eq!(answered_before_the_body(&mut conn, Duration::from_secs(2)), 413);
    let mut conn = Conn::open(server.local_addr());
    conn.send(&head("/small", "", 50_000));
    assert_eq!(answered_before_the_body(&mut conn, Duration::from_secs(2)), 413);
    // A body small enough to drop is read and dropped, so the connection carries the next request.
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n0123456789A");
    assert_eq!(conn.read_response().0.status, 413);
    conn.send(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_eq!(conn.read_response().1, b"10 bytes");
}

#[test]
fn continue_is_sent_only_after_the_head_passes() {
    let server = spawn_with(local_config(), router());
    let mut refused = Conn::open(server.local_addr());
    refused.send(&head("/publish", "Expect: 100-continue\r\n", 5));
    let (h, _) = refused.read_response();
    assert_eq!(h.status, 401, "no 100 Continue for a request that will be refused");

    let mut admitted = Conn::open(server.local_addr());
    admitted.send(&head("/publish", &format!("Authorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\n"), 5));
    assert_eq!(admitted.read_head().status, 100);
    admitted.send(b"hello");
    let (h, body) = admitted.read_response();
    assert_eq!((h.status, body.as_slice()), (202, &b"5 bytes"[..]));
}

#[test]
fn a_small_refused_body_is_dropped_and_the_connection_carries_on() {
    let server = spawn_with(local_config(), router());
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(conn.read_response().0.status, 401);
    conn.send(&head("/publish", &format!("Authorization: Bearer {TOKEN}\r\n"), 2));
    conn.send(b"hi");
    assert_eq!(conn.read_response().1, b"2 bytes");
}

#[test]
fn bodies_in_progress_hold_at_most_the_servers_budget() {
    let mut config = local_config();
    config.max_body_memory = 2 << 20;
    let server = spawn_with(config, router());
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    // Each announces 600 KiB and sends 1 byte of it: three fit in 2 MiB, the others are told to come back.
    let mut conns: Vec<Conn> = (0..6)
        .map(|_| {
            let mut conn = Conn::open(server.local_addr());
            conn.send(&head("/publish", &auth, 600 << 10));
            conn.send(b"x");
            conn
        })
        .collect();
    let mut refused = 0;
    for conn in &mut conns[3..] {
        let h = conn.read_head();
        assert_eq!((h.status, h.header("retry-after")), (503, Some("1")));
        refused += 1;
    }
    assert_eq!(refused, 3);
    // One in progress finishes: its share goes back and a new request fits.
    conns[0].send(&vec![b'y'; (600 << 10) - 1]);
    assert_eq!(conns[0].read_response().0.status, 202);
    let mut late = Conn::open(server.local_addr());
    late.send(&head("/publish", &auth, 600 << 10));
    late.send(&vec![b'z'; 600 << 10]);
    assert_eq!(late.read_response().0.status, 202);
    // Connections that leave mid-body give their share back too.
    drop(conns);
    wait_until("the connections are gone", || server.handle().connections() <= 1);
    let mut last = Conn::open(server.local_addr());
    last.send(&head("/publish", &auth, 1 << 20));
    last.send(&vec![b'w'; 1 << 20]);
    assert_eq!(last.read_response().0.status, 202);
    let _ = TIMEOUT;
}

#[test]
fn hosts_the_server_does_not_serve_get_421() {
    let mut config: ServerConfig = local_config();
    config.allowed_hosts = AllowedHosts::new(["localhost", "127.0.0.1"]).unwrap();
    let server = spawn_with(config, router());
    for (host, status) in [("localhost:8000", 401), ("127.0.0.1", 401), ("rebound.evil.test", 421)] {
        let mut conn = Conn::open(server.local_addr());
        conn.send(format!("POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        assert_eq!(conn.read_response().0.status, status, "{host}");
        let mut conn = Conn::open(server.local_addr());
        conn.send(format!("POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Length: 50000\r\n\r\n").as_bytes());
        assert_eq!(answered_before_the_body(&mut conn, Duration::from_secs(2)), status, "{host}, with a body");
    }
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()).expect("a VmRSS value") * 1024
}

#[test]
fn a_flood_of_unfinished_bodies_holds_the_budget_not_its_size() {
    const CONNS: usize = 100;
    const SENT: usize = 512 << 10;
    let mut config = local_config();
    config.max_body_memory = 8 << 20;
    let server = spawn_with(config, router());
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let chunk = vec![b'f'; SENT];
    let baseline = rss_bytes();
    // Every connection announces almost a megabyte and sends half of it: 50 MiB if the server kept it all.
    let mut conns: Vec<Conn> = (0..CONNS)
        .map(|_| {
            let mut conn = Conn::open(server.local_addr());
            conn.send(&head("/publish", &auth, (1 << 20) - 1));
            conn
        })
        .collect();
    let mut refused = 0;
    for conn in &mut conns {
        conn.send(&chunk);
    }
    for conn in &mut conns[..] {
        let mut socket = conn.stream.try_clone().unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut byte = [0u8; 12];
        if matches!(socket.read(&mut byte), Ok(n) if n > 0 && byte.starts_with(b"HTTP/1.1 503")) {
            refused += 1;
        }
    }
    let growth = rss_bytes().saturating_sub(baseline);
    assert!(refused >= CONNS - 8, "at most 8 MiB of 1 MiB bodies are admitted; {refused} of {CONNS} refused");
    assert!(growth < 32 << 20, "RSS grew by {} MiB while bodies were held", growth >> 20);
    drop(conns);
    wait_until("every connection is gone", || server.handle().connections() == 0);
    let _ = TIMEOUT;
}
