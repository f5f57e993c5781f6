//! The Conduit demo server: an HTML client page and a few event streams.
//!
//! ```text
//! cargo run --example sse_simple_server                 # http://127.0.0.1:8000
//! cargo run --example sse_simple_server -- --addr 127.0.0.1:9000
//! CONDUIT_ADDR=0.0.0.0:8000 RUST_LOG=debug cargo run --example sse_simple_server
//! ```
//!
//! | route             | what it streams                                                          |
//! |-------------------|--------------------------------------------------------------------------|
//! | `/`               | the HTML client page                                                     |
//! | `/time`           | `time` every second: `{"time": <unix seconds>, "iso": "<RFC 3339>"}`     |
//! | `/count`          | `counter` `{"count": i}`, ids 1..=n, then `done` (`n`, `interval_ms`, `drop_after`); resumes |
//! | `/stream/ai`      | a simulated model reply: `token` every 100 ms, then `done`               |
//! | `/stream/updates` | ten `update` events one second apart, then `done`                        |
//! | `/stream?topic=t` | hub topic `t` (resumes from `Last-Event-ID`)                             |
//! | `POST /publish?topic=t` | publish the body to topic `t` (bearer token)                       |
//! | `POST /api/chat/stream` | a streamed chat reply (bearer token; JSON body)                    |
//!
//! The bearer token comes from `--token` or `CONDUIT_TOKEN`; without either, a random one is made and printed.
//! With `--redis redis://host:port` (or `CONDUIT_REDIS_URL`) the hub runs on Redis Streams: several processes on
//! one Redis serve the same topics, and `GET /ready` answers 503 while Redis is unreachable.
//! Pages on other origins may use the server when listed with `--cors-origin ORIGIN` (repeatable) or
//! `CONDUIT_CORS_ORIGINS` (comma-separated; `*` for any). SIGINT or SIGTERM shuts down gracefully: every open
//! stream gets a `shutdown` event (with `retry:`) and its end, then the process exits 0; a second signal
//! exits at once.

use conduit::server::auth::require_bearer;
use conduit::server::{
    CorsConfig, Hub, HubConfig, PublishError, Request, Response, Router, Server, ServerConfig, Sse, StatusCode, Ticker,
};
use conduit::sse::Event;
use serde_json::{Value, json};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INDEX_HTML: &str = include_str!("assets/index.html");
pub const AI_REPLY: &str = "Hello! I am an assistant streaming this answer to you one word at a time over \
    Server-Sent Events. Each word is its own event, sent by Conduit from a timer on its event loop, so \
    thousands of replies like this one can stream at once from a single thread.";
