//! The client against a real `conduit-server` over loopback.

use conduit_client::{ClientError, DecodeError, EventSource, EventSourceBuilder, MessageEvent};
use conduit_server::{Reply, Request, Response, Router, Server, ServerConfig, SpawnedServer, Sse, StatusCode, Ticker};
use conduit_sse::Event;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bounds every wait: no test can hang on a silent socket.
const TIMEOUT: Duration = Duration::from_secs(5);
const FAST_RETRY: Duration = Duration::from_millis(10);

fn spawn(router: Router) -> SpawnedServer {
    Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()), router).unwrap().spawn().unwrap()
}

fn url(server: &SpawnedServer, path: &str) -> String {
    format!("http://{}{}", server.local_addr(), path)
}

/// A GET builder with bounded timeouts and quick reconnection.
fn client(url: &str) -> EventSourceBuilder {
    EventSource::get(url).connect_timeout(TIMEOUT).read_timeout(Some(TIMEOUT)).default_retry(FAST_RETRY)
}

/// The `Last-Event-ID` a request carries, as a number (0 when absent).
fn resume_from(req: &Request) -> u64 {
    req.header("last-event-id").and_then(|id| id.parse().ok()).unwrap_or(0)
}

fn numbered(from: u64, count: u64) -> impl Iterator<Item = Event> + Send + 'static {
    (from..from + count).map(|i| Event::new().id(i.to_string()).unwrap().data(format!("event {i}")))
}

fn message(event_type: &str, data: &str, last_event_id: &str) -> MessageEvent {
    MessageEvent { event_type: event_type.to_owned(), data: data.to_owned(), last_event_id: last_event_id.to_owned() }
}

/// Records the `Last-Event-ID` of every request a handler sees.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Option<String>>>>);

impl Seen {
    fn record(&self, req: &Request) {
        self.0.lock().unwrap().push(req.header("last-event-id").map(str::to_owned));
    }

    fn get(&self) -> Vec<Option<String>> {
        self.0.lock().unwrap().clone()
    }
}

fn some(ids: &[&str]) -> Vec<Option<String>> {
    ids.iter().map(|id| (!id.is_empty()).then(|| (*id).to_owned())).collect()
}

#[test]
fn events_ids_and_data_arrive_intact() {
    let big = "x".repeat(200_000);
    let big_event = big.clone();
    let router = Router::new().get("/events", move |_: &Request| {
        Sse::from_iter(vec![
            Event::new().id("1").unwrap().data("plain"),
            Event::new().event("custom").unwrap().id("2").unwrap().data("line one\nline two\r\nline three\rline four"),
            Event::new().comment("comments are invisible"),
            Event::new().data("héllo wörld ✓ 🎉 \u{2028} 日本語"),
            Event::new().data(""),
            Event::new().data("x\n\nevent: injected\nid: 666"),
            Event::new().data("  two leading spaces survive"),
            Event::new().id("id-only").unwrap(),
            Event::new().event("big").unwrap().data(big_event.clone()),
            Event::new().id("").unwrap().data("id reset"),
        ])
    });
    let server = spawn(router);
    let mut events = client(&url(&server, "/events")).reconnect(false).connect().unwrap();
    assert!(events.is_connected());
    let mut got = Vec::new();
    while let Some(event) = events.next_event().unwrap() {
        got.push(event);
    }
    let expected = vec![
        message("message", "plain", "1"),
        message("custom", "line one\nline two\nline three\nline four", "2"),
        message("message", "héllo wörld ✓ 🎉 \u{2028} 日本語", "2"),
        message("message", "", "2"),
        message("message", "x\n\nevent: injected\nid: 666", "2"),
        message("message", "  two leading spaces survive", "2"),
        message("big", &big, "id-only"),
        message("message", "id reset", ""),
    ];
    assert_eq!(got.len(), expected.len());
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, expected, "event {i}");
    }
    assert_eq!(events.last_event_id(), "");
    assert_eq!(events.reconnects(), 0);
    assert!(!events.is_connected());
    // The stream is over for good; the iterator is fused.
    assert!(events.next_event().unwrap().is_none());
    assert!(events.next().is_none());
    assert!(events.next().is_none());
}

