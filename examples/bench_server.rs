//! The server the comparison harness (`benches/compare/run.sh`) measures Conduit with.
//!
//! ```text
//! cargo run --release --example bench_server -- --addr 127.0.0.1:18401
//! curl -N 'http://127.0.0.1:18401/stream?n=3'
//! ```
//!
//! | route                                    | what it sends                                                    |
//! |------------------------------------------|------------------------------------------------------------------|
//! | `/stream?n=N`                            | `N` events (default 1000) as fast as the client reads, then ends |
//! | `/idle`                                  | one event, then only the keep-alive comment every 15 s           |
//! | `/broadcast`                             | a subscription to the hub's topic `bench` (`Sse::subscribe`)     |
//! | `POST /broadcast/start?rate=R&seconds=S` | publishes `R * S` events to `bench`, `R` a second (10, 10)       |
//!
//! Every `/stream` and `/idle` event is `event: update`, `id: i`, `data: {"count": i, "time": <unix seconds>}`
//! for `i` in `0..N`, the same bytes as the other servers in the comparison. `/stream` writes each event
//! straight into the connection's buffer (`Sse::from_fn`), or, with `--stream-events built`, builds each as an
//! `Event` and lets the server encode it (`Sse::from_iter`), so the two ways can be measured side by side. Broadcast
//! events are `event: update`, `id: i`, `data: {"seq": i, "t_us": <unix microseconds at publish>}` for `i` in
//! `0..R*S`, published through the hub (`Server::bind_with_hub`) on a fixed schedule by a thread started with
//! the server, so that its CPU time stays in the process's per-thread counters. The start route hands the
//! broadcast to that thread and answers `{"events": R*S, "subscribers": <open streams>}` at once.
//!
//! The address comes from `--addr HOST:PORT` (default `127.0.0.1:18401`), the connection limit from
//! `--max-connections N` or `CONDUIT_BENCH_MAX_CONNECTIONS` (default 20,000, so the idle scenario's 10,000
//! streams and the broadcast's 10,000 subscribers fit), the number of event loops from `--workers N` or
//! `CONDUIT_BENCH_WORKERS` (default: one per core, as axum's multi-threaded runtime gets), and whether the server
//! counts its Prometheus metrics from `--metrics on|off` or `CONDUIT_BENCH_METRICS` (default `on`, the library's
//! default; `GET /metrics` renders them), so that their cost can be measured, and how `/stream` makes its
//! events from `--stream-events written|built` or `CONDUIT_BENCH_STREAM_EVENTS` (default `written`). Logging is at `warn` unless
//! `RUST_LOG` says otherwise, so nothing is written per request.

use conduit::server::{
    Hub, HubConfig, Metrics, PublishError, Request, Response, Router, Server, ServerConfig, ServerHandle, Sse,
    StatusCode, Ticker,
};
use conduit::sse::{Event, EventSink};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEFAULT_ADDR: &str = "127.0.0.1:18401";
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// The broadcast scenario's 10,000 subscribers and the harness's other connections.
const BROADCAST_CONNECTIONS: usize = 10_100;
const DEFAULT_EVENTS: u64 = 1000;
const MAX_EVENTS: u64 = 10_000_000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The idle stream's interval source only speaks on its first tick; the period just needs to be long.
const IDLE_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// The hub topic `/broadcast` follows.
const TOPIC: &str = "bench";
const MAX_RATE: u64 = 10_000;
const MAX_SECONDS: u64 = 3600;
/// How long the publisher retries an event while the server's mailbox is full before giving up on it.
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// A broadcast to run: `rate` events a second for `seconds` seconds.
#[derive(Clone, Copy, Debug)]
struct Broadcast {
    rate: u64,
    seconds: u64,
}

