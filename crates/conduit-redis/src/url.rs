//! `redis://[[user]:password@]host[:port][/db]`, parsed into checked parts.
//!
//! The backbone parses the URL itself rather than handing the string to the driver, so every part is checked
//! against a bound with a typed error, the password never reaches a log (`Debug` and `Display` redact it), and
//! the accepted forms are exactly the documented ones.

use redis::IntoConnectionInfo;
use std::fmt;

/// Bytes in a whole URL at most.
pub const MAX_URL_LEN: usize = 2048;
/// Bytes in a host name at most (the DNS limit).
pub const MAX_HOST_LEN: usize = 253;
/// Bytes in a decoded user name or password at most.
pub const MAX_CREDENTIAL_LEN: usize = 512;
/// The highest database number accepted (Redis's own default is 16 databases; a cluster has only 0).
pub const MAX_DB: u16 = 9_999;
/// The port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// Where the backbone's Redis is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    host: String,
    port: u16,
    db: u16,
    username: Option<String>,
    password: Option<String>,
}

/// Why a Redis URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Longer than [`MAX_URL_LEN`].
    TooLong,
    /// The scheme is not `redis://` (`rediss://` and unix sockets are not supported).
    UnsupportedScheme,
    /// No host, a host with characters a host name cannot have, or one longer than [`MAX_HOST_LEN`].
    InvalidHost,
    /// The port is not a number from 1 to 65535.
    InvalidPort,
    /// The path is not `/` followed by a database number from 0 to [`MAX_DB`].
    InvalidDb,
    /// The user name or password is badly percent-encoded, not UTF-8, or longer than [`MAX_CREDENTIAL_LEN`].
    InvalidCredentials,
    /// A query (`?...`) or fragment (`#...`): no URL option is supported.
    UnsupportedOption,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::TooLong => "the Redis URL is too long",
            UrlError::UnsupportedScheme => "the Redis URL must start with redis://",
            UrlError::InvalidHost => "the Redis URL's host is missing or invalid",
            UrlError::InvalidPort => "the Redis URL's port must be a number from 1 to 65535",
            UrlError::InvalidDb => "the Redis URL's path must be a database number from 0 to 9999",
            UrlError::InvalidCredentials => "the Redis URL's user name or password is invalid",
            UrlError::UnsupportedOption => "the Redis URL must have no query or fragment",
        })
    }
}

impl std::error::Error for UrlError {}

impl RedisUrl {
    /// Parses `redis://[[user]:password@]host[:port][/db]`. The host is a name, an IPv4 address or an IPv6
    /// address in brackets; user and password may be percent-encoded (`%40` for `@`).
    ///
    /// ```
    /// use conduit_redis::RedisUrl;
    ///
    /// let url = RedisUrl::parse("redis://:s%40cret@127.0.0.1:6380/2")?;
    /// assert_eq!((url.host(), url.port(), url.db(), url.password()), ("127.0.0.1", 6380, 2, Some("s@cret")));
    /// assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6380/2"); // the password never shows
    /// # Ok::<(), conduit_redis::UrlError>(())
    /// ```
    ///
    /// # Errors
    /// A [`UrlError`] naming the part that is wrong.
    pub fn parse(input: &str) -> Result<RedisUrl, UrlError> {
        if input.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        let rest = strip_prefix_ignore_case(input, "redis://").ok_or(UrlError::UnsupportedScheme)?;
        if rest.contains(['?', '#']) {
            return Err(UrlError::UnsupportedOption);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // The last '@' ends the credentials: a password may hold a raw '@' that the user forgot to encode.
        let (credentials, host_port) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(c) => {
                let (user, pass) = match c.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (c, None),
                };
                let user = Some(decode_credential(user)?).filter(|u| !u.is_empty());
                let pass = pass.map(decode_credential).transpose()?.filter(|p| !p.is_empty());
                (user, pass)
            }
        };
        let (host, port) = split_host_port(host_port)?;
        let db = match path {
            "" | "/" => 0,
            _ => parse_number(&path[1..], MAX_DB).ok_or(UrlError::InvalidDb)?,
        };
        Ok(RedisUrl { host, port, db, username, password })
    }

    /// The host name or address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database number.
    pub fn db(&self) -> u16 {
        self.db
    }

    /// The ACL user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The driver's form of this address, with Nagle's algorithm off: every command is one small write that
    /// waits for its reply, the worst case for delayed ACKs.
    pub(crate) fn connection_info(&self) -> redis::ConnectionInfo {
        let mut settings = redis::RedisConnectionInfo::default().set_db(i64::from(self.db));
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let info: redis::ConnectionInfo = match (self.host.as_str(), self.port).into_connection_info() {
            Ok(info) => info,
            // A host and port always convert; this arm only keeps the function total.
            Err(_) => unreachable!("a host and port always convert"),
        };
        info.set_redis_settings(settings).set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.db)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RedisUrl::parse(s)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn split_host_port(s: &str) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(UrlError::InvalidHost)?;
        let host = &rest[..end];
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(UrlError::InvalidHost);
        }
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlError::InvalidHost)?),
        };
        (host, port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
        if host.is_empty() || host.len() > MAX_HOST_LEN || !host.chars().all(name_char) {
            return Err(UrlError::InvalidHost);
        }
        (host, port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => parse_number(p, u16::MAX).filter(|&p| p != 0).ok_or(UrlError::InvalidPort)?,
    };
    Ok((host.to_owned(), port))
}