#[test]
fn keep_alives_and_comments_are_invisible() {
    let (sender, stream) = Sse::channel();
    let stream = Mutex::new(Some(stream.keep_alive(Some(Duration::from_millis(5)))));
    let router = Router::new().get("/quiet", move |_: &Request| -> Reply {
        match stream.lock().unwrap().take() {
            Some(stream) => stream.into(),
            None => Response::new(StatusCode::NO_CONTENT).into(),
        }
    });
    let server = spawn(router);
    let mut events = client(&url(&server, "/quiet")).connect().unwrap();
    let producer = std::thread::spawn(move || {
        sender.send(Event::new().data("before")).unwrap();
        // Several keep-alive periods of silence.
        std::thread::sleep(Duration::from_millis(60));
        sender.send(Event::new().comment("a comment").data("after")).unwrap();
    });
    let data: Vec<String> = events.by_ref().map(|e| e.unwrap().data).collect();
    producer.join().unwrap();
    assert_eq!(data, ["before", "after"]);
    // The channel's end was a clean end; the reconnection got 204.
    assert_eq!(events.reconnects(), 0);
}

#[test]
fn retry_from_the_server_is_honored() {
    let router = Router::new().get("/retry", |req: &Request| -> Reply {
        let n = resume_from(req);
        if n >= 2 {
            return Response::new(StatusCode::NO_CONTENT).into();
        }
        Sse::from_iter(numbered(n + 1, 1)).retry(Duration::from_millis(50)).into()
    });
    let server = spawn(router);
    let mut events = client(&url(&server, "/retry")).default_retry(Duration::from_secs(4)).connect().unwrap();
    assert_eq!(events.retry(), Duration::from_secs(4));
    assert_eq!(events.next_event().unwrap().unwrap().data, "event 1");
    assert_eq!(events.retry(), Duration::from_millis(50));
    let start = Instant::now();
    assert_eq!(events.next_event().unwrap().unwrap().data, "event 2");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(events.reconnects(), 1);
    // The third request gets 204: over, quietly.
    assert!(events.next_event().unwrap().is_none());
}

#[test]
fn reconnects_with_last_event_id_without_gaps_or_duplicates() {
    let seen = Seen::default();
    let handler_seen = seen.clone();
    let router = Router::new().get("/resume", move |req: &Request| {
        handler_seen.record(req);
        // Three events after the one the client has, then the stream ends.
        Sse::from_iter(numbered(resume_from(req) + 1, 3)).retry(FAST_RETRY)
    });
    let server = spawn(router);
    let mut events = client(&url(&server, "/resume")).connect().unwrap();
    let got: Vec<MessageEvent> = events.by_ref().take(10).collect::<Result<_, _>>().unwrap();
    let ids: Vec<String> = got.iter().map(|e| e.last_event_id.clone()).collect();
    let expected: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
    for (i, event) in (1..).zip(&got) {
        assert_eq!(event.data, format!("event {i}"));
        assert_eq!(event.event_type, "message");
    }
    assert_eq!(seen.get(), some(&["", "3", "6", "9"]));
    assert_eq!(events.reconnects(), 3);
    assert_eq!(events.last_event_id(), "10");
    events.close();
}

#[test]
fn a_starting_last_event_id_is_sent_on_the_first_request() {
    let seen = Seen::default();
    let handler_seen = seen.clone();
    let router = Router::new().get("/resume", move |req: &Request| {
        handler_seen.record(req);
        Sse::from_iter(numbered(resume_from(req) + 1, 2))
    });
    let server = spawn(router);
    let mut events = client(&url(&server, "/resume")).last_event_id("41").reconnect(false).connect().unwrap();
    assert_eq!(events.last_event_id(), "41");
    let ids: Vec<String> = events.by_ref().map(|e| e.unwrap().last_event_id).collect();
    assert_eq!(ids, ["42", "43"]);
    assert_eq!(seen.get(), some(&["41"]));
}

#[test]
fn no_content_stops_the_stream() {
    let seen = Seen::default();
    let handler_seen = seen.clone();
    let router = Router::new()
        .get("/limited", move |req: &Request| -> Reply {
            handler_seen.record(req);
            let n = resume_from(req);
            if n >= 6 {
                Response::new(StatusCode::NO_CONTENT).into()
            } else {
                Sse::from_iter(numbered(n + 1, 3)).into()
            }
        })
        .get("/gone", |_: &Request| Response::new(StatusCode::NO_CONTENT));
    let server = spawn(router);

    let mut events = client(&url(&server, "/limited")).connect().unwrap();
    let mut ids = Vec::new();
    while let Some(event) = events.next_event().unwrap() {
        ids.push(event.last_event_id);
    }
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(seen.get(), some(&["", "3", "6"]));
    assert_eq!(events.reconnects(), 1);
    assert!(events.next_event().unwrap().is_none());
    assert!(events.next().is_none());

    // On the first connection, 204 is an error: there is no stream at all.
    let err = client(&url(&server, "/gone")).connect().unwrap_err();
    assert!(matches!(err, ClientError::NoContent), "{err:?}");
}

