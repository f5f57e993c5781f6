//! [`TlsConfig`]: what a TLS listener presents (certificate chain, key, ALPN) and how long a handshake may take.

use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long a connection may take to complete its handshake unless told otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of a listener: set [`LoopConfig::tls`](crate::LoopConfig::tls) to one and every connection
/// the loop accepts speaks TLS.
///
/// Built from PEM files, the configuration uses rustls's `ring` provider with its safe default protocol
/// versions (TLS 1.2 and 1.3) and cipher suites, no client authentication, and ALPN `http/1.1` (a client that
/// offers ALPN without `http/1.1` fails the handshake rather than being answered in a protocol it did not ask
/// for). A configuration built elsewhere is used exactly as given.
///
/// The certificate of a configuration built from PEM can be replaced while the server runs
/// ([`reload`](Self::reload) re-reads the files, [`replace_pem`](Self::replace_pem) takes new PEM text): a
/// renewed certificate is presented from the next handshake on, connections already open keep theirs, and one
/// that does not load leaves the current one in place. Clones share the certificate, so a clone kept by the
/// caller reloads the listener's.
///
/// ```
/// use conduit_net::{LoopConfig, TlsConfig, TlsConfigError};
/// use std::time::Duration;
///
/// # let dir = std::env::temp_dir().join(format!("conduit-tls-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
/// # let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
/// # std::fs::write(&cert_file, certified.cert.pem()).unwrap();
/// # std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
/// let tls = TlsConfig::from_pem_files(&cert_file, &key_file)?.with_handshake_timeout(Duration::from_secs(5));
/// let config = LoopConfig { tls: Some(tls), ..LoopConfig::default() };
/// # let _ = config;
///
/// // A missing file is a typed error that names it.
/// let err = TlsConfig::from_pem_files("/nonexistent/cert.pem", &key_file).unwrap_err();
/// assert!(matches!(err, TlsConfigError::Read { ref error, .. } if error.kind() == std::io::ErrorKind::NotFound));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), TlsConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    handshake_timeout: Duration,
    /// The certificate `server` presents, when it was built here from PEM; `None` for a caller's configuration.
    certificate: Option<Arc<CurrentCertificate>>,
    /// The certificate chain and key files it was read from, for [`reload`](Self::reload).
    files: Option<Arc<(PathBuf, PathBuf)>>,
}

/// The certificate and key a listener presents, replaceable while it runs: the configuration's certificate
/// resolver, asked once per handshake.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A writer that panicked left a whole `Arc` behind (the swap is one assignment), so poison means nothing.
        let current = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(Arc::clone(&current))
    }
}

/// The provider every configuration built here uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Parses and checks a PEM certificate chain and key: the key must belong to the chain's first certificate.
fn certified_key(
    cert_chain: &[u8],
    cert_path: Option<&Path>,
    private_key: &[u8],
    key_path: Option<&Path>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsConfigError> {
    let chain_error = |error| TlsConfigError::CertificateChain { path: cert_path.map(Path::to_owned), error };
    let chain = CertificateDer::pem_slice_iter(cert_chain).collect::<Result<Vec<_>, _>>().map_err(chain_error)?;
    if chain.is_empty() {
        return Err(chain_error(pem::Error::NoItemsFound));
    }
    let key = PrivateKeyDer::from_pem_slice(private_key)
        .map_err(|error| TlsConfigError::PrivateKey { path: key_path.map(Path::to_owned), error })?;
    CertifiedKey::from_der(chain, key, provider).map_err(TlsConfigError::Rejected)
}

/// Reads a file for a [`TlsConfig`].
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|error| TlsConfigError::Read { path: path.to_owned(), error })
}

