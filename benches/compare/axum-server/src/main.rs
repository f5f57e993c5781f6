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

use axum::Router;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEFAULT_EVENTS: u64 = 1000;
const MAX_EVENTS: u64 = 10_000_000;

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
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
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
    let app = Router::new().route("/stream", get(stream_route)).route("/idle", get(idle_route));
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
