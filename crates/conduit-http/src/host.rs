//! Where a request was sent: the `uri-host [":" port]` of its `Host` field or
//! absolute-form target (RFC 9112 §3.2, RFC 3986 §3.2.2), and the
//! allowed-hosts check a server runs on it.
//!
//! A server that answers whatever `Host` it is sent can be reached through
//! any name that resolves to it, which is what a DNS-rebinding page relies
//! on; [`AllowedHosts`] lets it answer only the names it is meant to serve.

use std::error::Error;
use std::fmt;
use std::net::Ipv6Addr;

use crate::target::hex_value;

/// Splits an authority without userinfo, `uri-host [":" port]`, into its host
/// and port; the host is returned as sent (IPv6 literals with their
/// brackets), an empty port as `None`.
///
/// Stricter than the bare grammar in two ways: an empty host is refused (an
/// `http` URI must not have one, RFC 9110 §4.2.1), and so is a port past
/// 65535, which no connection can have come in on.
pub(crate) fn split_authority(authority: &[u8]) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&b| b == b']').ok_or("unclosed IP literal")?;
        let (literal, rest) = authority.split_at(close + 1);
        if !is_ip_literal(literal) {
            return Err("invalid IP literal");
        }
        match rest {
            [] => (literal, None),
            [b':', port @ ..] => (literal, Some(port)),
            _ => return Err("invalid host"),
        }
    } else {
        match authority.iter().position(|&b| b == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("empty host");
    }
    if host[0] != b'[' && !is_reg_name(host) {
        return Err("invalid host");
    }
    let port = match port {
        None | Some([]) => None,
        Some(digits) => Some(parse_port(digits).ok_or("invalid port")?),
    };
    // Every byte was checked to be ASCII above.
    let host = std::str::from_utf8(host).map_err(|_| "invalid host")?;
    Ok((host, port))
}

/// `port = *DIGIT`, at most 65535 (leading zeros allowed).
fn parse_port(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |acc, &b| {
        let digit = b.is_ascii_digit().then(|| u16::from(b - b'0'))?;
        acc.checked_mul(10)?.checked_add(digit)
    })
}

/// RFC 3986 `unreserved / sub-delims`: what a reg-name holds besides
/// percent-escapes.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, which includes
/// IPv4 addresses.
fn is_reg_name(mut name: &[u8]) -> bool {
    while let Some((&b, rest)) = name.split_first() {
        name = match (b, rest) {
            (b'%', [hi, lo, rest @ ..]) if hex_value(*hi).is_some() && hex_value(*lo).is_some() => rest,
            (b'%', _) => return false,
            (b, rest) if is_name_byte(b) => rest,
            _ => return false,
        };
    }
    true
}

/// `IP-literal = "[" ( IPv6address / IPvFuture ) "]"`.
fn is_ip_literal(literal: &[u8]) -> bool {
    let Some(inner) = literal.strip_prefix(b"[").and_then(|l| l.strip_suffix(b"]")) else {
        return false;
    };
    if let [b'v' | b'V', rest @ ..] = inner {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let digits = rest.iter().take_while(|&&b| hex_value(b).is_some()).count();
        return match rest.get(digits..) {
            Some([b'.', tail @ ..]) if digits > 0 && !tail.is_empty() => {
                tail.iter().all(|&b| b == b':' || is_name_byte(b))
            }
            _ => false,
        };
    }
    std::str::from_utf8(inner).is_ok_and(|text| text.parse::<Ipv6Addr>().is_ok())
}

