//! An MCP server over Streamable HTTP at `/mcp`, with tools `echo`, `count` (streams progress), `publish` (to a
//! hub topic, watched at `/stream?topic=NAME`) and `read_topic` (what a topic holds).
//!
//! ```sh
//! cargo run --example mcp_server -- --addr 127.0.0.1:8000
//! cargo run --example mcp_server -- --allow-origin https://app.example   # a page besides loopback ones
//! cargo run --example mcp_server -- --conformance                        # also the conformance suite's tools
//! ```
//!
//! Only pages on loopback origins (and requests naming a loopback host) are answered unless `--allow-origin`
//! says otherwise. Ctrl-C or SIGTERM shuts down gracefully.
//!
//! With `--redis redis://host:port` (or `CONDUIT_REDIS_URL`) the hub runs on Redis Streams, as in
//! `sse_simple_server`: an event published with the `publish` tool on one process reaches `/stream` on every
//! process on the same Redis, and `read_topic` on any of them reads what Redis holds (at most 100 events a
//! call; pass the last id as `after` for more). Tools run on the MCP endpoint's worker threads, never on the
//! event loop, so a publish or a read that waits for Redis stalls nobody else; when Redis is unreachable the
//! tool call fails with the reason (`isError`), within the backbone's timeouts.

mod conformance;

use clap::Parser;
use conduit::mcp::{McpConfig, McpServer, OriginPolicy, Tool, ToolContext, ToolResult};
use conduit::server::{Hub, HubConfig, Request, Router, Server, ServerConfig, ServerHandle, Sse};
use conduit::sse::Event;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// The MCP example server.
#[derive(Debug, Parser)]
#[command(name = "mcp_server", about = "An MCP server over Streamable HTTP at /mcp")]
struct Options {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// An origin whose pages may use the server, besides loopback ones (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Also offer the tools the MCP conformance suite calls (test_simple_text, test_reconnection, ...).
    #[arg(long)]
    conformance: bool,
    /// Run the hub on Redis Streams, redis://[[user]:password@]host[:port][/db]: every process on the same
    /// Redis shares the topics.
    #[arg(long, value_name = "URL", env = "CONDUIT_REDIS_URL", hide_env_values = true)]
    redis: Option<conduit::redis::RedisConfig>,
}

