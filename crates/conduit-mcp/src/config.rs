//! Every limit the transport enforces, with its default.

use crate::origin::OriginPolicy;
use std::time::Duration;

/// How an MCP endpoint behaves and what it tolerates.
#[derive(Clone, Debug)]
pub struct McpConfig {
    /// Which pages (`Origin`) and host names (`Host`) may use the endpoint; others get `403`. Loopback only by
    /// default.
    pub origins: OriginPolicy,
    /// Open sessions at most; past it `initialize` gets `503` (after idle sessions are expired).
    pub max_sessions: usize,
    /// A session without requests, running calls or connected streams for this long is ended; its id then
    /// gets `404`.
    pub session_idle_timeout: Duration,
    /// Streams of one session open at once (calls in progress plus the `GET` stream); past it `429`.
    pub max_streams_per_session: usize,
    /// Finished streams a session keeps so that a client that lost the end of one can still resume it; the
    /// oldest are forgotten first.
    pub max_finished_streams: usize,
    /// Events each stream keeps for `Last-Event-ID` resumption, in number...
    pub max_stored_events: usize,
    /// ...and in bytes. The oldest are evicted first; resuming before an evicted event gets `410`.
    pub max_stored_bytes: usize,
    /// A request body larger than this gets `413`.
    pub max_body_bytes: usize,
    /// Tool calls running at once: the size of the thread pool that runs handlers off the event loop.
    pub max_running_calls: usize,
    /// Tool calls waiting for a thread; past it a call gets `503` with `Retry-After`.
    pub max_queued_calls: usize,
    /// The `retry` sent with each stream's first event: how long clients wait before they reconnect.
    pub retry: Duration,
    /// How long a tool waits for the client's answer to a request it sent (sampling, elicitation).
    pub client_request_timeout: Duration,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            origins: OriginPolicy::default(),
            max_sessions: 1024,
            session_idle_timeout: Duration::from_secs(30 * 60),
            max_streams_per_session: 16,
            max_finished_streams: 16,
            max_stored_events: 1024,
            max_stored_bytes: 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            max_running_calls: 8,
            max_queued_calls: 64,
            retry: Duration::from_secs(1),
            client_request_timeout: Duration::from_secs(60),
        }
    }
}