impl TlsConfig {
    /// Reads a PEM certificate chain (the leaf first, then its intermediates) and a PEM private key (PKCS#8,
    /// PKCS#1 or SEC1) from files.
    ///
    /// # Errors
    /// [`TlsConfigError::Read`] if a file is missing or unreadable; [`TlsConfigError::CertificateChain`] or
    /// [`TlsConfigError::PrivateKey`] if a file holds no certificate or key, or malformed PEM;
    /// [`TlsConfigError::Rejected`] if the key does not match the certificate or is of an unsupported kind.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, private_key: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let (cert_path, key_path) = (cert_chain.as_ref(), private_key.as_ref());
        let (chain, key) = (read_pem(cert_path)?, read_pem(key_path)?);
        let mut config = Self::from_pem_sources(&chain, Some(cert_path), &key, Some(key_path))?;
        config.files = Some(Arc::new((cert_path.to_owned(), key_path.to_owned())));
        Ok(config)
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM text already in memory.
    ///
    /// # Errors
    /// As for [`from_pem_files`](Self::from_pem_files), without [`TlsConfigError::Read`].
    pub fn from_pem(cert_chain: &[u8], private_key: &[u8]) -> Result<Self, TlsConfigError> {
        Self::from_pem_sources(cert_chain, None, private_key, None)
    }

    fn from_pem_sources(
        cert_chain: &[u8],
        cert_path: Option<&Path>,
        private_key: &[u8],
        key_path: Option<&Path>,
    ) -> Result<Self, TlsConfigError> {
        let provider = provider();
        let key = certified_key(cert_chain, cert_path, private_key, key_path, &provider)?;
        let certificate = Arc::new(CurrentCertificate(RwLock::new(Arc::new(key))));
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Rejected)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig { certificate: Some(certificate), ..TlsConfig::from_server_config(Arc::new(server)) })
    }

    /// Uses a rustls configuration made by the caller (another provider's settings, client authentication,
    /// several certificates by SNI), exactly as given: its ALPN list included, so offer `http/1.1` there.
    pub fn from_server_config(server: Arc<ServerConfig>) -> Self {
        TlsConfig { server, handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT, certificate: None, files: None }
    }

    /// Reads the certificate chain and key files again (after a renewal) and presents them from the next
    /// handshake on; connections already open keep the certificate they were made with.
    ///
    /// # Errors
    /// [`TlsConfigError::NotReloadable`] for a configuration not built by
    /// [`from_pem_files`](Self::from_pem_files); otherwise as for `from_pem_files`. On any error the current
    /// certificate stays in place.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let Some(files) = &self.files else { return Err(TlsConfigError::NotReloadable) };
        let (cert_path, key_path) = (&files.0, &files.1);
        let (chain, key) = (read_pem(cert_path)?, read_pem(key_path)?);
        self.replace(&chain, Some(cert_path), &key, Some(key_path))
    }

    /// Presents this PEM certificate chain and key from the next handshake on, as [`reload`](Self::reload)
    /// does with the files.
    ///
    /// # Errors
    /// [`TlsConfigError::NotReloadable`] for a configuration made by
    /// [`from_server_config`](Self::from_server_config); otherwise as for [`from_pem`](Self::from_pem). On any
    /// error the current certificate stays in place.
    pub fn replace_pem(&self, cert_chain: &[u8], private_key: &[u8]) -> Result<(), TlsConfigError> {
        self.replace(cert_chain, None, private_key, None)
    }

    fn replace(
        &self,
        cert_chain: &[u8],
        cert_path: Option<&Path>,
        private_key: &[u8],
        key_path: Option<&Path>,
    ) -> Result<(), TlsConfigError> {
        let Some(certificate) = &self.certificate else { return Err(TlsConfigError::NotReloadable) };
        let key = certified_key(cert_chain, cert_path, private_key, key_path, self.server.crypto_provider())?;
        *certificate.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The certificate chain and key files a configuration from [`from_pem_files`](Self::from_pem_files) reads.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        self.files.as_deref().map(|(cert, key)| (cert.as_path(), key.as_path()))
    }

    /// How long a connection may take from its accept to a complete handshake before it is closed with
    /// [`TlsFailure::HandshakeTimeout`](crate::TlsFailure::HandshakeTimeout). Default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake deadline, counted from the accept.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The rustls configuration every connection's session is made from.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }
}