const MAX_COUNT: u64 = 1_000_000;
const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Chat replies generated at once; each has a worker thread, as a call to a real model would.
const MAX_CHATS: usize = 64;
const MAX_CHAT_MESSAGE: usize = 4000;
const MAX_PUBLISH_BYTES: usize = 64 * 1024;
/// Pause between chat tokens, like a model's generation speed.
const CHAT_TOKEN_PAUSE: Duration = Duration::from_millis(40);

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let hub = match &options.redis {
        None => Hub::new(HubConfig::default()),
        // Many nodes on one Redis: every process started with the same URL serves the same topics.
        Some(url) => match conduit::redis::RedisConfig::from_url(url).and_then(conduit::redis::RedisBackbone::new) {
            Ok(backbone) => Hub::with_backbone(HubConfig::default(), backbone),
            Err(e) => {
                eprintln!("invalid --redis: {e}");
                std::process::exit(2);
            }
        },
    };
    let mut config = ServerConfig::new(options.addr);
    if !options.cors_origins.is_empty() {
        config.cors = Some(CorsConfig::allow_origins(options.cors_origins.iter().cloned()));
    }
    config.shutdown_event =
        Some(event("shutdown", &json!({ "reason": "the server is shutting down" })).retry(Duration::from_secs(2)));
    let server = match Server::bind_with_hub(config, router(&options.token, &hub), &hub) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", options.addr);
            std::process::exit(1);
        }
    };
    log::info!("Conduit demo on http://{}/", server.local_addr());
    if options.token_generated {
        // Printed, not logged: it is a secret, and this is the one place the user can learn it.
        println!("API token (for /publish and /api/chat/stream): {}", options.token);
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

struct Options {
    addr: SocketAddr,
    token: String,
    token_generated: bool,
    cors_origins: Vec<String>,
    /// `--redis URL` or `CONDUIT_REDIS_URL`: the hub runs on Redis Streams.
    redis: Option<String>,
}

impl Options {
    /// `--addr HOST:PORT` (else `CONDUIT_ADDR`, else 127.0.0.1:8000) and `--token T` (else `CONDUIT_TOKEN`,
    /// else a random token).
    fn parse() -> Result<Options, String> {
        const USAGE: &str =
            "usage: sse_simple_server [--addr HOST:PORT] [--token TOKEN] [--cors-origin ORIGIN]... [--redis URL]";
        let mut addr = std::env::var("CONDUIT_ADDR").ok();
        let mut token = std::env::var("CONDUIT_TOKEN").ok().filter(|t| !t.is_empty());
        let mut cors_origins: Vec<String> = std::env::var("CONDUIT_CORS_ORIGINS")
            .map(|v| v.split(',').map(str::trim).filter(|o| !o.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        let mut redis = std::env::var("CONDUIT_REDIS_URL").ok().filter(|u| !u.is_empty());
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            if name == "--help" || name == "-h" {
                return Err(USAGE.to_owned());
            }
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| format!("{name} needs a value; {USAGE}"))?,
            };
            match name.as_str() {
                "--addr" => addr = Some(value),
                "--token" => token = Some(value),
                "--cors-origin" => cors_origins.push(value),
                "--redis" => redis = Some(value),
                _ => return Err(format!("unknown argument {arg:?}; {USAGE}")),
            }
        }
        let addr = addr.unwrap_or_else(|| "127.0.0.1:8000".to_owned());
        let addr = addr.parse().map_err(|e| format!("invalid address {addr:?}: {e}"))?;
        let token_generated = token.is_none();
        let token = token.unwrap_or_else(|| random_hex(16));
        if token.chars().any(|c| c.is_control() || c == ' ') {
            return Err("the token must not contain spaces or control characters".to_owned());
        }
        Ok(Options { addr, token, token_generated, cors_origins, redis })
    }
}

/// `bytes` random bytes as hex, from the standard library's randomly keyed hasher (no extra dependency).
fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(out.len());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(bytes * 2);
    out
}

pub fn router(token: &str, hub: &Hub) -> Router {
    let token: Arc<str> = Arc::from(token);
    let chats = Arc::new(AtomicUsize::new(0));
    let publish_token = Arc::clone(&token);
    let ready_hub = hub.clone();
    let hub = hub.clone();
    Router::new()
        // Readiness: 503 while the hub's backbone (Redis, with --redis) is unreachable.
        .get("/ready", move |_: &Request| match ready_hub.backbone_up() {
            true => Response::json(&json!({ "backbone": "up" })),
            false => json_error(StatusCode::SERVICE_UNAVAILABLE, "the backbone is down").header("Retry-After", "1"),
        })
        .get("/", |_: &Request| Response::html(INDEX_HTML))
        .get("/time", |_: &Request| time_stream())
        .get("/count", count_stream)
        .get("/stream/ai", |_: &Request| ai_stream())
        .get("/stream/updates", |_: &Request| updates_stream())
        .get("/stream", |req: &Request| Sse::subscribe_request(req))
        .post("/publish", move |req: &Request| publish(req, &publish_token, &hub))
        .post("/api/chat/stream", move |req: &Request| chat_stream(req, &token, &chats))
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    Response::json(&json!({ "error": message.to_string() })).status(status)
}

