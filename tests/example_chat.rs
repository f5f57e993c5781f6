//! The example's resumable chat replies over loopback: a reply outlives its connection, resumes after
//! `Last-Event-ID` without a lost or repeated token, answers `204` once read to its end, and can be cancelled.

mod common;

#[allow(dead_code)]
#[path = "../examples/sse_simple_server/main.rs"]
mod example;

use common::{Conn, Head, local_config, spawn_with_hub, wait_until};
use conduit::server::{Hub, HubConfig, SpawnedServer};
use example::chat::ChatConfig;
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "chat-test-token";

fn start_with(chat: ChatConfig) -> (SpawnedServer, Hub) {
    let hub = Hub::new(HubConfig::default());
    let server = spawn_with_hub(local_config(), example::router_with(TOKEN, &hub, chat), &hub);
    (server, hub)
}

fn start() -> (SpawnedServer, Hub) {
    start_with(ChatConfig { token_pause: Duration::from_millis(5), ..ChatConfig::default() })
}

/// One event of a chat stream.
#[derive(Clone, Debug, PartialEq)]
struct ChatEvent {
    id: String,
    kind: String,
    data: Value,
}

fn parse(body: &str) -> Vec<ChatEvent> {
    common::events(body)
        .into_iter()
        .map(|e| ChatEvent {
            id: e.id.expect("hub events have ids"),
            kind: e.event,
            data: serde_json::from_str(&e.data).unwrap(),
        })
        .collect()
}

fn tokens(events: &[ChatEvent]) -> String {
    events.iter().filter(|e| e.kind == "message").map(|e| e.data["token"].as_str().unwrap()).collect()
}

fn request(conn: &mut Conn, method: &str, target: &str, headers: &[(&str, &str)], body: &str) {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        raw.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    conn.send(raw.as_bytes());
}

/// Starts a reply to `message`; returns the open connection, its head and the message id.
fn post(server: &SpawnedServer, message: &str) -> (Conn, Head, String) {
    let mut conn = Conn::open(server.local_addr());
    request(&mut conn, "POST", "/api/chat/stream", &[], &json!({ "user_message": message }).to_string());
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let id = head.header("conduit-message-id").expect("Conduit-Message-Id").to_owned();
    (conn, head, id)
}

/// `GET /api/chat/stream/{id}`, optionally after `last`; the connection and the head.
fn get(server: &SpawnedServer, id: &str, last: Option<&str>) -> (Conn, Head) {
    let mut conn = Conn::open(server.local_addr());
    let headers: Vec<(&str, &str)> = last.map(|l| ("Last-Event-ID", l)).into_iter().collect();
    request(&mut conn, "GET", &format!("/api/chat/stream/{id}"), &headers, "");
    let head = conn.read_head();
    (conn, head)
}

/// The whole reply as the hub holds it, read from its start to its end.
fn whole(server: &SpawnedServer, id: &str) -> Vec<ChatEvent> {
    let (mut conn, head) = get(server, id, None);
    assert_eq!(head.status, 200, "{}", head.raw);
    parse(&String::from_utf8(conn.read_chunked_body()).unwrap())
}

fn expected_text(message: &str) -> String {
    format!(
        "You said: \"{message}\". This reply is streamed by Conduit one token at a time over Server-Sent Events. \
         A worker thread publishes each token to a hub topic of this message's own, so the reply goes on if you \
         reload the page or lose the connection, and picks up where you left it."
    )
}

#[test]
fn a_reply_names_its_message_carries_hub_ids_and_ends_after_stream_end() {
    let (server, _hub) = start();
    let (mut conn, head, id) = post(&server, "hello");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "128 random bits: {id}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let events = parse(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(events[0].kind, "stream_start");
    assert_eq!(events[0].data, json!({ "message_id": id, "status": "streaming" }));
    assert_eq!(events[1].kind, "conversation_id");
    let last = events.last().unwrap();
    assert_eq!((last.kind.as_str(), &last.data), ("stream_end", &json!({ "message_id": id, "status": "complete" })));
    assert_eq!(tokens(&events), expected_text("hello"));
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "hub ids, increasing: {ids:?}");
    // The stream ended cleanly and the connection is reusable.
    request(&mut conn, "GET", "/time?nothing", &[], "");
    assert_eq!(conn.read_head().status, 200);
}

