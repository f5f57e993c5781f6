//! # conduit-client
//!
//! A blocking Server-Sent Events client: [`EventSource`] reads a `text/event-stream` over `http://` (a
//! [`TcpStream`](std::net::TcpStream)) or `https://` (rustls over it) and behaves as a browser's `EventSource`
//! does. It is meant for Rust services that consume streams, upstream SSE APIs included, and for tests and
//! benchmarks of servers such as `conduit-server`.
//!
//! ```text
//!  conduit-server  Server, Router, Sse streams   <-- HTTP/1.1 -->   conduit-client  EventSource   <- this crate
//!        |                                                                 |   (blocking, std TcpStream,
//!        |                                                                 |    rustls for https)
//!        +-----------------------------------+  +--------------------------+
//!                                            v  v
//!  conduit-sse     Event, encoder, keep-alive  |  Decoder, MessageEvent       (sans-I/O, shared)
//!  conduit-http    RequestParser, ResponseHead |  Method, StatusCode,         (sans-I/O, shared)
//!                                              |  ChunkedDecoder
//!        |
//!  conduit-net     EventLoop, WriteQueue, Timers, Remote     (the server's mio sockets)
//! ```
//!
//! The client sits beside the server, not above it: it shares the sans-I/O layers (the `conduit-sse` decoder
//! that turns bytes into [`MessageEvent`]s, `conduit-http`'s methods, status codes and chunked decoder) and does
//! its own blocking I/O, with no event loop and no async runtime.
//!
//! # Behaviour
//!
//! - Requests carry `Accept: text/event-stream`, `Cache-Control: no-cache`, `Host`, any custom headers, and
//!   `Last-Event-ID` whenever the last event id is non-empty.
//! - The response must be `200` with `Content-Type: text/event-stream` (parameters such as a charset are
//!   fine). `204 No Content` means "stop": the first connection fails with [`ClientError::NoContent`], a
//!   reconnection ends the stream quietly. Any other status or type is a final error, never retried.
//! - Chunked, `Content-Length` and close-delimited bodies are all understood.
//! - When the body ends or the connection drops (an error, or silence longer than the read timeout), the partial
//!   event is discarded and the client waits the retry time (the server's `retry:`, else 3 s), doubling it for
//!   each consecutive failed attempt up to a cap, then reconnects with `Last-Event-ID`. `POST` bodies are sent
//!   again.
//! - `https://` (the default `tls` feature) uses rustls with the `ring` provider: the URL's host goes out as
//!   SNI and the certificate must be valid for it, ALPN offers `http/1.1`, and the roots trusted are Mozilla's
//!   (webpki-roots) unless the builder is given a CA file (`EventSourceBuilder::tls_ca_file`), a root store
//!   (`tls_roots`) or a whole rustls configuration (`tls_config`). A refused certificate is a final
//!   `ClientError::Certificate`, never retried; reconnection with `Last-Event-ID` works as over TCP.
//! - Comments and keep-alives are invisible. Everything is bounded: the response head (64 KiB), chunk-size
//!   lines, trailers and, through the decoder, event size.
//!
//! # Example
//!
//! ```no_run
//! use conduit_client::{ClientError, EventSource};
//! use std::time::Duration;
//!
//! let mut events = EventSource::get("http://127.0.0.1:8000/count?n=5")
//!     .header("Authorization", "Bearer secret")
//!     .read_timeout(Some(Duration::from_secs(30)))
//!     .max_reconnects(Some(10))
//!     .connect()?;
//! while let Some(event) = events.next_event()? {
//!     println!("{} (id {:?}): {}", event.event_type, event.last_event_id, event.data);
//!     if event.event_type == "done" {
//!         break;
//!     }
//! }
//! events.close();
//! # Ok::<(), ClientError>(())
//! ```
//!
//! Or as an iterator, which ends when the stream is over (after yielding the final error, if any):
//!
//! ```no_run
//! use conduit_client::EventSource;
//!
//! let ticks: Vec<String> = EventSource::get("http://127.0.0.1:8000/time")
//!     .connect()?
//!     .take(3)
//!     .map(|event| event.map(|e| e.data))
//!     .collect::<Result<_, _>>()?;
//! # Ok::<(), conduit_client::ClientError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod conn;
mod error;
mod source;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod url;

pub use conduit_sse::{DecodeError, MessageEvent};
pub use error::ClientError;
/// The TLS library behind `https://`, for building a `RootCertStore` or `ClientConfig` of the same version.
#[cfg(feature = "tls")]
pub use rustls;
pub use source::{EventSource, EventSourceBuilder};