struct Args {
    addr: SocketAddr,
    max_connections: usize,
    workers: usize,
    metrics: bool,
    /// `/stream` builds `Event`s instead of writing them in place.
    built_events: bool,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            eprintln!(
                "usage: bench_server [--addr HOST:PORT] [--max-connections N] [--workers N] [--metrics on|off] \
                 [--stream-events written|built]"
            );
            std::process::exit(2);
        }
    };
    if args.max_connections < BROADCAST_CONNECTIONS {
        eprintln!(
            "warning: --max-connections {} is below {BROADCAST_CONNECTIONS}: the broadcast scenario's subscribers will not all fit",
            args.max_connections
        );
    }
    let metrics = args.metrics.then(Metrics::new);
    let config = ServerConfig {
        max_connections: args.max_connections,
        workers: args.workers,
        metrics: metrics.clone(),
        ..ServerConfig::new(args.addr)
    };
    let hub = Hub::new(HubConfig::default());
    let (start_tx, start_rx) = mpsc::channel();
    let handle = Arc::new(OnceLock::new());
    if let Err(e) = spawn_publisher(hub.clone(), start_rx) {
        eprintln!("cannot start the publisher thread: {e}");
        std::process::exit(1);
    }
    let mut router = router(start_tx, Arc::clone(&handle), args.built_events);
    if let Some(metrics) = &metrics {
        router = router.get("/metrics", metrics.handler());
    }
    let server = match Server::bind_with_hub(config, router, &hub) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    let _ = handle.set(server.handle());
    eprintln!(
        "bench_server listening on http://{}/ (metrics {})",
        server.local_addr(),
        if args.metrics { "on" } else { "off" }
    );
    if let Err(e) = server.run() {
        eprintln!("server failed: {e}");
        std::process::exit(1);
    }
}

