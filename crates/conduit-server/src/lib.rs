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
//! A stream's events come from one of three sources, none of which blocks the loop: a callback on the loop's
//! timers ([`Sse::interval`]), an [`SseSender`] any thread can use ([`Sse::channel`]), or an iterator the loop
//! pulls from as fast as the client reads ([`Sse::from_iter`]). A client that disconnects is noticed at once
//! (EOF or a failed write); its stream, timers and source are freed and channel senders start failing.
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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod config;
mod cors;
mod hub;
mod response;
mod router;
mod server;
mod stream;

pub use conduit_http::{Method, Request, StatusCode};
pub use config::ServerConfig;
pub use cors::CorsConfig;
pub use hub::{Hub, HubConfig, PublishError};
pub use response::{Reply, Response};
pub use router::Router;
pub use server::{OLDEST_EVENT_ID_HEADER, Server, ServerHandle, SpawnedServer};
pub use stream::{DEFAULT_CHANNEL_CAPACITY, Disconnected, Sse, SseSender, Ticker, TrySendError};
