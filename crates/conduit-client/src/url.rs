//! `http://` and `https://host[:port]/path?query` URLs: exactly what a request needs, nothing more.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    /// `https`: the connection speaks TLS.
    https: bool,
    /// The host as written, without the brackets of an IPv6 literal.
    host: String,
    /// Whether `host` is an IPv6 literal (bracketed in `Host` and in display).
    ipv6: bool,
    port: u16,
    /// The request target: the path (at least `/`) and query, percent-encoded where needed; no fragment.
    target: String,
}

/// The port when an `http` URL names none.
const HTTP_PORT: u16 = 80;
/// The port when an `https` URL names none.
const HTTPS_PORT: u16 = 443;

impl Url {
    /// Parses `http://host[:port][/path][?query][#fragment]`, or the same with `https`.
    ///
    /// The host is a name (ASCII letters, digits, `-`, `.`, `_`), an IPv4 address, or a bracketed IPv6
    /// address. The fragment is dropped, as browsers do. Spaces, control characters, non-ASCII bytes and
    /// `"<>`{}` in the path or query are percent-encoded; everything else is sent as written.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: another scheme, credentials, an empty or malformed host, a port outside
    /// `1..=65535`.
    pub(crate) fn parse(input: &str) -> Result<Url, String> {
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(format!("{input:?} is not an absolute URL: expected http[s]://host[:port]/path"));
        };
        let https = scheme.eq_ignore_ascii_case("https");
        if !https && !scheme.eq_ignore_ascii_case("http") {
            return Err(format!("{input:?}: unsupported scheme {scheme:?}, only http and https are supported"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!("{input:?}: credentials in URLs are not supported; send an Authorization header"));
        }

        let (host, ipv6, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((addr, tail)) = bracketed.split_once(']') else {
                return Err(format!("{input:?}: unclosed '[' in the host"));
            };
            if addr.parse::<Ipv6Addr>().is_err() {
                return Err(format!("{input:?}: {addr:?} is not an IPv6 address"));
            }
            let port = match tail {
                "" => None,
                _ => match tail.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return Err(format!("{input:?}: unexpected {tail:?} after the host")),
                },
            };
            (addr, true, port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if host.is_empty() {
                return Err(format!("{input:?}: the host is empty"));
            }
            if let Some(c) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))) {
                return Err(format!(
                    "{input:?}: {c:?} is not allowed in a host name (internationalized names need punycode)"
                ));
            }
            (host, false, port)
        };
        let port = match port {
            // `http://host:/` means the default port, as in browsers.
            None | Some("") => default_port(https),
            Some(digits) => {
                parse_port(digits).ok_or_else(|| format!("{input:?}: {digits:?} is not a port (1 to 65535)"))?
            }
        };

        let path_and_query = after.split('#').next().unwrap_or("");
        let mut target = String::with_capacity(path_and_query.len() + 1);
        if !path_and_query.starts_with('/') {
            target.push('/');
        }
        for &b in path_and_query.as_bytes() {
            if needs_encoding(b) {
                // Writing to a String cannot fail.
                let _ = write!(target, "%{b:02X}");
            } else {
                target.push(char::from(b));
            }
        }
        Ok(Url { https, host: host.to_owned(), ipv6, port, target })
    }

    /// True for `https`.
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// The host as written (an IPv6 address without brackets): the name a certificate must be valid for.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The host to connect to (IPv6 without brackets) and the port.
    pub(crate) fn socket_host(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// The `Host` header value: the port is omitted when it is the scheme's default.
    pub(crate) fn host_header(&self) -> String {
        let mut host = if self.ipv6 { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port != default_port(self.https) {
            let _ = write!(host, ":{}", self.port);
        }
        host
    }

    /// The request target: path and query.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.target)
    }
}

fn default_port(https: bool) -> u16 {
    if https { HTTPS_PORT } else { HTTP_PORT }
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&p| p != 0)
}

