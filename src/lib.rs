//! # Conduit
//!
//! Server-Sent Events served from a `mio` event loop: many long-lived streams on a small machine, events pushed
//! with little latency, memory and CPU, and no client able to hurt the others.
//!
//! This package re-exports the layers, each usable on its own (and `conduit::mcp`, the Model Context Protocol's
//! Streamable HTTP transport on top of `conduit::server`):
//!
//! ```text
//!  conduit::server   Server, Router, Sse streams, config         conduit::client   blocking EventSource
//!        |                                                            |      (TcpStream or https, reconnects)
//!  conduit::sse      Event, encoder, keep-alive      (sans-I/O)  <----+      uses the sse Decoder
//!  conduit::http     RequestParser, ResponseHead     (sans-I/O)  <----+      and the http types
//!        |
//!  conduit::net      EventLoop, WriteQueue, Timers, Remote
//!
//!  conduit::redis    RedisBackbone: the hub on Redis Streams, for many nodes (above conduit::server)
//! ```
//!
//! The `tls` feature, on by default, lets a server serve HTTPS on its own loop (`ServerConfig::tls`, with a
//! `conduit::net::TlsConfig`); without default features the package builds without it.
//!
//! ```no_run
//! use conduit::server::{Request, Router, Server, ServerConfig, Sse};
//! use conduit::sse::Event;
//!
//! let router = Router::new().get("/numbers", |_: &Request| {
//!     Sse::from_iter((1..=10).map(|i| Event::new().data(i.to_string())))
//! });
//! Server::bind(ServerConfig::default(), router)?.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use conduit_client as client;
pub use conduit_http as http;
pub use conduit_mcp as mcp;
pub use conduit_net as net;
pub use conduit_redis as redis;
pub use conduit_server as server;
pub use conduit_sse as sse;

/// The README's Rust examples, compiled and run as doctests so they cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
