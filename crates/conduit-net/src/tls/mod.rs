//! TLS on the loop: with the `tls` feature, each connection of a TLS listener runs through a rustls
//! `ServerConnection` that the loop drives sans-I/O.
//!
//! The loop keeps the socket and calls two hooks of the connection's [`TlsSession`]: `read`, which reads
//! ciphertext until the socket would block, processes it and hands out plaintext exactly as a socket read
//! would, and `flush`, which moves plaintext from the connection's [`WriteQueue`](crate::WriteQueue) into the
//! session and writes ciphertext while the session wants to write. Handlers see the same calls, ordering and
//! queue semantics for TLS as for TCP.
//!
//! ```text
//!  Handler::on_data <- plaintext <- reader() <- process_new_packets <- read_tls <- socket
//!  Context::write  -> WriteQueue -> writer() (bounded session buffer) -> write_tls -> socket
//! ```
//!
//! What fails in TLS ends that connection only, with [`CloseReason::Tls`](crate::CloseReason::Tls) and a
//! [`TlsFailure`] saying why, so a server can count failed handshakes apart from ordinary disconnects.
//!
//! Without the feature the session type is uninhabited: the loop's hooks compile to nothing, and no
//! connection is ever TLS.

#[cfg(feature = "tls")]
mod config;
#[cfg(feature = "tls")]
mod session;

#[cfg(feature = "tls")]
pub use config::{DEFAULT_HANDSHAKE_TIMEOUT, TlsConfig, TlsConfigError};
#[cfg(feature = "tls")]
pub(crate) use session::TlsSession;

use std::fmt;
use std::io;

/// Why a TLS session ended its connection. Each one closes that connection alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The handshake was not complete within the handshake timeout (a client that stalls, or a port scanner
    /// that connects and sends nothing).
    HandshakeTimeout,
    /// During the handshake the peer sent bytes that are not TLS records: plaintext HTTP sent to the TLS port,
    /// or some other protocol.
    NotTls,
    /// The peer aborted the handshake with an alert, typically because it does not trust our certificate.
    PeerAlert,
    /// The handshake failed otherwise: no protocol version, cipher suite or ALPN protocol in common, a
    /// malformed handshake message.
    Handshake,
    /// After the handshake, a record failed to decrypt or broke the protocol, or the peer sent a fatal alert.
    Session,
}

impl TlsFailure {
    /// True for the failures that happen before the handshake completes (everything but
    /// [`Session`](Self::Session)).
    pub fn during_handshake(self) -> bool {
        !matches!(self, TlsFailure::Session)
    }

    /// A short, stable name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::HandshakeTimeout => "handshake_timeout",
            TlsFailure::NotTls => "not_tls",
            TlsFailure::PeerAlert => "peer_alert",
            TlsFailure::Handshake => "handshake",
            TlsFailure::Session => "session",
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFailure::HandshakeTimeout => "TLS handshake not complete in time",
            TlsFailure::NotTls => "the peer does not speak TLS",
            TlsFailure::PeerAlert => "the peer aborted the TLS handshake",
            TlsFailure::Handshake => "TLS handshake failed",
            TlsFailure::Session => "TLS session failed",
        })
    }
}

/// A TLS failure carried through the loop's read path inside an [`io::Error`], with the TLS library's own
/// description for the log.
#[derive(Debug)]
pub(crate) struct SessionFailed {
    failure: TlsFailure,
    detail: String,
}

impl SessionFailed {
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn into_io_error(failure: TlsFailure, detail: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, SessionFailed { failure, detail })
    }
}

impl fmt::Display for SessionFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.failure, self.detail)
    }
}

impl std::error::Error for SessionFailed {}

/// The TLS failure behind a read error, if it was one.
pub(crate) fn failure_of(error: &io::Error) -> Option<TlsFailure> {
    error.get_ref()?.downcast_ref::<SessionFailed>().map(|failed| failed.failure)
}

/// Without the `tls` feature no connection has a session: this type has no values, so every hook the loop
/// calls on it is unreachable and compiles away.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub(crate) enum TlsSession {}

#[cfg(not(feature = "tls"))]
impl TlsSession {
    pub(crate) fn read<S: io::Read + io::Write>(&mut self, _socket: &mut S, _buf: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn flush<S: io::Write>(
        &mut self,
        _queue: &mut crate::write_queue::WriteQueue,
        _socket: &mut S,
        _closing: bool,
    ) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn wants_write(&self) -> bool {
        match *self {}
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        match *self {}
    }

    pub(crate) fn take_deadline(&mut self) -> Option<crate::timer::TimerId> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_travel_inside_io_errors() {
        let e = SessionFailed::into_io_error(TlsFailure::NotTls, "invalid content type".into());
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(failure_of(&e), Some(TlsFailure::NotTls));
        assert_eq!(e.to_string(), "the peer does not speak TLS: invalid content type");
        assert_eq!(failure_of(&io::Error::new(io::ErrorKind::InvalidData, "other")), None);
        assert_eq!(failure_of(&io::ErrorKind::ConnectionReset.into()), None);
    }

    #[test]
    fn only_session_failures_come_after_the_handshake() {
        for (failure, during, name) in [
            (TlsFailure::HandshakeTimeout, true, "handshake_timeout"),
            (TlsFailure::NotTls, true, "not_tls"),
            (TlsFailure::PeerAlert, true, "peer_alert"),
            (TlsFailure::Handshake, true, "handshake"),
            (TlsFailure::Session, false, "session"),
        ] {
            assert_eq!((failure.during_handshake(), failure.as_str()), (during, name), "{failure:?}");
        }
    }
}
