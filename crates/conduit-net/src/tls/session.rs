//! [`TlsSession`]: one connection's rustls `ServerConnection`, driven by the loop without owning the socket.

use super::{SessionFailed, TlsConfig, TlsFailure};
use crate::timer::TimerId;
use crate::write_queue::WriteQueue;
use rustls::ServerConnection;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

/// Ciphertext the session may hold beyond the connection's write queue: two full records. The handler's
/// plaintext waits in the [`WriteQueue`], where the queue limit, `queued()` and the low-water mark see it; it
/// moves into the session only as fast as the socket takes the records already made, so what the session holds
/// stays at this bound (plus a few bytes of record overhead) however slow the client is.
const SESSION_BUFFER: usize = 32 * 1024;

/// The TLS state of one connection.
#[derive(Debug)]
pub(crate) struct TlsSession {
    conn: ServerConnection,
    /// The handshake deadline's timer, until the handshake completes or the connection closes.
    deadline: Option<TimerId>,
    /// Whether `close_notify` has been queued.
    close_notify: bool,
}

impl TlsSession {
    /// A session for a connection just accepted; `deadline` is the timer that ends it if the handshake is
    /// not complete in time.
    ///
    /// # Errors
    /// rustls refused to start a session with this configuration.
    pub(crate) fn new(config: &TlsConfig, deadline: TimerId) -> Result<Self, rustls::Error> {
        let mut conn = ServerConnection::new(Arc::clone(config.server_config()))?;
        conn.set_buffer_limit(Some(SESSION_BUFFER));
        Ok(TlsSession { conn, deadline: Some(deadline), close_notify: false })
    }

    /// Plaintext from the peer, with the contract of a socket's `read`: `Ok(n)` bytes in `buf`, `Ok(0)` at the
    /// end of the peer's input (its `close_notify`, or the TCP end of stream), `WouldBlock` once the socket
    /// has nothing more. Reads ciphertext only when no plaintext is left, so the session never buffers more
    /// than one read of it. Records the handshake answers with are left for [`flush`](Self::flush).
    ///
    /// # Errors
    /// The socket's errors; a TLS failure as an [`io::ErrorKind::InvalidData`] error that
    /// [`failure_of`](super::failure_of) recognizes, after a best-effort write of the alert rustls queued.
    pub(crate) fn read<S: Read + Write>(&mut self, socket: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                // Zero: the peer's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify. Truncation matters only to a reader that takes the
                // end of input for the end of a message; HTTP requests are framed, so it is an ordinary EOF.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.conn.read_tls(socket)? == 0 {
                return Ok(0);
            }
            let handshaking = self.conn.is_handshaking();
            if let Err(error) = self.conn.process_new_packets() {
                // rustls queued an alert saying why; the connection closes next, so this is its only chance.
                let _ = self.conn.write_tls(socket);
                return Err(SessionFailed::into_io_error(classify(&error, handshaking), error.to_string()));
            }
        }
    }

    /// Writes pending records, then moves plaintext from `queue` into the session and writes the records it
    /// makes, until both are empty or the socket would block. Plaintext stays queued until the handshake is
    /// complete. With `closing`, `close_notify` follows the last of the plaintext.
    ///
    /// Returns the bytes of ciphertext the socket took.
    ///
    /// # Errors
    /// The socket's write errors, and the session's stored error if it failed earlier.
    pub(crate) fn flush<S: Write>(
        &mut self,
        queue: &mut WriteQueue,
        socket: &mut S,
        closing: bool,
    ) -> io::Result<usize> {
        let mut written = 0;
        loop {
            while self.conn.wants_write() {
                match self.conn.write_tls(socket) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if queue.is_empty() {
                if closing && !self.close_notify {
                    self.close_notify = true;
                    self.conn.send_close_notify();
                    continue;
                }
                return Ok(written);
            }
            if self.conn.is_handshaking() {
                return Ok(written);
            }
            let moved = queue.write_to(&mut Plaintext(&mut self.conn))?;
            if moved == 0 && !self.conn.wants_write() {
                // The session took nothing and has nothing to send: retrying now would spin.
                return Ok(written);
            }
        }
    }

    /// True while the session has records for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// True until the handshake is complete.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The handshake deadline's timer, handed over once (to be cancelled when the handshake is complete or the
    /// connection closes).
    pub(crate) fn take_deadline(&mut self) -> Option<TimerId> {
        self.deadline.take()
    }
}

/// The session's plaintext side as a writer for [`WriteQueue::write_to`]: a full session buffer reads as
/// `WouldBlock`, so the queue keeps what the session cannot take yet.
struct Plaintext<'a>(&'a mut ServerConnection);

impl Write for Plaintext<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.0.writer().write_vectored(bufs)? {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sorts a rustls error into the failure a server counts.
fn classify(error: &rustls::Error, handshaking: bool) -> TlsFailure {
    if !handshaking {
        return TlsFailure::Session;
    }
    match error {
        rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
        rustls::Error::AlertReceived(_) => TlsFailure::PeerAlert,
        _ => TlsFailure::Handshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, InvalidMessage, PeerMisbehaved};

    #[test]
    fn errors_are_sorted_by_when_and_what() {
        let cases = [
            (rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType), true, TlsFailure::NotTls),
            (rustls::Error::AlertReceived(AlertDescription::UnknownCA), true, TlsFailure::PeerAlert),
            (rustls::Error::AlertReceived(AlertDescription::BadCertificate), true, TlsFailure::PeerAlert),
            (rustls::Error::NoApplicationProtocol, true, TlsFailure::Handshake),
            (rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyEmptyFragments), true, TlsFailure::Handshake),
            (rustls::Error::DecryptError, false, TlsFailure::Session),
            (rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType), false, TlsFailure::Session),
            (rustls::Error::AlertReceived(AlertDescription::InternalError), false, TlsFailure::Session),
        ];
        for (error, handshaking, expected) in cases {
            assert_eq!(classify(&error, handshaking), expected, "{error:?} (handshaking: {handshaking})");
        }
    }
}