/// `POST /publish?topic=T[&event=NAME]`: the body (UTF-8 text) becomes one event of topic `T`.
fn publish(req: &Request, token: &str, hub: &Hub) -> Response {
    if let Err(refused) = require_bearer(req, token) {
        return refused;
    }
    let Some(topic) = req.query("topic") else {
        return json_error(StatusCode::BAD_REQUEST, "the topic query parameter is required");
    };
    if req.body().len() > MAX_PUBLISH_BYTES {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, format_args!("events are at most {MAX_PUBLISH_BYTES} bytes"));
    }
    let Ok(data) = std::str::from_utf8(req.body()) else {
        return json_error(StatusCode::BAD_REQUEST, "the body must be UTF-8 text");
    };
    let mut event = Event::new().data(data);
    if let Some(name) = req.query("event").filter(|n| !n.is_empty()) {
        event = match event.event(name) {
            Ok(e) => e,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
        };
    }
    match hub.publish(topic, event) {
        Ok(id) => Response::json(&json!({ "topic": topic, "id": id })).status(StatusCode::ACCEPTED),
        Err(PublishError::InvalidTopic) => json_error(StatusCode::BAD_REQUEST, "invalid topic name"),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e).header("Retry-After", "1"),
    }
}

/// `POST /api/chat/stream`: `{"user_message": "...", "conversation_id": optional}` in, a streamed reply out.
fn chat_stream(req: &Request, token: &str, chats: &Arc<AtomicUsize>) -> Result<Sse, Response> {
    require_bearer(req, token)?;
    let body: Value = serde_json::from_slice(req.body())
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, format_args!("invalid JSON: {e}")))?;
    let message = match body.get("user_message") {
        Some(Value::String(m)) if !m.trim().is_empty() && m.chars().count() <= MAX_CHAT_MESSAGE => m.clone(),
        Some(Value::String(_)) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                format_args!("user_message must have 1 to {MAX_CHAT_MESSAGE} characters"),
            ));
        }
        _ => return Err(json_error(StatusCode::BAD_REQUEST, "user_message (a string) is required")),
    };
    let conversation = match body.get("conversation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        Some(_) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "conversation_id must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
    };
    if chats.fetch_add(1, Ordering::AcqRel) >= MAX_CHATS {
        chats.fetch_sub(1, Ordering::AcqRel);
        return Err(
            json_error(StatusCode::SERVICE_UNAVAILABLE, "too many replies in progress").header("Retry-After", "1")
        );
    }
    let (sender, stream) = Sse::channel_with_capacity(64);
    let chats = Arc::clone(chats);
    let spawned = std::thread::Builder::new().name("chat-reply".into()).spawn(move || {
        generate_reply(&message, conversation, |event| sender.send(event).is_ok());
        chats.fetch_sub(1, Ordering::AcqRel);
    });
    if let Err(e) = spawned {
        log::error!("cannot start a chat worker: {e}");
        return Err(json_error(StatusCode::SERVICE_UNAVAILABLE, "cannot start a reply now").header("Retry-After", "1"));
    }
    Ok(stream)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Plays the part of a model: `send` delivers each event and says whether the client is still there.
/// The message "/fail" makes the reply fail part-way, to show how errors reach the client.
fn generate_reply(message: &str, conversation: Option<String>, mut send: impl FnMut(Event) -> bool) {
    if !send(event("stream_start", &json!({ "status": "streaming" }))) {
        return;
    }
    if conversation.is_none() && !send(event("conversation_id", &json!({ "conversation_id": random_hex(8) }))) {
        return;
    }
    let reply = format!(
        "You said: \"{}\". This reply is streamed by Conduit one token at a time over Server-Sent Events, \
         from a worker thread through a bounded channel, the way a real model client would feed it.",
        message.trim()
    );
    let words: Vec<&str> = reply.split(' ').filter(|w| !w.is_empty()).collect();
    for (i, word) in words.iter().enumerate() {
        if message.trim() == "/fail" && i == 3 {
            send(event("error", &json!({ "error": "the model stopped unexpectedly (simulated failure)" })));
            return;
        }
        let token = if i + 1 < words.len() { format!("{word} ") } else { (*word).to_owned() };
        if !send(event("message", &json!({ "token": token }))) {
            return; // the client stopped the reply
        }
        std::thread::sleep(CHAT_TOKEN_PAUSE);
    }
    send(event("stream_end", &json!({ "message_id": random_hex(8), "status": "complete" })));
}

