//! The hub on an external backbone, driven by a scripted backbone: the contract a store such as Redis must
//! meet, and what the hub's loops do with each `BackboneEvent`, without any store. The example's routes run on
//! it too, with a store that answers only when the test says, to show that nothing waits for it on the loop.

mod common;

#[allow(dead_code)]
#[path = "../examples/sse_simple_server/main.rs"]
mod example;

use common::{Conn, ids, local_config, roundtrip, spawn_with_hub, wait_until};
use conduit::server::backbone::shared_event;
use conduit::server::{
    Backbone, BackboneError, BackboneEvent, Deliver, HistoryAnswer, HistoryError, Hub, HubConfig, PublishError,
    Request, Router, Sse,
};
use conduit::sse::{Event, SharedEvent};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A backbone whose store is the test: it records what the hub asks, and the test says what comes back.
#[derive(Default)]
struct Script {
    deliver: Mutex<Option<Deliver>>,
    follows: Mutex<Vec<String>>,
    history: Mutex<Vec<(u64, u64)>>,
    /// What `publish` answers: this number, or (when `None`) that the store is unavailable.
    publish_seq: Mutex<Option<u64>>,
    /// What `topic_history` answers (when `None`: that the store is unavailable), and what it was asked.
    topic_answer: Mutex<Option<Vec<SharedEvent>>>,
    topic_asked: Mutex<Vec<(String, Option<String>, usize)>>,
    /// While set, `publish` and `topic_history` wait, like a store that does not answer.
    stalled: Mutex<bool>,
    unstalled: Condvar,
    /// Calls waiting because the store is stalled.
    waiting: AtomicUsize,
}

impl std::fmt::Debug for ScriptHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScriptHandle")
    }
}

struct ScriptHandle(Arc<Script>);

impl Script {
    fn send(&self, event: BackboneEvent) {
        let mut deliver = self.deliver.lock().unwrap();
        (deliver.as_mut().expect("started"))(event);
    }

    fn followed(&self, topic: &str) -> bool {
        self.follows.lock().unwrap().iter().any(|t| t == topic)
    }

    fn stall(&self, stalled: bool) {
        *self.stalled.lock().unwrap() = stalled;
        self.unstalled.notify_all();
    }

