//! The byte stream under an HTTP exchange: plain TCP for `http://`, TLS over TCP for `https://`.

use crate::error::ClientError;
#[cfg(feature = "tls")]
use crate::tls;
use crate::url::Url;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

/// How long connecting and reading may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) read: Option<Duration>,
}

/// What opening a connection takes besides the URL, settled once when the stream is built.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    pub(crate) timeouts: Timeouts,
    /// The TLS settings of an `https` stream.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Connector {
    /// Connects to `url`'s host, and for `https` runs the TLS handshake.
    ///
    /// # Errors
    /// [`ClientError::Io`] when the host cannot be resolved or reached in time; for `https`, the handshake's
    /// errors (see [`tls::handshake`]).
    pub(crate) fn connect(&self, url: &Url) -> Result<Transport, ClientError> {
        let socket = self.connect_tcp(url)?;
        #[cfg(feature = "tls")]
        if let (true, Some(config)) = (url.is_https(), &self.tls) {
            return Ok(Transport::Tls(Box::new(tls::handshake(socket, url, config)?)));
        }
        Ok(Transport::Plain(socket))
    }

    fn connect_tcp(&self, url: &Url) -> Result<TcpStream, ClientError> {
        let timeouts = self.timeouts;
        let mut last_error = None;
        for addr in url.socket_host().to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeouts.connect) {
                Ok(stream) => {
                    stream.set_read_timeout(timeouts.read)?;
                    stream.set_write_timeout(Some(timeouts.read.unwrap_or(timeouts.connect)))?;
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(ClientError::Io(last_error.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{url}: the host resolved to no address"))
        })))
    }
}

/// An open connection's bytes. Reads and writes are plaintext either way.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tls::TlsStream>),
}

impl Transport {
    /// Ends the connection: for TLS, `close_notify` first (best effort, bounded by the write timeout).
    #[cfg_attr(not(feature = "tls"), allow(clippy::infallible_destructuring_match))]
    pub(crate) fn shutdown(self) {
        let socket = match self {
            Transport::Plain(socket) => socket,
            #[cfg(feature = "tls")]
            Transport::Tls(mut stream) => {
                stream.conn.send_close_notify();
                while stream.conn.wants_write() {
                    if stream.conn.write_tls(&mut stream.sock).is_err() {
                        break;
                    }
                }
                stream.sock
            }
        };
        let _ = socket.shutdown(Shutdown::Both);
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.read(buf),
            // A server that closes TCP without close_notify has still ended its side: the body's framing (a
            // chunked terminator, a length) says whether anything was cut off, as it does over TCP.
            #[cfg(feature = "tls")]
            Transport::Tls(stream) => match stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                result => result,
            },
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(socket) => socket.flush(),
            #[cfg(feature = "tls")]
            Transport::Tls(stream) => stream.flush(),
        }
    }
}
