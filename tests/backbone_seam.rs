//! The hub on an external backbone, driven by a scripted backbone: the contract a store such as Redis must
//! meet, and what the hub's loops do with each `BackboneEvent`, without any store.

mod common;

use common::{Conn, ids, local_config, spawn_with_hub, wait_until};
use conduit::server::backbone::shared_event;
use conduit::server::{
    Backbone, BackboneError, BackboneEvent, Deliver, HistoryAnswer, HistoryError, Hub, HubConfig, Request, Router, Sse,
};
use conduit::sse::{Event, SharedEvent};
use std::sync::{Arc, Mutex};

/// A backbone whose store is the test: it records what the hub asks, and the test says what comes back.
#[derive(Default)]
struct Script {
    deliver: Mutex<Option<Deliver>>,
    follows: Mutex<Vec<String>>,
    history: Mutex<Vec<(u64, u64)>>,
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
}

impl Backbone for ScriptHandle {
    fn publish(&self, _: &str, _: &Event) -> Result<u64, BackboneError> {
        Err(BackboneError::Unavailable("scripted".into()))
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

    fn topic_history(&self, _: &str, _: Option<&str>, _: usize) -> Result<Vec<SharedEvent>, HistoryError> {
        Err(HistoryError::Backbone(BackboneError::Unavailable("scripted".into())))
    }
}

fn event(seq: u64) -> SharedEvent {
    shared_event(seq, &Event::new().id(seq.to_string()).unwrap().data(format!("e{seq}")))
}

fn start() -> (Arc<Script>, Hub, conduit::server::SpawnedServer) {
    let script = Arc::new(Script::default());
    let hub = Hub::with_backbone(HubConfig::default(), ScriptHandle(Arc::clone(&script)));
    let router = Router::new().get("/stream", |req: &Request| Sse::subscribe_request(req));
    let server = spawn_with_hub(local_config(), router, &hub);
    (script, hub, server)
}

fn subscribe(server: &conduit::server::SpawnedServer, last_event_id: Option<u64>) -> Conn {
    let mut conn = Conn::open(server.local_addr());
    let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    conn.send(format!("GET /stream?topic=t HTTP/1.1\r\nHost: x\r\n{resume}\r\n").as_bytes());
    assert_eq!(conn.read_head().status, 200, "the stream opens at once, before its topic has joined");
    conn
}

#[test]
fn a_subscription_waits_for_its_topic_then_goes_live_in_the_backbones_order() {
    let (script, hub, server) = start();
    let mut conn = subscribe(&server, None);
    wait_until("the topic is followed", || script.followed("t"));
    assert!(matches!(hub.publish("t", Event::new().data("x")), Err(conduit::server::PublishError::Backbone(_))));
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
    // The cache holds 5 and 6; 2 to 4 are older than it.
    script.send(BackboneEvent::Joined {
        topic: "t".into(),
        tail: vec![event(5), event(6)],
        missing_through: 4,
        through: 6,
    });
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
