//! # conduit-net
//!
//! The socket layer of Conduit, and the only crate in it that touches sockets: a single-threaded
//! [`mio`] event loop that accepts connections, reads them until they would block, writes bounded queues
//! with vectored writes, keeps timers, and takes messages from other threads through one [`mio::Waker`].
//!
//! ```text
//!  conduit-server   routes, handlers, SSE streams, broadcast
//!        |
//!  conduit-sse      events, encoder, decoder        (sans-I/O)
//!  conduit-http     requests in, response heads out  (sans-I/O)
//!        |
//!  conduit-net      EventLoop: sockets, WriteQueue, Timers, Remote   <- this crate
//!                   TLS (feature `tls`): rustls sessions driven sans-I/O
//! ```
//!
//! The loop knows nothing of HTTP. An application implements [`Handler`]; the loop calls it with a
//! [`Context`] through which it writes, closes, arms timers and reads the turn's time. Design rules:
//!
//! - Interest follows state: every connection is registered for reading, and for writing only while its
//!   queue holds bytes the socket refused.
//! - Output written during a turn is flushed once at its end, so a burst of events becomes one `writev`.
//! - Every queue is bounded ([`LoopConfig`]); a full one refuses the write with a typed error and the handler
//!   decides what that means.
//! - Spurious wake-ups and events for connections closed earlier in the same turn are harmless: ids carry a
//!   generation.
//!
//! ```no_run
//! use conduit_net::{bind, CloseReason, ConnId, Context, EventLoop, Handler, LoopConfig};
//!
//! /// Echoes every byte back.
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Message = ();
//!     fn on_connect(&mut self, _cx: &mut Context<'_, ()>, _conn: ConnId) {}
//!     fn on_data(&mut self, cx: &mut Context<'_, ()>, conn: ConnId, data: &[u8]) {
//!         if cx.write(conn, data).is_err() {
//!             cx.close(conn);
//!         }
//!     }
//!     fn on_close(&mut self, _cx: &mut Context<'_, ()>, _conn: ConnId, _reason: CloseReason) {}
//! }
//!
//! let listener = bind("127.0.0.1:0".parse().unwrap(), 1024, false)?;
//! let mut event_loop = EventLoop::new(listener, LoopConfig::default(), Echo)?;
//! event_loop.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## TLS
//!
//! With the `tls` feature, a loop whose [`LoopConfig`] has `tls: Some(TlsConfig)` serves every
//! connection over TLS (rustls with the `ring` provider, ALPN `http/1.1`). The same [`Handler`] works
//! unchanged: it is called as for TCP (`on_connect` at the accept, `on_data` with plaintext once the handshake
//! is done) and its writes go through the connection's session; `close_after_flush` ends the session with
//! `close_notify`. A handshake not complete within `TlsConfig::with_handshake_timeout` (10 s by default), or
//! one that fails (plaintext HTTP sent to the port, a client refusing the certificate), closes that
//! connection alone with [`CloseReason::Tls`] and a [`TlsFailure`] naming the cause.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod event_loop;
mod listener;
mod send;
mod slab;
mod timer;
mod tls;
mod write_queue;

pub use event_loop::{CloseReason, Context, EventLoop, Handler, LoopConfig, Remote, SendError, WriteError};
pub use listener::bind;
/// The TLS library the loop drives, for building a [`TlsConfig`] by hand
/// ([`TlsConfig::from_server_config`]) with the same version of it.
#[cfg(feature = "tls")]
pub use rustls;
pub use slab::ConnId;
pub use timer::{TimerId, Timers};
pub use tls::TlsFailure;
#[cfg(feature = "tls")]
pub use tls::{DEFAULT_HANDSHAKE_TIMEOUT, TlsConfig, TlsConfigError};
pub use write_queue::{QueueFull, WriteQueue};
