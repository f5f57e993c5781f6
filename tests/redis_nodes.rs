//! Many nodes on one Redis: the example's hub on the Redis Streams backbone, against a real `redis-server` that
//! each test starts on a loopback port of its own (see `conduit::redis::testing`). Nodes are servers in this
//! process, each with its own hub and Redis connections, except where a node must die with `kill -9`: there
//! they are example processes.

mod common;

#[allow(dead_code)]
#[path = "../examples/sse_simple_server/main.rs"]
mod example;

use common::{ExampleProcess, local_config, roundtrip, spawn_with_hub};
use conduit::redis::testing::{Persistence, RedisServer};
use conduit::redis::{RedisBackbone, RedisConfig};
use conduit::server::{Hub, HubConfig, SpawnedServer};
use conduit::sse::{BacklogLimits, Decoder, MessageEvent};
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
}

impl Node {
    fn start(redis: &RedisServer) -> Node {
        Node::with_hub_config(redis, HubConfig::default())
    }

    fn with_hub_config(redis: &RedisServer, config: HubConfig) -> Node {
        let hub = Hub::with_backbone(config, RedisBackbone::new(redis_config(redis)).unwrap());
        Node { server: spawn_with_hub(local_config(), example::router(TOKEN, &hub), &hub) }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// `POST /publish`: the id on 202, the status otherwise.
fn publish(addr: SocketAddr, topic: &str, data: &str) -> Result<u64, u16> {
    let request = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
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
        let mut stream = TcpStream::connect(addr).unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(stream, "GET /stream?topic={topics} HTTP/1.0\r\nHost: t\r\n{resume}\r\n").unwrap();
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
