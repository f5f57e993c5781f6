//! CORS over loopback: allowed origins get streams with the right headers, others are refused, preflights
//! are answered, same-origin requests are never affected.

mod common;

use common::{Conn, local_config, spawn, spawn_with};
use conduit::server::{CorsConfig, Request, Response, Router, Sse};
use conduit::sse::Event;

fn router() -> Router {
    Router::new()
        .get("/events", |_: &Request| Sse::from_iter((1..=2).map(|i| Event::new().data(i.to_string()))))
        .post("/publish", |_: &Request| Response::text("ok"))
}

fn request(conn: &mut Conn, method: &str, target: &str, headers: &[(&str, &str)]) {
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    conn.send(format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: 0\r\n\r\n").as_bytes());
}

#[test]
fn allowed_origins_get_streams_and_others_are_refused() {
    let mut config = local_config();
    config.cors = Some(CorsConfig::allow_origins(["http://127.0.0.2:5000"]));
    let server = spawn_with(config, router());

    let mut allowed = Conn::open(server.local_addr());
    request(&mut allowed, "GET", "/events", &[("Origin", "http://127.0.0.2:5000")]);
    let head = allowed.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("access-control-allow-origin"), Some("http://127.0.0.2:5000"));
    assert_eq!(head.header("vary"), Some("Origin"));
    assert_eq!(head.header("access-control-expose-headers"), Some("Conduit-Oldest-Event-Id"));
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(allowed.read_chunked_body(), b"data: 1\n\ndata: 2\n\n");

    let mut refused = Conn::open(server.local_addr());
    request(&mut refused, "GET", "/events", &[("Origin", "http://127.0.0.3:5000")]);
    let (head, _) = refused.read_response();
    assert_eq!(head.status, 403);
    assert_eq!(head.header("access-control-allow-origin"), None);
    assert_eq!(server.handle().streams(), 0, "no stream was started for the refused origin");

    // The page's own origin is never refused.
    let mut same = Conn::open(server.local_addr());
    request(&mut same, "POST", "/publish", &[("Origin", "http://127.0.0.1")]);
    let (head, body) = same.read_response();
    assert_eq!((head.status, body.as_slice()), (200, &b"ok"[..]));
}

#[test]
fn preflights_are_answered_with_what_the_route_allows() {
    let mut config = local_config();
    config.cors = Some(CorsConfig::allow_any_origin());
    let server = spawn_with(config, router());
    let mut conn = Conn::open(server.local_addr());
    request(
        &mut conn,
        "OPTIONS",
        "/publish",
        &[
            ("Origin", "http://localhost:3000"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
        ],
    );
    let (head, body) = conn.read_response();
    assert_eq!(head.status, 204);
    assert!(body.is_empty());
    assert_eq!(head.header("access-control-allow-origin"), Some("http://localhost:3000"));
    assert_eq!(head.header("access-control-allow-methods"), Some("POST, OPTIONS"));
    let allowed_headers = head.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("last-event-id"));
    assert_eq!(head.header("access-control-max-age"), Some("600"));
}

#[test]
fn without_a_configuration_no_cors_headers_are_sent() {
    let server = spawn(router());
    let mut conn = Conn::open(server.local_addr());
    request(&mut conn, "GET", "/events", &[("Origin", "http://elsewhere.test")]);
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("access-control-allow-origin"), None);
}