/// The host names a server answers to, checked against
/// [`Request::host`](crate::Request::host) and
/// [`Request::port`](crate::Request::port) before a request is routed.
///
/// Patterns, compared ASCII case-insensitively:
///
/// | pattern | matches |
/// |---|---|
/// | `localhost` | the host `localhost` with any port, or none |
/// | `127.0.0.1:8000` | that host with port 8000 only (a `Host` without a port does not match) |
/// | `[::1]`, `[::1]:8000` | the IPv6 loopback, however it is written (`[0:0::1]` too) |
/// | `.example.com` | `example.com` and every name under it (`a.example.com`, `a.b.example.com`), any port |
/// | `.example.com:443` | the same, port 443 only |
///
/// One trailing dot on a request's host (`example.com.`, the fully qualified
/// form) is ignored. A host sent percent-encoded never matches. `*` and
/// `*.name` are refused when the pattern is added: the leading dot is the
/// only wildcard, and an allow-everything list is no list (keep none
/// instead). An empty list allows nothing.
///
/// ```
/// use conduit_http::{AllowedHosts, Method, Request};
///
/// let allowed = AllowedHosts::new(["localhost", "127.0.0.1:8000", "[::1]", ".example.com"])?;
/// assert!(allowed.allows("LOCALHOST", Some(8000)));
/// assert!(allowed.allows("127.0.0.1", Some(8000)));
/// assert!(!allowed.allows("127.0.0.1", Some(9000)));
/// assert!(allowed.allows("api.example.com", None));
/// assert!(!allowed.allows("example.com.evil.net", None));
///
/// let rebinding = Request::new(Method::Get, "/")?.with_header("Host", "attacker.test:8000");
/// assert!(!allowed.allows_request(&rebinding));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    /// Lower-cased, without the leading dot of a suffix pattern; an IPv6
    /// literal keeps its brackets.
    host: String,
    /// A leading-dot pattern: the name itself and every name under it.
    suffix: bool,
    port: Option<u16>,
}

impl HostPattern {
    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        if self.host.starts_with('[') {
            return ipv6_of(host).is_some_and(|address| ipv6_of(&self.host) == Some(address));
        }
        let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
        let name = self.host.as_bytes();
        if host.len() == name.len() {
            return host.eq_ignore_ascii_case(name);
        }
        // `a.example.com` under `.example.com`: the name ends with the pattern, right after a dot.
        let Some(dot) = host.len().checked_sub(name.len() + 1) else {
            return false;
        };
        self.suffix && host[dot] == b'.' && host[dot + 1..].eq_ignore_ascii_case(name)
    }
}

/// The address in a bracketed IPv6 literal.
fn ipv6_of(literal: &str) -> Option<Ipv6Addr> {
    literal.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

impl AllowedHosts {
    /// A list of the given patterns (see the table above).
    ///
    /// # Errors
    ///
    /// [`HostPatternError`] for the first pattern that is not a host name, an
    /// IPv4 address or a bracketed IPv6 address, optionally with a leading
    /// dot and a `:port`.
    pub fn new<I, S>(patterns: I) -> Result<AllowedHosts, HostPatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut allowed = AllowedHosts::default();
        for pattern in patterns {
            allowed.add(pattern.as_ref())?;
        }
        Ok(allowed)
    }

    /// Adds one pattern.
    ///
    /// # Errors
    ///
    /// [`HostPatternError`] if `pattern` is not one of the forms above; the
    /// list is then unchanged.
    pub fn add(&mut self, pattern: &str) -> Result<(), HostPatternError> {
        let invalid = |reason| HostPatternError { pattern: pattern.to_owned(), reason };
        if pattern.contains('*') {
            return Err(invalid("wildcards are written as a leading dot: \".example.com\""));
        }
        let (suffix, authority) = match pattern.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let (host, port) = split_authority(authority.as_bytes()).map_err(invalid)?;
        let is_literal = host.starts_with('[');
        if is_literal && (suffix || ipv6_of(host).is_none()) {
            return Err(invalid("an IP literal must be an IPv6 address, without a leading dot"));
        }
        // Names are letters, digits, `-`, `_` and inner dots; the rest of what a reg-name allows never names
        // a host a server is meant to answer to.
        let is_name = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        if !is_literal && (!host.bytes().all(is_name) || host.starts_with('.') || host.ends_with('.')) {
            return Err(invalid("invalid host"));
        }
        if authority.ends_with(':') {
            return Err(invalid("empty port"));
        }
        self.patterns.push(HostPattern { host: host.to_ascii_lowercase(), suffix, port });
        Ok(())
    }

    /// True if `host` (as [`Request::host`](crate::Request::host) gives it)
    /// with `port` matches a pattern.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.patterns.iter().any(|pattern| pattern.matches(host, port))
    }

    /// True if the request names a host, and that host and port match a
    /// pattern. An HTTP/1.0 request without `Host` is not allowed: a server
    /// with an allowed-hosts list cannot tell where it was sent.
    pub fn allows_request(&self, request: &crate::Request) -> bool {
        request.host().is_some_and(|host| self.allows(host, request.port()))
    }

    /// True if no pattern was added (nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// A pattern [`AllowedHosts`] could not take, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPatternError {
    pattern: String,
    reason: &'static str,
}

impl HostPatternError {
    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl fmt::Display for HostPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid allowed host {:?}: {}", self.pattern, self.reason)
    }
}