fn parse_args() -> Result<Args, String> {
    let mut addr = DEFAULT_ADDR.to_owned();
    let mut max_connections = match std::env::var("CONDUIT_BENCH_MAX_CONNECTIONS") {
        Ok(v) => v.parse().map_err(|_| format!("CONDUIT_BENCH_MAX_CONNECTIONS: not a number: {v:?}"))?,
        Err(_) => DEFAULT_MAX_CONNECTIONS,
    };
    let mut workers = match std::env::var("CONDUIT_BENCH_WORKERS") {
        Ok(v) => v.parse().map_err(|_| format!("CONDUIT_BENCH_WORKERS: not a number: {v:?}"))?,
        Err(_) => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let mut metrics = match std::env::var("CONDUIT_BENCH_METRICS") {
        Ok(v) => on_off(&v).ok_or(format!("CONDUIT_BENCH_METRICS: on or off, not {v:?}"))?,
        Err(_) => true,
    };
    let mut built_events = match std::env::var("CONDUIT_BENCH_STREAM_EVENTS") {
        Ok(v) => built_or_written(&v).ok_or(format!("CONDUIT_BENCH_STREAM_EVENTS: written or built, not {v:?}"))?,
        Err(_) => false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--max-connections" => {
                let v = value()?;
                max_connections = v.parse().map_err(|_| format!("--max-connections: not a number: {v:?}"))?;
            }
            "--workers" => {
                let v = value()?;
                workers = v.parse().map_err(|_| format!("--workers: not a number: {v:?}"))?;
            }
            "--metrics" => {
                let v = value()?;
                metrics = on_off(&v).ok_or(format!("--metrics: on or off, not {v:?}"))?;
            }
            "--stream-events" => {
                let v = value()?;
                built_events = built_or_written(&v).ok_or(format!("--stream-events: written or built, not {v:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let addr = addr.parse().map_err(|e| format!("invalid address {addr:?}: {e}"))?;
    Ok(Args { addr, max_connections, workers: workers.max(1), metrics, built_events })
}

fn on_off(value: &str) -> Option<bool> {
    match value {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// True for `built`, false for `written`.
fn built_or_written(value: &str) -> Option<bool> {
    match value {
        "built" => Some(true),
        "written" => Some(false),
        _ => None,
    }
}

fn router(start: Sender<Broadcast>, handle: Arc<OnceLock<ServerHandle>>, built_events: bool) -> Router {
    let start = Mutex::new(start);
    Router::new()
        .get("/stream", move |req: &Request| stream(req, built_events))
        .get("/idle", |_: &Request| idle())
        .get("/broadcast", |_: &Request| Sse::subscribe([TOPIC]))
        .post("/broadcast/start", move |req: &Request| start_broadcast(req, &start, &handle))
}

/// An event named `update`, built the cheapest way the API allows: the name is a `&'static str`, the id a
/// number and the data is formatted into the event, so building one allocates nothing.
fn named_update() -> Event {
    // A literal without a line break: the setter cannot fail.
    Event::new().event_static("update").unwrap_or_default()
}

/// `event: update`, `id: i`, `data: {"count": i, "time": <unix seconds>}`.
fn update(i: u64) -> Event {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    named_update().id_u64(i).data_fmt(format_args!(r#"{{"count": {i}, "time": {now}}}"#))
}

fn stream(req: &Request, built_events: bool) -> Result<Sse, Response> {
    let n = match req.query("n") {
        None => DEFAULT_EVENTS,
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if n <= MAX_EVENTS => n,
            _ => {
                return Err(Response::error(
                    StatusCode::BAD_REQUEST,
                    format_args!("n must be an integer from 0 to {MAX_EVENTS}, got {raw:?}"),
                ));
            }
        },
    };
    if built_events {
        return Ok(Sse::from_iter((0..n).map(update)));
    }
    // Written straight into the connection's buffer (the same bytes as `update`), as the floor formats its
    // events into its own buffer: the cheapest way the API offers to send many events.
    let mut next = 0;
    Ok(Sse::from_fn(move |out: &mut EventSink<'_>| {
        if next == n {
            return Ok(ControlFlow::Break(()));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        out.event().event("update")?.id_u64(next).data_fmt(format_args!(r#"{{"count": {next}, "time": {now}}}"#));
        next += 1;
        Ok(ControlFlow::Continue(()))
    }))
}

fn idle() -> Sse {
    Sse::interval(IDLE_PERIOD, |t: &mut Ticker| {
        if t.tick() == 0 {
            t.send(update(0));
        }
    })
    .keep_alive(Some(KEEP_ALIVE))
}

/// A query parameter as an integer from 1 to `max`, `default` when absent.
fn bounded(req: &Request, name: &str, default: u64, max: u64) -> Result<u64, Response> {
    match req.query(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) if (1..=max).contains(&v) => Ok(v),
            _ => Err(Response::error(
                StatusCode::BAD_REQUEST,
                format_args!("{name} must be an integer from 1 to {max}, got {raw:?}"),
            )),
        },
    }
}

/// `POST /broadcast/start?rate=R&seconds=S`: hands the broadcast to the publisher thread and answers at once.
fn start_broadcast(
    req: &Request,
    start: &Mutex<Sender<Broadcast>>,
    handle: &OnceLock<ServerHandle>,
) -> Result<Response, Response> {
    let broadcast =
        Broadcast { rate: bounded(req, "rate", 10, MAX_RATE)?, seconds: bounded(req, "seconds", 10, MAX_SECONDS)? };
    let sent = start.lock().unwrap_or_else(|e| e.into_inner()).send(broadcast);
    if sent.is_err() {
        return Err(Response::error(StatusCode::SERVICE_UNAVAILABLE, "the publisher thread has stopped"));
    }
    let subscribers = handle.get().map_or(0, ServerHandle::streams);
    let events = broadcast.rate * broadcast.seconds;
    Ok(Response::json(&serde_json::json!({ "subscribers": subscribers, "events": events })))
}

/// The thread that publishes: it waits for broadcasts and runs them one after the other, for as long as the
/// process lives.
fn spawn_publisher(hub: Hub, starts: Receiver<Broadcast>) -> std::io::Result<()> {
    std::thread::Builder::new().name("publisher".into()).spawn(move || {
        while let Ok(broadcast) = starts.recv() {
            publish_all(&hub, broadcast);
        }
    })?;
    Ok(())
}

fn unix_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

/// Publishes event `i` at `start + i / rate` for `i` in `0..rate * seconds`, each stamped when it is published.
fn publish_all(hub: &Hub, Broadcast { rate, seconds }: Broadcast) {
    let started = Instant::now();
    let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    for i in 0..rate * seconds {
        let due = started + period * u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let give_up = Instant::now() + BUSY_RETRY;
        loop {
            let event = named_update().id_u64(i).data_fmt(format_args!(r#"{{"seq": {i}, "t_us": {}}}"#, unix_micros()));
            match hub.publish(TOPIC, event) {
                Ok(_) => break,
                Err(PublishError::Busy) if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => {
                    log::warn!("event {i} not published: {e}");
                    break;
                }
            }
        }
    }
}
