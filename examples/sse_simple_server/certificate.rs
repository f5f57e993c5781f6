//! Keeping the served certificate current: a thread that looks at the certificate and key files every
//! interval and, when either has changed (a renewal by certbot or another ACME client), has the listener
//! present them from the next handshake on. Files that do not load (a renewal caught half-way, a key that does
//! not match) are reported and the previous certificate stays; the next change is tried again.

use conduit::server::TlsConfig;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What is looked at to tell that a file changed: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Starts the thread watching `tls`'s files every `interval`; nothing for a configuration without files.
///
/// # Errors
/// The thread could not be started.
pub fn watch(tls: TlsConfig, interval: Duration) -> std::io::Result<()> {
    let Some((cert, key)) = tls.files().map(|(c, k)| (c.to_owned(), k.to_owned())) else { return Ok(()) };
    let mut seen = (stamp(&cert), stamp(&key));
    std::thread::Builder::new().name("tls-reload".into()).spawn(move || {
        loop {
            std::thread::sleep(interval);
            let now = (stamp(&cert), stamp(&key));
            if now == seen {
                continue;
            }
            seen = now;
            match tls.reload() {
                Ok(()) => log::info!("TLS certificate reloaded from {}", cert.display()),
                Err(e) => log::error!("cannot reload the TLS certificate: {e}; still presenting the previous one"),
            }
        }
    })?;
    Ok(())
}
