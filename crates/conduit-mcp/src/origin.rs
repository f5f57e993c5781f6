//! Which pages and host names may reach the endpoint: the transport's defence against DNS rebinding.
//!
//! A page on an attacker's site whose name is made to resolve to 127.0.0.1 can send requests to a local MCP
//! server. Browsers name the page's origin in `Origin` on such requests (always on `POST`), and the `Host`
//! header carries the attacker's name even where `Origin` is absent, so both are checked.

use std::net::{IpAddr, Ipv6Addr};

/// The origins and host names the endpoint answers.
///
/// The default allows loopback only: origins `http(s)://localhost`, `127.0.0.0/8` and `[::1]` (any port), and
/// the same names in `Host`. A request without `Origin` is not from a browser page and is let through the
/// `Origin` check; a request without `Host` (HTTP/1.0) is let through the `Host` check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Allow loopback origins and host names.
    pub loopback: bool,
    /// More origins, exactly as browsers send them (`https://app.example`); `"*"` allows any origin.
    pub origins: Vec<String>,
    /// More host names allowed in `Host` (without port); `"*"` allows any. The hosts of `origins` are allowed too.
    pub hosts: Vec<String>,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        OriginPolicy { loopback: true, origins: Vec::new(), hosts: Vec::new() }
    }
}

impl OriginPolicy {
    /// Loopback only (the default).
    pub fn loopback() -> Self {
        OriginPolicy::default()
    }

    /// Any origin and host: for servers behind a proxy that checks them, or with authentication of their own.
    pub fn any() -> Self {
        OriginPolicy { loopback: true, origins: vec!["*".into()], hosts: vec!["*".into()] }
    }

    /// Loopback and the given origins.
    #[must_use]
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// True when a request with this `Origin` header value may proceed.
    pub fn allows_origin(&self, origin: &str) -> bool {
        if self.origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        self.loopback && origin_host(origin).is_some_and(is_loopback_host)
    }

    /// True when a request with this `Host` header value may proceed.
    pub fn allows_host(&self, host: &str) -> bool {
        let Some(name) = strip_port(host) else {
            return false;
        };
        if self.hosts.iter().any(|h| h == "*" || h.eq_ignore_ascii_case(name)) {
            return true;
        }
        if self.origins.iter().any(|o| o == "*" || origin_host(o).is_some_and(|h| h.eq_ignore_ascii_case(name))) {
            return true;
        }
        self.loopback && is_loopback_host(name)
    }
}

/// The host of `scheme://host[:port]`, or `None` for anything else (`null` included).
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) || rest.contains('/') {
        return None;
    }
    strip_port(rest)
}

/// `host[:port]` or `[v6][:port]` to the host (brackets kept), or `None` if malformed.
fn strip_port(authority: &str) -> Option<&str> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return (rest.is_empty() || valid_port(rest.strip_prefix(':')?)).then_some(host);
    }
    match authority.split_once(':') {
        Some((host, port)) => (valid_port(port) && !host.is_empty()).then_some(host),
        None => (!authority.is_empty()).then_some(authority),
    }
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_only_by_default() {
        let policy = OriginPolicy::default();
        let cases: &[(&str, bool)] = &[
            ("http://localhost", true),
            ("http://localhost:3000", true),
            ("https://LOCALHOST:8443", true),
            ("http://127.0.0.1:8000", true),
            ("http://127.9.9.9", true),
            ("http://[::1]:5173", true),
            ("http://evil.example.com", false),
            ("http://localhost.evil.example", false),
            ("http://127.0.0.1.evil.example", false),
            ("http://10.0.0.1", false),
            ("http://[::2]", false),
            ("null", false),
            ("file://localhost", false),
            ("http://localhost/path", false),
            ("http://localhost:x", false),
            ("", false),
        ];
        for (origin, want) in cases {
            assert_eq!(policy.allows_origin(origin), *want, "{origin}");
        }
    }

    #[test]
    fn hosts() {
        let policy = OriginPolicy::default().allow_origin("https://app.example");
        let cases: &[(&str, bool)] = &[
            ("127.0.0.1:8000", true),
            ("localhost", true),
            ("[::1]:80", true),
            ("app.example", true),
            ("app.example:443", true),
            ("evil.example.com", false),
            ("evil.example.com:8000", false),
            ("[::1", false),
            ("127.0.0.1:", false),
            (":80", false),
            ("", false),
        ];
        for (host, want) in cases {
            assert_eq!(policy.allows_host(host), *want, "{host}");
        }
    }

    #[test]
    fn listed_and_any() {
        let policy = OriginPolicy::default().allow_origin("https://app.example");
        assert!(policy.allows_origin("https://app.example"));
        assert!(policy.allows_origin("HTTPS://APP.EXAMPLE"));
        assert!(!policy.allows_origin("https://app.example:444"));
        let none = OriginPolicy { loopback: false, origins: vec![], hosts: vec![] };
        assert!(!none.allows_origin("http://localhost"));
        assert!(!none.allows_host("localhost"));
        assert!(OriginPolicy::any().allows_origin("http://evil.example.com"));
        assert!(OriginPolicy::any().allows_host("evil.example.com"));
    }
}
