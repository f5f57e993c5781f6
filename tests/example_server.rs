//! The example server's endpoints over real loopback sockets.

mod common;

#[allow(dead_code)]
#[path = "../examples/sse_simple_server/main.rs"]
mod example;

use common::{Conn, ids, local_config, roundtrip, spawn_with_hub, wait_until};
use conduit::server::{Hub, HubConfig, SpawnedServer};

const TOKEN: &str = "test-token";

fn start() -> SpawnedServer {
    let hub = Hub::new(HubConfig::default());
    spawn_with_hub(local_config(), example::router(TOKEN, &hub), &hub)
}

const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\n\
    Content-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\n\
    Connection: keep-alive\r\n\
    X-Accel-Buffering: no\r\n\
    Transfer-Encoding: chunked\r\n\r\n";

#[test]
fn count_yields_exactly_the_expected_bytes() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    conn.get("/count?n=5&interval_ms=10");
    let head = conn.read_head();
    assert_eq!(head.raw, STREAM_HEAD);
    let body = String::from_utf8(conn.read_chunked_body()).unwrap();
    let mut expected = String::new();
    for i in 1..=5 {
        expected.push_str(&format!("event: counter\nid: {i}\ndata: {{\"count\":{i}}}\n\n"));
    }
    expected.push_str("event: done\ndata: {\"status\":\"complete\"}\n\n");
    assert_eq!(body, expected);
}

#[test]
fn unpaced_count_streams_every_event_in_order() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    conn.get("/count?n=1000&interval_ms=0");
    assert_eq!(conn.read_head().status, 200);
    let body = String::from_utf8(conn.read_chunked_body()).unwrap();
    let ids = ids(body.as_bytes());
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
    assert!(body.ends_with("event: done\ndata: {\"status\":\"complete\"}\n\n"));
}

#[test]
fn stream_connection_is_reused_after_a_finite_stream() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    conn.get("/count?n=2&interval_ms=1");
    assert_eq!(conn.read_head().status, 200);
    conn.read_chunked_body();
    conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    let (head, body) = conn.read_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(String::from_utf8(body).unwrap().contains("Conduit"));
}

#[test]
fn time_stream_sends_json_with_unix_and_iso_time() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    conn.get("/time");
    assert_eq!(conn.read_head().status, 200);
    let events = conn.read_events(1);
    let data = events.lines().find_map(|l| l.strip_prefix("data: ")).expect("data line");
    assert!(events.starts_with("event: time\n"), "{events:?}");
    let value: serde_json::Value = serde_json::from_str(data).unwrap();
    let time = value["time"].as_f64().expect("time is a number");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - time).abs() < 60.0, "time {time} is not now ({now})");
    let iso = value["iso"].as_str().expect("iso is a string");
    assert_eq!(iso.len(), "2025-11-21T18:33:20.123Z".len(), "{iso}");
    assert!(iso.ends_with('Z') && iso.as_bytes()[10] == b'T', "{iso}");
}

