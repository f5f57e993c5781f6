//! Sans-I/O Server-Sent Events for Conduit: the [`Event`] builder and its
//! `text/event-stream` encoder, [`EventSink`] for writing events straight into a
//! buffer without building them, the [`KeepAlive`] timer, and [`SseStream`] for
//! writing a stream over any blocking [`std::io::Write`].
//!
//! ```text
//!   conduit-net      sockets, readiness (mio)
//!        |
//!   conduit-http     requests and response heads
//!        |
//!   conduit-sse      this crate: events, keep-alive, streams
//!        |
//!   conduit-server   routes, handlers, broadcast
//! ```
//!
//! Nothing here opens sockets or reads the clock: encoding appends to a
//! caller's `Vec<u8>`, and every timing decision takes the current `Instant` as
//! an argument, so the same code serves an event loop, a blocking thread, and
//! tests that never sleep.
//!
//! Values are checked when set, so a built [`Event`] always encodes to a
//! well-formed block: `event` and `id` reject line breaks (and `id` NUL), while
//! line breaks in `data` and comments become several lines and can never inject
//! fields.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use conduit_sse::{Event, KeepAlive, SseStream, write_response_head};
//!
//! // On a real connection this would be a TcpStream.
//! let mut head = Vec::new();
//! write_response_head(&mut head);
//!
//! #[derive(serde::Serialize)]
//! struct Quote {
//!     symbol: &'static str,
//!     bid: f64,
//! }
//!
//! let start = Instant::now();
//! let mut stream = SseStream::new(Vec::new(), KeepAlive::new(Duration::from_secs(15), start));
//! let event = Event::new()
//!     .event("price")?
//!     .id("17")?
//!     .json(&Quote { symbol: "ACME", bid: 12.5 })?;
//! stream.send_event(&event, start)?;
//! // Idle for 15 s: a keep-alive comment is due.
//! assert!(stream.poll_keep_alive(start + Duration::from_secs(15))?);
//!
//! let body = stream.close()?;
//! assert_eq!(
//!     std::str::from_utf8(&body)?,
//!     "event: price\nid: 17\ndata: {\"symbol\":\"ACME\",\"bid\":12.5}\n\n: keep-alive\n\n",
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backlog;
mod decoder;
mod event;
mod head;
mod keep_alive;
mod lines;
mod stream;
mod writer;

pub use backlog::{Backlog, BacklogLimits, OutOfOrder, ResetReason, ResumePlan, SharedEvent, plan_resume};
pub use decoder::{DecodeError, Decoder, MessageEvent};
pub use event::{Event, EventError, INLINE_DATA, KEEP_ALIVE_COMMENT, encode_comment};
pub use head::{STREAM_HEADERS, write_response_head};
pub use keep_alive::KeepAlive;
pub use stream::{SseStream, StreamError};
pub use writer::{EventSink, EventWriter};

#[cfg(test)]
mod test_util {
    /// Deterministic xorshift64 so random tests reproduce without a dependency.
    pub(crate) struct XorShift(u64);

    impl XorShift {
        pub(crate) fn new(seed: u64) -> Self {
            // Zero is xorshift's fixed point.
            XorShift(seed | 1)
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    /// Text of up to `max_len` chars mixing the characters that matter to SSE framing.
    pub(crate) fn random_text(rng: &mut XorShift, max_len: u64) -> String {
        const ALPHABET: [char; 7] = ['a', ' ', ':', '\r', '\n', 'é', '\u{2028}'];
        let len = rng.below(max_len + 1);
        (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect()
    }
}
