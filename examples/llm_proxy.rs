//! A relay between browsers and an OpenAI-compatible streaming chat API: the browser asks Conduit, Conduit
//! asks the model with `conduit-client` and passes each token on as it arrives. The upstream API key stays on
//! the server, and a browser that leaves closes the upstream request, so nobody pays for tokens nobody reads.
//!
//! ```text
//! # an upstream of your own, e.g. a local model server with an OpenAI-compatible API:
//! cargo run --example llm_proxy -- --upstream http://127.0.0.1:11434/v1/chat/completions --model llama3.2
//! curl -N -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
//!      --data '{"prompt": "Say hello"}' http://127.0.0.1:8003/chat
//! ```
//!
//! `POST /chat` takes `{"prompt": "..."}` or `{"messages": [{"role", "content"}, ...]}` and answers with a
//! stream: `token` `{"token"}` for each piece of content, then `done` `{"finish_reason"}`, or `error`
//! `{"error"}` if the upstream refused, failed or ended early. Upstream, it sends `POST` with
//! `{"model", "messages", "stream": true}` and reads `data: {...}` lines whose `choices[0].delta.content`
//! holds the text, up to `data: [DONE]`. The upstream key comes from the environment variable named by
//! `--api-key-env` (default `OPENAI_API_KEY`), never from the command line.
//!
//! Cancellation: the relay thread sends each token as it arrives; once the browser has gone, that send fails
//! and the relay closes the upstream connection. An upstream that stays silent is noticed at its next event,
//! or after `--upstream-timeout`. Only `http://` upstreams are supported (the client speaks plain HTTP).

use clap::Parser;
use conduit::client::{ClientError, EventSource};
use conduit::server::auth::require_bearer;
use conduit::server::{Request, Response, Router, Server, ServerConfig, Sse, SseSender, StatusCode};
use conduit::sse::Event;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Messages in one request at most, and characters in one message.
const MAX_MESSAGES: usize = 64;
const MAX_MESSAGE_CHARS: usize = 32_000;
/// Tokens buffered towards a slow browser before the relay waits (and with it, the upstream).
const RELAY_BUFFER: usize = 256;

/// Relays an OpenAI-compatible streaming chat API to browsers.
#[derive(Debug, Parser)]
#[command(name = "llm_proxy")]
struct Options {
    /// Where to listen, as IP:PORT.
    #[arg(long, default_value = "127.0.0.1:8003")]
    addr: SocketAddr,
    /// The upstream chat completions URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:11434/v1/chat/completions")]
    upstream: String,
    /// The model to ask for.
    #[arg(long, default_value = "llama3.2")]
    model: String,
    /// The environment variable holding the upstream API key (none is sent if it is unset).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// The bearer token browsers must send; a random one is printed if absent.
    #[arg(long, env = "LLM_PROXY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds the upstream may stay silent before the relay gives up.
    #[arg(long, default_value_t = 60)]
    upstream_timeout: u64,
    /// Relays at once; more get 503.
    #[arg(long, default_value_t = 32)]
    max_relays: usize,
}

/// What the relay needs to know.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub upstream: String,
    pub model: String,
    pub api_key: Option<String>,
    /// The bearer token browsers must send.
    pub token: String,
    pub upstream_timeout: Duration,
    pub max_relays: usize,
}

/// Counts relays in progress (each has a thread and an upstream connection).
#[derive(Debug, Default)]
pub struct Relays(AtomicUsize);

