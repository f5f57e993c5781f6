//! The MCP Streamable HTTP transport over real loopback sockets: every status code it answers with, sessions,
//! per-call streams, resumption with `Last-Event-ID`, requests to the client, and every limit.

mod common;

use common::{Conn, Head, wait_until};
use conduit::mcp::{LogLevel, McpConfig, McpEndpoint, McpServer, OriginPolicy, Tool, ToolContext, ToolResult};
use conduit::server::{Router, SpawnedServer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// A tool that sends one progress notification per message received on `steps` (its text as the message),
/// and returns `done` when the sender is dropped.
fn stepped_tool(name: &str) -> (Tool, Sender<String>) {
    let (tx, rx) = channel::<String>();
    let rx: Arc<Mutex<Receiver<String>>> = Arc::new(Mutex::new(rx));
    let tool = Tool::new(name, "advances when told", json!({"type": "object"}), move |cx: &ToolContext| {
        let rx = rx.lock().unwrap();
        let mut i = 0.0;
        while let Ok(message) = rx.recv() {
            i += 1.0;
            cx.progress(i, None, Some(&message)).map_err(|e| e.to_string())?;
        }
        Ok(ToolResult::text("done"))
    });
    (tool, tx)
}

fn echo() -> Tool {
    Tool::new("echo", "echo", json!({"type": "object"}), |cx: &ToolContext| {
        Ok(ToolResult::text(cx.arguments()["message"].as_str().ok_or("message must be a string")?))
    })
}

struct Fixture {
    server: SpawnedServer,
    endpoint: McpEndpoint,
}

impl Fixture {
    fn new(config: McpConfig, tools: Vec<Tool>) -> Fixture {
        let mut mcp = McpServer::new(config).info("test", "1");
        for tool in tools {
            mcp = mcp.tool(tool);
        }
        let endpoint = mcp.start().unwrap();
        let server = common::spawn(endpoint.mount(Router::new(), "/mcp"));
        Fixture { server, endpoint }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn client(&self) -> Client {
        Client { addr: self.addr(), session: None }
    }

    /// A client with an open session.
    fn session(&self) -> Client {
        let mut client = self.client();
        let (head, body) = client.initialize("2025-11-25");
        assert_eq!(head.status, 200, "{}", String::from_utf8_lossy(&body));
        client.session = Some(head.header("mcp-session-id").unwrap().to_owned());
        client
    }
}

struct Client {
    addr: SocketAddr,
    session: Option<String>,
}

impl Client {
    fn raw(&self, method: &str, headers: &[(&str, &str)], body: &str) -> Conn {
        let mut request = format!("{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n", body.len());
        if let Some(session) = &self.session {
            request.push_str(&format!("Mcp-Session-Id: {session}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let mut conn = Conn::open(self.addr);
        conn.send(request.as_bytes());
        conn
    }

    /// A POST of `message` with JSON content type and `Accept: both`, plus `headers`.
    fn post_with(&self, message: &Value, headers: &[(&str, &str)]) -> Conn {
        let mut all = vec![("Content-Type", "application/json"), ("Accept", ACCEPT_BOTH)];
        all.extend_from_slice(headers);
        self.raw("POST", &all, &message.to_string())
    }

    /// POSTs and reads a response with a Content-Length body.
    fn post(&self, message: &Value) -> (Head, Value) {
        let (head, body) = self.post_with(message, &[]).read_response();
        let value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
        (head, value)
    }

    fn initialize(&self, version: &str) -> (Head, Vec<u8>) {
        let message = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {"sampling": {}}, "clientInfo": {"name": "t", "version": "1"}}});
        self.post_with(&message, &[]).read_response()
    }

    /// Starts `tools/call` of `name` and returns the connection after the stream's head.
    fn call(&self, id: u64, name: &str, arguments: Value) -> Conn {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": {"progressToken": id}}});
        let mut conn = self.post_with(&message, &[]);
        let head = conn.read_head();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        conn
    }

    fn get(&self, headers: &[(&str, &str)]) -> Conn {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        self.raw("GET", &all, "")
    }
}

fn request(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method})
}

