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
/// let err = EventSource::get("ftp://example.com/events").connect().unwrap_err();
/// assert!(matches!(err, ClientError::InvalidUrl(_)));
/// assert!(err.to_string().contains("unsupported scheme"));
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
    /// The URL is not `http://` or `https://host[:port]/path?query` (`https` needs the `tls` feature); the
    /// message says why.
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
    /// The server's TLS certificate was refused: not issued by a trusted root, expired, or not valid for the
    /// URL's host. Final, like a wrong content type: a reconnection refused this way ends the stream.
    #[cfg(feature = "tls")]
    Certificate(rustls::CertificateError),
    /// The TLS handshake failed otherwise (the server aborted it with an alert, no protocol version or cipher
    /// suite in common), or the session broke (a record that fails to decrypt). Final while connecting; a
    /// session that breaks in the middle of a stream is reconnected like any dropped connection.
    #[cfg(feature = "tls")]
    Tls(rustls::Error),
    /// The TLS settings given to the builder cannot be used: the CA file is missing, unreadable, or holds no
    /// valid certificate; the message names it.
    #[cfg(feature = "tls")]
    TlsConfig(String),
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

    /// What an I/O error means to the client: a TLS failure surfaces as its own variant, and a read that timed
    /// out says so whatever the platform calls it.
    pub(crate) fn from_io(err: io::Error) -> Self {
        #[cfg(feature = "tls")]
        if let Some(tls) = err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return ClientError::from_tls(tls.clone());
        }
        // A read or write that timed out reports `WouldBlock` on Unix and `TimedOut` on Windows.
        if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            return ClientError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data from the server within the timeout",
            ));
        }
        ClientError::Io(err)
    }

    /// A rustls error, with a refused certificate apart.
    #[cfg(feature = "tls")]
    pub(crate) fn from_tls(err: rustls::Error) -> Self {
        match err {
            rustls::Error::InvalidCertificate(cert) => ClientError::Certificate(cert),
            other => ClientError::Tls(other),
        }
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
            #[cfg(feature = "tls")]
            ClientError::Certificate(err) => write!(f, "the server's TLS certificate was refused: {err}"),
            #[cfg(feature = "tls")]
            ClientError::Tls(err) => write!(f, "TLS error: {err}"),
            #[cfg(feature = "tls")]
            ClientError::TlsConfig(message) => write!(f, "invalid TLS settings: {message}"),
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
            #[cfg(feature = "tls")]
            ClientError::Tls(err) => Some(err),
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