/// `count` refuses more than this, so one call cannot keep a thread for ever.
const MAX_COUNT: u64 = 100_000;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = Options::parse();

    let redis = options.redis.clone();
    let hub = conduit::redis::RedisBackbone::hub_or_embedded(HubConfig::default(), redis).unwrap_or_else(|e| {
        eprintln!("invalid --redis: {e}");
        std::process::exit(2);
    });
    let mut origins = OriginPolicy::loopback();
    for origin in &options.allow_origins {
        origins = origins.allow_origin(origin.as_str());
    }
    let mut mcp = McpServer::new(McpConfig { origins, ..McpConfig::default() })
        .info("conduit-mcp-example", env!("CARGO_PKG_VERSION"))
        .tool(echo())
        .tool(count())
        .tool(publish(hub.clone()))
        .tool(read_topic(hub.clone()));
    if options.conformance {
        for tool in conformance::tools() {
            mcp = mcp.tool(tool);
        }
    }
    let endpoint = match mcp.start() {
        Ok(endpoint) => endpoint,
        Err(e) => {
            eprintln!("cannot start the tool threads: {e}");
            std::process::exit(1);
        }
    };
    let router = endpoint.mount(Router::new(), "/mcp").get("/stream", |req: &Request| Sse::subscribe_request(req));
    let server = match Server::bind_with_hub(ServerConfig::new(options.addr), router, &hub) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", options.addr);
            std::process::exit(1);
        }
    };
    log::info!("MCP endpoint on http://{}/mcp", server.local_addr());
    if let Err(e) = shut_down_on_signals(server.handle()) {
        eprintln!("cannot handle signals: {e}");
        std::process::exit(1);
    }
    if let Err(e) = server.run() {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

fn echo() -> Tool {
    Tool::new(
        "echo",
        "Returns its message.",
        json!({
            "type": "object",
            "properties": { "message": { "type": "string", "description": "The text to return" } },
            "required": ["message"]
        }),
        |cx: &ToolContext| {
            let message = cx.arguments()["message"].as_str().ok_or("`message` must be a string")?;
            Ok(ToolResult::text(message))
        },
    )
}

fn count() -> Tool {
    Tool::new(
        "count",
        "Counts to n, sending a progress notification at each step, then returns `counted n`.",
        json!({
            "type": "object",
            "properties": {
                "n": { "type": "integer", "minimum": 0, "maximum": MAX_COUNT },
                "interval_ms": { "type": "integer", "minimum": 0, "maximum": 10000, "description": "Pause between steps (default 100)" }
            },
            "required": ["n"]
        }),
        |cx: &ToolContext| {
            let n = cx.arguments()["n"]
                .as_u64()
                .filter(|n| *n <= MAX_COUNT)
                .ok_or(format!("`n` must be an integer from 0 to {MAX_COUNT}"))?;
            let interval = match cx.arguments().get("interval_ms") {
                None => 100,
                Some(v) => v.as_u64().filter(|ms| *ms <= 10_000).ok_or("`interval_ms` must be 0 to 10000")?,
            };
            for i in 1..=n {
                std::thread::sleep(Duration::from_millis(interval));
                cx.progress(i as f64, Some(n as f64), Some(&format!("{i} of {n}"))).map_err(|e| e.to_string())?;
            }
            Ok(ToolResult::text(format!("counted {n}")))
        },
    )
}

fn publish(hub: Hub) -> Tool {
    Tool::new(
        "publish",
        "Publishes a text to a hub topic (watch it at /stream?topic=NAME) and returns the event's id.",
        json!({
            "type": "object",
            "properties": { "topic": { "type": "string" }, "text": { "type": "string" } },
            "required": ["topic", "text"]
        }),
        move |cx: &ToolContext| {
            let topic = cx.arguments()["topic"].as_str().ok_or("`topic` must be a string")?;
            let text = cx.arguments()["text"].as_str().ok_or("`text` must be a string")?;
            let id = hub.publish(topic, Event::new().data(text)).map_err(|e| format!("not published: {e}"))?;
            Ok(ToolResult::text(id.clone()).structured(json!({ "topic": topic, "id": id })))
        },
    )
}

/// `read_topic` returns at most this many events per call.
const MAX_READ: u64 = 100;

fn read_topic(hub: Hub) -> Tool {
    Tool::new(
        "read_topic",
        "Returns the events a hub topic holds, oldest first: all of them, or those after the event `after`.",
        json!({
            "type": "object",
            "properties": {
                "topic": { "type": "string" },
                "after": { "type": "string", "description": "An event id: only the events published after it" },
                "limit": { "type": "integer", "minimum": 1, "maximum": MAX_READ, "description": "At most this many (default 20)" }
            },
            "required": ["topic"]
        }),
        move |cx: &ToolContext| {
            let args = cx.arguments();
            let topic = args["topic"].as_str().ok_or("`topic` must be a string")?;
            let after = match args.get("after") {
                None => None,
                Some(v) => Some(v.as_str().ok_or("`after` must be a string")?),
            };
            let limit = match args.get("limit") {
                None => 20,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=MAX_READ).contains(n))
                    .ok_or(format!("`limit` must be 1 to {MAX_READ}"))?,
            };
            let held = hub.history(topic, after, limit as usize).map_err(|e| e.to_string())?;
            let events: Vec<_> =
                held.iter().map(|e| json!({ "id": e.last_event_id, "event": e.event_type, "data": e.data })).collect();
            let text = held.iter().map(|e| format!("{}: {}", e.last_event_id, e.data)).collect::<Vec<_>>().join("\n");
            Ok(ToolResult::text(text).structured(json!({ "topic": topic, "events": events })))
        },
    )
}

/// SIGINT or SIGTERM: graceful shutdown (streams end, output flushes); a second one exits at once.
fn shut_down_on_signals(handle: ServerHandle) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut received = signals.forever();
        if received.next().is_some() {
            log::info!("shutting down");
            handle.shutdown();
        }
        if received.next().is_some() {
            std::process::exit(1);
        }
    })?;
    Ok(())
}