#[test]
fn refusals_are_final_and_never_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (h1, h2, h3) = (hits.clone(), hits.clone(), hits.clone());
    let router = Router::new()
        .get("/boom", move |_: &Request| {
            h1.fetch_add(1, Ordering::SeqCst);
            Response::error(StatusCode::INTERNAL_SERVER_ERROR, "boom")
        })
        .get("/plain", move |_: &Request| {
            h2.fetch_add(1, Ordering::SeqCst);
            Response::text("not a stream")
        })
        // First a good stream, then 500 on the reconnection.
        .get("/flaky", move |req: &Request| -> Reply {
            h3.fetch_add(1, Ordering::SeqCst);
            if resume_from(req) == 0 {
                Sse::from_iter(numbered(1, 2)).into()
            } else {
                Response::error(StatusCode::INTERNAL_SERVER_ERROR, "down").into()
            }
        });
    let server = spawn(router);
    let requests = || server.handle().requests();

    let err = client(&url(&server, "/boom")).connect().unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 500 }), "{err:?}");
    let err = client(&url(&server, "/plain")).connect().unwrap_err();
    assert!(matches!(err, ClientError::ContentType(ref t) if t == "text/plain; charset=utf-8"), "{err:?}");
    let before = requests();
    let err = client(&url(&server, "/nowhere")).connect().unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 404 }), "{err:?}");
    assert_eq!(requests(), before + 1);
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    hits.store(0, Ordering::SeqCst);
    let mut events = client(&url(&server, "/flaky")).connect().unwrap();
    assert_eq!(events.next_event().unwrap().unwrap().last_event_id, "1");
    assert_eq!(events.next_event().unwrap().unwrap().last_event_id, "2");
    let err = events.next_event().unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 500 }), "{err:?}");
    assert!(events.next_event().unwrap().is_none());
    assert!(events.next().is_none());

    // Give a (wrong) retry every chance to happen: the counts must not move.
    std::thread::sleep(FAST_RETRY * 10);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(requests(), before + 3);
}

#[test]
fn post_body_and_headers_are_sent_on_every_connection() {
    type Record = (Option<String>, Option<String>, Option<String>, Vec<u8>);
    let records: Arc<Mutex<Vec<Record>>> = Arc::default();
    let handler_records = records.clone();
    let router = Router::new().post("/chat", move |req: &Request| -> Reply {
        handler_records.lock().unwrap().push((
            req.header("authorization").map(str::to_owned),
            req.header("content-type").map(str::to_owned),
            req.header("last-event-id").map(str::to_owned),
            req.body().to_vec(),
        ));
        if req.header("authorization") != Some("Bearer token-1") {
            return Response::error(StatusCode::UNAUTHORIZED, "who are you").into();
        }
        let n = resume_from(req);
        if n >= 4 {
            return Response::new(StatusCode::NO_CONTENT).into();
        }
        Sse::from_iter(numbered(n + 1, 2)).retry(FAST_RETRY).into()
    });
    let server = spawn(router);
    let body = r#"{"prompt":"héllo"}"#;
    let events = EventSource::post(&url(&server, "/chat"), body)
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer token-1")
        .read_timeout(Some(TIMEOUT))
        .connect()
        .unwrap();
    let ids: Vec<String> = events.map(|e| e.unwrap().last_event_id).collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    let records = records.lock().unwrap().clone();
    assert_eq!(records.len(), 3);
    for ((auth, content_type, last_id, sent), expected_id) in records.into_iter().zip([None, Some("2"), Some("4")]) {
        assert_eq!(auth.as_deref(), Some("Bearer token-1"));
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(last_id.as_deref(), expected_id);
        assert_eq!(sent, body.as_bytes());
    }

    // Without the header the server refuses, and the client says so at once.
    let err = EventSource::post(&url(&server, "/chat"), body).read_timeout(Some(TIMEOUT)).connect().unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 401 }), "{err:?}");
}

