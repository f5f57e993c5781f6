//! Certificates made at test time with rcgen: a CA of its own and a leaf it signed, in PEM and DER. This file
//! names no TLS library, so the TLS tests of both the loop and the client include it.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, date_time_ymd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A certificate authority and one leaf it signed.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The leaf's certificate, PEM.
    pub leaf_pem: String,
    /// The leaf's private key, PEM (PKCS#8).
    pub leaf_key_pem: String,
}

impl TestPki {
    /// A new CA and a leaf for `localhost` and 127.0.0.1, valid now.
    pub fn new() -> Self {
        Self::for_names(&["localhost", "127.0.0.1"])
    }

    /// A new CA and a leaf for `names` (DNS names or IP addresses), valid now.
    pub fn for_names(names: &[&str]) -> Self {
        Self::build(names, false)
    }

    /// A new CA and a leaf for `localhost` and 127.0.0.1 that expired long ago.
    pub fn expired() -> Self {
        Self::build(&["localhost", "127.0.0.1"], true)
    }

    fn build(names: &[&str], expired: bool) -> Self {
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
        if expired {
            leaf_params.not_before = date_time_ymd(2000, 1, 1);
            leaf_params.not_after = date_time_ymd(2001, 1, 1);
        }
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }
}

/// A [`TestPki`] written out as PEM files, for what takes paths (a server's configuration, curl, a client's CA
/// file), in a directory of their own that is removed on drop.
pub struct PemFiles {
    pub dir: PathBuf,
    /// The CA certificate.
    pub ca: PathBuf,
    /// The leaf's certificate.
    pub cert: PathBuf,
    /// The leaf's private key.
    pub key: PathBuf,
}

impl TestPki {
    /// Writes the CA, the leaf and its key into a new directory named after `test` and this process.
    pub fn write_files(&self, test: &str) -> PemFiles {
        let dir = std::env::temp_dir().join(format!("conduit-pki-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, contents: &str| {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        };
        let (ca, cert, key) =
            (write("ca.pem", &self.ca_pem), write("cert.pem", &self.leaf_pem), write("key.pem", &self.leaf_key_pem));
        PemFiles { dir, ca, cert, key }
    }
}

impl Drop for PemFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
