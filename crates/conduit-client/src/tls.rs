//! https: which certificates a stream trusts, and the TLS handshake over a connected socket.

use crate::error::ClientError;
use crate::url::Url;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

/// The only application protocol the client speaks.
const HTTP_1_1: &[u8] = b"http/1.1";

/// Which certificates an https stream trusts, as the builder was told.
#[derive(Clone, Debug, Default)]
pub(crate) enum Trust {
    /// Mozilla's root certificates, from webpki-roots.
    #[default]
    WebPkiRoots,
    /// The CA certificates in a PEM file, read when the stream is opened.
    CaFile(PathBuf),
    /// These roots.
    Roots(Arc<RootCertStore>),
    /// A whole rustls configuration, used as given.
    Config(Arc<ClientConfig>),
}

impl Trust {
    /// The rustls configuration every connection of the stream uses.
    ///
    /// # Errors
    /// [`ClientError::TlsConfig`] if the CA file cannot be read or holds no valid certificate.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, ClientError> {
        let roots = match self {
            Trust::Config(config) => return Ok(Arc::clone(config)),
            Trust::WebPkiRoots => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
            Trust::Roots(roots) => RootCertStore::clone(roots),
            Trust::CaFile(path) => read_ca_file(path)?,
        };
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::TlsConfig(format!("the TLS provider offers no protocol version: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![HTTP_1_1.to_vec()];
        Ok(Arc::new(config))
    }
}

fn read_ca_file(path: &PathBuf) -> Result<RootCertStore, ClientError> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| ClientError::TlsConfig(format!("cannot read CA file {shown}: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ClientError::TlsConfig(format!("invalid PEM in CA file {shown}: {e}")))?;
        roots.add(cert).map_err(|e| ClientError::TlsConfig(format!("invalid CA certificate in {shown}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::TlsConfig(format!("no PEM certificate in CA file {shown}")));
    }
    Ok(roots)
}

/// A TLS session over a TCP connection, as the client reads and writes it.
pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Runs the handshake over `socket` for `url`'s host (its name goes out as SNI, unless it is an IP address, and
/// the certificate must be valid for it), bounded by the socket's timeouts.
///
/// # Errors
/// [`ClientError::Certificate`] if the server's certificate is refused, [`ClientError::Tls`] if the handshake
/// fails otherwise, [`ClientError::Io`] if the connection breaks or times out, [`ClientError::Protocol`] if the
/// server picks an application protocol other than HTTP/1.1.
pub(crate) fn handshake(
    mut socket: TcpStream,
    url: &Url,
    config: &Arc<ClientConfig>,
) -> Result<TlsStream, ClientError> {
    let name = ServerName::try_from(url.host().to_owned())
        .map_err(|e| ClientError::InvalidUrl(format!("{url}: the host is not a name TLS can verify: {e}")))?;
    let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(ClientError::from_tls)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut socket).map_err(ClientError::from_io)?;
    }
    if let Some(protocol) = conn.alpn_protocol()
        && protocol != HTTP_1_1
    {
        return Err(ClientError::Protocol(format!(
            "the server chose the application protocol {:?}, not http/1.1",
            String::from_utf8_lossy(protocol)
        )));
    }
    Ok(StreamOwned::new(conn, socket))
}