    fn wait_while_stalled(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut stalled = self.stalled.lock().unwrap();
        while *stalled {
            stalled = self.unstalled.wait(stalled).unwrap();
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

fn unavailable() -> BackboneError {
    BackboneError::Unavailable("scripted".into())
}

impl Backbone for ScriptHandle {
    fn publish(&self, _: &str, _: &Event) -> Result<u64, BackboneError> {
        self.0.wait_while_stalled();
        self.0.publish_seq.lock().unwrap().ok_or_else(unavailable)
    }

    fn start(&self, deliver: Deliver) -> std::io::Result<()> {
        *self.0.deliver.lock().unwrap() = Some(deliver);
        Ok(())
    }

    fn follow(&self, topic: &str) {
        self.0.follows.lock().unwrap().push(topic.to_owned());
    }

    fn unfollow(&self, _: &str) {}

    fn request_history(&self, token: u64, after: u64, _: &[Arc<str>], _: usize) {
        self.0.history.lock().unwrap().push((token, after));
    }

    fn is_up(&self) -> bool {
        true
    }

    fn topic_history(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<SharedEvent>, HistoryError> {
        self.0.topic_asked.lock().unwrap().push((topic.to_owned(), after.map(str::to_owned), limit));
        self.0.wait_while_stalled();
        self.0.topic_answer.lock().unwrap().clone().ok_or(HistoryError::Backbone(unavailable()))
    }
}

fn event(seq: u64) -> SharedEvent {
    shared_event(seq, &Event::new().id(seq.to_string()).unwrap().data(format!("e{seq}")))
}

fn start() -> (Arc<Script>, Hub, conduit::server::SpawnedServer) {
    start_with(|_| Router::new().get("/stream", |req: &Request| Sse::subscribe_request(req)))
}

/// A server with the router `routes` makes for the hub, on a scripted backbone.
fn start_with(routes: impl FnOnce(&Hub) -> Router) -> (Arc<Script>, Hub, conduit::server::SpawnedServer) {
    let script = Arc::new(Script::default());
    let hub = Hub::with_backbone(HubConfig::default(), ScriptHandle(Arc::clone(&script)));
    let server = spawn_with_hub(local_config(), routes(&hub), &hub);
    (script, hub, server)
}

fn subscribe(server: &conduit::server::SpawnedServer, last_event_id: Option<u64>) -> Conn {
    let mut conn = Conn::open(server.local_addr());
    let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    conn.send(format!("GET /stream?topic=t HTTP/1.1\r\nHost: x\r\n{resume}\r\n").as_bytes());
    assert_eq!(conn.read_head().status, 200, "the stream opens at once, before its topic has joined");
    conn
}

/// Topic "t" joins at 6 with 5 and 6 in the cache; events up to 4 existed and are older than it.
fn join_holding_5_and_6(script: &Script) {
    script.send(BackboneEvent::Joined {
        topic: "t".into(),
        tail: vec![event(5), event(6)],
        missing_through: 4,
        through: 6,
    });
}

#[test]
fn a_subscription_waits_for_its_topic_then_goes_live_in_the_backbones_order() {
    let (script, hub, server) = start();
    let mut conn = subscribe(&server, None);
    wait_until("the topic is followed", || script.followed("t"));
    assert!(matches!(hub.publish("t", Event::new().data("x")), Err(PublishError::Backbone(_))));
    script.send(BackboneEvent::Joined { topic: "t".into(), tail: vec![event(1)], missing_through: 0, through: 1 });
    script.send(BackboneEvent::Batch {
        events: vec![("t".into(), event(2)), ("t".into(), event(3))],
        gaps: vec![],
        through: 3,
    });
    // Live from the node's position when it joined: the tail is history, the batch is new.
    assert_eq!(ids(conn.read_events(2).as_bytes()), [2, 3]);
}

#[test]
fn a_resume_older_than_the_cache_asks_the_backbone_and_sends_its_answer_first() {
    let (script, _hub, server) = start();
    let mut first = subscribe(&server, None);
    wait_until("the topic is followed", || script.followed("t"));
    join_holding_5_and_6(&script);
    let mut conn = subscribe(&server, Some(1));
    wait_until("history is asked for", || !script.history.lock().unwrap().is_empty());
    let (token, after) = script.history.lock().unwrap()[0];
    assert_eq!(after, 1);
    let answer = HistoryAnswer { events: vec![event(2), event(3), event(4)], through: 6, complete: true };
    script.send(BackboneEvent::History { token, result: Ok(answer) });
    let body = conn.read_events(5);
    assert!(!body.contains("reset"), "{body}");
    assert_eq!(ids(body.as_bytes()), [2, 3, 4, 5, 6]);
    script.send(BackboneEvent::Batch { events: vec![("t".into(), event(7))], gaps: vec![], through: 7 });
    assert_eq!(ids(conn.read_events(1).as_bytes()), [7]);
    assert_eq!(ids(first.read_events(1).as_bytes()), [7]);
}

#[test]
fn a_new_epoch_opens_every_stream_with_a_reset_and_goes_on_in_the_new_history() {
    let (script, _hub, server) = start();
    let mut conn = subscribe(&server, None);
    wait_until("the topic is followed", || script.followed("t"));
    script.send(BackboneEvent::Joined { topic: "t".into(), tail: vec![], missing_through: 0, through: 10 });
    script.send(BackboneEvent::Batch { events: vec![("t".into(), event(11))], gaps: vec![], through: 11 });
    assert_eq!(ids(conn.read_events(1).as_bytes()), [11]);
    script.send(BackboneEvent::NewEpoch { through: 20 });
    let reset = conn.read_events(1);
    assert!(reset.starts_with("event: reset\n") && reset.contains("new_epoch"), "{reset}");
    script.send(BackboneEvent::Joined { topic: "t".into(), tail: vec![], missing_through: 0, through: 20 });
    script.send(BackboneEvent::Batch { events: vec![("t".into(), event(21))], gaps: vec![], through: 21 });
    assert_eq!(ids(conn.read_events(1).as_bytes()), [21]);
    // An id of the lost history is unknown: the stream opens with a reset.
    let mut late = subscribe(&server, Some(11));
    assert!(late.read_events(1).starts_with("event: reset\n"));
}

#[test]
fn events_trimmed_before_the_node_read_them_cut_off_the_subscribers_that_missed_them() {
    let (script, _hub, server) = start();
    let mut conn = subscribe(&server, None);
    wait_until("the topic is followed", || script.followed("t"));
    script.send(BackboneEvent::Joined { topic: "t".into(), tail: vec![], missing_through: 0, through: 1 });
    script.send(BackboneEvent::Batch { events: vec![("t".into(), event(2))], gaps: vec![], through: 2 });
    assert_eq!(ids(conn.read_events(1).as_bytes()), [2]);
    // 3 to 8 of "t" were lost to this node before 9.
    script.send(BackboneEvent::Batch { events: vec![("t".into(), event(9))], gaps: vec![("t".into(), 8)], through: 9 });
    // Closed (read_to_end returns at EOF), so that it resumes and is told, and 9 is not sent over the gap.
    let rest = conn.read_to_end();
    assert!(!String::from_utf8_lossy(&rest).contains("e9"), "{rest:?}");
}

/// An event named `name` with the backbone's number `seq`.
fn named(seq: u64, name: &str) -> SharedEvent {
    shared_event(seq, &Event::new().event(name).unwrap().id(seq.to_string()).unwrap().data(format!("e{seq}")))
}

#[test]
fn hub_history_reads_the_backbones_store_and_says_when_it_cannot() {
    let (script, hub, _server) = start();
    *script.topic_answer.lock().unwrap() = Some(vec![named(4, "token"), event(7)]);
    let held = hub.history("t", Some("2"), 10).unwrap();
    let fields: Vec<(&str, &str, &str)> =
        held.iter().map(|e| (e.event_type.as_str(), e.data.as_str(), e.last_event_id.as_str())).collect();
    assert_eq!(fields, [("token", "e4", "4"), ("message", "e7", "7")]);
    assert_eq!(script.topic_asked.lock().unwrap().as_slice(), [("t".to_owned(), Some("2".to_owned()), 10)]);
    // A name no topic can have is not asked of the store.
    assert_eq!(hub.history("bad\nname", None, 10), Ok(vec![]));
    assert_eq!(hub.history("bad\nname", Some("1"), 10), Err(HistoryError::UnknownId));
    assert_eq!(script.topic_asked.lock().unwrap().len(), 1);
    *script.topic_answer.lock().unwrap() = None;
    assert_eq!(hub.history("t", None, 10), Err(HistoryError::Backbone(unavailable())));
}

#[test]
fn from_oldest_reads_what_the_cache_lost_from_the_backbone_and_end_after_ends_the_stream() {
    let job =
        |_: &Hub| Router::new().get("/job", |_: &Request| Sse::subscribe(["t"]).from_oldest().end_after(["done"]));
    let (script, _hub, server) = start_with(job);
    let mut conn = Conn::open(server.local_addr());
    conn.send(b"GET /job HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(conn.read_head().status, 200);
    wait_until("the topic is followed", || script.followed("t"));
    join_holding_5_and_6(&script);
    wait_until("the store's oldest events are asked for", || !script.history.lock().unwrap().is_empty());
    let (token, after) = script.history.lock().unwrap()[0];
    assert_eq!(after, 0, "from the beginning of the history");
    // The store trimmed the topic's first event: not the client's loss, since it asked for what is held.
    let answer = HistoryAnswer { events: vec![event(3), event(4), event(5)], through: 6, complete: false };
    script.send(BackboneEvent::History { token, result: Ok(answer) });
    let body = conn.read_events(4);
    assert!(!body.contains("reset"), "{body}");
    assert_eq!(ids(body.as_bytes()), [3, 4, 5, 6]);
    script.send(BackboneEvent::Batch {
        events: vec![("t".into(), named(7, "done")), ("t".into(), event(8))],
        gaps: vec![],
        through: 8,
    });
    // The stream ends right after `done`, cleanly: the chunked terminator, nothing of 8.
    let rest = String::from_utf8(conn.read_chunked_body()).unwrap();
    assert_eq!(ids(rest.as_bytes()), [7]);
    assert!(rest.starts_with("event: done\n"), "{rest}");
}

const TOKEN: &str = "seam-token";

/// The example's routes with one hub thread and room for one request waiting for it.
fn example_on_script() -> (Arc<Script>, Hub, conduit::server::SpawnedServer) {
    start_with(|hub| {
        let offload = example::HubThreads { threads: 1, queue: 1 }.start().unwrap();
        example::routes(TOKEN, hub, example::chat::ChatConfig::default(), offload)
    })
}

fn publish_request(data: &str) -> Vec<u8> {
    format!(
        "POST /publish?topic=news HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\n\r\n{data}",
        data.len()
    )
    .into_bytes()
}

#[test]
fn the_examples_publish_waits_for_the_store_on_a_hub_thread_and_is_refused_when_they_are_busy() {
    let (script, _hub, server) = example_on_script();
    let addr = server.local_addr();
    *script.publish_seq.lock().unwrap() = Some(42);
    script.stall(true);
    let mut first = Conn::open(addr);
    first.send(&publish_request("first"));
    wait_until("the publish waits for the store", || script.waiting() == 1);
    // The loop goes on meanwhile.
    let (head, _) = roundtrip(addr, b"GET /favicon.svg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    // One more waits for the thread; the next finds no room and is refused, not queued without bound.
    let mut second = Conn::open(addr);
    second.send(&publish_request("second"));
    let (head, body) = roundtrip(addr, &publish_request("third"));
    assert_eq!((head.status, head.header("retry-after")), (503, Some("1")), "{}", String::from_utf8_lossy(&body));
    assert_eq!(script.waiting(), 1, "the refused publish never reached the store");
    script.stall(false);
    for conn in [&mut first, &mut second] {
        let (head, body) = conn.read_response();
        assert_eq!(head.status, 202);
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(reply["id"], "42");
    }
    // A store that refuses: 503, never an acknowledgement.
    *script.publish_seq.lock().unwrap() = None;
    let (head, _) = roundtrip(addr, &publish_request("refused"));
    assert_eq!((head.status, head.header("retry-after")), (503, Some("1")));
}

#[test]
fn the_examples_chat_reads_the_store_off_the_loop_and_answers_503_when_it_cannot() {
    let (script, _hub, server) = example_on_script();
    let addr = server.local_addr();
    let id = "0123456789abcdef0123456789abcdef";
    let request = |method: &str| {
        format!("{method} /api/chat/stream/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
    };
    script.stall(true);
    let mut resume = Conn::open(addr);
    resume.send(request("GET").as_bytes());
    wait_until("the resume reads the store", || script.waiting() == 1);
    let (head, _) = roundtrip(addr, b"GET /favicon.svg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200, "the loop answers while the store does not");
    script.stall(false);
    // The store could not be read: that is not "no such message".
    let (head, _) = resume.read_response();
    assert_eq!((head.status, head.header("retry-after")), (503, Some("1")));
    let (head, _) = roundtrip(addr, request("DELETE").as_bytes());
    assert_eq!(head.status, 503);
    // A store that holds nothing of it: 404 for both.
    *script.topic_answer.lock().unwrap() = Some(Vec::new());
    assert_eq!(roundtrip(addr, request("GET").as_bytes()).0.status, 404);
    assert_eq!(roundtrip(addr, request("DELETE").as_bytes()).0.status, 404);
    let asked = script.topic_asked.lock().unwrap();
    assert!(asked.iter().all(|(topic, _, _)| topic == &format!("chat/{id}")), "{asked:?}");
}