/// One SSE block: its id, retry and data lines.
#[derive(Debug, Default, PartialEq)]
struct Block {
    id: Option<String>,
    retry: Option<String>,
    data: Option<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    text.split("\n\n")
        .filter(|b| !b.is_empty() && !b.starts_with(':'))
        .map(|b| {
            let mut block = Block::default();
            for line in b.lines() {
                let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                match field {
                    "id" => block.id = Some(value.to_owned()),
                    "retry" => block.retry = Some(value.to_owned()),
                    "data" => block.data = Some(value.to_owned()),
                    _ => {}
                }
            }
            block
        })
        .collect()
}

fn message(block: &Block) -> Value {
    serde_json::from_str(block.data.as_deref().expect("data")).unwrap()
}

/// Reads `n` blocks of a stream.
fn read_blocks(conn: &mut Conn, n: usize) -> Vec<Block> {
    let all = blocks(&conn.read_events(n));
    assert_eq!(all.len(), n, "{all:?}");
    all
}

fn error_code(body: &Value) -> i64 {
    assert!(body["id"].is_null(), "transport errors have no id: {body}");
    body["error"]["code"].as_i64().unwrap()
}

#[test]
fn initialize_opens_a_session_and_negotiates_the_version() {
    let fx = Fixture::new(McpConfig::default(), vec![]);
    for (asked, agreed) in [("2025-06-18", "2025-06-18"), ("2025-11-25", "2025-11-25"), ("1999-01-01", "2025-11-25")] {
        let (head, body) = fx.client().initialize(asked);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some("application/json"));
        let id = head.header("mcp-session-id").unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| (0x21..=0x7E).contains(&b)), "{id}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["id"], 0);
        assert_eq!(body["result"]["protocolVersion"], agreed);
        assert!(body["result"]["capabilities"]["tools"].is_object());
        assert_eq!(body["result"]["serverInfo"]["name"], "test");
    }
    assert_eq!(fx.endpoint.sessions(), 3);
}

#[test]
fn a_client_that_only_takes_event_streams_gets_one() {
    let fx = Fixture::new(McpConfig::default(), vec![]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}});
    let mut conn = fx.client().raw(
        "POST",
        &[("Content-Type", "application/json"), ("Accept", "text/event-stream")],
        &init.to_string(),
    );
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert!(head.header("mcp-session-id").is_some());
    let events = blocks(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(message(&events[0])["result"]["protocolVersion"], "2025-11-25");
}

#[test]
fn notifications_and_responses_get_202_without_a_body() {
    let fx = Fixture::new(McpConfig::default(), vec![]);
    let client = fx.session();
    let cases = [
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "notifications/unknown", "params": {}}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5}}),
        json!({"jsonrpc": "2.0", "id": "server-99", "result": {}}),
        json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -1, "message": "no"}}),
    ];
    for message in cases {
        let (head, body) = client.post_with(&message, &[]).read_response();
        assert_eq!(head.status, 202, "{message}");
        assert!(body.is_empty());
        assert_eq!(head.header("content-length"), Some("0"));
    }
}

#[test]
fn quick_requests_are_answered_as_json() {
    let fx = Fixture::new(McpConfig::default(), vec![echo()]);
    let client = fx.session();
    let (head, body) = client.post(&request(1, "ping"));
    assert_eq!((head.status, &body["result"]), (200, &json!({})));
    let (_, body) = client.post(&request(2, "tools/list"));
    assert_eq!(body["result"]["tools"][0]["name"], "echo");
    assert_eq!(body["result"]["tools"][0]["inputSchema"], json!({"type": "object"}));
    let cases = [
        (request(3, "no/such/method"), -32601),
        (json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope"}}), -32602),
        (json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {}}), -32602),
        (
            json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "echo", "arguments": 3}}),
            -32602,
        ),
        (json!({"jsonrpc": "2.0", "id": 7, "method": "logging/setLevel", "params": {"level": "loud"}}), -32602),
        (json!({"jsonrpc": "2.0", "id": 8, "method": "initialize", "params": {}}), -32600),
    ];
    for (message, code) in cases {
        let (head, body) = client.post(&message);
        if code == -32600 {
            assert_eq!(head.status, 400, "initialize inside a session");
            continue;
        }
        assert_eq!(head.status, 200, "{message}");
        assert_eq!(body["id"], message["id"]);
        assert_eq!(body["error"]["code"], code, "{message}: {body}");
    }
    let (_, body) =
        client.post(&json!({"jsonrpc": "2.0", "id": 9, "method": "logging/setLevel", "params": {"level": "error"}}));
    assert_eq!(body["result"], json!({}));
}

