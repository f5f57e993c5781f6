//! Many nodes on one Redis: the example's hub on the Redis Streams backbone, against a real `redis-server` that
//! each test starts on a loopback port of its own (see `conduit::redis::testing`). Nodes are servers in this
//! process, each with its own hub and Redis connections, except where a node must die with `kill -9` and where
//! the examples themselves are under test (the chat, the MCP tools): there they are example processes.

mod common;

#[allow(dead_code)]
#[path = "../examples/sse_simple_server/main.rs"]
mod example;

use common::{Block, Conn, ExampleProcess, local_config, roundtrip, spawn_with_hub};
use conduit::redis::testing::{Persistence, RedisServer};
use conduit::redis::{RedisBackbone, RedisConfig, RedisNode};
use conduit::server::{BackboneError, HistoryError, Hub, HubConfig, Request, Router, SpawnedServer, Sse};
use conduit::sse::{BacklogLimits, Decoder, MessageEvent};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token";
const WAIT: Duration = Duration::from_secs(15);

fn redis_config(redis: &RedisServer) -> RedisConfig {
    let mut config = RedisConfig::from_url(&redis.url()).unwrap();
    config.reconnect_initial = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config
}

/// One node: the example's routes on a hub backed by `redis`.
struct Node {
    server: SpawnedServer,
    hub: Hub,
}

impl Node {
    fn start(redis: &RedisServer) -> Node {
        Node::with_hub_config(redis, HubConfig::default())
    }

    fn with_hub_config(redis: &RedisServer, config: HubConfig) -> Node {
        Node::with_routes(redis, config, |router| router)
    }

    /// The example's routes, with what `extend` adds.
    fn with_routes(redis: &RedisServer, config: HubConfig, extend: impl FnOnce(Router) -> Router) -> Node {
        let hub = Hub::with_backbone(config, RedisBackbone::new(redis_config(redis)).unwrap());
        let router = extend(example::router(TOKEN, &hub));
        Node { server: spawn_with_hub(local_config(), router, &hub), hub }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// `POST /publish`: the id on 202, the status otherwise.
fn publish(addr: SocketAddr, topic: &str, data: &str) -> Result<u64, u16> {
    publish_named(addr, topic, "message", data)
}

/// `POST /publish` of an event named `event`.
fn publish_named(addr: SocketAddr, topic: &str, event: &str, data: &str) -> Result<u64, u16> {
    let request = format!(
        "POST /publish?topic={topic}&event={event} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{data}",
        data.len()
    );
    let (head, body) = roundtrip(addr, request.as_bytes());
    if head.status != 202 {
        return Err(head.status);
    }
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Ok(reply["id"].as_str().unwrap().parse().unwrap())
}

/// A subscriber over HTTP/1.0, so the stream is the raw event bytes until the server closes.
struct Subscriber {
    stream: TcpStream,
    decoder: Decoder,
}

impl Subscriber {
    fn open(addr: SocketAddr, topics: &str, last_event_id: Option<&str>) -> Subscriber {
        Subscriber::get(addr, &format!("/stream?topic={topics}"), last_event_id)
    }

    fn get(addr: SocketAddr, target: &str, last_event_id: Option<&str>) -> Subscriber {
        let mut stream = TcpStream::connect(addr).unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(stream, "GET {target} HTTP/1.0\r\nHost: t\r\n{resume}\r\n").unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "the head ended early");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.0 200"), "{}", String::from_utf8_lossy(&head));
        Subscriber { stream, decoder: Decoder::new() }
    }

    /// The next event; `None` when the stream ends or breaks.
    fn next(&mut self) -> Option<MessageEvent> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(event) = self.decoder.next_event() {
                return Some(event);
            }
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.feed(&buf[..n]).unwrap(),
            }
        }
    }

    /// The next `n` events, panicking if the stream ends first.
    fn take(&mut self, n: usize) -> Vec<MessageEvent> {
        (0..n).map(|i| self.next().unwrap_or_else(|| panic!("the stream ended after {i} of {n} events"))).collect()
    }
}