impl Error for HostPatternError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_table() {
        let accepted: &[(&str, &str, Option<u16>)] = &[
            ("example.com", "example.com", None),
            ("Example.COM:8080", "Example.COM", Some(8080)),
            ("example.com:", "example.com", None),
            ("127.0.0.1:8000", "127.0.0.1", Some(8000)),
            ("localhost:00080", "localhost", Some(80)),
            ("h:65535", "h", Some(65535)),
            ("h:0", "h", Some(0)),
            ("[::1]", "[::1]", None),
            ("[::1]:8000", "[::1]", Some(8000)),
            ("[2001:db8::ffff:1.2.3.4]", "[2001:db8::ffff:1.2.3.4]", None),
            ("[v1.fe80::a+b]:1", "[v1.fe80::a+b]", Some(1)),
            ("a-b_c~d.e", "a-b_c~d.e", None),
            ("x!$&'()*+,;=", "x!$&'()*+,;=", None),
            ("%41b", "%41b", None),
            ("example.com.", "example.com.", None),
        ];
        for &(value, host, port) in accepted {
            assert_eq!(split_authority(value.as_bytes()), Ok((host, port)), "{value}");
        }
        let refused: &[&str] = &[
            "",
            ":80",
            "a b",
            "a\tb",
            "a/b",
            "a?b",
            "a#b",
            "a@b",
            "user@host:80",
            "a:b",
            "a:80:90",
            "a:-1",
            "a:+80",
            "a:65536",
            "a:99999999999999999999",
            "%4",
            "%zz",
            "é.example",
            "a\"b",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:8x",
            "[1.2.3.4]",
            "[::g]",
            "[v.x]",
            "[v1.]",
            "[v1x.a]",
            "[fe80::1%25eth0]",
            "::1",
        ];
        for value in refused {
            assert!(split_authority(value.as_bytes()).is_err(), "{value:?}");
        }
    }

    #[test]
    fn allowed_hosts_table() {
        let allowed =
            AllowedHosts::new(["localhost", "127.0.0.1:8000", "[::1]", ".Example.com", ".api.test:443"]).unwrap();
        let table: &[(&str, Option<u16>, bool)] = &[
            ("localhost", None, true),
            ("LocalHost", Some(1), true),
            ("localhost.", None, true),
            ("localhost..", None, false),
            ("localhostx", None, false),
            ("xlocalhost", None, false),
            ("sub.localhost", None, false),
            ("127.0.0.1", Some(8000), true),
            ("127.0.0.1", None, false),
            ("127.0.0.1", Some(8001), false),
            ("127.0.0.2", Some(8000), false),
            ("[::1]", None, true),
            ("[::1]", Some(9), true),
            ("[0:0:0:0:0:0:0:1]", None, true),
            ("[::2]", None, false),
            ("::1", None, false),
            ("example.com", None, true),
            ("EXAMPLE.com", Some(80), true),
            ("a.example.com", None, true),
            ("a.b.example.com.", None, true),
            ("aexample.com", None, false),
            ("example.com.evil.net", None, false),
            ("example.co", None, false),
            ("om", None, false),
            ("api.test", Some(443), true),
            ("x.api.test", Some(443), true),
            ("x.api.test", None, false),
            ("x.api.test", Some(80), false),
            ("%6cocalhost", None, false),
            ("", None, false),
        ];
        for &(host, port, want) in table {
            assert_eq!(allowed.allows(host, port), want, "{host:?} {port:?}");
        }
        assert!(!AllowedHosts::default().allows("localhost", None));
        assert!(AllowedHosts::default().is_empty() && !allowed.is_empty());
    }

    #[test]
    fn refused_patterns() {
        for pattern in [
            "",
            "*",
            "*.example.com",
            "a.*.b",
            ".",
            "..a",
            "a.",
            "a:",
            "a:x",
            "a:70000",
            "a b",
            "a/b",
            "[::1",
            "[v1.x]",
            ".[::1]",
            "%41",
            "a!b",
            "[1.2.3.4]",
            "user@a",
        ] {
            let err = AllowedHosts::new([pattern]).expect_err(pattern);
            assert_eq!(err.pattern(), pattern);
            assert!(err.to_string().starts_with("invalid allowed host"), "{err}");
        }
        let mut allowed = AllowedHosts::new(["a"]).unwrap();
        assert!(allowed.add("*").is_err());
        assert_eq!(allowed, AllowedHosts::new(["a"]).unwrap(), "a refused pattern leaves the list unchanged");
    }
}
