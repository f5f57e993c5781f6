//! Subscriptions for topics that stand for one piece of work: `from_oldest` (a client with nothing yet gets all
//! of it) and `end_after` (the stream ends cleanly after the work's last event), over loopback.

mod common;

use common::{Conn, local_config, spawn_with_hub, wait_until};
use conduit::server::{Hub, HubConfig, Request, Router, SpawnedServer, Sse};
use conduit::sse::{BacklogLimits, Event};

fn start(config: HubConfig) -> (SpawnedServer, Hub) {
    let hub = Hub::new(config);
    let router = Router::new()
        .get("/job/{topic}", |req: &Request| {
            let topic = req.param("topic").unwrap_or_default().to_owned();
            let last = req.header("last-event-id");
            Sse::subscribe([topic]).from_oldest().end_after(["done", "failed"]).resume_from(last)
        })
        .get("/plain/{topic}", |req: &Request| Sse::subscribe([req.param("topic").unwrap_or_default()]))
        .get("/ping", |_: &Request| conduit::server::Response::text("pong"));
    let server = spawn_with_hub(local_config(), router, &hub);
    (server, hub)
}

fn open(server: &SpawnedServer, target: &str, last_event_id: Option<&str>) -> Conn {
    let mut conn = Conn::open(server.local_addr());
    let header = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n{header}\r\n").as_bytes());
    assert_eq!(conn.read_head().status, 200);
    conn
}

/// (event name, data) of each event in `body`.
fn named(body: impl AsRef<[u8]>) -> Vec<(String, String)> {
    common::events(body).into_iter().map(|e| (e.event, e.data)).collect()
}

fn publish(hub: &Hub, topic: &str, name: &str, data: &str) -> String {
    hub.publish(topic, Event::new().event(name).unwrap().data(data)).unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, d)| ((*n).to_owned(), (*d).to_owned())).collect()
}

#[test]
fn a_new_client_gets_everything_held_then_live_events_and_the_stream_ends_after_the_last() {
    let (server, hub) = start(HubConfig::default());
    publish(&hub, "job1", "step", "1");
    publish(&hub, "job1", "step", "2");
    let mut conn = open(&server, "/job/job1", None);
    assert_eq!(named(conn.read_events(2)), pairs(&[("step", "1"), ("step", "2")]));
    publish(&hub, "job1", "step", "3");
    publish(&hub, "job1", "done", "ok");
    publish(&hub, "job1", "step", "after the end");
    assert_eq!(named(conn.read_chunked_body()), pairs(&[("step", "3"), ("done", "ok")]), "ends after done");
    // The stream ended cleanly: the connection serves the next request.
    conn.send(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n");
    let (head, body) = conn.read_response();
    assert_eq!((head.status, body.as_slice()), (200, &b"pong"[..]));
    wait_until("the ended stream is released", || server.handle().streams() == 0);
}

#[test]
fn a_finished_job_is_replayed_whole_and_the_stream_ends() {
    let (server, hub) = start(HubConfig::default());
    publish(&hub, "job2", "step", "1");
    let failed = publish(&hub, "job2", "failed", "boom");
    let mut conn = open(&server, "/job/job2", None);
    assert_eq!(named(conn.read_chunked_body()), pairs(&[("step", "1"), ("failed", "boom")]));
    // A Last-Event-ID takes precedence: resuming after the first event gets the rest only.
    let first = hub.history("job2", None, 1).unwrap()[0].last_event_id.clone();
    let mut resumed = open(&server, "/job/job2", Some(&first));
    assert_eq!(named(resumed.read_chunked_body()), pairs(&[("failed", "boom")]));
    assert_eq!(hub.history("job2", Some(&failed), 10).unwrap().len(), 0);
}

#[test]
fn events_evicted_before_the_stream_opened_are_no_loss_for_a_client_starting_from_the_oldest() {
    let (server, hub) =
        start(HubConfig { backlog: BacklogLimits { max_events: 3, max_bytes: 1 << 20 }, ..HubConfig::default() });
    // Once a first subscriber has read them all, the loop has surely evicted 1 and 2 from its backlog.
    let mut probe = open(&server, "/plain/job3", None);
    for i in 1..=5 {
        publish(&hub, "job3", "step", &i.to_string());
    }
    assert_eq!(named(probe.read_events(5)).len(), 5);
    assert_eq!(hub.history("job3", None, 10).unwrap().len(), 3);
    let mut conn = open(&server, "/job/job3", None);
    let got = named(conn.read_events(3));
    assert_eq!(
        got,
        pairs(&[("step", "3"), ("step", "4"), ("step", "5")]),
        "no reset: the client asked for nothing older"
    );
    publish(&hub, "job3", "done", "ok");
    assert_eq!(named(conn.read_chunked_body()), pairs(&[("done", "ok")]));
}

#[test]
fn without_the_options_a_subscription_neither_replays_nor_ends() {
    let (server, hub) = start(HubConfig::default());
    // Once a first subscriber has read it, the loop surely holds the event before the second one opens.
    let mut first = open(&server, "/plain/job4", None);
    publish(&hub, "job4", "step", "before");
    assert_eq!(named(first.read_events(1)), pairs(&[("step", "before")]));
    let mut conn = open(&server, "/plain/job4", None);
    publish(&hub, "job4", "done", "ok");
    publish(&hub, "job4", "step", "after");
    assert_eq!(named(conn.read_events(2)), pairs(&[("done", "ok"), ("step", "after")]));
}
