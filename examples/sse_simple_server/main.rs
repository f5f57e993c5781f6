//! The Conduit demo server: an HTML client page and a few event streams.
//!
//! ```text
//! cargo run --example sse_simple_server                 # http://127.0.0.1:8000
//! cargo run --example sse_simple_server -- --addr localhost:9000
//! cargo run --example sse_simple_server -- --tls-cert cert.pem --tls-key key.pem   # https://127.0.0.1:8000
//! cargo run --example sse_simple_server -- --help
//! CONDUIT_ADDR=0.0.0.0:8000 RUST_LOG=debug cargo run --example sse_simple_server
//! ```
//!
//! | route             | what it streams                                                          |
//! |-------------------|--------------------------------------------------------------------------|
//! | `/`               | the HTML client page                                                     |
//! | `/time`           | `time` every second: `{"time":<unix seconds>,"iso":"<RFC 3339>"}`        |
//! | `/count`          | `counter` `{"count":i}`, ids 1..=n, then `done` (`n`, `interval_ms`, `drop_after`); resumes |
//! | `/stream/ai`      | a simulated model reply: `token` every 100 ms, then `done`               |
//! | `/stream/updates` | ten `update` events one second apart, then `done`                        |
//! | `/stream?topic=t` | hub topic `t` (resumes from `Last-Event-ID`)                             |
//! | `POST /publish?topic=t` | publish the body to topic `t` (bearer token)                       |
//! | `POST /api/chat/stream` | a streamed chat reply (bearer token; JSON body); `Conduit-Message-Id` |
//! | `GET /api/chat/stream/{id}` | resume a reply after `Last-Event-ID`; `204` once it was all read |
//! | `DELETE /api/chat/stream/{id}` | cancel a reply                                              |
//! | `GET /metrics`    | Prometheus metrics (OpenMetrics text)                                    |
//! | `GET /healthz`, `GET /readyz` | liveness and readiness checks (readiness includes Redis with `--redis`) |
//!
//! The bearer token comes from `--token` or `CONDUIT_TOKEN`; without either, a random one is made and printed.
//! Pages on other origins may use the server when listed with `--cors-origin ORIGIN` (repeatable) or
//! `CONDUIT_CORS_ORIGINS` (comma-separated; `*` for any). With `--redis redis://host:port` (or
//! `CONDUIT_REDIS_URL`) the hub runs on Redis Streams: several processes on one Redis serve the same topics, and
//! `GET /readyz` answers 503 while Redis is unreachable. Requests that wait for the hub (publishing, the chat
//! routes) are answered from a bounded set of threads (`--hub-threads`, `--hub-queue`; 503 past them), since on
//! Redis each waits for a round trip that the event loop must never wait for. With `--tls-cert FILE --tls-key
//! FILE` (PEM; both or neither) it serves HTTPS on the loop, and looks at the files every
//! `--tls-reload-interval` seconds (60) so that a renewed certificate is served without a restart; behind a
//! proxy that terminates TLS,
//! `--public-scheme` tells CORS which scheme browsers use. SIGINT or SIGTERM shuts down gracefully: every open
//! stream gets a `shutdown` event (with `retry:`) and its end, then the process exits 0; a second signal
//! exits at once.

pub mod certificate;
pub mod chat;
pub mod demos;

use chat::{Chat, ChatConfig};
use clap::Parser;
use conduit::http::AllowedHosts;
use conduit::server::auth::require_bearer;
use conduit::server::{
    CorsConfig, HealthConfig, Hub, HubConfig, Metrics, Offload, PublicScheme, PublishError, Reply, Request, Response,
    Router, Server, ServerConfig, Sse, StatusCode, TlsConfig,
};
use conduit::sse::Event;
use serde_json::json;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const INDEX_HTML: &str = include_str!("assets/index.html");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");
const MAX_PUBLISH_BYTES: usize = 64 * 1024;