#[test]
fn gives_up_after_max_reconnects_once_the_server_is_gone() {
    let router = Router::new().get("/ticks", |_: &Request| {
        Sse::interval(Duration::from_millis(20), |t: &mut Ticker| {
            let id = (t.tick() + 1).to_string();
            t.send(Event::new().id(id).unwrap().data("tick"));
        })
    });
    let server = spawn(router);
    let mut events = client(&url(&server, "/ticks"))
        .max_reconnects(Some(3))
        .max_backoff(Duration::from_millis(40))
        .connect()
        .unwrap();
    assert_eq!(events.next_event().unwrap().unwrap().last_event_id, "1");
    assert_eq!(events.next_event().unwrap().unwrap().last_event_id, "2");
    // A graceful shutdown closes the listener, then ends the stream cleanly; the loop stops once the client
    // has closed its side too.
    assert!(server.handle().shutdown());

    let start = Instant::now();
    let err = loop {
        match events.next_event() {
            Ok(Some(event)) => assert_eq!(event.data, "tick"),
            Ok(None) => panic!("the stream ended without an error"),
            Err(err) => break err,
        }
    };
    match &err {
        ClientError::ReconnectsExhausted { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(matches!(&**last, ClientError::Io(e) if e.kind() == ErrorKind::ConnectionRefused), "{last:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
    // Waits of 10, 20 and 40 ms (the cap) before the three attempts.
    assert!(start.elapsed() >= Duration::from_millis(70), "{:?}", start.elapsed());
    assert!(start.elapsed() < TIMEOUT);
    assert_eq!(events.reconnects(), 0);
    assert!(events.next_event().unwrap().is_none());
    assert!(events.next().is_none());
    server.join().unwrap();
}

#[test]
fn first_connection_failure_is_returned_at_once() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let start = Instant::now();
    let err = EventSource::get(&format!("http://127.0.0.1:{port}/"))
        .connect_timeout(TIMEOUT)
        .default_retry(Duration::from_secs(3))
        .connect()
        .unwrap_err();
    assert!(matches!(err, ClientError::Io(ref e) if e.kind() == ErrorKind::ConnectionRefused), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_oversized_event_ends_the_stream() {
    let router = Router::new().get("/big", |_: &Request| {
        Sse::from_iter(vec![
            Event::new().id("1").unwrap().data("small"),
            Event::new().id("2").unwrap().data("y".repeat(10_000)),
            Event::new().id("3").unwrap().data("after"),
        ])
    });
    let server = spawn(router);
    let mut events = client(&url(&server, "/big")).max_event_size(1024).connect().unwrap();
    let mut got = Vec::new();
    let err = loop {
        match events.next_event() {
            Ok(Some(event)) => got.push(event),
            Ok(None) => panic!("no error"),
            Err(err) => break err,
        }
    };
    assert!(matches!(err, ClientError::Decode(DecodeError::EventTooLarge { limit: 1024 })), "{err:?}");
    // Events that arrived complete are still delivered, the oversized one never.
    assert_eq!(got.first().map(|e| e.data.as_str()), Some("small"));
    assert!(got.iter().all(|e| e.data.len() < 1024));
    assert!(events.next_event().unwrap().is_none());
    assert_eq!(events.reconnects(), 0);
}

#[test]
fn invalid_urls_are_refused_before_connecting() {
    for url in [
        "",
        "localhost:8000/events",
        "ws://127.0.0.1:8000/events",
        "http://",
        "http://:8000/",
        "http://user:pass@127.0.0.1:8000/",
        "http://127.0.0.1:0/",
        "http://127.0.0.1:70000/",
        "http://[::1/",
        "http://[not-v6]:80/",
        "http://exa mple/",
    ] {
        let err = EventSource::get(url).connect().unwrap_err();
        assert!(matches!(err, ClientError::InvalidUrl(_)), "{url:?}: {err:?}");
        let err = EventSource::post(url, "body").connect().unwrap_err();
        assert!(matches!(err, ClientError::InvalidUrl(_)), "{url:?}: {err:?}");
        assert!(err.to_string().starts_with("invalid URL: "), "{err}");
    }
}

#[test]
fn non_ascii_ids_survive_the_round_trip() {
    let seen = Seen::default();
    let handler_seen = seen.clone();
    let router = Router::new().get("/unicode", move |req: &Request| -> Reply {
        handler_seen.record(req);
        match req.header("last-event-id") {
            None => {
                Sse::from_iter(vec![Event::new().id("évènement-1 ✓").unwrap().data("one")]).retry(FAST_RETRY).into()
            }
            Some(_) => Response::new(StatusCode::NO_CONTENT).into(),
        }
    });
    let server = spawn(router);
    let events = client(&url(&server, "/unicode")).connect().unwrap();
    let ids: Vec<String> = events.map(|e| e.unwrap().last_event_id).collect();
    assert_eq!(ids, ["évènement-1 ✓"]);
    assert_eq!(seen.get(), some(&["", "évènement-1 ✓"]));
}