#[test]
fn a_reply_resumes_after_the_last_event_id_with_nothing_lost_or_repeated_and_then_answers_204() {
    let (server, _hub) = start_with(ChatConfig { token_pause: Duration::from_millis(20), ..ChatConfig::default() });
    let message = "resume me";
    let (mut conn, _, id) = post(&server, message);
    let first = parse(&conn.read_events(6));
    drop(conn); // the client leaves mid-reply
    let (mut resumed, head) = get(&server, &id, Some(&first.last().unwrap().id));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("conduit-message-id"), Some(id.as_str()));
    let rest = parse(&String::from_utf8(resumed.read_chunked_body()).unwrap());
    let all: Vec<ChatEvent> = first.iter().chain(&rest).cloned().collect();
    assert_eq!(tokens(&all), expected_text(message), "every token once, in order");
    assert_eq!(all, whole(&server, &id), "exactly what the hub holds, from the start");
    let last_id = &rest.last().unwrap().id;
    assert_eq!(rest.last().unwrap().kind, "stream_end");

    // The client has the last event: 204, by header or by query, so an EventSource stops.
    assert_eq!(get(&server, &id, Some(last_id)).1.status, 204);
    let mut conn = Conn::open(server.local_addr());
    request(&mut conn, "GET", &format!("/api/chat/stream/{id}?last_event_id={last_id}"), &[], "");
    assert_eq!(conn.read_head().status, 204);
    // The next-to-last is not the end: the last event comes, then the stream ends.
    let (mut conn, head) = get(&server, &id, Some(&all[all.len() - 2].id));
    assert_eq!(head.status, 200);
    let tail = parse(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(tail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["stream_end"]);
}

#[test]
fn a_reply_goes_on_to_its_end_after_its_client_leaves() {
    let (server, hub) = start();
    let (mut conn, _, id) = post(&server, "I will not wait");
    conn.read_events(2);
    drop(conn);
    let topic = format!("chat/{id}");
    wait_until("the reply ends", || {
        hub.history(&topic, None, usize::MAX).unwrap().iter().any(|e| e.event_type == "stream_end")
    });
    let events = whole(&server, &id);
    assert_eq!(tokens(&events), expected_text("I will not wait"));
    assert_eq!(events.last().unwrap().data["status"], "complete");
}