fn ids(events: &[MessageEvent]) -> Vec<u64> {
    events.iter().map(|e| e.last_event_id.parse().unwrap()).collect()
}

fn data(events: &[MessageEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// Every node's subscriber gets every event published on the other nodes once, in publish order.
fn every_event_once_in_order_on(nodes: usize) {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    let nodes: Vec<Node> = (0..nodes).map(|_| Node::start(&redis)).collect();
    let marker = publish(nodes[0].addr(), "news", "marker").unwrap();
    let mut subscribers: Vec<Subscriber> =
        nodes.iter().map(|n| Subscriber::open(n.addr(), "news", Some(&marker.to_string()))).collect();
    let mut published = Vec::new();
    for i in 0..150 {
        // Published on a node other than the first subscriber's.
        let node = &nodes[1 + i % (nodes.len() - 1)];
        let id = publish(node.addr(), "news", &format!("event {i}")).unwrap();
        published.push((id, format!("event {i}")));
    }
    assert!(published.windows(2).all(|w| w[0].0 < w[1].0), "ids increase across nodes");
    for (n, subscriber) in subscribers.iter_mut().enumerate() {
        let got = subscriber.take(published.len());
        let got: Vec<(u64, String)> = ids(&got).into_iter().zip(data(&got).into_iter().map(String::from)).collect();
        assert_eq!(got, published, "node {n}");
    }
}

#[test]
fn two_nodes_deliver_every_event_once_in_publish_order() {
    every_event_once_in_order_on(2);
}

#[test]
fn three_nodes_deliver_every_event_once_in_publish_order() {
    every_event_once_in_order_on(3);
}

#[test]
fn a_restarted_node_resumes_its_clients_without_reset() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    let a = Node::start(&redis);
    let b = Node::start(&redis);
    let first = publish(b.addr(), "t", "first").unwrap();
    let mut subscriber = Subscriber::open(a.addr(), "t", Some(&first.to_string()));
    let before: Vec<u64> = (0..5).map(|i| publish(b.addr(), "t", &format!("before {i}")).unwrap()).collect();
    assert_eq!(ids(&subscriber.take(5)), before);
    let last = before[4].to_string();
    drop(subscriber);
    drop(a);
    let during: Vec<u64> = (0..5).map(|i| publish(b.addr(), "t", &format!("during {i}")).unwrap()).collect();
    // A new process of node A would be a new hub on the same Redis: so is this.
    let a = Node::start(&redis);
    let mut subscriber = Subscriber::open(a.addr(), "t", Some(&last));
    let resumed = subscriber.take(5);
    assert!(resumed.iter().all(|e| e.event_type == "message"), "no reset: {resumed:?}");
    assert_eq!(ids(&resumed), during);
}

#[test]
fn a_resume_older_than_the_cache_is_served_from_redis() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    // A's cache keeps 5 events per topic; Redis keeps 1,000.
    let small = HubConfig { backlog: BacklogLimits { max_events: 5, max_bytes: 1 << 20 }, ..HubConfig::default() };
    let a = Node::with_hub_config(&redis, small);
    let b = Node::start(&redis);
    let ids_published: Vec<u64> =
        (0..40).map(|i| publish(b.addr(), if i % 2 == 0 { "x" } else { "y" }, &i.to_string()).unwrap()).collect();
    // Following both topics from the third event on: 37 events, most of them older than A's cache.
    let mut subscriber = Subscriber::open(a.addr(), "x,y", Some(&ids_published[2].to_string()));
    let got = subscriber.take(37);
    assert_eq!(ids(&got), ids_published[3..]);
    assert!(got.iter().all(|e| e.event_type == "message"));
    // And live after that.
    let next = publish(b.addr(), "y", "live").unwrap();
    assert_eq!(ids(&subscriber.take(1)), [next]);
}