/// A [`TlsConfig`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read: it is missing, unreadable, or a directory.
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        error: io::Error,
    },
    /// The certificate chain holds no PEM `CERTIFICATE` section, or malformed PEM.
    CertificateChain {
        /// The file, when it came from one.
        path: Option<PathBuf>,
        /// What the PEM parser said ([`pem::Error::NoItemsFound`] when there is no certificate at all).
        error: pem::Error,
    },
    /// The private key file holds no PEM private key, or malformed PEM.
    PrivateKey {
        /// The file, when it came from one.
        path: Option<PathBuf>,
        /// What the PEM parser said ([`pem::Error::NoItemsFound`] when there is no key at all).
        error: pem::Error,
    },
    /// rustls refused the certificate and key: the key does not belong to the certificate, its kind is not
    /// supported, or the certificate is not valid DER.
    Rejected(rustls::Error),
    /// The certificate of a configuration made from a caller's rustls `ServerConfig` cannot be replaced here
    /// (and one made from PEM in memory has no files to re-read).
    NotReloadable,
}

fn in_file(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or_else(String::new, |p| format!(" in {}", p.display()))
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            TlsConfigError::CertificateChain { path, error: pem::Error::NoItemsFound } => {
                write!(f, "no PEM certificate{}", in_file(path))
            }
            TlsConfigError::CertificateChain { path, error } => {
                write!(f, "invalid PEM certificate chain{}: {error}", in_file(path))
            }
            TlsConfigError::PrivateKey { path, error: pem::Error::NoItemsFound } => {
                write!(f, "no PEM private key{}", in_file(path))
            }
            TlsConfigError::PrivateKey { path, error } => {
                write!(f, "invalid PEM private key{}: {error}", in_file(path))
            }
            TlsConfigError::Rejected(error) => write!(f, "certificate and key refused: {error}"),
            TlsConfigError::NotReloadable => f.write_str("this TLS configuration's certificate cannot be reloaded"),
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsConfigError::Read { error, .. } => Some(error),
            TlsConfigError::CertificateChain { error, .. } | TlsConfigError::PrivateKey { error, .. } => Some(error),
            TlsConfigError::Rejected(error) => Some(error),
            TlsConfigError::NotReloadable => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, PEM.
    fn pair() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    /// What an error is, in a form a table can hold.
    fn kind(error: &TlsConfigError) -> String {
        match error {
            TlsConfigError::Read { error, .. } => format!("read {:?}", error.kind()),
            TlsConfigError::CertificateChain { error, .. } => format!("chain {}", pem_kind(error)),
            TlsConfigError::PrivateKey { error, .. } => format!("key {}", pem_kind(error)),
            TlsConfigError::Rejected(_) => "rejected".to_owned(),
            TlsConfigError::NotReloadable => "not reloadable".to_owned(),
        }
    }

    /// The DER of the certificate a configuration presents now.
    fn presented(config: &TlsConfig) -> Vec<u8> {
        let certificate = config.certificate.as_ref().expect("built from PEM");
        let current = certificate.0.read().unwrap();
        current.cert[0].to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn a_replaced_certificate_is_presented_by_every_clone_and_a_bad_one_changes_nothing() {
        let ((cert_a, key_a), (cert_b, key_b)) = (pair(), pair());
        let config = TlsConfig::from_pem(cert_a.as_bytes(), key_a.as_bytes()).unwrap();
        let kept_by_the_caller = config.clone();
        assert_eq!(presented(&config), der(&cert_a));
        kept_by_the_caller.replace_pem(cert_b.as_bytes(), key_b.as_bytes()).unwrap();
        assert_eq!(presented(&config), der(&cert_b));

        // (what, chain, key, the error)
        let refused: [(&str, &str, &str, &str); 3] = [
            ("a key of another certificate", &cert_a, &key_b, "rejected"),
            ("no certificate", "", &key_a, "chain none"),
            ("no key", &cert_a, "", "key none"),
        ];
        for (what, chain, key, expected) in refused {
            let error = config.replace_pem(chain.as_bytes(), key.as_bytes()).unwrap_err();
            assert_eq!(kind(&error), expected, "{what}");
            assert_eq!(presented(&config), der(&cert_b), "{what}: the current certificate stays");
        }
        assert_eq!(kind(&config.reload().unwrap_err()), "not reloadable", "PEM from memory: no files");
        let foreign = TlsConfig::from_server_config(Arc::clone(config.server_config()));
        let error = foreign.replace_pem(cert_a.as_bytes(), key_a.as_bytes()).unwrap_err();
        assert_eq!(kind(&error), "not reloadable");
        assert_eq!(foreign.files(), None);
    }

    #[test]
    fn reload_reads_the_files_again_and_keeps_the_certificate_when_they_do_not_load() {
        let dir = std::env::temp_dir().join(format!("conduit-net-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        let ((cert_a, key_a), (cert_b, key_b)) = (pair(), pair());
        std::fs::write(&cert_path, &cert_a).unwrap();
        std::fs::write(&key_path, &key_a).unwrap();
        let config = TlsConfig::from_pem_files(&cert_path, &key_path).unwrap();
        assert_eq!(config.files(), Some((cert_path.as_path(), key_path.as_path())));
        assert_eq!(presented(&config), der(&cert_a));

        std::fs::write(&cert_path, &cert_b).unwrap();
        std::fs::write(&key_path, &key_b).unwrap();
        config.reload().unwrap();
        assert_eq!(presented(&config), der(&cert_b));

        // Half-way through a renewal: the new certificate is there, its key not yet.
        std::fs::write(&cert_path, &cert_a).unwrap();
        assert_eq!(kind(&config.reload().unwrap_err()), "rejected");
        std::fs::remove_file(&key_path).unwrap();
        let error = config.reload().unwrap_err();
        assert_eq!(kind(&error), "read NotFound");
        assert!(error.to_string().contains(&key_path.display().to_string()), "{error}");
        assert_eq!(presented(&config), der(&cert_b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn pem_kind(error: &pem::Error) -> &'static str {
        match error {
            pem::Error::NoItemsFound => "none",
            pem::Error::MissingSectionEnd { .. } => "unterminated",
            _ => "other",
        }
    }

    #[test]
    fn bad_files_are_typed_errors_that_name_them() {
        let dir = std::env::temp_dir().join(format!("conduit-net-tls-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let file = |name: &str, contents: &str| {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        };
        let good_cert = file("cert.pem", &cert);
        let good_key = file("key.pem", &key);
        let cases: Vec<(&str, PathBuf, PathBuf, &str)> = vec![
            ("missing certificate file", dir.join("absent.pem"), good_key.clone(), "read NotFound"),
            ("missing key file", good_cert.clone(), dir.join("absent.pem"), "read NotFound"),
            ("a directory", dir.clone(), good_key.clone(), "read IsADirectory"),
            ("empty certificate file", file("empty.pem", ""), good_key.clone(), "chain none"),
            ("a key where the chain should be", good_key.clone(), good_key.clone(), "chain none"),
            (
                "an unterminated certificate",
                file("cut.pem", &cert[..cert.len() / 2]),
                good_key.clone(),
                "chain unterminated",
            ),
            ("a certificate where the key should be", good_cert.clone(), good_cert.clone(), "key none"),
            ("the key of another certificate", good_cert.clone(), file("other.pem", &other_key), "rejected"),
        ];
        for (what, cert_path, key_path, expected) in cases {
            let error = TlsConfig::from_pem_files(&cert_path, &key_path).unwrap_err();
            assert_eq!(kind(&error), expected, "{what}: {error}");
            let message = error.to_string();
            let named = match &error {
                TlsConfigError::Read { path, .. } => Some(path),
                TlsConfigError::CertificateChain { path, .. } | TlsConfigError::PrivateKey { path, .. } => {
                    path.as_ref()
                }
                TlsConfigError::Rejected(_) | TlsConfigError::NotReloadable => None,
            };
            if let Some(path) = named {
                assert!(message.contains(&path.display().to_string()), "{what}: {message}");
            }
        }
        assert_eq!(
            TlsConfig::from_pem(b"", key.as_bytes()).unwrap_err().to_string(),
            "no PEM certificate",
            "without a file there is no path to name"
        );

        let config = TlsConfig::from_pem_files(&good_cert, &good_key).unwrap();
        assert_eq!(config.server_config().alpn_protocols, [b"http/1.1".to_vec()]);
        assert_eq!(config.handshake_timeout(), DEFAULT_HANDSHAKE_TIMEOUT);
        let config = config.with_handshake_timeout(Duration::from_millis(1500));
        assert_eq!(config.handshake_timeout(), Duration::from_millis(1500));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