/// Decimal digits only (no sign, no spaces), at most `max`.
fn parse_number(s: &str, max: u16) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|&n| n <= u32::from(max)).map(|n| n as u16)
}

fn decode_credential(s: &str) -> Result<String, UrlError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
            let (hi, lo) = (hex(bytes.next()), hex(bytes.next()));
            let (Some(hi), Some(lo)) = (hi, lo) else { return Err(UrlError::InvalidCredentials) };
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    let text = String::from_utf8(out).map_err(|_| UrlError::InvalidCredentials)?;
    if text.len() > MAX_CREDENTIAL_LEN || text.chars().any(char::is_control) {
        return Err(UrlError::InvalidCredentials);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &RedisUrl) -> (&str, u16, u16, Option<&str>, Option<&str>) {
        (url.host(), url.port(), url.db(), url.username(), url.password())
    }

    #[test]
    fn accepts_the_documented_forms() {
        type Parts<'a> = (&'a str, u16, u16, Option<&'a str>, Option<&'a str>);
        let cases: &[(&str, Parts<'_>)] = &[
            ("redis://127.0.0.1", ("127.0.0.1", 6379, 0, None, None)),
            ("redis://127.0.0.1:6380", ("127.0.0.1", 6380, 0, None, None)),
            ("REDIS://localhost:6380/", ("localhost", 6380, 0, None, None)),
            ("redis://cache.internal/3", ("cache.internal", 6379, 3, None, None)),
            ("redis://:pw@h:1/15", ("h", 1, 15, None, Some("pw"))),
            ("redis://alice:pw@h", ("h", 6379, 0, Some("alice"), Some("pw"))),
            ("redis://alice@h", ("h", 6379, 0, Some("alice"), None)),
            ("redis://:p%40ss%3Aw@h", ("h", 6379, 0, None, Some("p@ss:w"))),
            ("redis://:p@ss@h", ("h", 6379, 0, None, Some("p@ss"))),
            ("redis://[::1]:7000/1", ("::1", 7000, 1, None, None)),
            ("redis://[::1]", ("::1", 6379, 0, None, None)),
            ("redis://h:65535/9999", ("h", 65535, 9999, None, None)),
        ];
        for (input, want) in cases {
            let url = RedisUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parts(&url), *want, "{input}");
        }
    }

    #[test]
    fn refuses_everything_else_with_the_reason() {
        let long = format!("redis://{}", "a".repeat(MAX_URL_LEN));
        let long_host = format!("redis://{}", "a".repeat(MAX_HOST_LEN + 1));
        let long_password = format!("redis://:{}@h", "p".repeat(MAX_CREDENTIAL_LEN + 1));
        let cases: &[(&str, UrlError)] = &[
            ("http://h", UrlError::UnsupportedScheme),
            ("rediss://h", UrlError::UnsupportedScheme),
            ("unix:///tmp/redis.sock", UrlError::UnsupportedScheme),
            ("h:6379", UrlError::UnsupportedScheme),
            ("redis://", UrlError::InvalidHost),
            ("redis://:6379", UrlError::InvalidHost),
            ("redis://h o", UrlError::InvalidHost),
            ("redis://[::1", UrlError::InvalidHost),
            ("redis://[zz]", UrlError::InvalidHost),
            ("redis://[::1]x", UrlError::InvalidHost),
            (&long_host, UrlError::InvalidHost),
            ("redis://h:0", UrlError::InvalidPort),
            ("redis://h:65536", UrlError::InvalidPort),
            ("redis://h:-1", UrlError::InvalidPort),
            ("redis://h:", UrlError::InvalidPort),
            ("redis://h:+80", UrlError::InvalidPort),
            ("redis://h/10000", UrlError::InvalidDb),
            ("redis://h/x", UrlError::InvalidDb),
            ("redis://h/1/2", UrlError::InvalidDb),
            ("redis://:%zz@h", UrlError::InvalidCredentials),
            ("redis://:%ff@h", UrlError::InvalidCredentials),
            ("redis://:a%0ab@h", UrlError::InvalidCredentials),
            (&long_password, UrlError::InvalidCredentials),
            ("redis://h?protocol=resp3", UrlError::UnsupportedOption),
            ("redis://h#x", UrlError::UnsupportedOption),
            (&long, UrlError::TooLong),
        ];
        for (input, want) in cases {
            assert_eq!(RedisUrl::parse(input).err().as_ref(), Some(want), "{input}");
        }
    }

    #[test]
    fn the_password_never_shows() {
        let url = RedisUrl::parse("redis://bob:hunter2@h:1/2").unwrap();
        assert_eq!(url.to_string(), "redis://bob:***@h:1/2");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(RedisUrl::parse("redis://[::1]").unwrap().to_string(), "redis://[::1]:6379/0");
    }

    #[test]
    fn converts_to_the_driver_form() {
        let info = RedisUrl::parse("redis://bob:pw@h:1/2").unwrap().connection_info();
        assert_eq!(info.addr(), &redis::ConnectionAddr::Tcp("h".into(), 1));
        let settings = info.redis_settings();
        assert_eq!((settings.db(), settings.username(), settings.password()), (2, Some("bob"), Some("pw")));
    }
}