#[test]
fn redis_down_fails_publishes_keeps_streams_and_loses_nothing_accepted() {
    let Some(mut redis) = RedisServer::start(Persistence::AppendOnly) else { return };
    let a = Node::start(&redis);
    let b = Node::start(&redis);
    let marker = publish(b.addr(), "t", "marker").unwrap();
    let mut subscriber = Subscriber::open(a.addr(), "t", Some(&marker.to_string()));
    let publisher = {
        let addr = b.addr();
        std::thread::spawn(move || {
            let (mut accepted, mut refused) = (Vec::new(), Vec::new());
            let start = Instant::now();
            let mut i = 0;
            while start.elapsed() < Duration::from_secs(4) {
                let text = format!("e{i}");
                match publish(addr, "t", &text) {
                    Ok(id) => accepted.push((id, text)),
                    Err(status) => {
                        assert_eq!(status, 503);
                        refused.push(text);
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (accepted, refused)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    redis.kill();
    std::thread::sleep(Duration::from_secs(2));
    redis.restart();
    let (accepted, refused) = publisher.join().unwrap();
    assert!(!refused.is_empty(), "publishing while Redis was down failed");
    assert!(accepted.len() > 100, "publishing worked before and after: {}", accepted.len());
    // The same stream carries everything accepted, once, in order. A publish refused as uncertain may have
    // been stored all the same: it may appear, but nothing else.
    let last_id = accepted.last().unwrap().0;
    let mut got = Vec::new();
    while got.last().is_none_or(|&(id, _)| id < last_id) {
        let event = subscriber.next().expect("the stream stayed open");
        got.push((event.last_event_id.parse::<u64>().unwrap(), event.data));
    }
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in order, no duplicate");
    let received: HashSet<&(u64, String)> = got.iter().collect();
    let missing: Vec<_> = accepted.iter().filter(|a| !received.contains(a)).collect();
    assert!(missing.is_empty(), "accepted but lost: {missing:?}");
    let refused: HashSet<&String> = refused.iter().collect();
    let accepted: HashSet<&(u64, String)> = accepted.iter().collect();
    assert!(got.iter().all(|g| accepted.contains(g) || refused.contains(&g.1)), "nothing unexpected");
}

#[test]
fn redis_restarted_empty_tells_clients_reset() {
    let Some(mut redis) = RedisServer::start(Persistence::None) else { return };
    let a = Node::start(&redis);
    let marker = publish(a.addr(), "t", "marker").unwrap();
    let mut subscriber = Subscriber::open(a.addr(), "t", Some(&marker.to_string()));
    let before = publish(a.addr(), "t", "before").unwrap();
    assert_eq!(ids(&subscriber.take(1)), [before]);
    redis.restart_empty();
    let reset = subscriber.next().expect("the stream stayed open");
    assert_eq!(reset.event_type, "reset");
    assert!(reset.data.contains("new_epoch"), "{}", reset.data);
    // The new history goes on with higher ids, on the same stream.
    let deadline = Instant::now() + WAIT;
    let after = loop {
        match publish(a.addr(), "t", "after") {
            Ok(id) => break id,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(status) => panic!("publishing after the restart: {status}"),
        }
    };
    assert!(after > before, "{after} > {before}");
    let event = subscriber.next().unwrap();
    assert_eq!((event.last_event_id.parse::<u64>().unwrap(), event.data.as_str()), (after, "after"));
    // A client resuming with an id of the lost history is told too.
    let mut late = Subscriber::open(a.addr(), "t", Some(&before.to_string()));
    assert_eq!(late.next().unwrap().event_type, "reset");
}

#[test]
fn topic_churn_over_two_nodes_keeps_redis_connections_few() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    let nodes = [Node::start(&redis), Node::start(&redis)];
    for wave in 0..10 {
        let topics: Vec<String> = (0..100).map(|i| format!("churn-{}", wave * 100 + i)).collect();
        // A subscription on each topic, alternating nodes, resuming from a marker so none can miss its event.
        let marker = publish(nodes[0].addr(), "markers", "m").unwrap().to_string();
        let mut subscribers: Vec<Subscriber> =
            topics.iter().enumerate().map(|(i, t)| Subscriber::open(nodes[i % 2].addr(), t, Some(&marker))).collect();
        for (i, topic) in topics.iter().enumerate().step_by(10) {
            let id = publish(nodes[(i + 1) % 2].addr(), topic, "hello").unwrap();
            assert_eq!(ids(&subscribers[i].take(1)), [id], "{topic}");
        }
        subscribers.clear();
    }
    let names = redis.client_names();
    let ours = names.iter().filter(|n| n.starts_with("conduit-")).count();
    // Publisher, reader and control on each node, whatever the number of topics.
    assert!(ours <= 6, "{names:?}");
}

#[test]
fn kill_9_of_a_node_loses_nothing_when_its_clients_resume_on_another() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    // Processes, so that one can die with SIGKILL.
    let url = redis.url();
    let mut a = ExampleProcess::start(&["--token", TOKEN, "--redis", &url]);
    let b = ExampleProcess::start(&["--token", TOKEN, "--redis", &url]);
    let marker = publish(b.addr, "t", "marker").unwrap();
    let mut subscriber = Subscriber::open(a.addr, "t", Some(&marker.to_string()));
    let publisher = {
        let addr = b.addr;
        std::thread::spawn(move || (0..300).map(|i| publish(addr, "t", &format!("e{i}")).unwrap()).collect::<Vec<_>>())
    };
    let mut got = ids(&subscriber.take(50));
    a.kill_9();
    // Whatever A sent before it died, then B from the last id the client saw.
    while let Some(event) = subscriber.next() {
        got.push(event.last_event_id.parse().unwrap());
    }
    let last = got.last().unwrap().to_string();
    let mut subscriber = Subscriber::open(b.addr, "t", Some(&last));
    let published = publisher.join().unwrap();
    while got.last() != published.last() {
        let event = subscriber.next().expect("B's stream stays open");
        assert_eq!(event.event_type, "message", "no reset");
        got.push(event.last_event_id.parse().unwrap());
    }
    assert_eq!(got, published, "every event once, in order");
}

#[test]
fn hub_history_reads_redis_on_any_node_and_fails_with_a_typed_error_while_redis_is_down() {
    let Some(mut redis) = RedisServer::start(Persistence::None) else { return };
    let a = Node::start(&redis);
    let b = Node::start(&redis);
    let elsewhere = publish(b.addr(), "other", "not h").unwrap().to_string();
    let published: Vec<u64> = (0..3).map(|i| publish(b.addr(), "h", &format!("h{i}")).unwrap()).collect();
    // A never followed "h": its history is read from Redis.
    let held = a.hub.history("h", None, 10).unwrap();
    assert_eq!(ids(&held), published);
    assert_eq!(data(&held), ["h0", "h1", "h2"]);
    assert_eq!(ids(&a.hub.history("h", Some(&published[0].to_string()), 1).unwrap()), published[1..2]);
    assert_eq!(a.hub.history("h", Some(&published[2].to_string()), 10), Ok(vec![]));
    assert_eq!(a.hub.history("h", Some(&elsewhere), 10), Err(HistoryError::UnknownId), "not an event of h");
    assert_eq!(a.hub.history("h", Some("not-a-number"), 10), Err(HistoryError::UnknownId));
    assert_eq!(a.hub.history("nothing-here", None, 10), Ok(vec![]));
    // At most `batch` (512) events a read; the next read goes on after the last one.
    let many: Vec<u64> = (0..600).map(|i| publish(b.addr(), "long", &i.to_string()).unwrap()).collect();
    let first = a.hub.history("long", None, usize::MAX).unwrap();
    assert_eq!(ids(&first), many[..512]);
    let rest = a.hub.history("long", Some(&first[511].last_event_id), usize::MAX).unwrap();
    assert_eq!(ids(&rest), many[512..]);
    redis.kill();
    let asked = Instant::now();
    let down = a.hub.history("h", None, 10);
    assert!(matches!(down, Err(HistoryError::Backbone(BackboneError::Unavailable(_)))), "{down:?}");
    // Bounded by the connect and command timeouts (1 s each), a broken connection replaced once.
    assert!(asked.elapsed() < Duration::from_secs(5), "{:?}", asked.elapsed());
}

#[test]
fn from_oldest_and_end_after_start_at_the_oldest_event_redis_holds_and_end_at_the_named_event() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    // A's cache keeps 5 events per topic, Redis 1,000: the oldest held event is Redis's.
    let small = HubConfig { backlog: BacklogLimits { max_events: 5, max_bytes: 1 << 20 }, ..HubConfig::default() };
    let job = |router: Router| {
        router.get("/job/{topic}", |req: &Request| {
            Sse::subscribe([req.param("topic").unwrap_or_default()]).from_oldest().end_after(["done"])
        })
    };
    let a = Node::with_routes(&redis, small, job);
    let b = Node::start(&redis);
    let held: Vec<u64> = (0..20).map(|i| publish(b.addr(), "job", &format!("step {i}")).unwrap()).collect();
    // A follows the topic first, so that its cache holds only the newest five when the next client comes.
    let mut follower = Subscriber::open(a.addr(), "job", Some(&held[19].to_string()));
    let mut client = Subscriber::get(a.addr(), "/job/job", None);
    assert_eq!(ids(&client.take(20)), held, "everything Redis holds, from its oldest");
    // Then live, to the end and not one event further.
    let more = publish(b.addr(), "job", "step 20").unwrap();
    let done = publish_named(b.addr(), "job", "done", "finished").unwrap();
    let after = publish(b.addr(), "job", "after the end").unwrap();
    let rest: Vec<MessageEvent> = std::iter::from_fn(|| client.next()).collect();
    assert_eq!(ids(&rest), [more, done], "the stream ended after `done`: {rest:?}");
    assert_eq!(rest[1].event_type, "done");
    // A client that comes after the end gets the whole job, then the stream ends: `after` is never sent.
    let late: Vec<MessageEvent> = std::iter::from_fn({
        let mut late = Subscriber::get(a.addr(), "/job/job", None);
        move || late.next()
    })
    .collect();
    assert_eq!(ids(&late), [&held[..], &[more, done]].concat());
    assert_eq!(ids(&follower.take(3)), [more, done, after]);
}

/// Sends a chat request with the token, and `Last-Event-ID` when given.
fn chat_request(addr: SocketAddr, method: &str, target: &str, last: Option<&str>, body: &str) -> Conn {
    let mut conn = Conn::open(addr);
    let resume = last.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    let body_headers = match body {
        "" => String::new(),
        _ => format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()),
    };
    let head =
        format!("{method} {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n{resume}{body_headers}\r\n");
    conn.send(format!("{head}{body}").as_bytes());
    conn
}

/// Reads a chat stream until it holds `n` events (the `retry:` block that opens it is not one).
fn chat_events(conn: &mut Conn, n: usize) -> Vec<Block> {
    let mut body = String::new();
    while common::events(&body).len() < n {
        body.push_str(&conn.read_events(1));
    }
    common::events(&body)
}

/// A reply's stream on `addr` after `last` (all of it without), read to its end.
fn read_reply(addr: SocketAddr, message_id: &str, last: Option<&str>) -> Vec<Block> {
    let mut conn = chat_request(addr, "GET", &format!("/api/chat/stream/{message_id}"), last, "");
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    common::events(conn.read_chunked_body())
}

fn status_of(event: &Block) -> Value {
    serde_json::from_str::<Value>(&event.data).unwrap()["status"].clone()
}

fn block_ids(events: &[Block]) -> Vec<u64> {
    events.iter().map(|e| e.id.as_deref().expect("hub events have ids").parse().unwrap()).collect()
}

/// Two example processes on one Redis, and a reply started on the first.
struct ChatNodes {
    a: ExampleProcess,
    b: ExampleProcess,
    /// The `POST` that started the reply, after its head.
    post: Conn,
    message_id: String,
}

impl ChatNodes {
    fn start(redis: &RedisServer, message: &str) -> ChatNodes {
        let url = redis.url();
        let a = ExampleProcess::start(&["--token", TOKEN, "--redis", &url]);
        let b = ExampleProcess::start(&["--token", TOKEN, "--redis", &url]);
        let body = json!({ "user_message": message }).to_string();
        let mut post = chat_request(a.addr, "POST", "/api/chat/stream", None, &body);
        let head = post.read_head();
        assert_eq!(head.status, 200, "{}", head.raw);
        let message_id = head.header("conduit-message-id").unwrap().to_owned();
        ChatNodes { a, b, post, message_id }
    }
}

#[test]
fn a_chat_reply_started_on_one_node_resumes_on_another_without_loss_and_answers_204_there() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    let ChatNodes { a, b, mut post, message_id } = ChatNodes::start(&redis, "hello");
    let seen = chat_events(&mut post, 5);
    assert_eq!(seen[0].event, "stream_start");
    // The connection drops mid-reply; the client comes back to the other node with the last id it saw.
    drop(post);
    let last_seen = seen[4].id.clone().unwrap();
    let rest = read_reply(b.addr, &message_id, Some(&last_seen));
    let end = rest.last().expect("the rest of the reply");
    assert_eq!((end.event.as_str(), status_of(end)), ("stream_end", json!("complete")));
    // Nothing lost, nothing repeated: the whole reply, read on B from its oldest event, is what the client has.
    let whole = read_reply(b.addr, &message_id, None);
    let client_has: Vec<Block> = seen.iter().chain(&rest).cloned().collect();
    assert_eq!(whole, client_has);
    let ids = block_ids(&whole);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(whole.iter().filter(|e| e.event == "message").count() > 10, "{whole:?}");
    // Complete on every node: an EventSource that reconnects with the last id is told to stop.
    let last = end.id.clone().unwrap();
    for node in [&a, &b] {
        let (head, _) =
            chat_request(node.addr, "GET", &format!("/api/chat/stream/{message_id}"), Some(&last), "").read_response();
        assert_eq!(head.status, 204, "{}", head.raw);
    }
    // A message no node holds.
    let unknown = "0123456789abcdef0123456789abcdef";
    let (head, _) = chat_request(b.addr, "GET", &format!("/api/chat/stream/{unknown}"), None, "").read_response();
    assert_eq!(head.status, 404);
}

#[test]
fn a_chat_reply_cancelled_on_another_node_ends_and_its_worker_stops() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    let ChatNodes { a, b, mut post, message_id } = ChatNodes::start(&redis, "stop me");
    let seen = chat_events(&mut post, 3);
    let (head, _) = chat_request(b.addr, "DELETE", &format!("/api/chat/stream/{message_id}"), None, "").read_response();
    assert_eq!(head.status, 204, "{}", head.raw);
    // The stream on A ends with the cancellation B published.
    let rest = common::events(post.read_chunked_body());
    let end = rest.last().expect("the stream's end");
    assert_eq!((end.event.as_str(), status_of(end)), ("stream_end", json!("cancelled")), "{seen:?} {rest:?}");
    // The worker on A stops at its next token: at most the one it was about to publish follows the end, and no
    // end of its own. Read from Redis, as any node would, after time for many more tokens.
    std::thread::sleep(Duration::from_millis(600));
    let node = RedisNode::new(RedisConfig::from_url(&redis.url()).unwrap()).unwrap();
    let topic = format!("chat/{message_id}");
    let held = node.topic_history(&topic, None, 1000).unwrap();
    let cancel = held.iter().position(|e| e.event.event_name() == Some("stream_end")).expect("the cancellation");
    let after: Vec<_> = held[cancel + 1..].iter().map(|e| e.event.event_name().unwrap_or("message")).collect();
    assert!(
        after.len() <= 1 && after.iter().all(|name| *name == "message"),
        "published after the cancellation: {after:?}"
    );
    // Over, on both nodes.
    let cancel_id = end.id.clone().unwrap();
    for node in [&a, &b] {
        let target = format!("/api/chat/stream/{message_id}");
        let (head, _) = chat_request(node.addr, "GET", &target, Some(&cancel_id), "").read_response();
        assert_eq!(head.status, 204, "{}", head.raw);
        let (head, _) = chat_request(node.addr, "DELETE", &target, None, "").read_response();
        assert_eq!(head.status, 204, "cancelling a reply that is over");
    }
}

