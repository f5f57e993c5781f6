//! examples/async_producer.rs run in-process: tokio tasks feeding a stream through `send_async` (waiting for a
//! slow client, stopping when it leaves) and a hub topic through `Hub::publish`, over loopback.

mod common;

#[allow(dead_code)]
#[path = "../examples/async_producer.rs"]
mod example;

use common::{Conn, ids, local_config, spawn_with_hub, wait_until};
use conduit::server::{Hub, HubConfig, SpawnedServer};
use example::Producers;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The example's server, its producers' count, and tokio's thread (running until `stop` is set).
struct Running {
    server: SpawnedServer,
    producers: Arc<Producers>,
    stop: Arc<AtomicBool>,
    tokio: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.tokio.take() {
            let _ = thread.join();
        }
    }
}

fn start(feed_every: Option<Duration>) -> Running {
    let runtime = example::runtime().expect("tokio runtime");
    let hub = Hub::new(HubConfig::default());
    let producers = Arc::new(Producers::default());
    let server =
        spawn_with_hub(local_config(), example::router(runtime.handle().clone(), Arc::clone(&producers)), &hub);
    if let Some(every) = feed_every {
        runtime.spawn(example::feed(hub, every, None));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let until = Arc::clone(&stop);
    let tokio = std::thread::spawn(move || {
        runtime.block_on(async move {
            while !until.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    });
    Running { server, producers, stop, tokio: Some(tokio) }
}

#[test]
fn every_tick_arrives_in_order_through_a_buffer_of_eight() {
    let running = start(None);
    let mut conn = Conn::open(running.server.local_addr());
    conn.get("/ticks?n=300&every_ms=0");
    assert_eq!(conn.read_head().status, 200);
    let body = conn.read_chunked_body();
    assert_eq!(ids(&body), (1..=300).collect::<Vec<_>>(), "the task waited for room instead of losing events");
    assert!(std::str::from_utf8(&body).unwrap().starts_with("event: tick\nid: 1\ndata: 1\n\n"));
    wait_until("the task is done", || running.producers.running() == 0);
}

#[test]
fn a_client_leaving_stops_its_task() {
    let running = start(None);
    let mut conn = Conn::open(running.server.local_addr());
    conn.get("/ticks?n=100000&every_ms=1");
    assert_eq!(conn.read_head().status, 200);
    conn.read_events(5);
    assert_eq!(running.producers.running(), 1);
    drop(conn);
    wait_until("send_async fails and the task stops", || running.producers.running() == 0);
}

#[test]
fn a_tokio_task_publishes_the_feed_to_its_subscribers() {
    let running = start(Some(Duration::from_millis(20)));
    let mut conn = Conn::open(running.server.local_addr());
    conn.get("/feed");
    assert_eq!(conn.read_head().status, 200);
    let body = conn.read_events(3);
    let counts: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 3);
    assert!(counts.windows(2).all(|w| w[1] == w[0] + 1), "consecutive: {counts:?}");
    let ids = ids(body.as_bytes());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "hub ids: {ids:?}");
}

#[test]
fn bad_counts_are_refused() {
    let running = start(None);
    let (head, _) = common::roundtrip(running.server.local_addr(), b"GET /ticks?n=x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 400);
}