impl Relays {
    pub fn running(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn router(config: ProxyConfig, relays: Arc<Relays>) -> Router {
    let config = Arc::new(config);
    Router::new().post("/chat", move |req: &Request| chat(req, &config, &relays))
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    Response::json(&json!({ "error": message.to_string() })).status(status)
}

/// The conversation to send upstream, from `{"prompt"}` or `{"messages"}`.
fn messages(body: &Value) -> Result<Value, String> {
    if let Some(prompt) = body.get("prompt") {
        return match prompt.as_str() {
            Some(p) if !p.trim().is_empty() && p.chars().count() <= MAX_MESSAGE_CHARS => {
                Ok(json!([{ "role": "user", "content": p }]))
            }
            _ => Err(format!("prompt must be a string of 1 to {MAX_MESSAGE_CHARS} characters")),
        };
    }
    let Some(list) = body.get("messages").and_then(Value::as_array) else {
        return Err("a prompt (string) or messages (array) is required".to_owned());
    };
    let valid = |m: &Value| {
        matches!(m.get("role").and_then(Value::as_str), Some("system" | "user" | "assistant"))
            && m.get("content").and_then(Value::as_str).is_some_and(|c| c.chars().count() <= MAX_MESSAGE_CHARS)
    };
    if list.is_empty() || list.len() > MAX_MESSAGES || !list.iter().all(valid) {
        return Err(format!(
            "messages must be 1 to {MAX_MESSAGES} objects with a role (system, user, assistant) and a content string"
        ));
    }
    Ok(Value::Array(list.iter().map(|m| json!({ "role": m["role"], "content": m["content"] })).collect()))
}

fn chat(req: &Request, config: &Arc<ProxyConfig>, relays: &Arc<Relays>) -> Result<Sse, Response> {
    require_bearer(req, &config.token)?;
    let body: Value = serde_json::from_slice(req.body())
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, format_args!("invalid JSON: {e}")))?;
    let messages = messages(&body).map_err(|e| json_error(StatusCode::BAD_REQUEST, e))?;
    if relays.0.fetch_add(1, Ordering::SeqCst) >= config.max_relays {
        relays.0.fetch_sub(1, Ordering::SeqCst);
        return Err(
            json_error(StatusCode::SERVICE_UNAVAILABLE, "too many replies in progress").header("Retry-After", "1")
        );
    }
    let (sender, stream) = Sse::channel_with_capacity(RELAY_BUFFER);
    let (config, done) = (Arc::clone(config), Arc::clone(relays));
    let spawned = std::thread::Builder::new().name("llm-relay".into()).spawn(move || {
        relay(&config, &messages, &sender);
        done.0.fetch_sub(1, Ordering::SeqCst);
    });
    if let Err(e) = spawned {
        relays.0.fetch_sub(1, Ordering::SeqCst);
        log::error!("cannot start a relay: {e}");
        return Err(json_error(StatusCode::SERVICE_UNAVAILABLE, "cannot relay now").header("Retry-After", "1"));
    }
    Ok(stream)
}

fn event(name: &str, data: &Value) -> Event {
    // Literal names without line breaks, and JSON always serializes: neither step can fail.
    Event::new().event(name).and_then(|e| e.json(data)).unwrap_or_else(|_| Event::new().data("{}"))
}

/// What one upstream event means.
#[derive(Debug, PartialEq)]
enum Chunk {
    /// Text to pass on (possibly empty: a role announcement, say), and the finish reason if it came.
    Delta { content: String, finish_reason: Option<String> },
    /// `[DONE]`: the end.
    Done,
    /// The upstream reported an error in the stream, or sent something that is not a chunk.
    Error(String),
}

fn parse_chunk(data: &str) -> Chunk {
    if data.trim() == "[DONE]" {
        return Chunk::Done;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return Chunk::Error("the upstream sent an event that is not JSON".to_owned());
    };
    if let Some(error) = value.get("error") {
        let message = error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned);
        return Chunk::Error(format!("upstream error: {message}"));
    }
    let choice = &value["choices"][0];
    Chunk::Delta {
        content: choice["delta"]["content"].as_str().unwrap_or_default().to_owned(),
        finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
    }
}

fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Http { status } => format!("the upstream answered HTTP {status}"),
        other => format!("the upstream failed: {other}"),
    }
}