/// The Conduit demo server: a page with every demo, event streams, topics with resume, and a streamed chat.
#[derive(Debug, Parser)]
#[command(name = "sse_simple_server", version)]
struct Options {
    /// Where to listen, as HOST:PORT; host names are resolved (the first address is used).
    #[arg(long, env = "CONDUIT_ADDR", default_value = "127.0.0.1:8000", value_parser = resolve_addr)]
    addr: SocketAddr,
    /// The bearer token for POST /publish and /api/chat/stream; a random one is made and printed if absent.
    #[arg(long, env = "CONDUIT_TOKEN", hide_env_values = true, value_parser = parse_token)]
    token: Option<String>,
    /// An origin whose pages may use the server (repeatable; `*` for any), e.g. http://localhost:3000.
    #[arg(long = "cors-origin", value_name = "ORIGIN", env = "CONDUIT_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// A host name requests may name in `Host` (repeatable; `.example.com` for a domain and its subdomains;
    /// `*` for any). Default: localhost, 127.0.0.1 and [::1] when listening on loopback (so a DNS-rebinding
    /// page cannot reach the server under its own name), any host otherwise.
    #[arg(long = "allowed-host", value_name = "HOST", env = "CONDUIT_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Run the hub on Redis Streams, redis://[[user]:password@]host[:port][/db]: every process on the same
    /// Redis serves the same topics.
    #[arg(long, value_name = "URL", env = "CONDUIT_REDIS_URL", hide_env_values = true)]
    redis: Option<conduit::redis::RedisConfig>,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first, then intermediates).
    #[arg(long, value_name = "FILE", env = "CONDUIT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "CONDUIT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between looks at --tls-cert and --tls-key: when either changed (a renewal), new connections
    /// get the new certificate; 0 reads them once, at start.
    #[arg(long, value_name = "SECONDS", env = "CONDUIT_TLS_RELOAD_INTERVAL", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    tls_reload_interval: u64,
    /// The scheme browsers reach the server by, for telling same-origin pages from others (--cors-origin):
    /// the listener's, a fixed one behind a proxy that terminates TLS, or the proxy's X-Forwarded-Proto (only
    /// when nothing but the proxy can reach the server).
    #[arg(long, value_enum, value_name = "SCHEME", env = "CONDUIT_PUBLIC_SCHEME", default_value = "listener")]
    public_scheme: SchemeOption,
    /// Chat replies generated at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = ChatConfig::default().max_replies as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_replies: u32,
    /// Seconds one chat reply may take; past it, it ends with an `error` event.
    #[arg(long, value_name = "SECONDS", default_value_t = ChatConfig::default().max_reply_time.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    reply_time_limit: u64,
    /// Threads answering the requests that wait for the hub (POST /publish and the chat routes; on Redis each
    /// waits for a round trip, which the event loop must not do).
    #[arg(long, value_name = "N", default_value_t = HubThreads::default().threads as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_024))]
    hub_threads: u32,
    /// Requests waiting for one of those threads at most; more get 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = HubThreads::default().queue as u32,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    hub_queue: u32,
}

/// `--public-scheme`: where the scheme of the server's origin comes from.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SchemeOption {
    /// `https` with --tls-cert, `http` otherwise.
    Listener,
    /// Always `http`.
    Http,
    /// Always `https` (behind a proxy that terminates TLS).
    Https,
    /// The X-Forwarded-Proto header set by the proxy.
    XForwardedProto,
}

impl From<SchemeOption> for PublicScheme {
    fn from(option: SchemeOption) -> PublicScheme {
        match option {
            SchemeOption::Listener => PublicScheme::Listener,
            SchemeOption::Http => PublicScheme::Http,
            SchemeOption::Https => PublicScheme::Https,
            SchemeOption::XForwardedProto => PublicScheme::XForwardedProto,
        }
    }
}

/// How many requests that wait for the hub are served at once (see `--hub-threads`).
#[derive(Clone, Copy, Debug)]
pub struct HubThreads {
    /// Threads running them.
    pub threads: usize,
    /// Requests queued for a thread at most; past it, `503`.
    pub queue: usize,
}

impl Default for HubThreads {
    fn default() -> Self {
        HubThreads { threads: 8, queue: 256 }
    }
}

