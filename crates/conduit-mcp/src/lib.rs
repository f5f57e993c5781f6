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