/// Bytes a request target cannot carry as they are (the WHATWG path percent-encode set, plus non-ASCII).
fn needs_encoding(b: u8) -> bool {
    !(0x21..0x7f).contains(&b) || matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> (String, u16, String, String) {
        let url = Url::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let (host, port) = url.socket_host();
        assert_eq!(url.is_https(), input.to_ascii_lowercase().starts_with("https"), "{input}");
        (host.to_owned(), port, url.target().to_owned(), url.host_header())
    }

    #[test]
    fn parses_hosts_ports_and_targets() {
        let cases: &[(&str, &str, u16, &str, &str)] = &[
            ("http://example.com", "example.com", 80, "/", "example.com"),
            ("http://example.com/", "example.com", 80, "/", "example.com"),
            ("HTTP://Example.com:8080/a/b", "Example.com", 8080, "/a/b", "Example.com:8080"),
            ("http://127.0.0.1:3000/events?x=1&y=2", "127.0.0.1", 3000, "/events?x=1&y=2", "127.0.0.1:3000"),
            ("http://localhost?q=1", "localhost", 80, "/?q=1", "localhost"),
            ("http://localhost:80/x", "localhost", 80, "/x", "localhost"),
            ("http://localhost:/x", "localhost", 80, "/x", "localhost"),
            ("http://[::1]:9000/s", "::1", 9000, "/s", "[::1]:9000"),
            ("http://[::1]", "::1", 80, "/", "[::1]"),
            ("http://[2001:db8::7]/", "2001:db8::7", 80, "/", "[2001:db8::7]"),
            ("http://h/path#frag", "h", 80, "/path", "h"),
            ("http://h#frag", "h", 80, "/", "h"),
            ("http://h/a b?q=é", "h", 80, "/a%20b?q=%C3%A9", "h"),
            ("http://h/\"<>`{}\x01", "h", 80, "/%22%3C%3E%60%7B%7D%01", "h"),
            ("http://h/%41?a=%20", "h", 80, "/%41?a=%20", "h"),
            ("http://my_host-1.internal:65535/", "my_host-1.internal", 65535, "/", "my_host-1.internal:65535"),
            ("https://example.com/events", "example.com", 443, "/events", "example.com"),
            ("HTTPS://example.com:443/", "example.com", 443, "/", "example.com"),
            ("https://example.com:80/", "example.com", 80, "/", "example.com:80"),
            ("https://example.com:8443?x=1", "example.com", 8443, "/?x=1", "example.com:8443"),
            ("https://[::1]/s", "::1", 443, "/s", "[::1]"),
            ("https://localhost:/", "localhost", 443, "/", "localhost"),
        ];
        for &(input, host, port, target, host_header) in cases {
            assert_eq!(ok(input), (host.to_owned(), port, target.to_owned(), host_header.to_owned()), "{input}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        let cases: &[(&str, &str)] = &[
            ("", "not an absolute URL"),
            ("example.com/x", "not an absolute URL"),
            ("localhost:8080/x", "not an absolute URL"),
            ("httpx://example.com/", "unsupported scheme"),
            ("https//example.com/", "not an absolute URL"),
            ("https://", "host is empty"),
            ("ftp://example.com/", "unsupported scheme"),
            ("ws://example.com/", "unsupported scheme"),
            ("http://", "host is empty"),
            ("http:///path", "host is empty"),
            ("http://:80/", "host is empty"),
            ("http://user:pw@host/", "credentials"),
            ("http://host:0/", "not a port"),
            ("http://host:65536/", "not a port"),
            ("http://host:123456/", "not a port"),
            ("http://host:8o/", "not a port"),
            ("http://host:+80/", "not a port"),
            ("http://host:1:2/", "not a port"),
            ("http://[::1/", "unclosed"),
            ("http://[::g]/", "not an IPv6 address"),
            ("http://[::1]x/", "unexpected"),
            ("http://[::1]:/", ""),
            ("http://exa mple.com/", "not allowed in a host"),
            ("http://bücher.example/", "not allowed in a host"),
            ("http://::1/", "host is empty"),
        ];
        for &(input, message) in cases {
            match Url::parse(input) {
                Err(e) => assert!(e.contains(message), "{input}: {e}"),
                // `[::1]:` is the bracketed form of `host:`, which means the default port.
                Ok(url) if input == "http://[::1]:/" => assert_eq!(url.socket_host(), ("::1", 80)),
                Ok(url) => panic!("{input} parsed as {url}"),
            }
        }
    }

    #[test]
    fn displays_normalized() {
        let url = Url::parse("HTTP://[::1]:81/a b#x").unwrap();
        assert_eq!(url.to_string(), "http://[::1]:81/a%20b");
        let url = Url::parse("HTTPS://Example.com:443/x").unwrap();
        assert_eq!((url.to_string(), url.host()), ("https://Example.com/x".to_owned(), "Example.com"));
    }
}