#[test]
fn ai_stream_sends_indexed_tokens_then_done() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    conn.get("/stream/ai");
    assert_eq!(conn.read_head().status, 200);
    let body = String::from_utf8(conn.read_chunked_body()).unwrap();
    let blocks: Vec<&str> = body.split_terminator("\n\n").collect();
    let (last, tokens) = blocks.split_last().unwrap();
    assert_eq!(*last, "event: done\ndata: {\"status\":\"complete\"}");
    let mut words = Vec::new();
    for (i, block) in tokens.iter().enumerate() {
        let data = block.strip_prefix("event: token\ndata: ").expect(block);
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["index"], i);
        words.push(v["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(words.join(" "), example::demos::AI_REPLY.split_whitespace().collect::<Vec<_>>().join(" "));
}

#[test]
fn invalid_queries_get_400_with_a_reason() {
    let server = start();
    for target in ["/count?n=abc", "/count?n=0", "/count?interval_ms=-5", "/count?n=99999999999"] {
        let (head, body) =
            roundtrip(server.local_addr(), format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(head.status, 400, "{target}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.ends_with('\n') && body.lines().count() == 1, "{body:?}");
        assert!(body.contains("must be an integer"), "{body:?}");
    }
}

#[test]
fn errors_come_back_with_the_right_status() {
    let server = start();
    let addr = server.local_addr();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_header = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(17_000));
    // A request the parser refuses cannot be trusted to end where it seems to, so those responses close the
    // connection; a well-formed request the application refuses keeps it.
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("unknown path", b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 404, false),
        ("wrong method", b"DELETE /time HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405, false),
        ("bad query", b"GET /count?n=x HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, false),
        ("garbage", b"\x16\x03\x01 not http\r\n\r\n".to_vec(), 400, true),
        ("uri too long", long_uri.into_bytes(), 414, true),
        ("head too large", big_header.into_bytes(), 431, true),
        ("body too large", b"POST /time HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n".to_vec(), 413, true),
        (
            "length and chunked",
            b"POST /time HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            true,
        ),
    ];
    for (what, raw, status, closes) in cases {
        let (head, body) = roundtrip(addr, &raw);
        assert_eq!(head.status, status, "{what}: {}", String::from_utf8_lossy(&body));
        if status == 405 {
            assert_eq!(head.header("allow"), Some("GET, HEAD, OPTIONS"));
        }
        let close = head.header("connection") == Some("close");
        assert_eq!(close, closes, "{what}: Connection header {:?}", head.header("connection"));
    }
}

#[test]
fn a_client_leaving_mid_stream_frees_its_connection() {
    let server = start();
    let handle = server.handle().clone();
    let mut conn = Conn::open(server.local_addr());
    conn.get("/count?n=1000000&interval_ms=5");
    assert_eq!(conn.read_head().status, 200);
    conn.read_events(3);
    assert_eq!(handle.streams(), 1);
    drop(conn);
    wait_until("the connection is freed", || handle.connections() == 0 && handle.streams() == 0);
}

#[test]
fn two_hundred_concurrent_streams_on_one_loop() {
    let server = start();
    let addr = server.local_addr();
    let mut conns: Vec<Conn> = (0..200).map(|_| Conn::open(addr)).collect();
    for conn in &mut conns {
        conn.get("/count?n=20&interval_ms=10");
    }
    wait_until("all 200 streams are open", || server.handle().streams() == 200);
    for conn in &mut conns {
        assert_eq!(conn.read_head().status, 200);
        let body = String::from_utf8(conn.read_chunked_body()).unwrap();
        let ids = ids(body.as_bytes());
        assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    }
}

#[test]
fn index_page_is_served() {
    let server = start();
    let (head, body) = roundtrip(server.local_addr(), b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    let html = String::from_utf8(body).unwrap();
    for endpoint in
        ["/time", "/count", "/stream/ai", "/stream/updates", "/stream?topic=", "/publish", "/api/chat/stream"]
    {
        assert!(html.contains(endpoint), "the page links {endpoint}");
    }
}

fn post(conn: &mut Conn, target: &str, auth: Option<&str>, content_type: &str, body: &str) {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    conn.send(
        format!(
            "POST {target} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// Asks for a chat reply with the right token.
fn post_chat(conn: &mut Conn, body: &str) {
    post(conn, "/api/chat/stream", Some(&format!("Bearer {TOKEN}")), "application/json", body);
}

/// (event type, parsed data) of each block of a chat stream.
fn typed_events(body: &str) -> Vec<(String, serde_json::Value)> {
    common::events(body).into_iter().map(|e| (e.event, serde_json::from_str(&e.data).unwrap())).collect()
}

#[test]
fn chat_refuses_missing_or_wrong_tokens_before_streaming() {
    let server = start();
    for auth in [None, Some("Bearer wrong"), Some("Basic dGVzdA==")] {
        let mut conn = Conn::open(server.local_addr());
        post(&mut conn, "/api/chat/stream", auth, "application/json", r#"{"user_message":"hi"}"#);
        let (head, body) = conn.read_response();
        assert_eq!(head.status, 401, "{auth:?}");
        assert_eq!(head.header("www-authenticate"), Some("Bearer"));
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(error["error"].is_string());
    }
}

#[test]
fn chat_refuses_malformed_bodies_with_json_errors() {
    let server = start();
    let bearer = format!("Bearer {TOKEN}");
    for body in [
        "not json",
        "{}",
        r#"{"user_message": 5}"#,
        r#"{"user_message": "   "}"#,
        r#"{"user_message": "hi", "conversation_id": "bad id!"}"#,
        r#"["user_message"]"#,
    ] {
        let mut conn = Conn::open(server.local_addr());
        post(&mut conn, "/api/chat/stream", Some(&bearer), "application/json", body);
        let (head, reply) = conn.read_response();
        assert_eq!(head.status, 400, "{body}");
        assert_eq!(head.header("content-type"), Some("application/json"));
        let error: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    }
}

#[test]
fn chat_streams_start_conversation_tokens_and_end() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    post_chat(&mut conn, r#"{"user_message":"héllo 👋"}"#);
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let events = typed_events(&String::from_utf8(conn.read_chunked_body()).unwrap());
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds[..2], ["stream_start", "conversation_id"]);
    let message_id = head.header("conduit-message-id").expect("the message id header");
    assert_eq!(events[0].1, serde_json::json!({ "message_id": message_id, "status": "streaming" }));
    assert!(events[1].1["conversation_id"].as_str().is_some_and(|id| !id.is_empty()));
    let (last, middle) = events[2..].split_last().unwrap();
    assert_eq!(last.0, "stream_end");
    assert_eq!(last.1["status"], "complete");
    assert!(last.1["message_id"].is_string());
    assert!(middle.len() > 5 && middle.iter().all(|(k, _)| k == "message"));
    let text: String = middle.iter().map(|(_, d)| d["token"].as_str().unwrap()).collect();
    assert!(text.starts_with("You said: \"héllo 👋\"."), "{text}");
}

#[test]
fn chat_continuing_a_conversation_sends_no_new_id() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    let body = r#"{"user_message":"again","conversation_id":"abc-123"}"#;
    post_chat(&mut conn, body);
    assert_eq!(conn.read_head().status, 200);
    let events = typed_events(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert!(events.iter().all(|(k, _)| k != "conversation_id"));
    assert_eq!(events.last().unwrap().0, "stream_end");
}

#[test]
fn chat_failure_mid_stream_is_an_error_event() {
    let server = start();
    let mut conn = Conn::open(server.local_addr());
    post_chat(&mut conn, r#"{"user_message":"/fail"}"#);
    assert_eq!(conn.read_head().status, 200);
    let events = typed_events(&String::from_utf8(conn.read_chunked_body()).unwrap());
    let (last, before) = events.split_last().unwrap();
    assert_eq!(last.0, "error");
    assert!(last.1["error"].as_str().unwrap().contains("simulated"));
    assert!(before.iter().any(|(k, _)| k == "message"), "some tokens came first");
}

#[test]
fn published_events_reach_topic_streams() {
    let server = start();
    let mut stream = Conn::open(server.local_addr());
    stream.get("/stream?topic=news");
    assert_eq!(stream.read_head().status, 200);
    let bearer = format!("Bearer {TOKEN}");
    let mut conn = Conn::open(server.local_addr());
    post(&mut conn, "/publish?topic=news&event=alert", Some(&bearer), "text/plain", "line one\nline two");
    let (head, body) = conn.read_response();
    assert_eq!(head.status, 202);
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["topic"], "news");
    let id = reply["id"].as_str().unwrap().to_owned();
    assert_eq!(stream.read_events(1), format!("event: alert\nid: {id}\ndata: line one\ndata: line two\n\n"));

    let refusals: [(Option<&str>, &str, u16); 4] = [
        (None, "/publish?topic=news", 401),
        (Some(bearer.as_str()), "/publish", 400),
        (Some(bearer.as_str()), "/publish?topic=news&event=a%0Ab", 400),
        (Some(bearer.as_str()), "/publish?topic=%00", 400),
    ];
    for (auth, target, status) in refusals {
        post(&mut conn, target, auth, "text/plain", "x");
        let (head, _) = conn.read_response();
        assert_eq!(head.status, status, "{target}");
    }
}

#[test]
fn count_resumes_after_last_event_id_and_drops_when_asked() {
    let server = start();
    let mut seen = Vec::new();
    let mut last: Option<u64> = None;
    for _ in 0..3 {
        let mut conn = Conn::open(server.local_addr());
        let header = last.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        conn.send(format!("GET /count?n=7&interval_ms=1&drop_after=3 HTTP/1.1\r\nHost: t\r\n{header}\r\n").as_bytes());
        assert_eq!(conn.read_head().status, 200);
        let body = String::from_utf8(conn.read_chunked_body()).unwrap();
        assert!(body.starts_with("retry: 100\n\n"), "{body}");
        let ids = ids(body.as_bytes());
        last = ids.last().copied();
        seen.extend(ids);
        if body.contains("event: done") {
            break;
        }
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
}

#[test]
fn the_rust_client_rides_through_dropped_streams_without_losing_a_count() {
    use conduit::client::EventSource;
    let server = start();
    let url = format!("http://{}/count?n=10&interval_ms=1&drop_after=3", server.local_addr());
    let mut source = EventSource::get(&url).connect().unwrap();
    let mut counts = Vec::new();
    while let Some(event) = source.next_event().unwrap() {
        if event.event_type == "done" {
            break;
        }
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        counts.push(data["count"].as_u64().unwrap());
    }
    assert_eq!(counts, (1..=10).collect::<Vec<_>>());
    assert_eq!(source.reconnects(), 3);
}

#[test]
fn count_answers_204_to_a_client_that_has_every_count() {
    let server = start();
    for last in ["5", "9"] {
        let mut conn = Conn::open(server.local_addr());
        conn.send(format!("GET /count?n=5 HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {last}\r\n\r\n").as_bytes());
        assert_eq!(conn.read_head().status, 204, "Last-Event-ID {last}: an EventSource stops");
    }
    let (head, _) = roundtrip(server.local_addr(), b"GET /count?n=5 HTTP/1.1\r\nHost: t\r\nLast-Event-ID: x\r\n\r\n");
    assert_eq!(head.status, 400);
}

#[test]
fn the_page_has_a_favicon() {
    let server = start();
    for path in ["/favicon.svg", "/favicon.ico"] {
        let (head, body) = roundtrip(server.local_addr(), format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(head.status, 200, "{path}");
        assert_eq!(head.header("content-type"), Some("image/svg+xml"));
        assert!(body.starts_with(b"<svg"));
    }
}

#[test]
fn metrics_and_health_checks_are_served() {
    let hub = Hub::new(HubConfig::default());
    let mut config = local_config();
    let router = example::observability(&mut config, example::router(TOKEN, &hub));
    let server = spawn_with_hub(config, router, &hub);
    let mut conn = Conn::open(server.local_addr());
    conn.get("/count?n=2&interval_ms=1");
    assert_eq!(conn.read_head().status, 200);
    conn.read_chunked_body();
    for (path, status, content_type, body_start) in [
        ("/healthz", 200, "text/plain; charset=utf-8", "ok"),
        ("/readyz", 200, "text/plain; charset=utf-8", "ready"),
        ("/metrics", 200, conduit::server::OPENMETRICS_CONTENT_TYPE, "# HELP conduit_connections"),
    ] {
        conn.get(path);
        let (head, body) = conn.read_response();
        assert_eq!((head.status, head.header("content-type")), (status, Some(content_type)), "{path}");
        assert!(String::from_utf8(body).unwrap().starts_with(body_start), "{path}");
    }
    conn.get("/metrics");
    let text = String::from_utf8(conn.read_response().1).unwrap();
    // The two counts and the done event.
    assert!(text.lines().any(|l| l == "conduit_events_sent_total 3"), "{text}");
}
