//! Sans-I/O HTTP/1.1 for Conduit: incremental request parsing and response
//! heads, built on [`httparse`].
//!
//! This crate never touches a socket. The layer below hands it bytes and the
//! layers above hand it status codes and headers; it only turns one into the
//! other.
//!
//! ```text
//!   +----------------------------------------------------------+
//!   | conduit-server   routes, handlers, connection lifecycle  |
//!   +----------------------------------------------------------+
//!   | conduit-sse      event encoding, keep-alive comments     |
//!   +----------------------------------------------------------+
//!   | conduit-http     request parsing, response heads,        |  <- this crate
//!   |                  chunked coding (no I/O)                 |
//!   +----------------------------------------------------------+
//!   | conduit-net      sockets, mio event loop, write queues   |
//!   +----------------------------------------------------------+
//! ```
//!
//! # Parsing requests
//!
//! Keep one [`RequestParser`] per connection, append received bytes to a
//! buffer you own, and call [`RequestParser::parse`] with every unconsumed
//! byte. On [`Status::Complete`] drop the reported number of bytes; more
//! pipelined requests may already be waiting behind them. On an error, send
//! the response named by [`ParseError::status`] and close the connection.
//!
//! A server that wants to refuse a request before reading its body (a 401,
//! 404 or 413 from the head alone), give each route its own body limit, or
//! count body memory against a budget calls
//! [`RequestParser::parse_head_first`] instead: it stops at every head with
//! the [`AnnouncedBody`], and reads the body only after
//! [`RequestParser::accept_body`]; its documentation shows the server loop.
//!
//! Every HTTP/1.1 request must carry exactly one valid `Host`, and the
//! fields in [`SINGLETON_FIELDS`] must not repeat. [`Request::host`] and
//! [`Request::port`] say where a request was sent; [`AllowedHosts`] checks
//! them against the names a server answers to.
//!
//! # Decoding chunked bodies
//!
//! [`ChunkedDecoder`] decodes the chunked transfer coding from bytes fed in
//! any pieces, handing the data out as slices of its input. The request
//! parser uses it, strictly ([`ChunkedConfig::strict`]), for chunked request
//! bodies; a client reading responses can use it with
//! [`ChunkedConfig::lenient`] line ends.
//!
//! # Writing responses
//!
//! Build a [`ResponseHead`], pick a [`BodyFraming`], and append it to an
//! output buffer. For streamed bodies use [`write_chunk`] and finish with
//! [`LAST_CHUNK`].
//!
//! # Example
//!
//! ```
//! use conduit_http::{
//!     write_chunk, BodyFraming, Limits, Method, RequestParser, ResponseHead, Status,
//!     StatusCode, LAST_CHUNK,
//! };
//!
//! let mut parser = RequestParser::new(Limits::default());
//! let mut inbox: Vec<u8> = b"GET /count?n=5 HTTP/1.1\r\nHost: example\r\n".to_vec();
//! assert_eq!(parser.parse(&inbox)?, Status::Partial);
//!
//! inbox.extend_from_slice(b"\r\n");
//! let Status::Complete(request, used) = parser.parse(&inbox)? else {
//!     panic!("the head is complete");
//! };
//! inbox.drain(..used);
//! assert!(inbox.is_empty());
//! assert_eq!(request.method(), &Method::Get);
//! assert_eq!(request.path(), "/count");
//! assert_eq!(request.query("n"), Some("5"));
//! assert!(request.keep_alive());
//!
//! let mut out = Vec::new();
//! ResponseHead::new(StatusCode::OK)
//!     .header("Content-Type", "text/event-stream")?
//!     .framing(BodyFraming::Chunked)
//!     .write(&mut out);
//! write_chunk(&mut out, b"data: 1\n\n");
//! out.extend_from_slice(LAST_CHUNK);
//! assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Lets the unit tests share helpers written against the public API (`tests/support/`) with the integration tests.
#[cfg(test)]
extern crate self as conduit_http;

mod chunked;
mod error;
mod host;
mod parser;
mod request;
mod response;
mod status;
mod target;

pub use chunked::{ChunkedConfig, ChunkedDecoder, ChunkedError, ChunkedErrorKind};
pub use error::ParseError;
pub use host::{AllowedHosts, HostPatternError};
pub use parser::{AnnouncedBody, Limits, Parsed, RequestParser, SINGLETON_FIELDS, Status};
pub use request::{Headers, Method, Request, Version};
pub use response::{
    BodyFraming, CHUNK_END, HeaderError, LAST_CHUNK, ResponseHead, chunk_overhead, write_chunk, write_chunk_header,
};
pub use status::StatusCode;

/// A small deterministic PRNG (xorshift64) for the unit tests: random splits and inputs that reproduce.
#[cfg(test)]
pub(crate) mod test_rng {
    pub(crate) struct XorShift(u64);

    impl XorShift {
        pub(crate) fn new(seed: u64) -> Self {
            // Zero is xorshift's fixed point.
            XorShift(seed.max(1))
        }

        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            if n == 0 { 0 } else { (self.next() % n as u64) as usize }
        }
    }
}