#[test]
fn refusals_carry_the_right_status() {
    let config = McpConfig { max_body_bytes: 512, ..McpConfig::default() };
    let fx = Fixture::new(config, vec![echo()]);
    let session = fx.session();
    let anonymous = fx.client();
    let ping = request(1, "ping").to_string();
    let json = ("Content-Type", "application/json");
    let both = ("Accept", ACCEPT_BOTH);
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(600));
    let call_echo = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m"}}}).to_string();
    // What, from whom, method, headers, body, and the status it must get.
    type Case<'a> = (&'a str, &'a Client, &'a str, Vec<(&'a str, &'a str)>, String, u16);
    let cases: Vec<Case<'_>> = vec![
        ("no session", &anonymous, "POST", vec![json, both], ping.clone(), 400),
        ("no session, GET", &anonymous, "GET", vec![("Accept", "text/event-stream")], String::new(), 400),
        ("no session, DELETE", &anonymous, "DELETE", vec![], String::new(), 400),
        ("malformed session", &anonymous, "POST", vec![json, both, ("Mcp-Session-Id", "a b")], ping.clone(), 400),
        ("unknown session", &anonymous, "POST", vec![json, both, ("Mcp-Session-Id", "0123")], ping.clone(), 404),
        (
            "unknown session, GET",
            &anonymous,
            "GET",
            vec![("Accept", "text/event-stream"), ("Mcp-Session-Id", "0123")],
            String::new(),
            404,
        ),
        ("unknown session, DELETE", &anonymous, "DELETE", vec![("Mcp-Session-Id", "0123")], String::new(), 404),
        ("old version", &session, "POST", vec![json, both, ("MCP-Protocol-Version", "2024-11-05")], ping.clone(), 400),
        (
            "made-up version",
            &session,
            "GET",
            vec![("Accept", "text/event-stream"), ("MCP-Protocol-Version", "x")],
            String::new(),
            400,
        ),
        ("foreign origin", &session, "POST", vec![json, both, ("Origin", "http://evil.example")], ping.clone(), 403),
        ("null origin", &session, "POST", vec![json, both, ("Origin", "null")], ping.clone(), 403),
        (
            "foreign origin, GET",
            &session,
            "GET",
            vec![("Accept", "text/event-stream"), ("Origin", "https://evil.example")],
            String::new(),
            403,
        ),
        (
            "foreign origin, initialize",
            &anonymous,
            "POST",
            vec![json, both, ("Origin", "http://evil.example")],
            ping.clone(),
            403,
        ),
        ("not JSON", &session, "POST", vec![json, both], "{".into(), 400),
        ("a batch", &session, "POST", vec![json, both], format!("[{ping}]"), 400),
        ("not a message", &session, "POST", vec![json, both], r#"{"jsonrpc":"2.0"}"#.into(), 400),
        ("wrong content type", &session, "POST", vec![("Content-Type", "text/plain"), both], ping.clone(), 415),
        ("too large", &session, "POST", vec![json, both], big, 413),
        ("accepts neither", &session, "POST", vec![json, ("Accept", "text/html")], ping.clone(), 406),
        ("call without event streams", &session, "POST", vec![json, ("Accept", "application/json")], call_echo, 406),
        ("GET without event streams", &session, "GET", vec![("Accept", "application/json")], String::new(), 406),
        ("PUT", &session, "PUT", vec![json], ping.clone(), 405),
    ];
    for (what, client, method, headers, body, status) in cases {
        let (head, response) = client.raw(method, &headers, &body).read_response();
        assert_eq!(head.status, status, "{what}: {}", String::from_utf8_lossy(&response));
        if status != 405 {
            let response: Value = serde_json::from_slice(&response).unwrap();
            error_code(&response);
        }
    }
    // Refusals changed nothing: the session still answers.
    assert_eq!(session.post(&request(9, "ping")).0.status, 200);
    assert_eq!(fx.endpoint.sessions(), 1);
}

