//! examples/llm_proxy.rs against a fake OpenAI-compatible upstream on loopback (never the network): tokens are
//! relayed in order, the request upstream is what the API expects, failures become `error` events, and a
//! browser that leaves closes the upstream connection.

mod common;

#[allow(dead_code)]
#[path = "../examples/llm_proxy.rs"]
mod example;

use common::{Conn, spawn, wait_until};
use conduit::server::SpawnedServer;
use example::{ProxyConfig, Relays};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "proxy-test-token";
const API_KEY: &str = "sk-test-upstream-key";

/// What the fake upstream does with the one request it serves.
#[derive(Clone)]
enum Script {
    /// A chunk per token (a role chunk first, a finish_reason chunk last), then `[DONE]` if `done`.
    Reply { tokens: Vec<&'static str>, done: bool },
    /// This status with a JSON error body.
    Status(u16),
    /// A token every `pause` until the connection is closed by the proxy (at most ten seconds).
    Endless { pause: Duration },
}

/// A request as the upstream received it.
#[derive(Debug)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct FakeUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// For `Endless`: how many tokens were written before the proxy closed the connection.
    closed: mpsc::Receiver<usize>,
}

fn read_request(stream: &mut TcpStream) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let len: usize = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).unwrap().1.parse().unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    Seen { request_line: request_line.trim_end().to_owned(), headers, body: serde_json::from_slice(&body).unwrap() }
}

fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    let data = json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }] });
    format!("data: {data}\n\n")
}

impl FakeUpstream {
    /// Listens on a free loopback port and serves one request with `script`.
    fn start(script: Script) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed) = mpsc::channel();
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else { return };
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            record.lock().unwrap().push(read_request(&mut stream));
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
            match script {
                Script::Reply { tokens, done } => {
                    let mut body = head.to_owned();
                    body.push_str(&chunk(json!({ "role": "assistant", "content": "" }), None));
                    for token in tokens {
                        body.push_str(&chunk(json!({ "content": token }), None));
                    }
                    if done {
                        body.push_str(&chunk(json!({}), Some("stop")));
                        body.push_str("data: [DONE]\n\n");
                    }
                    let _ = stream.write_all(body.as_bytes());
                }
                Script::Status(status) => {
                    let body = r#"{"error":{"message":"nope"}}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
                Script::Endless { pause } => {
                    let give_up = Instant::now() + Duration::from_secs(10);
                    let mut written = 0;
                    let mut result = stream.write_all(head.as_bytes());
                    while result.is_ok() && Instant::now() < give_up {
                        result = stream.write_all(chunk(json!({ "content": "word " }), None).as_bytes());
                        written += 1;
                        std::thread::sleep(pause);
                    }
                    if result.is_err() {
                        let _ = closed_tx.send(written);
                    }
                }
            }
        });
        FakeUpstream { addr, seen, closed }
    }

    fn url(&self) -> String {
        format!("http://{}/v1/chat/completions", self.addr)
    }
}

fn proxy(upstream: &str) -> (SpawnedServer, Arc<Relays>) {
    let relays = Arc::new(Relays::default());
    let config = ProxyConfig {
        upstream: upstream.to_owned(),
        model: "test-model".to_owned(),
        api_key: Some(API_KEY.to_owned()),
        token: TOKEN.to_owned(),
        upstream_timeout: Duration::from_secs(5),
        max_relays: 4,
    };
    (spawn(example::router(config, Arc::clone(&relays))), relays)
}

