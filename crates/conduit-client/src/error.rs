//! [`ClientError`]: why a stream could not be opened or had to stop.

use conduit_sse::DecodeError;
use std::{fmt, io};

/// Why an [`EventSource`](crate::EventSource) could not connect, or stopped.
///
/// Errors that [`EventSource::next_event`](crate::EventSource::next_event) returns are final: the stream is
/// over afterwards. Network trouble during a stream is not reported while reconnecting is on; it only shows up
/// in [`ReconnectsExhausted`](ClientError::ReconnectsExhausted), or as [`Io`](ClientError::Io) when reconnecting
/// is off.
///
/// ```
/// use conduit_client::{ClientError, EventSource};
///
/// // Refused before any connection is attempted.
/// let err = EventSource::get("https://example.com/events").connect().unwrap_err();
/// assert!(matches!(err, ClientError::InvalidUrl(_)));
/// assert!(err.to_string().contains("https is not supported"));
///
/// let err = EventSource::get("http://127.0.0.1:8000/events")
///     .header("Authorization", "Bearer x\r\nX-Injected: 1")
///     .connect()
///     .unwrap_err();
/// assert!(matches!(err, ClientError::InvalidHeader(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http://host[:port]/path?query`; the message says why.
    InvalidUrl(String),
    /// A request header has an invalid name or value, or one the client manages itself (`Content-Length`,
    /// `Transfer-Encoding`, `Last-Event-ID`); the message says which.
    InvalidHeader(String),
    /// Resolving, connecting, writing or reading failed; a read timeout is [`io::ErrorKind::TimedOut`].
    Io(io::Error),
    /// The server answered with a status other than 200 and 204. Browsers give up for good on these, and so
    /// does the client.
    Http {
        /// The status code.
        status: u16,
    },
    /// The server answered `204 No Content`: its way of saying "stop reconnecting".
    NoContent,
    /// The response is not `text/event-stream`; holds the `Content-Type` received (empty if there was none).
    ContentType(String),
    /// The response broke HTTP: a malformed or oversized head, bad chunked framing, an unsupported transfer or
    /// content coding.
    Protocol(String),
    /// The stream broke the decoder's bounds (an event larger than the limit).
    Decode(DecodeError),
    /// Reconnecting failed `attempts` times in a row; `last` is the last attempt's error.
    ReconnectsExhausted {
        /// Consecutive failed attempts.
        attempts: u32,
        /// The last attempt's error.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether a later attempt could succeed: network and framing trouble is worth a reconnect, a refusal by
    /// the server (status, content type) is not.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Io(_) | ClientError::Protocol(_))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidUrl(message) => write!(f, "invalid URL: {message}"),
            ClientError::InvalidHeader(message) => write!(f, "invalid request header: {message}"),
            ClientError::Io(err) => write!(f, "event stream I/O error: {err}"),
            ClientError::Http { status } => {
                write!(f, "the server answered HTTP {status} instead of 200")
            }
            ClientError::NoContent => f.write_str("the server answered 204 No Content: stream over"),
            ClientError::ContentType(value) if value.is_empty() => {
                f.write_str("the response has no Content-Type; expected text/event-stream")
            }
            ClientError::ContentType(value) => {
                write!(f, "the response is {value:?}, not text/event-stream")
            }
            ClientError::Protocol(message) => write!(f, "HTTP protocol error: {message}"),
            ClientError::Decode(err) => write!(f, "event stream decode error: {err}"),
            ClientError::ReconnectsExhausted { attempts, last } => {
                write!(f, "gave up after {attempts} failed reconnection attempts; last: {last}")
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(err) => Some(err),
            ClientError::Decode(err) => Some(err),
            ClientError::ReconnectsExhausted { last, .. } => Some(&**last),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(err: io::Error) -> Self {
        ClientError::Io(err)
    }
}

impl From<DecodeError> for ClientError {
    fn from(err: DecodeError) -> Self {
        ClientError::Decode(err)
    }
}