impl HubThreads {
    /// Starts the threads.
    ///
    /// # Errors
    /// The operating system refused a thread.
    pub fn start(self) -> std::io::Result<Offload> {
        Offload::new("hub-work", self.threads, self.queue)
    }
}

/// Resolves `HOST:PORT`, names included (`localhost:8001`).
fn resolve_addr(text: &str) -> Result<SocketAddr, String> {
    let mut addrs = text.to_socket_addrs().map_err(|e| format!("cannot resolve {text:?}: {e}"))?;
    addrs.next().ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn parse_token(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the token must be non-empty, without spaces or control characters".to_owned());
    }
    Ok(text.to_owned())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = Options::parse();
    let token_generated = options.token.is_none();
    let token = match options.token.clone() {
        Some(token) => token,
        None => random_hex(16).unwrap_or_else(|e| {
            eprintln!("cannot make a random token: {e}");
            std::process::exit(1);
        }),
    };
    let redis = options.redis.clone();
    let hub = conduit::redis::RedisBackbone::hub_or_embedded(HubConfig::default(), redis).unwrap_or_else(|e| {
        eprintln!("invalid --redis: {e}");
        std::process::exit(2);
    });
    let mut config = ServerConfig::new(options.addr);
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        match TlsConfig::from_pem_files(cert, key) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("invalid --tls-cert/--tls-key: {e}");
                std::process::exit(2);
            }
        }
        if let (Some(tls), 1..) = (&config.tls, options.tls_reload_interval) {
            let interval = Duration::from_secs(options.tls_reload_interval);
            if let Err(e) = certificate::watch(tls.clone(), interval) {
                eprintln!("cannot start the TLS reload thread: {e}");
                std::process::exit(1);
            }
        }
    }
    config.public_scheme = options.public_scheme.into();
    config.allowed_hosts = match allowed_hosts(&options) {
        Ok(hosts) => hosts,
        Err(e) => {
            eprintln!("invalid --allowed-host: {e}");
            std::process::exit(2);
        }
    };
    let origins: Vec<String> =
        options.cors_origins.iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect();
    if !origins.is_empty() {
        let mut cors = CorsConfig::allow_origins(origins);
        // Pages on other origins read the id of the reply they started.
        cors.exposed_headers.push(chat::MESSAGE_ID_HEADER.to_owned());
        config.cors = Some(cors);
    }
    config.shutdown_event =
        Some(event("shutdown", &json!({ "reason": "the server is shutting down" })).retry(Duration::from_secs(2)));
    // Every stream starts with `retry:`, so its first bytes leave at once: nginx holds an HTTP/2 response's
    // headers until body bytes follow, and a quiet stream would look "connecting" until its first event
    // (deploy/README.md). Three seconds is what Chromium waits anyway.
    config.retry = Some(Duration::from_secs(3));
    let chat_config = ChatConfig {
        max_replies: options.max_replies as usize,
        max_reply_time: Duration::from_secs(options.reply_time_limit),
        ..ChatConfig::default()
    };
    let hub_threads = HubThreads { threads: options.hub_threads as usize, queue: options.hub_queue as usize };
    let offload = match hub_threads.start() {
        Ok(offload) => offload,
        Err(e) => {
            eprintln!("cannot start the hub threads: {e}");
            std::process::exit(1);
        }
    };
    let router = observability(&mut config, routes(&token, &hub, chat_config, offload));
    let server = match Server::bind_with_hub(config, router, &hub) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", options.addr);
            std::process::exit(1);
        }
    };
    let scheme = if options.tls_cert.is_some() { "https" } else { "http" };
    log::info!("Conduit demo on {scheme}://{}/", server.local_addr());
    if token_generated {
        // Printed, not logged: it is a secret, and this is the one place the user can learn it.
        println!("API token (for /publish and /api/chat/stream): {token}");
    }
    if let Err(e) = shut_down_on_signals(server.handle()) {
        eprintln!("cannot handle signals: {e}");
        std::process::exit(1);
    }
    if let Err(e) = server.run() {
        eprintln!("server failed: {e}");
        std::process::exit(1);
    }
}