/// Asks the proxy as a browser would; returns the open connection after checking the status.
fn ask(server: &SpawnedServer, body: &Value, status: u16) -> Conn {
    let mut conn = Conn::open(server.local_addr());
    let body = body.to_string();
    conn.send(
        format!(
            "POST /chat HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let head = conn.read_head();
    assert_eq!(head.status, status, "{}", head.raw);
    conn
}

/// (event name, parsed data) of each event of a stream body.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    common::events(body).into_iter().map(|e| (e.event, serde_json::from_str(&e.data).unwrap())).collect()
}

#[test]
fn tokens_are_relayed_in_order_then_done_and_the_upstream_gets_an_openai_request() {
    let upstream = FakeUpstream::start(Script::Reply { tokens: vec!["Hel", "lo", ", wor", "ld", " 👋"], done: true });
    let (server, relays) = proxy(&upstream.url());
    let mut conn = ask(&server, &json!({ "prompt": "Say hello" }), 200);
    let got = events(&conn.read_chunked_body());
    let tokens: Vec<&str> =
        got.iter().filter(|(n, _)| n == "token").map(|(_, d)| d["token"].as_str().unwrap()).collect();
    assert_eq!(tokens, ["Hel", "lo", ", wor", "ld", " 👋"]);
    assert_eq!(got.last().unwrap(), &("done".to_owned(), json!({ "finish_reason": "stop" })));
    assert_eq!(got.len(), 6, "nothing but tokens and done: {got:?}");

    let seen = upstream.seen.lock().unwrap();
    let request = &seen[0];
    assert_eq!(request.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(
        request.body,
        json!({ "model": "test-model", "stream": true, "messages": [{ "role": "user", "content": "Say hello" }] })
    );
    wait_until("the relay is done", || relays.running() == 0);
}

#[test]
fn a_browser_leaving_closes_the_upstream_connection() {
    let upstream = FakeUpstream::start(Script::Endless { pause: Duration::from_millis(20) });
    let (server, relays) = proxy(&upstream.url());
    let mut conn = ask(&server, &json!({ "messages": [{ "role": "user", "content": "go on forever" }] }), 200);
    conn.read_events(3);
    assert_eq!(relays.running(), 1);
    let left = Instant::now();
    drop(conn);
    let written = upstream.closed.recv_timeout(Duration::from_secs(5)).expect("the upstream connection is closed");
    assert!(left.elapsed() < Duration::from_secs(5));
    assert!(written >= 3, "{written} tokens before the close");
    wait_until("the relay is done", || relays.running() == 0);
}

#[test]
fn upstream_failures_become_error_events() {
    // An error status.
    let upstream = FakeUpstream::start(Script::Status(429));
    let (server, _) = proxy(&upstream.url());
    let got = events(&ask(&server, &json!({ "prompt": "hi" }), 200).read_chunked_body());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "error");
    assert!(got[0].1["error"].as_str().unwrap().contains("429"), "{got:?}");

    // A stream that ends without [DONE]: the tokens so far, then the error.
    let upstream = FakeUpstream::start(Script::Reply { tokens: vec!["partial"], done: false });
    let (server, _) = proxy(&upstream.url());
    let got = events(&ask(&server, &json!({ "prompt": "hi" }), 200).read_chunked_body());
    assert_eq!(got[0], ("token".to_owned(), json!({ "token": "partial" })));
    assert_eq!(got[1].0, "error");
    assert!(got[1].1["error"].as_str().unwrap().contains("before [DONE]"));

    // Nobody listening upstream.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (server, _) = proxy(&format!("http://{closed}/v1/chat/completions"));
    let got = events(&ask(&server, &json!({ "prompt": "hi" }), 200).read_chunked_body());
    assert_eq!(got[0].0, "error");
}

#[test]
fn browsers_need_the_token_and_a_valid_request() {
    let (server, relays) = proxy("http://127.0.0.1:9/never-contacted");
    let post = |auth: &str, body: &str| {
        let raw = format!(
            "POST /chat HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        common::roundtrip(server.local_addr(), raw.as_bytes())
    };
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    for body in ["{}", r#"{"prompt":""}"#, r#"{"messages":[{"role":"robot","content":"x"}]}"#, "not json"] {
        let (head, reply) = post(&bearer, body);
        assert_eq!(head.status, 400, "{body}");
        let error: Value = serde_json::from_slice(&reply).unwrap();
        assert!(error["error"].is_string());
    }
    assert_eq!(post("", r#"{"prompt":"hi"}"#).0.status, 401);
    assert_eq!(post("Authorization: Bearer wrong\r\n", r#"{"prompt":"hi"}"#).0.status, 401);
    assert_eq!(relays.running(), 0, "nothing was relayed");
}