#[test]
fn origins_and_hosts() {
    let config =
        McpConfig { origins: OriginPolicy::loopback().allow_origin("https://app.example"), ..McpConfig::default() };
    let fx = Fixture::new(config, vec![]);
    let client = fx.session();
    let cases: &[(&str, &str, u16)] = &[
        ("Origin", "http://localhost:5173", 200),
        ("Origin", "http://127.0.0.1", 200),
        ("Origin", "http://[::1]:3000", 200),
        ("Origin", "https://app.example", 200),
        ("Origin", "https://other.example", 403),
        ("Origin", "http://localhost.evil.example", 403),
    ];
    for (name, value, status) in cases {
        let (head, _) = client.post_with(&request(1, "ping"), &[(name, value)]).read_response();
        assert_eq!(head.status, *status, "{name}: {value}");
    }
    // A rebinding attacker's name in Host, without Origin (a same-origin GET after rebinding).
    let raw = format!(
        "POST /mcp HTTP/1.1\r\nHost: evil.example:8000\r\nContent-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\nMcp-Session-Id: {}\r\nContent-Length: 36\r\n\r\n{}",
        client.session.as_deref().unwrap(),
        request(1, "ping")
    );
    assert_eq!(common::roundtrip(fx.addr(), raw.as_bytes()).0.status, 403);
}

#[test]
fn a_call_streams_its_messages_then_its_result_and_ends() {
    let (tool, steps) = stepped_tool("stepped");
    let fx = Fixture::new(McpConfig::default(), vec![tool]);
    let client = fx.session();
    let mut conn = client.call(7, "stepped", json!({}));
    let primer = &read_blocks(&mut conn, 1)[0];
    assert_eq!(primer, &Block { id: Some("0-0".into()), retry: Some("1000".into()), data: Some(String::new()) });
    for i in 1..=3 {
        steps.send(format!("step {i}")).unwrap();
        let block = &read_blocks(&mut conn, 1)[0];
        assert_eq!(block.id.as_deref(), Some(format!("0-{i}").as_str()));
        let m = message(block);
        assert_eq!(m["method"], "notifications/progress");
        assert_eq!(m["params"]["progressToken"], 7);
        assert_eq!(m["params"]["progress"], i as f64);
        assert_eq!(m["params"]["message"], format!("step {i}"));
    }
    drop(steps);
    let rest = blocks(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(rest.len(), 1, "the result, then the stream's end: {rest:?}");
    assert_eq!(rest[0].id.as_deref(), Some("0-4"));
    assert_eq!(
        message(&rest[0]),
        json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "done"}]}})
    );
}

