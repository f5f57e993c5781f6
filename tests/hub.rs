//! The broadcast hub over loopback: isolation, ordering, fan-out, resume and slow subscribers.

mod common;

use common::{Conn, Head, TIMEOUT, local_config, spawn_with_hub, wait_until};
use conduit::server::{Hub, HubConfig, OLDEST_EVENT_ID_HEADER, PublishError, Request, Router, SpawnedServer, Sse};
use conduit::sse::{BacklogLimits, Event};
use std::time::{Duration, Instant};

fn start(config: HubConfig) -> (SpawnedServer, Hub) {
    let hub = Hub::new(config);
    let router = Router::new().get("/stream", |req: &Request| Sse::subscribe_request(req));
    let server = spawn_with_hub(local_config(), router, &hub);
    (server, hub)
}

fn small_backlog(max_events: usize) -> HubConfig {
    HubConfig { backlog: BacklogLimits { max_events, max_bytes: 1 << 20 }, ..HubConfig::default() }
}

/// Opens a subscription. The server registers it in the same step that writes the head, so once the head
/// is read nothing published afterwards can be missed.
fn subscribe(server: &SpawnedServer, target: &str, last_event_id: Option<&str>) -> (Conn, Head) {
    let mut conn = Conn::open(server.local_addr());
    let header = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n{header}\r\n").as_bytes());
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    (conn, head)
}

/// (id, data) of each event in `body`, ignoring other fields and comments.
fn events(body: &str) -> Vec<(String, String)> {
    body.split_terminator("\n\n")
        .filter_map(|block| {
            let id = block.lines().find_map(|l| l.strip_prefix("id: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((id.to_owned(), data.to_owned()))
        })
        .collect()
}

fn publish_n(hub: &Hub, topic: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| hub.publish(topic, Event::new().data(format!("{topic}-{i}"))).expect("publish")).collect()
}

#[test]
fn topics_are_isolated() {
    let (server, hub) = start(HubConfig::default());
    let (mut a, _) = subscribe(&server, "/stream?topic=a", None);
    let (mut b, _) = subscribe(&server, "/stream?topic=b", None);
    for i in 0..5 {
        hub.publish("a", Event::new().data(format!("a-{i}"))).unwrap();
        hub.publish("b", Event::new().data(format!("b-{i}"))).unwrap();
    }
    let got_a: Vec<String> = events(&a.read_events(5)).into_iter().map(|(_, d)| d).collect();
    let got_b: Vec<String> = events(&b.read_events(5)).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got_a, (0..5).map(|i| format!("a-{i}")).collect::<Vec<_>>());
    assert_eq!(got_b, (0..5).map(|i| format!("b-{i}")).collect::<Vec<_>>());
}

#[test]
fn ids_increase_within_every_topic_and_callers_may_choose_their_own() {
    let (server, hub) = start(HubConfig::default());
    let (mut conn, _) = subscribe(&server, "/stream?topic=a,b", None);
    let a1 = hub.publish("a", Event::new().data("1")).unwrap();
    let b1 = hub.publish("b", Event::new().data("2")).unwrap();
    let custom = hub.publish("a", Event::new().id("order-77").unwrap().data("3")).unwrap();
    let a2 = hub.publish("a", Event::new().data("4")).unwrap();
    let numbers: Vec<u64> = [&a1, &b1, &a2].iter().map(|id| id.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "one increasing sequence for all topics: {numbers:?}");
    assert_eq!(custom, "order-77");
    let got = events(&conn.read_events(4));
    assert_eq!(
        got.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        [a1.as_str(), b1.as_str(), "order-77", a2.as_str()]
    );
}

