//! # conduit-mcp
//!
//! The Model Context Protocol's Streamable HTTP transport (revision 2025-06-18, with the 2025-11-25 additions)
//! on Conduit, and a small server API on top: tools with a JSON Schema and a handler that may stream progress
//! before its result.
//!
//! ```text
//!  conduit-mcp      McpServer, McpEndpoint, Tool, ToolContext   <- this crate
//!        |          sessions, JSON-RPC, resumable per-call streams
//!  conduit-server   Router, Request, Response, Sse, SseSender
//!        |
//!  conduit-sse      Event, Backlog (each stream's bounded store)
//! ```
//!
//! One path answers three methods:
//!
//! - `POST` carries one JSON-RPC message. `initialize` opens a session whose id comes back in
//!   `Mcp-Session-Id` (128 bits from the operating system's random source); every later request names it, or
//!   gets `400` (`404` once the session has ended). Notifications and responses get `202` with no body. Quick
//!   requests are answered as `application/json`; `tools/call` opens a `text/event-stream` whose first event
//!   (an id, `retry`, empty data) lets the client resume it, then carries the tool's progress and its result.
//!   A client whose `Accept` lists only `application/json` gets the call's result (or JSON-RPC error) as one
//!   JSON answer when the tool returns (see [JSON-only clients](#json-only-clients)); `Accept` with neither type
//!   gets `406`.
//! - `GET` with `Last-Event-ID` resumes any stream of the session after that event: what the stream's
//!   bounded store holds is replayed, then the stream goes on. Ids are `<stream>-<seq>`, unique in the session,
//!   and a message is only ever sent on the stream it belongs to. `GET` without it opens the session's stream
//!   for messages that belong to no call.
//! - `DELETE` ends the session.
//!
//! Tool handlers run on a bounded pool of threads, never on the event loop; their messages reach the client
//! through an [`SseSender`](conduit_server::SseSender). A client that disconnects mid-call loses nothing the
//! store still holds; a client too slow to keep up has its connection closed and resumes from its last id.
//!
//! ## JSON-only clients
//!
//! The specification asks clients to accept both forms, and a server to choose. For a client that accepts only
//! JSON, a `tools/call` still runs on the pool; the connection waits for its answer through
//! [`Reply::deferred`](conduit_server::Reply::deferred) while the loop serves everyone else.
//!
//! - Progress, log messages and other notifications the tool sends for the call are dropped: the specification
//!   sends a request's messages on that request's stream only, never on the session's `GET` stream, and a JSON
//!   answer has none. ([`ToolContext::is_streaming`] tells a handler which case it is in.)
//! - A request to the client (sampling, elicitation) fails at once with [`ClientRequestError::NoStream`]; if
//!   the handler then fails, the client gets a JSON-RPC error naming the request and `text/event-stream`.
//! - A tool's own failure is a result with `isError: true`, as on a stream; unknown tools and bad arguments are
//!   JSON-RPC errors. A cancelled call (`notifications/cancelled`) is answered with a JSON-RPC error, a call
//!   whose session ended meanwhile with `404`.
//! - Unlike a stream, a JSON answer cannot be resumed, so the client's disconnection cancels the call (the
//!   handler sees [`ToolContext::is_cancelled`]; a call still waiting for a thread is not run), and so does
//!   [`ServerConfig::deferred_timeout`](conduit_server::ServerConfig::deferred_timeout), after which the client
//!   has had `504`: set it above the slowest tool's time.
//! - Such a call holds one of the session's places (`max_streams_per_session`) and a place on the pool, as a
//!   streamed call does.
//!
//! `Origin` and `Host` are checked against an [`OriginPolicy`] (loopback only by default, `403` otherwise),
//! `MCP-Protocol-Version` must name a supported revision (`400`), and every quantity is bounded by
//! [`McpConfig`]: sessions, streams per session, stored events, body size, calls running and waiting.
//!
//! ```no_run
//! use conduit_mcp::{McpConfig, McpServer, Tool, ToolContext, ToolResult};
//! use conduit_server::{Router, Server, ServerConfig};
//! use serde_json::json;
//!
//! let count = Tool::new(
//!     "count",
//!     "Counts to n, reporting progress",
//!     json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
//!     |cx: &ToolContext| {
//!         let n = cx.arguments()["n"].as_u64().ok_or("n must be a non-negative integer")?;
//!         for i in 1..=n {
//!             cx.progress(i as f64, Some(n as f64), None).map_err(|e| e.to_string())?;
//!         }
//!         Ok(ToolResult::text(format!("counted {n}")))
//!     },
//! );
//! let endpoint = McpServer::new(McpConfig::default()).info("counter", "1.0.0").tool(count).start()?;
//! let router = endpoint.mount(Router::new(), "/mcp");
//! Server::bind(ServerConfig::default(), router)?.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod endpoint;
pub mod headers;
pub mod jsonrpc;
mod logging;
mod origin;
mod pool;
mod replies;
mod session;
mod session_id;
mod stream;
mod tool;

pub use config::McpConfig;
pub use endpoint::{McpEndpoint, McpServer};
pub use logging::LogLevel;
pub use origin::OriginPolicy;
pub use session_id::{MAX_SESSION_ID_LEN, is_valid_session_id, new_session_id};
pub use stream::EventId;
pub use tool::{CallEnded, ClientRequestError, Tool, ToolContext, ToolOutcome, ToolResult};