#[test]
fn a_dropped_call_resumes_from_its_last_event_without_loss_or_repeat() {
    let (tool, steps) = stepped_tool("stepped");
    let fx = Fixture::new(McpConfig::default(), vec![tool]);
    let client = fx.session();
    let mut conn = client.call(1, "stepped", json!({}));
    steps.send("a".into()).unwrap();
    steps.send("b".into()).unwrap();
    let seen = read_blocks(&mut conn, 3);
    let last = seen[2].id.clone().unwrap();
    assert_eq!(last, "0-2");
    drop(conn);
    // The client is gone; the call goes on and its messages are kept.
    steps.send("c".into()).unwrap();
    steps.send("d".into()).unwrap();
    // Whether c and d are stored before the client comes back or sent after, it gets each once, in order.
    let mut resumed = client.get(&[("Last-Event-ID", &last)]);
    let head = resumed.read_head();
    assert_eq!((head.status, head.header("content-type")), (200, Some("text/event-stream")));
    let replay = read_blocks(&mut resumed, 2);
    let ids: Vec<_> = replay.iter().map(|b| b.id.clone().unwrap()).collect();
    assert_eq!(ids, ["0-3", "0-4"]);
    let texts: Vec<_> = replay.iter().map(|b| message(b)["params"]["message"].clone()).collect();
    assert_eq!(texts, [json!("c"), json!("d")]);
    // The stream goes on live on the new connection, and ends after the result.
    steps.send("e".into()).unwrap();
    drop(steps);
    let rest = blocks(&String::from_utf8(resumed.read_chunked_body()).unwrap());
    let ids: Vec<_> = rest.iter().map(|b| b.id.clone().unwrap()).collect();
    assert_eq!(ids, ["0-5", "0-6"]);
    assert_eq!(message(&rest[1])["result"]["content"][0]["text"], "done");
    // A finished stream can still be resumed while it is kept: the result again, then the end.
    let mut again = client.get(&[("Last-Event-ID", "0-5")]);
    assert_eq!(again.read_head().status, 200);
    let rest = blocks(&String::from_utf8(again.read_chunked_body()).unwrap());
    assert_eq!(rest.len(), 1);
    assert_eq!(message(&rest[0])["id"], 1);
}

#[test]
fn event_ids_are_unique_across_a_sessions_streams() {
    let (a, steps_a) = stepped_tool("a");
    let (b, steps_b) = stepped_tool("b");
    let fx = Fixture::new(McpConfig::default(), vec![a, b]);
    let client = fx.session();
    let mut first = client.call(1, "a", json!({}));
    let mut second = client.call(2, "b", json!({}));
    steps_a.send("to a".into()).unwrap();
    steps_b.send("to b".into()).unwrap();
    drop((steps_a, steps_b));
    let first = blocks(&String::from_utf8(first.read_chunked_body()).unwrap());
    let second = blocks(&String::from_utf8(second.read_chunked_body()).unwrap());
    let mut ids: Vec<String> = first.iter().chain(&second).map(|b| b.id.clone().unwrap()).collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "{ids:?}");
    // Each message went on its own call's stream only.
    assert!(first.iter().skip(1).all(|b| message(b).to_string().contains("to a") || message(b)["id"] == 1));
    assert!(second.iter().skip(1).all(|b| message(b).to_string().contains("to b") || message(b)["id"] == 2));
    // Resuming names a stream: the other stream's messages are never replayed on it.
    let mut resumed = client.get(&[("Last-Event-ID", first[0].id.as_deref().unwrap())]);
    assert_eq!(resumed.read_head().status, 200);
    let replay = blocks(&String::from_utf8(resumed.read_chunked_body()).unwrap());
    assert_eq!(replay, first[1..]);
}

#[test]
fn resuming_what_is_not_held_is_refused() {
    let config = McpConfig { max_stored_events: 2, max_finished_streams: 1, ..McpConfig::default() };
    let (tool, steps) = stepped_tool("stepped");
    let fx = Fixture::new(config, vec![tool, echo()]);
    let client = fx.session();
    let mut conn = client.call(1, "stepped", json!({}));
    for s in ["a", "b", "c"] {
        steps.send(s.into()).unwrap();
    }
    read_blocks(&mut conn, 4);
    let cases: &[(&str, u16)] = &[
        ("0-0", 410), // 0-1 was evicted: resuming after 0-0 cannot be lossless
        ("0-1", 200),
        ("0-2", 200),
        ("0-3", 200),
        ("0-4", 400), // never sent
        ("9-0", 400), // no such stream
        ("x", 400),
        ("", 400),
    ];
    for (id, status) in cases {
        let head = client.get(&[("Last-Event-ID", id)]).read_head();
        assert_eq!(head.status, *status, "Last-Event-ID {id:?}");
    }
    drop(steps);
    conn.read_chunked_body();
    // Two more calls push the finished stream 0 out of the session's memory.
    for id in 2..=3 {
        let mut c = client.call(id, "echo", json!({"message": "m"}));
        c.read_chunked_body();
    }
    assert_eq!(client.get(&[("Last-Event-ID", "0-3")]).read_head().status, 410);
}