#[test]
fn a_thousand_subscribers_each_receive_a_burst_in_order() {
    const SUBSCRIBERS: usize = 1000;
    const EVENTS: u32 = 50;
    let (server, hub) = start(HubConfig::default());
    let mut conns: Vec<Conn> = (0..SUBSCRIBERS).map(|_| Conn::open(server.local_addr())).collect();
    for c in &mut conns {
        c.get("/stream?topic=burst");
    }
    wait_until("all subscriptions are registered", || server.handle().streams() == SUBSCRIBERS);
    let ids = publish_n(&hub, "burst", 1..=EVENTS);
    for c in &mut conns {
        assert_eq!(c.read_head().status, 200);
        let got = events(&c.read_events(EVENTS as usize));
        let got_ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

#[test]
fn resuming_while_publishing_continues_loses_and_repeats_nothing() {
    let (server, hub) = start(HubConfig::default());
    let (mut conn, _) = subscribe(&server, "/stream?topic=live", None);
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for i in 1..=600u32 {
                hub.publish("live", Event::new().data(i.to_string())).unwrap();
                if i % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let mut received: Vec<(String, String)> = Vec::new();
    // Three disconnects, each at a point where publishing is still going on.
    for _ in 0..3 {
        received.extend(events(&conn.read_events(60)));
        let last = received.last().unwrap().0.clone();
        drop(conn);
        let (next, head) = subscribe(&server, "/stream?topic=live", Some(&last));
        assert!(head.header(OLDEST_EVENT_ID_HEADER).is_some());
        conn = next;
    }
    publisher.join().unwrap();
    let remaining = 600 - received.len();
    received.extend(events(&conn.read_events(remaining)));
    let data: Vec<u32> = received.iter().map(|(_, d)| d.parse().unwrap()).collect();
    assert_eq!(data, (1..=600).collect::<Vec<_>>(), "no gap and no duplicate");
}

#[test]
fn last_event_id_may_come_as_a_query_parameter() {
    let (server, hub) = start(HubConfig::default());
    // Publishing happens-before connecting, and the loop takes its messages before new connections' requests,
    // so the subscription below sees all five in the backlog.
    let ids = publish_n(&hub, "q", 1..=5);
    let target = format!("/stream?topic=q&last_event_id={}", ids[1]);
    let (mut conn, _) = subscribe(&server, &target, None);
    let got: Vec<String> = events(&conn.read_events(3)).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, ["q-3", "q-4", "q-5"]);
}

#[test]
fn a_lost_id_is_reported_with_a_reset_then_everything_held_follows() {
    let (server, hub) = start(small_backlog(10));
    let ids = publish_n(&hub, "t", 1..=50);
    let (mut conn, head) = subscribe(&server, "/stream?topic=t", Some("nope-never-published"));
    assert_eq!(head.header(OLDEST_EVENT_ID_HEADER), Some(ids[40].as_str()));
    let body = conn.read_events(11);
    let first = body.split("\n\n").next().unwrap();
    assert!(first.starts_with("event: reset\ndata: "), "{first}");
    let reset: serde_json::Value = serde_json::from_str(first.rsplit("data: ").next().unwrap()).unwrap();
    assert_eq!(reset["reason"], "unknown_id");
    assert_eq!(reset["last_event_id"], "nope-never-published");
    assert_eq!(reset["oldest_id"], ids[40].as_str());
    let replayed: Vec<String> = events(&body).into_iter().map(|(_, d)| d).collect();
    assert_eq!(replayed, (41..=50).map(|i| format!("t-{i}")).collect::<Vec<_>>());
}

#[test]
fn a_known_id_behind_the_backlog_in_another_topic_resets_without_repeats() {
    // Topic a keeps 3 events, topic b keeps plenty; a client following both that last saw an event of b
    // has missed events of a that are gone.
    let (server, hub) = start(small_backlog(3));
    let b1 = hub.publish("b", Event::new().data("b-1")).unwrap();
    publish_n(&hub, "a", 1..=5);
    hub.publish("b", Event::new().data("b-2")).unwrap();
    let (mut conn, _) = subscribe(&server, "/stream?topic=a&topic=b", Some(&b1));
    let body = conn.read_events(5);
    let first = body.split("\n\n").next().unwrap();
    assert!(first.contains("\"reason\":\"events_dropped\""), "{first}");
    let replayed: Vec<String> = events(&body).into_iter().map(|(_, d)| d).collect();
    assert_eq!(replayed, ["a-3", "a-4", "a-5", "b-2"], "held events after the client's own, in publish order");
}

#[test]
fn a_slow_subscriber_catches_up_without_holding_back_the_others() {
    // 6 MB: far more than the slow client's 64 KiB receive buffer and the server socket's send buffer hold, so
    // the server must hold the rest, and the slow subscriber falls back to reading the backlog.
    let (server, hub) =
        start(HubConfig { backlog: BacklogLimits { max_events: 5000, max_bytes: 16 << 20 }, ..HubConfig::default() });
    let (mut slow, _) = subscribe(&server, "/stream?topic=firehose", None);
    socket2::SockRef::from(&slow.stream).set_recv_buffer_size(64 * 1024).unwrap();
    let mut fast: Vec<Conn> = (0..5).map(|_| subscribe(&server, "/stream?topic=firehose", None).0).collect();
    let payload = "p".repeat(2000);
    let started = Instant::now();
    for i in 1..=3000u32 {
        hub.publish("firehose", Event::new().data(format!("{i} {payload}"))).unwrap();
    }
    // The fast subscribers get everything while the slow one is not reading at all.
    for c in &mut fast {
        let got = events(&c.read_events(3000));
        assert_eq!(got.len(), 3000);
        assert!(got.iter().enumerate().all(|(i, (_, d))| d.starts_with(&format!("{} ", i + 1))));
    }
    assert!(started.elapsed() < TIMEOUT);
    // Then the slow one reads, and still gets every event in order.
    let got = events(&slow.read_events(3000));
    assert!(got.iter().enumerate().all(|(i, (_, d))| d.starts_with(&format!("{} ", i + 1))));
    assert_eq!(got.len(), 3000);
}

#[test]
fn a_subscriber_that_falls_out_of_the_backlog_is_cut_off_and_told_on_resume() {
    let (server, hub) = start(small_backlog(20));
    let (mut slow, _) = subscribe(&server, "/stream?topic=t", None);
    socket2::SockRef::from(&slow.stream).set_recv_buffer_size(64 * 1024).unwrap();
    // One event read, so the client has an id to resume from whatever happens next.
    let first_id = hub.publish("t", Event::new().data("first")).unwrap();
    assert_eq!(events(&slow.read_events(1))[0].0, first_id);
    // Then it stops reading while far more than its buffers and the backlog hold is published.
    let payload = "p".repeat(2000);
    for i in 1..=4000u32 {
        if hub.publish("t", Event::new().data(format!("{i} {payload}"))).is_err() {
            break;
        }
    }
    wait_until("the slow subscriber is cut off", || server.handle().streams() == 0);
    let received = slow.read_to_end();
    let text = String::from_utf8_lossy(&received);
    let last_id = text.lines().filter_map(|l| l.strip_prefix("id: ")).next_back().unwrap_or(&first_id).to_owned();
    let (mut again, _) = subscribe(&server, "/stream?topic=t", Some(&last_id));
    let first = again.read_events(1);
    assert!(first.starts_with("event: reset\n"), "{first}");
    // Its id has been evicted too, so no topic holds it any more: the documented reason for that is unknown_id.
    assert!(first.contains("\"reason\":\"unknown_id\""), "{first}");
}

#[test]
fn bad_subscriptions_are_refused_with_400() {
    let (server, _hub) = start(HubConfig { max_topics_per_stream: 2, ..HubConfig::default() });
    for target in ["/stream?topic=a,b,c", "/stream?topic=%0Aevil", "/stream?topic=a&topic="] {
        let mut conn = Conn::open(server.local_addr());
        conn.get(target);
        let (head, body) = conn.read_response();
        assert_eq!(head.status, 400, "{target}: {}", String::from_utf8_lossy(&body));
        // The reason may quote the hostile name: it must never be sniffed as HTML.
        assert_eq!(head.header("x-content-type-options"), Some("nosniff"), "{target}");
    }
}

#[test]
fn subscribers_leaving_are_forgotten() {
    let (server, hub) = start(HubConfig::default());
    let conns: Vec<(Conn, Head)> = (0..20).map(|_| subscribe(&server, "/stream?topic=t", None)).collect();
    drop(conns);
    wait_until("all streams are gone", || server.handle().streams() == 0 && server.handle().connections() == 0);
    // Publishing to a topic whose subscribers left is fine.
    hub.publish("t", Event::new().data("x")).unwrap();
    let (mut conn, _) = subscribe(&server, "/stream?topic=t", None);
    hub.publish("t", Event::new().data("y")).unwrap();
    assert_eq!(events(&conn.read_events(1))[0].1, "y");
}

/// Opens a subscription and returns the response's status without reading any events.
fn subscribe_status(server: &SpawnedServer, target: &str) -> (Conn, u16) {
    let mut conn = Conn::open(server.local_addr());
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let status = conn.read_head().status;
    (conn, status)
}

#[test]
fn a_subscription_to_several_new_topics_gets_every_one_of_them_when_the_table_is_full() {
    let (server, hub) = start(HubConfig { max_topics: 4, ..HubConfig::default() });
    for k in 0..4 {
        hub.publish(&format!("old{k}"), Event::new().data("x")).unwrap();
    }
    let (mut conn, _) = subscribe(&server, "/stream?topic=nx1,nx2,nx3", None);
    for topic in ["nx1", "nx2", "nx3"] {
        hub.publish(topic, Event::new().data(topic)).unwrap();
    }
    let got: Vec<String> = events(&conn.read_events(3)).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, ["nx1", "nx2", "nx3"]);
}

#[test]
fn subscribers_cannot_squat_the_topics_publishing_needs_and_a_publish_not_kept_is_refused() {
    let (server, hub) =
        start(HubConfig { max_topics: 4, max_unpublished_topics: 8, max_topics_per_stream: 4, ..HubConfig::default() });
    // Anonymous subscribers take every unpublished place...
    let squatters: Vec<Conn> = (0..2)
        .map(|k| {
            let (conn, status) = subscribe_status(&server, &format!("/stream?topic=sq{k}-0,sq{k}-1,sq{k}-2,sq{k}-3"));
            assert_eq!(status, 200);
            conn
        })
        .collect();
    let (_refused, status) = subscribe_status(&server, "/stream?topic=one-more");
    assert_eq!(status, 503, "a ninth unpublished topic is refused");
    // ...but publishing still has its own room, and what it acknowledges is kept.
    let id = hub.publish("victim", Event::new().data("kept")).unwrap();
    let (mut reader, _) = subscribe(&server, "/stream?topic=victim", Some("before-anything"));
    let got = events(&reader.read_events(2));
    assert_eq!(got.last(), Some(&(id, "kept".to_owned())), "the acknowledged event is in the backlog");

    // Once every published topic has followers, a publish to a new topic cannot be kept: it is refused.
    let _followers: Vec<(Conn, Head)> = ["p1", "p2", "p3"]
        .iter()
        .map(|t| {
            hub.publish(t, Event::new().data("x")).unwrap();
            subscribe(&server, &format!("/stream?topic={t}"), None)
        })
        .collect();
    assert_eq!(hub.publish("p4", Event::new().data("x")), Err(PublishError::TooManyTopics));
    drop(squatters);
}

#[test]
fn an_id_from_before_a_restart_gets_a_reset_not_a_silent_gap() {
    let (first_run, hub) = start(HubConfig::default());
    let old_ids = publish_n(&hub, "t", 1..=10);
    first_run.shutdown().unwrap();
    let (second_run, hub) = start(HubConfig::default());
    publish_n(&hub, "t", 1..=12);
    let (mut conn, _) = subscribe(&second_run, "/stream?topic=t", Some(&old_ids[9]));
    let body = conn.read_events(13);
    let first = body.split("\n\n").next().unwrap();
    assert!(first.starts_with("event: reset\n"), "{first}");
    let replayed: Vec<String> = events(&body).into_iter().map(|(_, d)| d).collect();
    assert_eq!(replayed, (1..=12).map(|i| format!("t-{i}")).collect::<Vec<_>>(), "none of the new run is skipped");
}
