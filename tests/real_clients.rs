//! The clients people use, against the example server: each must see exactly the events, ids and data the
//! server sent, multi-line data and unicode included.
//!
//! curl and Conduit's Rust client run in every `cargo test`. httpx + httpx-sse needs Python with those
//! packages: `tests/clients/run.sh` makes a virtualenv and runs these tests with it.

mod common;

#[allow(dead_code)]
#[path = "../examples/sse_simple_server/main.rs"]
mod example;

use common::{local_config, spawn_with_hub};
use conduit::client::EventSource;
use conduit::server::{Hub, HubConfig, SpawnedServer};
use conduit::sse::{Decoder, Event, MessageEvent};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// (event name, data, custom id) of each fixture; ids not given are assigned by the hub.
const FIXTURES: &[(Option<&str>, &str, Option<&str>)] = &[
    (Some("greeting"), "hello", None),
    (None, "line one\nline two\n\nline four", None),
    (None, "unicode: héllo wörld — 你好 👋", None),
    (Some("update"), r#"{"n": 4, "note": "json"}"#, None),
    (None, "  leading and trailing spaces  ", None),
    (None, "", None),
    (None, "carriage\rreturn and crlf\r\nend", None),
    (Some("custom"), "with a chosen id", Some("ünïcode-id-8")),
];

/// What a browser-like client must report for the fixtures, in order.
fn expected(ids: &[String]) -> Vec<Value> {
    FIXTURES
        .iter()
        .zip(ids)
        .map(|((name, data, _), id)| {
            // Every line break in data (CR, LF, CRLF) comes back as LF.
            let data = data.replace("\r\n", "\n").replace('\r', "\n");
            json!({ "type": name.unwrap_or("message"), "data": data, "lastEventId": id })
        })
        .collect()
}

/// Starts the example with the fixtures published after a marker event. Returns the server, the URL that
/// replays everything after the marker, and the fixtures' ids.
fn start() -> (SpawnedServer, String, Vec<String>) {
    let hub = Hub::new(HubConfig::default());
    let server = spawn_with_hub(local_config(), example::router("token", &hub), &hub);
    let marker = hub.publish("fixtures", Event::new().data("marker")).unwrap();
    let ids = FIXTURES
        .iter()
        .map(|(name, data, id)| {
            let mut event = Event::new().data(*data);
            if let Some(name) = name {
                event = event.event(*name).unwrap();
            }
            if let Some(id) = id {
                event = event.id(*id).unwrap();
            }
            hub.publish("fixtures", event).unwrap()
        })
        .collect();
    let url = format!("http://{}/stream?topic=fixtures&last_event_id={marker}", server.local_addr());
    (server, url, ids)
}

fn as_json(event: &MessageEvent) -> Value {
    json!({ "type": event.event_type, "data": event.data, "lastEventId": event.last_event_id })
}

#[test]
fn curl_receives_every_event_byte_for_byte() {
    let (_server, url, ids) = start();
    // The stream stays open; curl's own time limit ends it once everything has arrived.
    let output = Command::new("curl").args(["-sN", "--max-time", "2", &url]).output().expect("curl is installed");
    assert!(matches!(output.status.code(), Some(0 | 28)), "curl failed: {output:?}");
    let mut decoder = Decoder::new();
    decoder.feed(&output.stdout).unwrap();
    let got: Vec<Value> = std::iter::from_fn(|| decoder.next_event()).map(|e| as_json(&e)).collect();
    assert_eq!(got, expected(&ids), "raw output: {}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn the_rust_client_receives_every_event() {
    let (_server, url, ids) = start();
    let mut source = EventSource::get(&url).read_timeout(Some(Duration::from_secs(10))).connect().expect("connect");
    let got: Vec<Value> =
        (0..FIXTURES.len()).map(|_| as_json(&source.next_event().expect("event").expect("stream open"))).collect();
    assert_eq!(got, expected(&ids));
}

#[test]
#[ignore = "needs Python with httpx and httpx-sse: run tests/clients/run.sh"]
fn httpx_sse_receives_every_event() {
    let python = std::env::var("CONDUIT_TEST_PYTHON")
        .expect("CONDUIT_TEST_PYTHON must name a Python with httpx and httpx-sse (tests/clients/run.sh sets it)");
    let (_server, url, ids) = start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/httpx_sse_client.py");
    let output = Command::new(python).args([script, &url, &FIXTURES.len().to_string()]).output().expect("run python");
    assert!(output.status.success(), "httpx client failed: {}", String::from_utf8_lossy(&output.stderr));
    let got: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got, expected(&ids));
}