/// An MCP session on the example's `/mcp` endpoint at `addr`.
struct McpSession {
    addr: SocketAddr,
    id: String,
}

impl McpSession {
    fn post(addr: SocketAddr, session: Option<&str>, message: &Value) -> Conn {
        let body = message.to_string();
        let session = session.map(|id| format!("Mcp-Session-Id: {id}\r\n")).unwrap_or_default();
        let mut conn = Conn::open(addr);
        conn.send(
            format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Accept: application/json, text/event-stream\r\n{session}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        conn
    }

    fn open(addr: SocketAddr) -> McpSession {
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "redis-test", "version": "1"}}});
        let (head, body) = McpSession::post(addr, None, &initialize).read_response();
        assert_eq!(head.status, 200, "{}", String::from_utf8_lossy(&body));
        let id = head.header("mcp-session-id").expect("a session").to_owned();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(McpSession::post(addr, Some(&id), &initialized).read_response().0.status, 202);
        McpSession { addr, id }
    }

    /// Calls a tool and returns its result.
    fn call(&self, id: u64, tool: &str, arguments: Value) -> Value {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        let mut conn = McpSession::post(self.addr, Some(&self.id), &call);
        let head = conn.read_head();
        assert_eq!(head.status, 200, "{}", head.raw);
        loop {
            let chunk = conn.read_chunk().expect("the call's stream ended without its result");
            for line in String::from_utf8(chunk).unwrap().lines() {
                // The stream opens with an event without data, for resuming it.
                let Some(data) = line.strip_prefix("data: ").filter(|d| !d.is_empty()) else { continue };
                let message: Value = serde_json::from_str(data).unwrap();
                if message["id"] == id {
                    return message["result"].clone();
                }
            }
        }
    }
}

