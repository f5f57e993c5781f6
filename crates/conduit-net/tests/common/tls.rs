//! Both ends' TLS settings for a [`TestPki`], and a blocking rustls client, for the TLS loopback tests.

pub use super::pki::TestPki;
use super::{IO_TIMEOUT, connect};
use conduit_net::TlsConfig;
use conduit_net::rustls::crypto::ring;
use conduit_net::rustls::pki_types::{CertificateDer, ServerName};
use conduit_net::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

/// The TLS settings of both ends for a [`TestPki`].
pub trait TlsEnds {
    /// The server side: the leaf and its key.
    fn server(&self) -> TlsConfig;
    /// A client that trusts this CA alone and offers ALPN `http/1.1`.
    fn client(&self) -> Arc<ClientConfig>;
    /// A client that trusts this CA alone and offers `alpn`.
    fn client_with_alpn(&self, alpn: &[&[u8]]) -> Arc<ClientConfig>;
}

impl TlsEnds for TestPki {
    fn server(&self) -> TlsConfig {
        TlsConfig::from_pem(self.leaf_pem.as_bytes(), self.leaf_key_pem.as_bytes()).unwrap()
    }

    fn client(&self) -> Arc<ClientConfig> {
        self.client_with_alpn(&[b"http/1.1"])
    }

    fn client_with_alpn(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca_der.clone())).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A blocking TLS stream over a loopback TCP connection with the harness's timeouts.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` and wraps the socket in a TLS client for `localhost`; the handshake happens on first use.
pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsStream {
    tls_over(connect(addr), config)
}

/// Wraps a connected socket in a TLS client for `localhost`.
pub fn tls_over(socket: TcpStream, config: &Arc<ClientConfig>) -> TlsStream {
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(ClientConnection::new(Arc::clone(config), name).unwrap(), socket)
}

/// Completes the handshake of `stream`.
pub fn handshake(stream: &mut TlsStream) -> std::io::Result<()> {
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(())
}

/// Reads until the server's `close_notify`; a TCP end without one is the error `UnexpectedEof`. Fails the test
/// if more than `limit` bytes arrive.
pub fn read_to_close_notify(stream: &mut TlsStream, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        assert!(out.len() <= limit, "received {} bytes, more than the {limit} expected", out.len());
    }
}