#[test]
fn the_get_stream_carries_messages_of_no_call_and_is_single() {
    let fx = Fixture::new(McpConfig::default(), vec![]);
    let client = fx.session();
    let mut stream = client.get(&[]);
    assert_eq!(stream.read_head().status, 200);
    let primer = &read_blocks(&mut stream, 1)[0];
    assert_eq!(primer.id.as_deref(), Some("0-0"));
    assert_eq!(client.get(&[]).read_head().status, 409, "one GET stream at a time");
    wait_until("the notification is sent", || {
        fx.endpoint.notify_sessions("notifications/tools/list_changed", json!({})) == 1
    });
    let note = &read_blocks(&mut stream, 1)[0];
    assert_eq!(note.id.as_deref(), Some("0-1"));
    assert_eq!(message(note)["method"], "notifications/tools/list_changed");
    drop(stream);
    // Once the client has gone, a new GET stream may open; it has a new number.
    wait_until("a new GET stream opens", || {
        let mut again = client.get(&[]);
        again.read_head().status == 200 && read_blocks(&mut again, 1)[0].id.as_deref() == Some("1-0")
    });
}

#[test]
fn delete_ends_the_session_and_its_calls() {
    let (tool, steps) = stepped_tool("stepped");
    let fx = Fixture::new(McpConfig::default(), vec![tool]);
    let client = fx.session();
    let mut conn = client.call(1, "stepped", json!({}));
    read_blocks(&mut conn, 1);
    let (head, body) = client.raw("DELETE", &[], "").read_response();
    assert_eq!((head.status, body.len()), (200, 0));
    assert_eq!(fx.endpoint.sessions(), 0);
    // The call's connection ends without a result.
    let rest = String::from_utf8(conn.read_chunked_body()).unwrap();
    assert!(!rest.contains("result"), "{rest}");
    // The call finds out on its next send.
    let _ = steps.send("late".into());
    drop(steps);
    for (method, body) in [("POST", request(2, "ping").to_string()), ("GET", String::new()), ("DELETE", String::new())]
    {
        let headers = [("Content-Type", "application/json"), ("Accept", ACCEPT_BOTH)];
        assert_eq!(client.raw(method, &headers, &body).read_response().0.status, 404, "{method}");
    }
}

#[test]
fn cancelled_calls_stop_and_are_not_answered() {
    let (started_tx, started) = channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let tool = Tool::new("spin", "runs until cancelled", json!({"type": "object"}), move |cx: &ToolContext| {
        started_tx.lock().unwrap().send(()).unwrap();
        while !cx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(ToolResult::text("should not be sent"))
    });
    let fx = Fixture::new(McpConfig::default(), vec![tool]);
    let client = fx.session();
    let mut conn = client.call(42, "spin", json!({}));
    started.recv_timeout(common::TIMEOUT).unwrap();
    let cancel =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 42, "reason": "test"}});
    assert_eq!(client.post(&cancel).0.status, 202);
    let body = String::from_utf8(conn.read_chunked_body()).unwrap();
    assert_eq!(blocks(&body).len(), 1, "only the primer: {body}");
}