#[test]
fn mcp_read_topic_on_one_node_reads_what_the_publish_tool_published_on_another() {
    let Some(redis) = RedisServer::start(Persistence::None) else { return };
    let url = redis.url();
    let a = ExampleProcess::start_mcp(&["--redis", &url]);
    let b = ExampleProcess::start_mcp(&["--redis", &url]);
    let (on_a, on_b) = (McpSession::open(a.addr), McpSession::open(b.addr));
    let published: Vec<String> = ["one", "two", "three"]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let result = on_a.call(i as u64 + 1, "publish", json!({"topic": "mcp-news", "text": text}));
            assert_ne!(result["isError"], json!(true), "{result}");
            result["structuredContent"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let read = |arguments: Value| {
        let result = on_b.call(10, "read_topic", arguments);
        let events = result["structuredContent"]["events"].as_array().cloned().unwrap_or_default();
        (result, events.iter().map(|e| (e["id"].as_str().unwrap().to_owned(), e["data"].clone())).collect::<Vec<_>>())
    };
    let (_, all) = read(json!({"topic": "mcp-news"}));
    let want: Vec<(String, Value)> =
        published.iter().cloned().zip([json!("one"), json!("two"), json!("three")]).collect();
    assert_eq!(all, want);
    let (_, after) = read(json!({"topic": "mcp-news", "after": published[0], "limit": 1}));
    assert_eq!(after, want[1..2]);
    let (unknown, _) = read(json!({"topic": "mcp-news", "after": "no-such-id"}));
    assert_eq!(unknown["isError"], json!(true), "{unknown}");
    // Redis gone: the tool says so, within the backbone's timeouts, and the node still answers.
    drop(redis);
    let (down, _) = read(json!({"topic": "mcp-news"}));
    assert_eq!(down["isError"], json!(true), "{down}");
    assert!(down.to_string().contains("unavailable"), "{down}");
}