/// The hosts requests may name: as given (`*` for any), else the loopback names when listening on loopback.
fn allowed_hosts(options: &Options) -> Result<AllowedHosts, conduit::http::HostPatternError> {
    let given: Vec<&str> = options.allowed_hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()).collect();
    if given.contains(&"*") || (given.is_empty() && !options.addr.ip().is_loopback()) {
        return Ok(AllowedHosts::default());
    }
    if given.is_empty() {
        return AllowedHosts::new(["localhost", "127.0.0.1", "[::1]"]);
    }
    AllowedHosts::new(given)
}

/// The first SIGINT or SIGTERM starts a graceful shutdown (`run` then returns and the process exits 0); a
/// second one exits at once.
fn shut_down_on_signals(handle: conduit::server::ServerHandle) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut received = signals.forever();
        if let Some(signal) = received.next() {
            log::info!("signal {signal}: shutting down ({} open streams)", handle.streams());
            handle.shutdown();
        }
        if received.next().is_some() {
            log::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    })?;
    Ok(())
}

/// `bytes` random bytes from the operating system's cryptographic source, as lower-case hex: API tokens must not
/// be guessable, and ids made this way do not repeat across runs.
fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut random = vec![0u8; bytes];
    getrandom::fill(&mut random)?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

/// Metrics at `GET /metrics` and the health checks at `/healthz` and `/readyz`; the access log is on by
/// default (`RUST_LOG=conduit::access=off` silences it).
pub fn observability(config: &mut ServerConfig, router: Router) -> Router {
    let metrics = Metrics::new();
    config.metrics = Some(metrics.clone());
    config.health = HealthConfig::standard();
    router.get("/metrics", metrics.handler())
}

/// The example's routes with the default chat limits and hub threads.
pub fn router(token: &str, hub: &Hub) -> Router {
    router_with(token, hub, ChatConfig::default())
}

/// The example's routes with the default hub threads. Panics if they cannot start (for tests).
pub fn router_with(token: &str, hub: &Hub, chat: ChatConfig) -> Router {
    routes(token, hub, chat, HubThreads::default().start().expect("start the hub threads"))
}

/// The example's routes; requests that wait for the hub are answered from `offload`'s threads.
pub fn routes(token: &str, hub: &Hub, chat: ChatConfig, offload: Offload) -> Router {
    let token: Arc<str> = Arc::from(token);
    let chat = Arc::new(Chat::new(hub, Arc::clone(&token), chat, offload.clone()));
    let (resume, cancel) = (Arc::clone(&chat), Arc::clone(&chat));
    let publish_token = Arc::clone(&token);
    // Checked on the head: a request without the token is answered 401 before its body is read.
    let (chat_token, publish_guard_token) = (Arc::clone(&token), Arc::clone(&token));
    let hub = hub.clone();
    Router::new()
        .get("/", |_: &Request| Response::html(INDEX_HTML))
        .get("/favicon.svg", |_: &Request| favicon())
        // Browsers ask for /favicon.ico whatever the page says; an SVG answers it as well.
        .get("/favicon.ico", |_: &Request| favicon())
        .get("/time", |_: &Request| demos::time_stream())
        .get("/count", demos::count_stream)
        .get("/stream/ai", |_: &Request| demos::ai_stream())
        .get("/stream/updates", |_: &Request| demos::updates_stream())
        .get("/stream", subscribe)
        .post("/publish", move |req: &Request| publish(req, &publish_token, &hub, &offload))
        .body_limit(MAX_PUBLISH_BYTES)
        .guard(move |req: &Request| require_bearer(req, &publish_guard_token))
        .post("/api/chat/stream", move |req: &Request| chat.start(req))
        .body_limit(chat::MAX_REQUEST_BYTES)
        .guard(move |req: &Request| require_bearer(req, &chat_token))
        .get("/api/chat/stream/{message_id}", move |req: &Request| resume.resume(req))
        .delete("/api/chat/stream/{message_id}", move |req: &Request| cancel.cancel(req))
}

/// True for a topic of the chat's replies, which only the chat routes (with their token) may use.
fn reserved_topic(topic: &str) -> bool {
    topic.trim_matches(' ').starts_with(chat::TOPIC_PREFIX)
}