#[test]
fn tools_can_ask_the_client_and_get_its_answer() {
    let tool = Tool::new("ask", "asks the client", json!({"type": "object"}), |cx: &ToolContext| {
        cx.log(LogLevel::Debug, json!("filtered out by setLevel")).map_err(|e| e.to_string())?;
        cx.log(LogLevel::Warning, json!("asking")).map_err(|e| e.to_string())?;
        let answer =
            cx.request("sampling/createMessage", json!({"messages": [], "maxTokens": 1})).map_err(|e| e.to_string())?;
        Ok(ToolResult::text(answer["content"]["text"].as_str().unwrap_or("?")))
    });
    let fx = Fixture::new(McpConfig::default(), vec![tool]);
    let client = fx.session();
    let level = json!({"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "info"}});
    assert_eq!(client.post(&level).1["result"], json!({}));
    let mut conn = client.call(2, "ask", json!({}));
    let events = read_blocks(&mut conn, 3);
    assert_eq!(message(&events[1])["params"], json!({"level": "warning", "data": "asking"}));
    let asked = message(&events[2]);
    assert_eq!(asked["method"], "sampling/createMessage");
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "forty-two"}}});
    assert_eq!(client.post(&answer).0.status, 202);
    let rest = blocks(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(message(&rest[0])["result"]["content"][0]["text"], "forty-two");
}

#[test]
fn a_handler_that_panics_gets_an_error_result() {
    let tool = Tool::new("boom", "panics", json!({"type": "object"}), |_: &ToolContext| panic!("boom"));
    let fx = Fixture::new(McpConfig::default(), vec![tool, echo()]);
    let client = fx.session();
    let mut conn = client.call(1, "boom", json!({}));
    let rest = blocks(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(message(&rest[1])["result"]["isError"], true);
    // The pool's thread survived.
    let mut conn = client.call(2, "echo", json!({"message": "still here"}));
    let rest = blocks(&String::from_utf8(conn.read_chunked_body()).unwrap());
    assert_eq!(message(&rest[1])["result"]["content"][0]["text"], "still here");
}

#[test]
fn limits_sessions_streams_and_running_calls() {
    let (tool, steps) = stepped_tool("stepped");
    let config = McpConfig {
        max_sessions: 2,
        max_streams_per_session: 2,
        max_running_calls: 1,
        max_queued_calls: 1,
        ..McpConfig::default()
    };
    let fx = Fixture::new(config, vec![tool, echo()]);
    let a = fx.session();
    let _b = fx.session();
    let (head, body) = fx.client().initialize("2025-11-25");
    assert_eq!(head.status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(head.header("retry-after"), Some("1"));

    // One call runs (and blocks the only thread), one waits in the queue...
    let mut running = a.call(1, "stepped", json!({}));
    read_blocks(&mut running, 1);
    let mut queued = a.call(2, "echo", json!({"message": "m"}));
    read_blocks(&mut queued, 1);
    // ...and the session's two streams are open: a third is refused.
    let third = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m"}}});
    let (head, _) = a.post_with(&third, &[]).read_response();
    assert_eq!(head.status, 429);
    assert_eq!(a.get(&[]).read_head().status, 429, "the GET stream counts too");
    // Another session has streams to spare, but the pool is full.
    let (head, _) = _b.post_with(&third, &[]).read_response();
    assert_eq!(head.status, 503);
    assert_eq!(head.header("retry-after"), Some("1"));
    drop(steps);
    running.read_chunked_body();
    let rest = blocks(&String::from_utf8(queued.read_chunked_body()).unwrap());
    assert_eq!(message(rest.last().unwrap())["result"]["content"][0]["text"], "m");
    // Room again.
    let mut now = _b.call(4, "echo", json!({"message": "again"}));
    now.read_chunked_body();
}

#[test]
fn idle_sessions_expire_and_then_answer_404() {
    let config = McpConfig { session_idle_timeout: Duration::from_millis(50), ..McpConfig::default() };
    let fx = Fixture::new(config, vec![]);
    let client = fx.session();
    assert_eq!(client.post(&request(1, "ping")).0.status, 200);
    // Any request runs the sweep (at most once a second); one naming no session does not keep this one alive.
    let other = Client { addr: fx.addr(), session: Some("0000".into()) };
    wait_until("the session expires", || {
        other.post(&request(2, "ping"));
        fx.endpoint.sessions() == 0
    });
    assert_eq!(client.post(&request(3, "ping")).0.status, 404);
}
