//! Metrics, health checks and the access log, over real loopback sockets. Log output is captured by a logger
//! of this test binary; each test picks out the lines of its own connections by their client addresses.

mod common;

use common::{Conn, TIMEOUT, connect, local_config, metric, roundtrip, wait_until};
use conduit::server::{
    ACCESS_LOG_TARGET, HealthConfig, Hub, HubConfig, Metrics, OPENMETRICS_CONTENT_TYPE, Request, Response, Router,
    Server, ServerConfig, SpawnedServer, Sse, Ticker,
};
use conduit::sse::Event;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

/// Every log record of the process: level, target, message.
#[derive(Default)]
struct Capture {
    records: Mutex<Vec<(log::Level, String, String)>>,
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let entry = (record.level(), record.target().to_owned(), record.args().to_string());
        self.records.lock().unwrap().push(entry);
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        log::set_logger(capture).expect("the only logger of this binary");
        log::set_max_level(log::LevelFilter::Trace);
        capture
    })
}

/// Captured records whose message mentions `needle`.
fn records_with(needle: &str) -> Vec<(log::Level, String, String)> {
    capture().records.lock().unwrap().iter().filter(|(_, _, m)| m.contains(needle)).cloned().collect()
}

/// True if `message` names `addr` (and not a longer port that starts with the same digits).
fn mentions(message: &str, addr: SocketAddr) -> bool {
    let addr = addr.to_string();
    message.match_indices(&addr).any(|(at, _)| !message[at + addr.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Captured records that name the client at `addr`.
fn records_of(addr: SocketAddr) -> Vec<(log::Level, String, String)> {
    records_with(&addr.to_string()).into_iter().filter(|(_, _, m)| mentions(m, addr)).collect()
}

/// Access-log lines of the client at `addr`.
fn access_lines(addr: SocketAddr) -> Vec<String> {
    records_of(addr).into_iter().filter(|(_, t, _)| t == ACCESS_LOG_TARGET).map(|(_, _, m)| m).collect()
}

/// A server with a registry and a hub of its own.
struct Served {
    server: SpawnedServer,
    metrics: Metrics,
    hub: Hub,
}

/// Serves the tests' routes (and `extra` ones) with the tests' configuration as `adjust` changes it.
fn serve_routes(adjust: impl FnOnce(ServerConfig) -> ServerConfig, extra: impl FnOnce(Router) -> Router) -> Served {
    capture();
    let metrics = Metrics::new();
    let hub = Hub::new(HubConfig::default());
    let config = ServerConfig { metrics: Some(metrics.clone()), health: HealthConfig::standard(), ..local_config() };
    let server =
        Server::bind_with_hub(adjust(config), extra(router(&metrics)), &hub).expect("bind").spawn().expect("spawn");
    Served { server, metrics, hub }
}

fn serve(adjust: impl FnOnce(ServerConfig) -> ServerConfig) -> Served {
    serve_routes(adjust, |router| router)
}

fn get(addr: SocketAddr, target: &str) -> (common::Head, String) {
    let (head, body) =
        roundtrip(addr, format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
    (head, String::from_utf8(body).unwrap())
}

fn numbers(n: u64) -> Sse {
    Sse::from_iter((1..=n).map(|i| Event::new().id(i.to_string()).unwrap().data(i.to_string())))
}

fn router(metrics: &Metrics) -> Router {
    Router::new()
        .get("/metrics", metrics.handler())
        .get("/hello", |_: &Request| Response::text("hello"))
        .get("/numbers", |req: &Request| numbers(req.query("n").and_then(|n| n.parse().ok()).unwrap_or(3)))
        .get("/stream", |req: &Request| Sse::subscribe_request(req))
        .get("/ticks", |_: &Request| {
            Sse::interval(Duration::from_millis(1), |t: &mut Ticker| t.send(Event::new().data("tick")))
        })
        // 100 KiB a millisecond: a client that reads nothing fills its queue fast.
        .get("/flood", |_: &Request| {
            Sse::interval(Duration::from_millis(1), |t: &mut Ticker| {
                for _ in 0..100 {
                    t.send(Event::new().data("x".repeat(1024)));
                }
            })
        })
}

#[test]
fn metrics_count_requests_events_the_hub_resumes_and_disconnects() {
    let Served { server, metrics, hub } = serve(|c| c);
    let addr = server.local_addr();

    // A finite stream of 5 events on a kept-alive connection, then a 404 on the same one.
    let mut conn = Conn::open(addr);
    conn.get("/numbers?n=5");
    assert_eq!(conn.read_head().status, 200);
    assert_eq!(common::ids(&conn.read_chunked_body()), [1, 2, 3, 4, 5]);
    conn.get("/nowhere");
    assert_eq!(conn.read_response().0.status, 404);

    // A subscriber receives three hub events; two resumes follow, one lossless and one from an unknown id.
    let mut live = Conn::open(addr);
    live.get("/stream?topic=news");
    assert_eq!(live.read_head().status, 200);
    wait_until("the subscriber is live", || server.handle().streams() == 1);
    let ids: Vec<String> =
        (0..3).map(|i| hub.publish("news", Event::new().data(format!("headline {i}"))).unwrap()).collect();
    assert_eq!(live.read_events(3).matches("headline").count(), 3);
    let mut resumed = Conn::open(addr);
    resumed.send(format!("GET /stream?topic=news HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n", ids[0]).as_bytes());
    assert_eq!(resumed.read_head().status, 200);
    assert_eq!(resumed.read_events(2).matches("headline").count(), 2);
    let mut reset = Conn::open(addr);
    reset.get("/stream?topic=news&last_event_id=1");
    assert_eq!(reset.read_head().status, 200);
    assert!(reset.read_events(4).starts_with("event: reset\n"));
    wait_until("three streams are open", || server.handle().streams() == 3);

    let (head, text) = get(addr, "/metrics");
    assert_eq!(head.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
    assert!(text.ends_with("# EOF\n"), "{text}");
    let expected = [
        ("conduit_connections", 5.0),
        ("conduit_streams", 3.0),
        // The /numbers stream, the 3 subscriptions.
        ("conduit_requests_total{class=\"2xx\"}", 4.0),
        ("conduit_requests_total{class=\"4xx\"}", 1.0),
        // 5 numbers; 3 + 2 + 3 hub deliveries and the reset notice.
        ("conduit_events_sent_total", 14.0),
        ("conduit_hub_published_total", 3.0),
        ("conduit_hub_deliveries_total", 8.0),
        ("conduit_hub_topics", 1.0),
        ("conduit_backlog_events", 3.0),
        ("conduit_resumes_total{outcome=\"lossless\"}", 1.0),
        ("conduit_resumes_total{outcome=\"reset\"}", 1.0),
        ("conduit_publish_to_write_seconds_count", 3.0),
        ("conduit_disconnects_total{reason=\"client_gone\"}", 0.0),
    ];
    for (series, want) in expected {
        assert_eq!(metric(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(metric(&text, "conduit_backlog_bytes").is_some_and(|b| b > 0.0));
    assert!(!text.contains("news"), "no topic names in labels");
    assert!(!text.contains("conduit_backbone_up"), "no backbone has reported");

    drop((conn, live, resumed, reset));
    wait_until("four clients counted as gone", || {
        metric(&metrics.render(), "conduit_disconnects_total{reason=\"client_gone\"}") == Some(4.0)
    });
    let text = metrics.render();
    assert_eq!(metric(&text, "conduit_streams"), Some(0.0));
    assert_eq!(metric(&text, "conduit_write_queue_bytes"), Some(0.0));
}

#[test]
fn disconnect_reasons_tell_a_slow_client_from_timeouts_and_shutdown() {
    let Served { server, metrics, .. } =
        serve(|c| ServerConfig { write_queue_limit: 256 * 1024, idle_timeout: Duration::from_millis(300), ..c });
    let addr = server.local_addr();
    let count = |reason: &str| metric(&metrics.render(), &format!("conduit_disconnects_total{{reason=\"{reason}\"}}"));

    // A client of a fast interval stream that reads nothing fills its queue and is cut off.
    let mut slow = Conn::open(addr);
    slow.get("/flood");
    wait_until("the slow client is cut off", || count("slow_client") == Some(1.0));
    // An idle keep-alive connection is closed at the idle timeout.
    let mut idle = Conn::open(addr);
    idle.get("/hello");
    assert_eq!(idle.read_response().0.status, 200);
    wait_until("the idle connection is closed", || count("idle_timeout") == Some(1.0));
    // A response with Connection: close completes the connection.
    assert_eq!(get(addr, "/hello").0.status, 200);
    wait_until("the closed connection is counted", || count("completed") == Some(1.0));
    // A stream open at shutdown.
    let mut open = Conn::open(addr);
    open.get("/stream?topic=t");
    assert_eq!(open.read_head().status, 200);
    wait_until("the stream is open", || server.handle().streams() == 1);
    let handle = server.handle().clone();
    server.shutdown().unwrap();
    assert_eq!(open.read_chunked_body(), b"", "the stream ends cleanly");
    let text = handle.metrics().unwrap().render();
    for (reason, want) in [("slow_client", 1.0), ("idle_timeout", 1.0), ("completed", 1.0), ("shutdown", 1.0)] {
        assert_eq!(metric(&text, &format!("conduit_disconnects_total{{reason=\"{reason}\"}}")), Some(want), "{text}");
    }
    assert_eq!(metric(&text, "conduit_disconnects_total{reason=\"error\"}"), Some(0.0));
    drop(slow);
}

#[test]
fn metrics_can_be_turned_off() {
    let Served { server, .. } = serve(|c| ServerConfig { metrics: None, ..c });
    assert!(server.handle().metrics().is_none());
    let mut conn = Conn::open(server.local_addr());
    conn.get("/numbers?n=3");
    assert_eq!(common::ids(&conn.read_chunked_body_after_head()), [1, 2, 3]);
    let (_, text) = get(server.local_addr(), "/metrics");
    assert_eq!(metric(&text, "conduit_events_sent_total"), Some(0.0), "the registry counts only attached servers");
}

/// Conn helpers these tests need beyond the shared ones.
trait ReadAfterHead {
    fn read_chunked_body_after_head(&mut self) -> Vec<u8>;
}

impl ReadAfterHead for Conn {
    fn read_chunked_body_after_head(&mut self) -> Vec<u8> {
        assert_eq!(self.read_head().status, 200);
        self.read_chunked_body()
    }
}

#[test]
fn liveness_and_readiness_follow_the_backbone_hook() {
    let Served { server, metrics, hub } = serve(|c| c);
    let addr = server.local_addr();
    let check = |path: &str| {
        let (head, body) = get(addr, path);
        assert_eq!(head.header("cache-control"), Some("no-store"), "{path}");
        (head.status, body)
    };
    assert_eq!(check("/healthz"), (200, "ok\n".into()));
    assert_eq!(check("/readyz"), (200, "ready\n".into()));
    hub.backbone_health().set_up(false);
    assert_eq!(check("/readyz"), (503, "not ready: backbone down\n".into()));
    assert_eq!(check("/healthz"), (200, "ok\n".into()), "the loop is alive all the same");
    assert_eq!(metric(&metrics.render(), "conduit_backbone_up"), Some(0.0));
    hub.backbone_health().set_up(true);
    assert_eq!(check("/readyz"), (200, "ready\n".into()));
    assert_eq!(metric(&metrics.render(), "conduit_backbone_up"), Some(1.0));
    let (head, _) = roundtrip(addr, b"POST /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((head.status, head.header("allow")), (405, Some("GET, HEAD")));
    let mut head = Conn::open(addr);
    head.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let raw = String::from_utf8(head.read_to_end()).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n") && raw.ends_with("\r\n\r\n"), "{raw:?}");
}

#[test]
fn health_checks_are_off_unless_configured_and_move_with_their_paths() {
    let off = serve(|c| ServerConfig { health: HealthConfig::default(), ..c }).server;
    assert_eq!(get(off.local_addr(), "/healthz").0.status, 404);
    drop(off);
    let health = HealthConfig { liveness_path: Some("/live".into()), readiness_path: None };
    let moved = serve(|c| ServerConfig { health, ..c }).server;
    assert_eq!(get(moved.local_addr(), "/live").0.status, 200);
    assert_eq!(get(moved.local_addr(), "/readyz").0.status, 404);
}

#[test]
fn readiness_fails_while_the_server_shuts_down_and_liveness_holds() {
    let Served { server, .. } = serve(|c| ServerConfig { shutdown_delay: Duration::from_secs(3), ..c });
    let addr = server.local_addr();
    assert_eq!(get(addr, "/readyz").0.status, 200);
    server.handle().shutdown();
    wait_until("readiness fails", || get(addr, "/readyz").0.status == 503);
    assert_eq!(get(addr, "/readyz").1, "not ready: shutting down\n");
    assert_eq!(get(addr, "/healthz").0.status, 200);
    // Still serving meanwhile, without keep-alive.
    let mut conn = Conn::open(addr);
    conn.get("/hello");
    let (head, _) = conn.read_response();
    assert_eq!((head.status, head.header("connection")), (200, Some("close")));
    server.join().unwrap();
}

#[test]
fn a_stuck_loop_fails_its_liveness_check() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let block = move |router: Router| {
        router.get("/block", move |_: &Request| {
            // Blocks the loop until the test lets go (bounded, so a failing test cannot hang it).
            let _ = release_rx.lock().unwrap().recv_timeout(TIMEOUT);
            Response::text("unblocked")
        })
    };
    let Served { server, .. } = serve_routes(|c| c, block);
    let addr = server.local_addr();
    let mut blocker = Conn::open(addr);
    blocker.get("/block");
    std::thread::sleep(Duration::from_millis(100));
    let mut probe = connect(addr);
    probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    probe.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    let waited = probe.read(&mut byte);
    assert!(
        matches!(&waited, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a stuck loop answered its liveness check: {waited:?}"
    );
    release_tx.send(()).unwrap();
    assert_eq!(blocker.read_response().0.status, 200);
    probe.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    probe.read_to_end(&mut rest).unwrap();
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200 OK"), "answered once the loop runs again");
}

#[test]
fn the_access_log_has_one_line_per_request_and_no_secrets() {
    let Served { server, .. } = serve(|c| c);
    let addr = server.local_addr();
    let mut conn = Conn::open(addr);
    let client = conn.stream.local_addr().unwrap();
    conn.send(b"GET /hello?token=s3cret-query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret-header\r\n\r\n");
    assert_eq!(conn.read_response().0.status, 200);
    conn.send(b"GET /numbers?n=4&token=s3cret-query HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 41\r\n\r\n");
    assert_eq!(conn.read_chunked_body_after_head().len(), 4 * "id: 1\ndata: 1\n\n".len());
    conn.get("/nowhere");
    assert_eq!(conn.read_response().0.status, 404);
    conn.get("/readyz");
    assert_eq!(conn.read_response().0.status, 200);
    wait_until("four lines", || access_lines(client).len() == 4);
    let lines = access_lines(client);
    let shape = |line: &str| {
        // Durations vary; everything else is exact.
        let at = line.find("duration_ms=").expect("a duration");
        let end = line[at..].find(' ').map_or(line.len(), |e| at + e);
        format!("{}duration_ms=*{}", &line[..at], &line[end..])
    };
    assert_eq!(
        lines.iter().map(|l| shape(l)).collect::<Vec<_>>(),
        [
            format!("{client} \"GET /hello\" 200 bytes=5 duration_ms=*"),
            format!(
                "{client} \"GET /numbers\" 200 stream events=4 bytes=60 duration_ms=* end=completed last_event_id=41"
            ),
            format!("{client} \"GET /nowhere\" 404 bytes=22 duration_ms=*"),
            format!("{client} \"GET /readyz\" 200 bytes=6 duration_ms=*"),
        ]
    );
    let levels: Vec<log::Level> = records_of(client).iter().filter(|r| r.1 == ACCESS_LOG_TARGET).map(|r| r.0).collect();
    assert_eq!(levels, [log::Level::Info, log::Level::Info, log::Level::Info, log::Level::Debug], "probes quieter");
    assert!(records_with("s3cret").is_empty(), "a secret was logged: {:?}", records_with("s3cret"));
}

#[test]
fn the_access_log_can_be_turned_off() {
    let Served { server, .. } = serve(|c| ServerConfig { access_log: None, ..c });
    let mut conn = Conn::open(server.local_addr());
    let client = conn.stream.local_addr().unwrap();
    conn.get("/hello");
    assert_eq!(conn.read_response().0.status, 200);
    drop(conn);
    wait_until("the connection is closed", || server.handle().connections() == 0);
    assert_eq!(access_lines(client), Vec::<String>::new());
}

/// Clients that leave a fast stream are reported as gone (at `debug`, and in the stream's access-log line),
/// never as clients that are not reading: a write refused because the connection had just closed is not a
/// full queue.
#[test]
fn clients_that_leave_a_fast_stream_are_not_reported_as_slow() {
    const CLIENTS: usize = 40;
    let Served { server, metrics, .. } = serve(|c| c);
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut conn = Conn::open(addr);
        conn.get("/ticks");
        assert_eq!(conn.read_head().status, 200);
        conn.read_events(3);
        let (stream, _) = conn.into_parts();
        let client = stream.local_addr().unwrap();
        // A reset, as when a browser tab closes with output in flight.
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
        drop(stream);
        clients.push(client);
    }
    wait_until("every stream has its line", || clients.iter().all(|c| access_lines(*c).len() == 1));
    for client in &clients {
        let lines = access_lines(*client);
        assert!(lines[0].contains(" end=client_gone"), "{lines:?}");
        let records = records_of(*client);
        let warnings: Vec<_> = records.iter().filter(|r| r.0 <= log::Level::Warn).collect();
        assert!(warnings.is_empty(), "a client that left was reported: {warnings:?}");
        assert!(
            records
                .iter()
                .any(|r| r.0 == log::Level::Debug && r.2.ends_with(&format!("{client}: the client disconnected"))),
            "{records:?}"
        );
    }
    let text = metrics.render();
    assert_eq!(metric(&text, "conduit_disconnects_total{reason=\"client_gone\"}"), Some(CLIENTS as f64));
    assert_eq!(metric(&text, "conduit_disconnects_total{reason=\"slow_client\"}"), Some(0.0));
}