fn event(name: &str, data: &serde_json::Value) -> Event {
    // Names here are literals without line breaks and JSON values always serialize, so neither step can fail.
    Event::new()
        .event(name)
        .and_then(|e| e.json(data))
        .unwrap_or_else(|e| Event::new().comment(format!("bad event: {e}")))
}

fn done() -> Event {
    event("done", &json!({ "status": "complete" }))
}

fn time_stream() -> Sse {
    Sse::interval(Duration::from_secs(1), |t: &mut Ticker| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        t.send(event("time", &json!({ "time": now.as_secs_f64(), "iso": rfc3339(now) })));
    })
}

/// Reads an integer query parameter within `range`, or explains in one line why it is not acceptable.
fn query_u64(req: &Request, name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, Response> {
    let Some(raw) = req.query(name) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(Response::error(
            StatusCode::BAD_REQUEST,
            format_args!("{name} must be an integer from {} to {}, got {raw:?}", range.start(), range.end()),
        )),
    }
}

/// `/count?n=&interval_ms=&drop_after=`: counts resume after the `Last-Event-ID` a reconnecting client sends,
/// and `drop_after=k` ends each connection after k events (a flaky network in miniature), so browsers can be
/// watched reconnecting and losing nothing.
fn count_stream(req: &Request) -> Result<Sse, Response> {
    let n = query_u64(req, "n", 10, 1..=MAX_COUNT)?;
    let interval_ms = query_u64(req, "interval_ms", 1000, 0..=MAX_INTERVAL_MS)?;
    let drop_after = query_u64(req, "drop_after", 0, 0..=MAX_COUNT)?;
    let resume_from = match req.header("last-event-id").or_else(|| req.query("last_event_id")) {
        None => 0,
        Some(id) => id.parse::<u64>().ok().filter(|&seen| seen <= n).ok_or_else(|| {
            Response::error(StatusCode::BAD_REQUEST, format_args!("Last-Event-ID must be a count from 0 to {n}"))
        })?,
    };
    let counter = |i: u64| event("counter", &json!({ "count": i })).id(i.to_string()).unwrap_or_else(|_| Event::new());
    // The counts this connection sends, and whether the stream is complete after them.
    let last = if drop_after == 0 { n } else { n.min(resume_from + drop_after) };
    let complete = last == n;
    let stream = if interval_ms == 0 {
        // No pacing: let the loop pull events as fast as the client reads them.
        let ending = complete.then(done);
        Sse::from_iter((resume_from + 1..=last).map(counter).chain(ending))
    } else {
        Sse::interval(Duration::from_millis(interval_ms), move |t: &mut Ticker| {
            let i = resume_from + 1 + t.tick();
            if i <= last {
                t.send(counter(i));
            }
            if i >= last {
                if complete {
                    t.send(done());
                }
                t.end();
            }
        })
    };
    // Reconnect quickly after a simulated drop; browsers otherwise wait about three seconds.
    Ok(if drop_after > 0 { stream.retry(Duration::from_millis(100)) } else { stream })
}

fn ai_stream() -> Sse {
    let tokens: Vec<&'static str> = AI_REPLY.split_whitespace().collect();
    Sse::interval(Duration::from_millis(100), move |t: &mut Ticker| {
        let index = t.tick() as usize;
        match tokens.get(index) {
            Some(token) => t.send(event("token", &json!({ "token": token, "index": index }))),
            None => {
                t.send(done());
                t.end();
            }
        }
    })
}

fn updates_stream() -> Sse {
    Sse::interval(Duration::from_secs(1), |t: &mut Ticker| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        t.send(event("update", &json!({ "count": t.tick(), "time": now.as_secs_f64() })));
        if t.tick() == 9 {
            t.send(done());
            t.end();
        }
    })
}

/// Formats time since the Unix epoch as RFC 3339 UTC with milliseconds, e.g. `2025-11-21T18:33:20.123Z`.
fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), counting in 400-year eras
/// that start on March 1st so leap days fall at the end of each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_250, "2000-02-29T00:00:00.250Z"),
            (1_763_750_000_123, "2025-11-21T18:33:20.123Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(rfc3339(Duration::from_millis(ms)), want);
        }
    }
}
