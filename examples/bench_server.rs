//! The server the comparison harness (`benches/compare/run.sh`) measures Conduit with.
//!
//! ```text
//! cargo run --release --example bench_server -- --addr 127.0.0.1:18401
//! curl -N 'http://127.0.0.1:18401/stream?n=3'
//! ```
//!
//! | route          | what it sends                                                                        |
//! |----------------|--------------------------------------------------------------------------------------|
//! | `/stream?n=N`  | `N` events (default 1000) as fast as the client reads (`Sse::from_iter`), then ends |
//! | `/idle`        | one event, then only the keep-alive comment every 15 s, until the client leaves     |
//!
//! Every event is `event: update`, `id: i`, `data: {"count": i, "time": <unix seconds>}` for `i` in `0..N`, the
//! same bytes as the other servers in the comparison. The address comes from `--addr HOST:PORT` (default
//! `127.0.0.1:18401`), the connection limit from `--max-connections N` or `CONDUIT_BENCH_MAX_CONNECTIONS`
//! (default 20,000, so the idle scenario's 10,000 streams fit). Logging is at `warn` unless `RUST_LOG` says
//! otherwise, so nothing is written per request.

use conduit::server::{Request, Response, Router, Server, ServerConfig, Sse, StatusCode, Ticker};
use conduit::sse::Event;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEFAULT_ADDR: &str = "127.0.0.1:18401";
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
const DEFAULT_EVENTS: u64 = 1000;
const MAX_EVENTS: u64 = 10_000_000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The idle stream's interval source only speaks on its first tick; the period just needs to be long.
const IDLE_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

struct Args {
    addr: SocketAddr,
    max_connections: usize,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            eprintln!("usage: bench_server [--addr HOST:PORT] [--max-connections N]");
            std::process::exit(2);
        }
    };
    let config = ServerConfig { max_connections: args.max_connections, ..ServerConfig::new(args.addr) };
    let server = match Server::bind(config, router()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    eprintln!("bench_server listening on http://{}/", server.local_addr());
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
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args { addr: addr.parse().map_err(|e| format!("invalid address {addr:?}: {e}"))?, max_connections })
}

fn router() -> Router {
    Router::new().get("/stream", stream).get("/idle", |_: &Request| idle())
}

/// `event: update`, `id: i`, `data: {"count": i, "time": <unix seconds>}`.
fn update(i: u64) -> Event {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let data = format!(r#"{{"count": {i}, "time": {now}}}"#);
    // A literal name and a decimal id hold no line break, so neither setter can fail.
    match Event::new().event("update").and_then(|e| e.id(i.to_string())) {
        Ok(event) => event.data(data),
        Err(_) => Event::new().data(data),
    }
}

fn stream(req: &Request) -> Result<Sse, Response> {
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
    Ok(Sse::from_iter((0..n).map(update)))
}

fn idle() -> Sse {
    Sse::interval(IDLE_PERIOD, |t: &mut Ticker| {
        if t.tick() == 0 {
            t.send(update(0));
        }
    })
    .keep_alive(Some(KEEP_ALIVE))
}