/// Asks the upstream and relays its tokens to `sender` until `[DONE]`, an error, or the browser leaving.
fn relay(config: &ProxyConfig, messages: &Value, sender: &SseSender) {
    let request = json!({ "model": config.model, "messages": messages, "stream": true });
    let mut builder = EventSource::post(&config.upstream, request.to_string())
        .header("Content-Type", "application/json")
        .reconnect(false) // a new POST would start a new, paid-for reply
        .connect_timeout(config.upstream_timeout)
        .read_timeout(Some(config.upstream_timeout));
    if let Some(key) = &config.api_key {
        builder = builder.header("Authorization", &format!("Bearer {key}"));
    }
    let fail = |message: String| {
        log::warn!("relay: {message}");
        let _ = sender.send(event("error", &json!({ "error": message })));
    };
    let mut upstream = match builder.connect() {
        Ok(upstream) => upstream,
        Err(e) => return fail(describe(&e)),
    };
    let mut finish_reason = None;
    loop {
        let chunk = match upstream.next_event() {
            Ok(Some(event)) => parse_chunk(&event.data),
            Ok(None) => return fail("the upstream ended the stream before [DONE]".to_owned()),
            Err(e) => return fail(describe(&e)),
        };
        let (next, last) = match chunk {
            Chunk::Delta { content, finish_reason: reason } => {
                finish_reason = reason.or(finish_reason);
                if content.is_empty() {
                    continue;
                }
                (event("token", &json!({ "token": content })), false)
            }
            Chunk::Done => (event("done", &json!({ "finish_reason": finish_reason })), true),
            Chunk::Error(message) => return fail(message),
        };
        if sender.send(next).is_err() {
            // The browser has gone: dropping `upstream` (on return) closes the upstream connection.
            log::debug!("relay: the browser left; closing the upstream request");
            return;
        }
        if last {
            return;
        }
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = Options::parse();
    let token = options.token.clone().unwrap_or_else(|| {
        let mut bytes = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut bytes) {
            eprintln!("cannot make a random token: {e}");
            std::process::exit(1);
        }
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        println!("API token (for POST /chat): {token}");
        token
    });
    let config = ProxyConfig {
        upstream: options.upstream,
        model: options.model,
        api_key: std::env::var(&options.api_key_env).ok().filter(|k| !k.is_empty()),
        token,
        upstream_timeout: Duration::from_secs(options.upstream_timeout.max(1)),
        max_relays: options.max_relays.max(1),
    };
    log::info!("relaying to {} (model {})", config.upstream, config.model);
    let server = match Server::bind(ServerConfig::new(options.addr), router(config, Arc::default())) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", options.addr);
            std::process::exit(1);
        }
    };
    log::info!("LLM proxy on http://{}/chat", server.local_addr());
    if let Err(e) = server.run() {
        eprintln!("server failed: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_read_as_openai_sends_them() {
        let delta = |content: &str, reason: Option<&str>| Chunk::Delta {
            content: content.to_owned(),
            finish_reason: reason.map(str::to_owned),
        };
        for (data, want) in [
            (r#"{"choices":[{"delta":{"content":"Hel"},"index":0}]}"#, delta("Hel", None)),
            (r#"{"choices":[{"delta":{"role":"assistant"}}]}"#, delta("", None)),
            (r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#, delta("", Some("stop"))),
            (r#"{"choices":[]}"#, delta("", None)),
            ("[DONE]", Chunk::Done),
            (r#"{"error":{"message":"rate limited"}}"#, Chunk::Error("upstream error: rate limited".to_owned())),
            ("not json", Chunk::Error("the upstream sent an event that is not JSON".to_owned())),
        ] {
            assert_eq!(parse_chunk(data), want, "{data}");
        }
    }

    #[test]
    fn requests_are_checked_before_anything_is_sent_upstream() {
        assert!(messages(&json!({ "prompt": "hi" })).is_ok());
        let conversation =
            json!({ "messages": [{ "role": "system", "content": "be brief" }, { "role": "user", "content": "hi" }] });
        assert_eq!(messages(&conversation).unwrap().as_array().unwrap().len(), 2);
        for bad in [
            json!({}),
            json!({ "prompt": "" }),
            json!({ "prompt": 5 }),
            json!({ "messages": [] }),
            json!({ "messages": [{ "role": "tool", "content": "x" }] }),
            json!({ "messages": [{ "role": "user" }] }),
            json!({ "prompt": "x".repeat(MAX_MESSAGE_CHARS + 1) }),
        ] {
            assert!(messages(&bad).is_err(), "{bad}");
        }
    }
}
