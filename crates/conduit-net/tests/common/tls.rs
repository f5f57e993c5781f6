//! Certificates made at test time and a blocking rustls client, for the TLS loopback tests.

use super::{IO_TIMEOUT, connect};
use conduit_net::TlsConfig;
use conduit_net::rustls::crypto::ring;
use conduit_net::rustls::pki_types::{CertificateDer, ServerName};
use conduit_net::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A certificate authority and a leaf it signed for `localhost` and 127.0.0.1, all made afresh.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: CertificateDer<'static>,
    /// The leaf's certificate, PEM.
    pub leaf_pem: String,
    /// The leaf's private key, PEM (PKCS#8).
    pub leaf_key_pem: String,
}

impl TestPki {
    /// A new CA and a leaf for `localhost` and 127.0.0.1.
    pub fn new() -> Self {
        Self::for_names(&["localhost", "127.0.0.1"])
    }

    /// A new CA and a leaf for `names` (DNS names or IP addresses).
    pub fn for_names(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: a verifier looks issuers up by name, and two CAs of one name would make a stranger's
        // certificate fail on its signature instead of on its unknown issuer.
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        ca_params.distinguished_name.push(DnType::CommonName, format!("Conduit test CA {serial}"));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        leaf_params.distinguished_name.push(DnType::CommonName, names[0]);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }

    /// The server side: the leaf and its key.
    pub fn server(&self) -> TlsConfig {
        TlsConfig::from_pem(self.leaf_pem.as_bytes(), self.leaf_key_pem.as_bytes()).unwrap()
    }

    /// A client that trusts this CA alone and offers ALPN `http/1.1`.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.client_with_alpn(&[b"http/1.1"])
    }

    /// A client that trusts this CA alone and offers `alpn`.
    pub fn client_with_alpn(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
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