#[test]
fn the_rust_client_resumes_a_reply_and_stops_at_the_204() {
    use conduit::client::EventSource;
    let (server, _hub) = start();
    let (mut conn, _, id) = post(&server, "client");
    let first = parse(&conn.read_events(3));
    drop(conn);
    let url = format!("http://{}/api/chat/stream/{id}", server.local_addr());
    let mut source = EventSource::get(&url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .last_event_id(&first.last().unwrap().id)
        .default_retry(Duration::from_millis(10))
        .connect()
        .unwrap();
    let mut text = tokens(&first);
    let mut kinds = Vec::new();
    // Ok(None) only after the server's 204 to the reconnection that follows stream_end.
    while let Some(event) = source.next_event().unwrap() {
        kinds.push(event.event_type.clone());
        if event.event_type == "message" {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            text.push_str(data["token"].as_str().unwrap());
        }
    }
    assert_eq!(text, expected_text("client"));
    assert_eq!(kinds.last().map(String::as_str), Some("stream_end"));
    assert_eq!(source.reconnects(), 0, "the 204 ended it: no second stream");
}

#[test]
fn delete_cancels_a_reply_and_nothing_follows_its_end() {
    let (server, hub) = start_with(ChatConfig { token_pause: Duration::from_millis(20), ..ChatConfig::default() });
    let long = "please cancel me ".repeat(20);
    let (mut conn, _, id) = post(&server, long.trim());
    conn.read_events(4);
    let mut delete = Conn::open(server.local_addr());
    request(&mut delete, "DELETE", &format!("/api/chat/stream/{id}"), &[], "");
    assert_eq!(delete.read_response().0.status, 204);
    // The open stream gets the end and closes.
    let rest = parse(&String::from_utf8(conn.read_chunked_body()).unwrap());
    let end = rest.last().unwrap();
    assert_eq!((end.kind.as_str(), &end.data), ("stream_end", &json!({ "message_id": id, "status": "cancelled" })));
    // The worker stopped: the topic does not grow, and ends with the cancellation.
    let topic = format!("chat/{id}");
    let held = hub.history(&topic, None, usize::MAX).unwrap().len();
    std::thread::sleep(Duration::from_millis(200));
    let after = hub.history(&topic, None, usize::MAX).unwrap();
    assert_eq!(after.len(), held, "no token after the cancellation");
    assert_eq!(after.last().unwrap().event_type, "stream_end");
    assert!(tokens(&whole(&server, &id)).len() < expected_text(long.trim()).len(), "stopped part-way");
    // Cancelling what is over is no error; unknown messages are 404.
    request(&mut delete, "DELETE", &format!("/api/chat/stream/{id}"), &[], "");
    assert_eq!(delete.read_response().0.status, 204);
    request(&mut delete, "DELETE", &format!("/api/chat/stream/{}", "0".repeat(32)), &[], "");
    assert_eq!(delete.read_response().0.status, 404);
}

#[test]
fn unknown_malformed_and_unauthorised_requests_are_refused() {
    let (server, _hub) = start();
    let (mut conn, _, id) = post(&server, "mine");
    conn.read_chunked_body();
    let unknown = "0123456789abcdef0123456789abcdef";
    for (method, target, auth, status) in [
        ("GET", format!("/api/chat/stream/{unknown}"), true, 404),
        ("GET", "/api/chat/stream/not-an-id".to_owned(), true, 404),
        ("GET", format!("/api/chat/stream/{}", id.to_uppercase()), true, 404),
        ("GET", format!("/api/chat/stream/{id}%2F..%2F{unknown}"), true, 404),
        ("GET", format!("/api/chat/stream/{id}"), false, 401),
        ("DELETE", format!("/api/chat/stream/{id}"), false, 401),
        ("PUT", format!("/api/chat/stream/{id}"), true, 405),
        ("GET", format!("/stream?topic=chat/{id}"), false, 403),
        ("GET", format!("/stream?topic=news,%20chat/{id}"), false, 403),
        ("POST", format!("/publish?topic=chat/{id}"), true, 403),
    ] {
        let mut conn = Conn::open(server.local_addr());
        let auth = if auth { format!("Authorization: Bearer {TOKEN}\r\n") } else { String::new() };
        conn.send(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\n\r\n").as_bytes());
        let (head, _) = conn.read_response();
        assert_eq!(head.status, status, "{method} {target}");
    }
}

#[test]
fn replies_are_bounded_in_number_time_and_size() {
    // One at a time: a second reply while the first runs gets 503.
    let (server, _hub) = start_with(ChatConfig { max_replies: 1, ..ChatConfig::default() });
    let (mut first, _, _) = post(&server, "first");
    let mut second = Conn::open(server.local_addr());
    request(&mut second, "POST", "/api/chat/stream", &[], r#"{"user_message":"second"}"#);
    let (head, body) = second.read_response();
    assert_eq!((head.status, head.header("retry-after")), (503, Some("1")));
    assert!(String::from_utf8_lossy(&body).contains("too many replies"));
    first.read_chunked_body();

    // Time: the reply ends with an error event once its time is up.
    let (server, _hub) = start_with(ChatConfig {
        max_reply_time: Duration::from_millis(100),
        token_pause: Duration::from_millis(30),
        ..ChatConfig::default()
    });
    let (mut conn, _, _) = post(&server, "slow");
    let events = parse(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(events.last().unwrap().kind, "error");
    assert!(events.last().unwrap().data["error"].as_str().unwrap().contains("out of time"));

    // Size: at most max_reply_events events, the last being stream_end "truncated".
    let (server, _hub) =
        start_with(ChatConfig { max_reply_events: 10, token_pause: Duration::from_millis(1), ..ChatConfig::default() });
    let (mut conn, _, _) = post(&server, "long");
    let events = parse(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(events.len(), 10);
    assert_eq!(events.last().unwrap().data["status"], "truncated");
}
