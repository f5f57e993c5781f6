//! # conduit-server
//!
//! The thin layer that composes Conduit's crates into a Server-Sent Events server: a [`Router`] of handlers
//! that return a [`Response`] or an [`Sse`] stream, served by one `conduit-net` event loop.
//!
//! ```text
//!  conduit-server   Server, Router, Sse streams, config        <- this crate
//!        |
//!  conduit-sse      Event, encoder, keep-alive      (sans-I/O)
//!  conduit-http     RequestParser, ResponseHead     (sans-I/O)
//!        |
//!  conduit-net      EventLoop, WriteQueue, Timers, Remote
//! ```
//!
//! A stream's events come from one of these sources, none of which blocks the loop: a callback on the loop's
//! timers ([`Sse::interval`]), an [`SseSender`] any thread can use ([`Sse::channel`]), an iterator the loop
//! pulls from as fast as the client reads ([`Sse::from_iter`]) or a function writing events straight into the
//! connection's buffer at the same pace ([`Sse::from_fn`], the cheapest), and the hub's topics
//! ([`Sse::subscribe`]). A client that disconnects is noticed at once
//! (EOF or a failed write); its stream, timers and source are freed and channel senders start failing.
//!
//! Async producers need no runtime support from this crate: [`SseSender::send_async`] is a plain
//! [`Future`] woken by the loop when the stream has room or its client left, so it runs
//! under tokio, smol or a hand-written executor alike; and [`Hub::publish`] never waits for subscribers (it
//! takes a short lock, numbers the event and hands it to the loops), so async code calls it directly. On an
//! external backbone (Redis) it waits for the store instead: see its notes on which thread may call it.
//!
//! ```no_run
//! use conduit_server::{Request, Response, Router, Server, ServerConfig, Sse};
//! use conduit_sse::Event;
//!
//! let router = Router::new()
//!     .get("/", |_: &Request| Response::text("hello"))
//!     .get("/numbers", |_: &Request| {
//!         Sse::from_iter((1..=1000).map(|i| Event::new().data(i.to_string())))
//!     });
//! let server = Server::bind(ServerConfig::new("127.0.0.1:8000".parse().unwrap()), router)?;
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Where things go
//!
//! One file per concept, layered: a module uses only the ones below it (`tests/layering.rs` checks this).
//!
//! ```text
//!  server       Server, ServerHandle, SpawnedServer: binding, running the loops, control from other threads
//!  service      the loop's Handler: callbacks in, each connection moved through its states
//!  dispatch     a parsed request -> CORS, the router, the handler's Reply
//!  fanout       a published event -> backlog, live subscribers; subscriptions plan, catch up, turn live
//!  connection   a connection's state machine: Reading / Streaming / Closing, input, request deadlines
//!  streaming    a stream's source produces events; writing them, keep-alives, the stream's end
//!  framing      response heads, bodies, chunk framing
//!  topics       the loop's copy of each topic: backlog, live and catching-up followers
//!  access_log   one line per request through `log` (target `conduit::access`)
//!  config       ServerConfig: every limit and setting
//!  metrics      the Prometheus registry; per-loop counters summed at scrape time
//!  stats        counters the loops share
//!  auth, cors, hub (publishing side), router
//!  health       liveness and readiness checks; BackboneHealth, the hook a hub backbone reports through
//!  offload      Offload: bounded threads that run handlers' blocking work and answer their deferred replies
//!  reply (now or later), response, sse (the Sse builder), channel (SseSender)
//!  registry     which topics exist node-wide, who follows them, which is forgotten to make room
//!  message      what other threads send a loop (Msg)
//!  backbone     the Backbone trait an external store (Redis) implements, and what it feeds the loops
//! ```
//!
//! A request arrives in `service`, is parsed by `connection`, answered by `dispatch`; a stream it opens is
//! driven by `streaming` (or, for hub topics, by `fanout`); an event published with [`Hub::publish`] crosses
//! to every loop as a `message` and goes out through `fanout`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Modules from the bottom up: each uses only those listed before it.
pub mod backbone;
mod message;
mod channel;
mod sse;
mod response;
mod reply;
mod offload;
mod health;
mod router;
mod registry;
mod hub;
mod cors;
pub mod auth;
mod stats;
mod metrics;
mod config;
mod access_log;
mod topics;
mod framing;
mod streaming;
mod connection;
mod fanout;
mod dispatch;
mod service;
mod server;

pub use access_log::TARGET as ACCESS_LOG_TARGET;
pub use backbone::{Backbone, BackboneError, BackboneEvent, Deliver, HistoryAnswer, HistoryError};
pub use channel::{DEFAULT_CHANNEL_CAPACITY, Disconnected, SendFuture, SseSender, TrySendError};
pub use conduit_http::{Method, Request, StatusCode};
/// A listener's certificate, key and handshake deadline ([`ServerConfig::tls`]), from `conduit-net`.
#[cfg(feature = "tls")]
pub use conduit_net::{TlsConfig, TlsConfigError};
pub use config::ServerConfig;
pub use cors::{CorsConfig, CorsError, PublicScheme};
pub use health::{BackboneHealth, HealthConfig};
pub use hub::{Hub, HubConfig, HubStats, OLDEST_EVENT_ID_HEADER, PublishError};
pub use metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};
pub use offload::{Offload, OffloadBusy};
/// The metrics library [`Metrics`] is built on, for registering an application's own metrics in its registry.
pub use prometheus_client;
pub use reply::{Deferred, Reply, Responder};
pub use response::Response;
pub use router::Router;
pub use server::{Server, ServerHandle, SpawnedServer};
pub use sse::{Sse, Ticker};
