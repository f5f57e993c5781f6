//! The comparison's axum server: idiomatic `axum::response::sse` on tokio's multi-threaded runtime.
//!
//! ```text
//! axum-sse-bench --addr 127.0.0.1:18402
//! ```
//!
//! `/stream?n=N` sends `N` events (default 1000) from an iterator-backed stream, then ends; `/idle` sends one
//! event, then only axum's keep-alive comment every 15 s. Every event is `event: update`, `id: i`,
//! `data: {"count": i, "time": <unix seconds>}`, byte for byte what the other servers send. Accepted sockets
//! get `TCP_NODELAY`, as in Conduit, uvicorn and the floor.
//!
//! `/broadcast` subscribes to a `tokio::sync::broadcast` channel and streams what is sent on it (with the
//! same 15 s keep-alive); `POST /broadcast/start?rate=R&seconds=S` spawns a task that sends `R * S` events,
//! `R` a second, each `event: update`, `id: i`, `data: {"seq": i, "t_us": <unix microseconds at publish>}`,
//! and answers `{"events":R*S,"subscribers":N}` at once. A subscriber that falls more than the channel's
//! capacity behind has its stream ended, so that missing events show as missing rather than as a gap.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

const DEFAULT_EVENTS: u64 = 1000;
const MAX_EVENTS: u64 = 10_000_000;
/// Events a subscriber may fall behind before it is cut off (the whole broadcast of 100 fits).
const CHANNEL_CAPACITY: usize = 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const MAX_RATE: u64 = 10_000;
const MAX_SECONDS: u64 = 3600;

#[derive(Clone)]
struct AppState {
    events: broadcast::Sender<Event>,
}

fn update(i: u64) -> Event {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    Event::default().event("update").id(i.to_string()).data(format!(r#"{{"count": {i}, "time": {now}}}"#))
}

async fn stream_route(RawQuery(query): RawQuery) -> Response {
    let raw = query.as_deref().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("n="));
    let n = match raw.map(str::parse::<u64>) {
        None => DEFAULT_EVENTS,
        Some(Ok(n)) if n <= MAX_EVENTS => n,
        _ => return (StatusCode::BAD_REQUEST, "n must be an integer\n").into_response(),
    };
    let events = stream::iter((0..n).map(|i| Ok::<_, Infallible>(update(i))));
    Sse::new(events).into_response()
}

async fn idle_route() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = stream::iter([Ok(update(0))]).chain(stream::pending());
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

async fn broadcast_route(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the response head goes out, so a client that has the head misses nothing after it.
    let receiver = state.events.subscribe();
    let events = stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(event) => Some((Ok(event), receiver)),
            // Lagged: events were lost to this subscriber; ending the stream makes that visible.
            Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

/// A query parameter as an integer from 1 to `max`, `default` when absent; the message for a 400 otherwise.
fn bounded(query: &str, name: &str, default: u64, max: u64) -> Result<u64, String> {
    let prefix = format!("{name}=");
    match query.split('&').find_map(|kv| kv.strip_prefix(prefix.as_str())) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) if (1..=max).contains(&v) => Ok(v),
            _ => Err(format!("{name} must be an integer from 1 to {max}\n")),
        },
    }
}

fn unix_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

async fn start_route(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let (rate, seconds) = match (bounded(&query, "rate", 10, MAX_RATE), bounded(&query, "seconds", 10, MAX_SECONDS)) {
        (Ok(rate), Ok(seconds)) => (rate, seconds),
        (Err(message), _) | (_, Err(message)) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let total = rate * seconds;
    let subscribers = state.events.receiver_count();
    let sender = state.events.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
        for i in 0..total {
            tokio::time::sleep_until(started + period * u32::try_from(i).unwrap_or(u32::MAX)).await;
            let event = Event::default()
                .event("update")
                .id(i.to_string())
                .data(format!(r#"{{"seq": {i}, "t_us": {}}}"#, unix_micros()));
            // An error only means that nobody is subscribed right now.
            let _ = sender.send(event);
        }
    });
    let body = format!(r#"{{"events":{total},"subscribers":{subscribers}}}"#);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn parse_addr() -> Result<SocketAddr, String> {
    let mut addr = "127.0.0.1:18402".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            other => match other.strip_prefix("--addr=") {
                Some(v) => addr = v.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    addr.parse().map_err(|e| format!("invalid address {addr:?}: {e}"))
}

#[tokio::main]
async fn main() {
    let addr = match parse_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("{e}\nusage: axum-sse-bench [--addr HOST:PORT]");
            std::process::exit(2);
        }
    };
    let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
    let app = Router::new()
        .route("/stream", get(stream_route))
        .route("/idle", get(idle_route))
        .route("/broadcast", get(broadcast_route))
        .route("/broadcast/start", post(start_route))
        .with_state(AppState { events });
    let listener = match tokio::net::TcpListener::bind(addr).await {
        // Events are small writes: without TCP_NODELAY, Nagle's algorithm meets the client's delayed ACKs and a
        // stream stalls for 40 ms at a time. axum::serve leaves it off; every other server here turns it on.
        Ok(l) => l.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("axum-sse-bench listening on http://{addr}/");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("server failed: {e}");
        std::process::exit(1);
    }
}