fn reserved_topic_error() -> Response {
    Response::error(StatusCode::FORBIDDEN, format_args!("topics starting with {:?} are reserved", chat::TOPIC_PREFIX))
}

/// `GET /stream?topic=T`: a subscription to hub topics, except the chat's.
fn subscribe(req: &Request) -> Result<Sse, Response> {
    let topics = req.query_pairs().iter().filter(|(k, _)| k == "topic").flat_map(|(_, v)| v.split(','));
    if topics.into_iter().any(reserved_topic) {
        return Err(reserved_topic_error());
    }
    Ok(Sse::subscribe_request(req))
}

fn favicon() -> Response {
    Response::new(StatusCode::OK).with_body("image/svg+xml", FAVICON_SVG).header("Cache-Control", "max-age=86400")
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    Response::json(&json!({ "error": message.to_string() })).status(status)
}

/// `503` with `Retry-After`: the request was not carried out, and may be sent again shortly.
fn busy(message: impl std::fmt::Display) -> Response {
    json_error(StatusCode::SERVICE_UNAVAILABLE, message).header("Retry-After", "1")
}

/// Runs `work`, which waits for the hub, on one of `offload`'s threads, and answers with what it returns; `503`
/// when they are all busy (nothing was done).
fn off_the_loop<R, F>(offload: &Offload, work: F) -> Reply
where
    R: Into<Reply>,
    F: FnOnce() -> R + Send + 'static,
{
    offload.defer(work).unwrap_or_else(|_| busy("too many requests in progress; try again shortly").into())
}

/// `POST /publish?topic=T[&event=NAME]`: the body (UTF-8 text) becomes one event of topic `T`. The request is
/// checked on the loop; the publish, which waits for the store on Redis, runs on a hub thread, and only an
/// event the hub kept is answered `202`.
fn publish(req: &Request, token: &str, hub: &Hub, offload: &Offload) -> Reply {
    if let Err(refused) = require_bearer(req, token) {
        return refused.into();
    }
    let Some(topic) = req.query("topic") else {
        return json_error(StatusCode::BAD_REQUEST, "the topic query parameter is required").into();
    };
    if reserved_topic(topic) {
        return json_error(
            StatusCode::FORBIDDEN,
            format_args!("topics starting with {:?} are reserved", chat::TOPIC_PREFIX),
        )
        .into();
    }
    if req.body().len() > MAX_PUBLISH_BYTES {
        let too_large = format_args!("events are at most {MAX_PUBLISH_BYTES} bytes");
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, too_large).into();
    }
    let Ok(data) = std::str::from_utf8(req.body()) else {
        return json_error(StatusCode::BAD_REQUEST, "the body must be UTF-8 text").into();
    };
    let mut event = Event::new().data(data);
    if let Some(name) = req.query("event").filter(|n| !n.is_empty()) {
        event = match event.event(name) {
            Ok(e) => e,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e).into(),
        };
    }
    let (hub, topic) = (hub.clone(), topic.to_owned());
    off_the_loop(offload, move || match hub.publish(&topic, event) {
        Ok(id) => Response::json(&json!({ "topic": topic, "id": id })).status(StatusCode::ACCEPTED),
        Err(PublishError::InvalidTopic) => json_error(StatusCode::BAD_REQUEST, "invalid topic name"),
        Err(e) => busy(e),
    })
}

fn event(name: &str, data: &serde_json::Value) -> Event {
    // Names here are literals without line breaks and JSON values always serialize, so neither step can fail.
    Event::new()
        .event(name)
        .and_then(|e| e.json(data))
        .unwrap_or_else(|e| Event::new().comment(format!("bad event: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_fresh_lower_case_hex() {
        let tokens: Vec<String> = (0..8).map(|_| random_hex(16).unwrap()).collect();
        for token in &tokens {
            assert_eq!(token.len(), 32, "{token}");
            assert!(token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{token}");
        }
        let mut unique = tokens.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tokens.len(), "{tokens:?}");
        assert_eq!(random_hex(0).unwrap(), "");
        assert_eq!(random_hex(3).unwrap().len(), 6);
    }
}
