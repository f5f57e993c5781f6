//! Feeding Conduit from async code: tokio tasks write one stream through [`SseSender::send_async`] and
//! publish to a hub topic with [`Hub::publish`]. Conduit's event loop runs on its own thread and needs no
//! runtime; tokio only runs the producers, on a thread of their own.
//!
//! ```text
//! cargo run --example async_producer                    # http://127.0.0.1:8002
//! curl -N 'http://127.0.0.1:8002/ticks?n=20'            # 20 events from a tokio task, paced by tokio's timer
//! curl -N http://127.0.0.1:8002/feed                    # hub topic "feed": a tokio task publishes every 500 ms
//! ```
//!
//! `send_async` waits (without blocking tokio's thread) while the client reads slower than the task
//! produces, and fails once the client has gone, so the task stops; `Hub::publish` never waits at all.

use clap::Parser;
use conduit::server::{Hub, HubConfig, Request, Response, Router, Server, ServerConfig, Sse, StatusCode};
use conduit::sse::Event;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The hub topic the feed task publishes to.
pub const FEED_TOPIC: &str = "feed";
/// Events a `/ticks` stream buffers before `send_async` waits for the client.
const TICKS_BUFFER: usize = 8;
const MAX_TICKS: u64 = 100_000;

/// Async producers feeding Conduit streams: `/ticks` from a task per stream, `/feed` from a hub topic.
#[derive(Debug, Parser)]
#[command(name = "async_producer")]
struct Options {
    /// Where to listen, as IP:PORT.
    #[arg(long, default_value = "127.0.0.1:8002")]
    addr: SocketAddr,
    /// Milliseconds between two events of the feed.
    #[arg(long, default_value_t = 500)]
    feed_every_ms: u64,
}

/// Counts the tick tasks running, so a test can see them stop when their clients leave.
#[derive(Debug, Default)]
pub struct Producers(AtomicUsize);

impl Producers {
    pub fn running(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// `GET /ticks?n=N&every_ms=M`: a stream fed by a tokio task spawned on `runtime`. `GET /feed`: the hub topic.
pub fn router(runtime: tokio::runtime::Handle, producers: Arc<Producers>) -> Router {
    Router::new().get("/ticks", move |req: &Request| ticks(req, &runtime, &producers)).get("/feed", |req: &Request| {
        let last = req.header("last-event-id").or_else(|| req.query("last_event_id"));
        Sse::subscribe([FEED_TOPIC]).resume_from(last)
    })
}

fn number(req: &Request, name: &str, default: u64) -> Result<u64, Response> {
    match req.query(name).map(str::parse::<u64>) {
        None => Ok(default),
        Some(Ok(n)) if n <= MAX_TICKS => Ok(n),
        Some(_) => Err(Response::error(StatusCode::BAD_REQUEST, format_args!("{name} must be 0 to {MAX_TICKS}"))),
    }
}

fn ticks(req: &Request, runtime: &tokio::runtime::Handle, producers: &Arc<Producers>) -> Result<Sse, Response> {
    let n = number(req, "n", 20)?;
    let every = Duration::from_millis(number(req, "every_ms", 100)?);
    let (sender, stream) = Sse::channel_with_capacity(TICKS_BUFFER);
    let producers = Arc::clone(producers);
    producers.0.fetch_add(1, Ordering::SeqCst);
    // The handler runs on Conduit's loop; the task runs on tokio's thread.
    runtime.spawn(async move {
        for i in 1..=n {
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            let event = Event::new().event("tick").and_then(|e| e.id(i.to_string())).map(|e| e.data(i.to_string()));
            let Ok(event) = event else { break };
            if sender.send_async(event).await.is_err() {
                break; // the client has gone
            }
        }
        producers.0.fetch_sub(1, Ordering::SeqCst);
        // Dropping the sender ends the stream once its events are out.
    });
    Ok(stream)
}

/// Publishes `{"n": i}` to [`FEED_TOPIC`] every `every`, `count` times (forever if `None`). Publishing never
/// waits for subscribers; a refused event (the server busy or stopping) is logged and the feed goes on.
pub async fn feed(hub: Hub, every: Duration, count: Option<u64>) {
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        tokio::time::sleep(every).await;
        n += 1;
        if let Err(e) = hub.publish(FEED_TOPIC, Event::new().data(format!("{{\"n\":{n}}}"))) {
            log::warn!("feed event {n} not published: {e}");
        }
    }
}

/// A current-thread tokio runtime with timers: all the producers need.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_time().build()
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = Options::parse();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let hub = Hub::new(HubConfig::default());
    let router = router(runtime.handle().clone(), Arc::new(Producers::default()));
    let server = match Server::bind_with_hub(ServerConfig::new(options.addr), router, &hub) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", options.addr);
            std::process::exit(1);
        }
    };
    log::info!("async producers on http://{}/ticks and /feed", server.local_addr());
    // tokio's thread runs the feed, and with it every task the handlers spawn.
    let every = Duration::from_millis(options.feed_every_ms.max(1));
    let spawned =
        std::thread::Builder::new().name("tokio".into()).spawn(move || runtime.block_on(feed(hub, every, None)));
    if let Err(e) = spawned {
        eprintln!("cannot start the producers' thread: {e}");
        std::process::exit(1);
    }
    if let Err(e) = server.run() {
        eprintln!("server failed: {e}");
        std::process::exit(1);
    }
}
