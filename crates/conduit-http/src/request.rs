//! Parsed requests and their parts.

use std::borrow::Cow;
use std::fmt;

use crate::ParseError;
use crate::host::split_authority;
use crate::target::{absolute_form_authority, parse_target, percent_decode, split_target};

/// A request method.
///
/// Methods are case-sensitive (RFC 9110 §9.1), so `get` is
/// `Other("get")`, not [`Method::Get`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Any other method token, as sent.
    ///
    /// Build these with `Method::from`, which maps the standard names to
    /// their variants; `Other("GET".into())` would not equal [`Method::Get`].
    Other(String),
}

impl Method {
    /// The method token, e.g. `"GET"`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(token) => token,
        }
    }
}

impl From<&str> for Method {
    fn from(token: &str) -> Self {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP version of a request or response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

impl Version {
    /// The protocol string, e.g. `"HTTP/1.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Request headers in arrival order; lookups are ASCII case-insensitive.
///
/// Names keep the case they were sent with. Values are raw bytes because
/// HTTP allows obs-text; [`Headers::get`] offers them as `&str` when they are
/// UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`, or `None` if absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name).and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }

    /// Every value of `name`, in arrival order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }

    /// Every `(name, value)` pair, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(name, value)| (name.as_str(), value.as_slice()))
    }

    /// The number of header fields (repeated names count each time).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no header fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if any comma-separated element of any `name` header equals
    /// `token` (case-insensitive, trimmed), e.g.
    /// `has_token("connection", "close")`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|value| {
            value.split(|&b| b == b',').any(|element| trim_ows(element).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Appends a field without validation; meant for tests and builders.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.entries.push((name.into(), value.into()));
    }
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// A complete request: head, decoded target and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: Method,
    version: Version,
    target: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Headers,
    body: Vec<u8>,
    /// Values a router matched in the path; this crate never sets them, since it does not route.
    params: Vec<(String, String)>,
}

impl Request {
    /// Builds an HTTP/1.1 request without parsing, for tests and for calling
    /// handlers directly. `target` is split and decoded exactly like a parsed
    /// one (origin-form, `*`, or absolute-form).
    ///
    /// # Errors
    ///
    /// [`ParseError::InvalidTarget`] if `target` is not origin-form (`/...`),
    /// `*` or absolute-form, contains whitespace, control characters or a
    /// fragment, has bad percent-encoding, or decodes to invalid UTF-8.
    pub fn new(method: Method, target: &str) -> Result<Request, ParseError> {
        Request::from_parts(method, Version::Http11, target.to_owned(), Headers::new())
    }

    pub(crate) fn from_parts(
        method: Method,
        version: Version,
        target: String,
        headers: Headers,
    ) -> Result<Request, ParseError> {
        let decoded = parse_target(&target)?;
        Ok(Request {
            method,
            version,
            target,
            path: decoded.path,
            query: decoded.query,
            headers,
            body: Vec::new(),
            params: Vec::new(),
        })
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The HTTP version the request was sent with.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The raw request-target as sent, e.g. `"/count?n=5"`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The percent-decoded path without the query, e.g. `"/a b"` for
    /// `"/a%20b"`. `+` is left alone here; `*` for an asterisk-form target.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path as sent, still percent-encoded and without the query, e.g. `"/a%20b"`; `/` for an
    /// absolute-form target without a path, `*` for an asterisk-form one. Where `/` separates segments, unlike
    /// in [`path`](Self::path), where an encoded `%2F` looks the same as a separator.
    pub fn raw_path(&self) -> &str {
        if self.target == "*" {
            return "*";
        }
        // The target was split successfully when the request was built.
        split_target(&self.target).map_or("/", |(path, _)| path)
    }

    /// The segments of the path between its `/` separators, each percent-decoded on its own, so a segment
    /// may contain a `/` that was sent as `%2F`: `"/a/b%2Fc/"` has the segments `a`, `b/c` and `""`. Empty
    /// for an asterisk-form target.
    pub fn path_segments(&self) -> impl Iterator<Item = Cow<'_, str>> {
        let raw = self.raw_path().strip_prefix('/');
        raw.into_iter().flat_map(|path| path.split('/')).map(|segment| {
            if segment.contains('%') {
                // The whole path decoded to UTF-8 when the request was built, and a `/` cannot split a UTF-8
                // sequence, so every segment decodes too.
                Cow::Owned(percent_decode(segment, false).unwrap_or_else(|_| segment.to_owned()))
            } else {
                Cow::Borrowed(segment)
            }
        })
    }

    /// The value a router matched for path parameter `name` (say `id` in a route `/items/{id}`), or `None`
    /// when the route had no such parameter. The HTTP layer never sets these: they are set by whatever
    /// routes the request.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every path parameter, in the order of the route's pattern.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Replaces the path parameters; for routers, and for tests calling handlers directly.
    pub fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// The first value of query parameter `name`, percent-decoded with `+`
    /// read as a space.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every decoded query pair in order; a key without `=` has value `""`.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The host the request was sent to, as sent (compare it ASCII
    /// case-insensitively; an IPv6 address keeps its brackets, `[::1]`).
    ///
    /// It comes from the target when that is absolute-form
    /// (`GET http://host:port/path`), which RFC 9112 §3.2.2 puts before
    /// `Host`, and from the `Host` field otherwise. `None` when there is
    /// neither (HTTP/1.0 may omit `Host`), or, on a request that was built
    /// rather than parsed, when `Host` is repeated or invalid; the parser
    /// refuses such requests. [`AllowedHosts`](crate::AllowedHosts) checks
    /// it against a list.
    pub fn host(&self) -> Option<&str> {
        self.authority().map(|(host, _)| host)
    }

    /// The port that goes with [`Request::host`], if one was given.
    pub fn port(&self) -> Option<u16> {
        self.authority().and_then(|(_, port)| port)
    }

    fn authority(&self) -> Option<(&str, Option<u16>)> {
        if let Some(authority) = absolute_form_authority(&self.target) {
            return split_authority(authority.as_bytes()).ok();
        }
        let mut hosts = self.headers.get_all("host");
        let host = hosts.next()?;
        if hosts.next().is_some() {
            return None;
        }
        split_authority(trim_ows(host)).ok()
    }

    /// Shorthand for `headers().get(name)`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body, de-chunked if it was sent chunked; empty if none was sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the connection may carry another request after this one.
    ///
    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: only with
    /// `Connection: keep-alive` (and no `close`).
    pub fn keep_alive(&self) -> bool {
        if self.headers.has_token("connection", "close") {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self.headers.has_token("connection", "keep-alive"),
        }
    }

    /// Appends a header field, for tests and direct handler calls.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.insert(name, value);
        self
    }

    /// Replaces the body: joins a head and its body from
    /// [`RequestParser::parse_head_first`](crate::RequestParser::parse_head_first),
    /// and serves tests and direct handler calls.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Replaces the version, for tests and direct handler calls.
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Request {
        self.version = version;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_round_trip() {
        let table = [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("PATCH", Method::Patch),
            ("OPTIONS", Method::Options),
            ("BREW", Method::Other("BREW".into())),
            ("get", Method::Other("get".into())),
        ];
        for (text, method) in table {
            assert_eq!(Method::from(text), method);
            assert_eq!(method.as_str(), text);
            assert_eq!(method.to_string(), text);
        }
        assert_eq!(Version::Http10.to_string(), "HTTP/1.0");
        assert_eq!(Version::Http11.as_str(), "HTTP/1.1");
    }

    #[test]
    fn header_lookups_ignore_case_and_keep_order() {
        let mut h = Headers::new();
        assert!(h.is_empty());
        h.insert("Content-Type", "text/plain");
        h.insert("X-Multi", "a");
        h.insert("x-multi", "b");
        h.insert("X-Bin", vec![0xff, 0xfe]);
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("content-type"), Some("text/plain"));
        assert_eq!(h.get("CONTENT-TYPE"), Some("text/plain"));
        assert_eq!(h.get("x-multi"), Some("a"));
        assert_eq!(h.get_all("X-MULTI").collect::<Vec<_>>(), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(h.get("x-bin"), None);
        assert_eq!(h.get_bytes("x-bin"), Some(&[0xff, 0xfe][..]));
        assert_eq!(h.get("missing"), None);
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Content-Type", "X-Multi", "x-multi", "X-Bin"]);
    }

    #[test]
    fn has_token_table() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["close"], "close", true),
            (&["Close"], "close", true),
            (&["keep-alive, Upgrade"], "upgrade", true),
            (&["keep-alive ,\tclose "], "close", true),
            (&["foo", "bar, close"], "close", true),
            (&["closed"], "close", false),
            (&["not-close"], "close", false),
            (&[""], "close", false),
            (&[], "close", false),
            (&["close"], "", false),
        ];
        for (values, token, want) in table {
            let mut h = Headers::new();
            for v in *values {
                h.insert("Connection", *v);
            }
            h.insert("Other", "close");
            assert_eq!(h.has_token("connection", token), *want, "{values:?} {token}");
        }
    }

    #[test]
    fn keep_alive_table() {
        let table: &[(Version, Option<&str>, bool)] = &[
            (Version::Http11, None, true),
            (Version::Http11, Some("close"), false),
            (Version::Http11, Some("Keep-Alive"), true),
            (Version::Http11, Some("upgrade, CLOSE"), false),
            (Version::Http10, None, false),
            (Version::Http10, Some("keep-alive"), true),
            (Version::Http10, Some("Keep-Alive"), true),
            (Version::Http10, Some("close"), false),
            (Version::Http10, Some("keep-alive, close"), false),
        ];
        for (version, connection, want) in table {
            let mut req = Request::new(Method::Get, "/").unwrap().with_version(*version);
            if let Some(value) = connection {
                req = req.with_header("Connection", value);
            }
            assert_eq!(req.keep_alive(), *want, "{version:?} {connection:?}");
        }
    }

    #[test]
    fn builder() {
        let req = Request::new(Method::Post, "/a%20b?x=1+2&y").unwrap().with_header("Host", "h").with_body("payload");
        assert_eq!(req.method(), &Method::Post);
        assert_eq!(req.version(), Version::Http11);
        assert_eq!(req.target(), "/a%20b?x=1+2&y");
        assert_eq!(req.path(), "/a b");
        assert_eq!(req.query("x"), Some("1 2"));
        assert_eq!(req.query("y"), Some(""));
        assert_eq!(req.query("z"), None);
        assert_eq!(req.query_pairs().len(), 2);
        assert_eq!(req.header("host"), Some("h"));
        assert_eq!(req.headers().len(), 1);
        assert_eq!(req.body(), b"payload");

        assert_eq!(req.raw_path(), "/a%20b");
        assert_eq!(req.param("id"), None);
        let mut req = req;
        req.set_params(vec![("id".into(), "7".into())]);
        assert_eq!((req.param("id"), req.params().len()), (Some("7"), 1));

        for bad in ["", "nope", "/%zz", "/#x"] {
            assert!(matches!(Request::new(Method::Get, bad), Err(ParseError::InvalidTarget(_))));
        }
    }

    #[test]
    fn host_and_port() {
        /// Target, `Host` values, and the host and port they name.
        type HostCase = (&'static str, &'static [&'static str], Option<&'static str>, Option<u16>);
        let table: &[HostCase] = &[
            ("/", &["example.com"], Some("example.com"), None),
            ("/", &[" Example.com:8080 "], Some("Example.com"), Some(8080)),
            ("/", &["[::1]:8000"], Some("[::1]"), Some(8000)),
            ("/", &["h:"], Some("h"), None),
            ("/", &[], None, None),
            ("/", &["a", "b"], None, None),
            ("/", &["a b"], None, None),
            ("/", &["a:99999"], None, None),
            // The absolute-form target's authority comes first.
            ("http://target.test:81/x", &["header.test"], Some("target.test"), Some(81)),
            ("http://target.test?q", &[], Some("target.test"), None),
            ("*", &["star.test:1"], Some("star.test"), Some(1)),
        ];
        for &(target, hosts, host, port) in table {
            let mut req = Request::new(Method::Get, target).unwrap();
            for value in hosts {
                req = req.with_header("Host", value);
            }
            assert_eq!((req.host(), req.port()), (host, port), "{target} {hosts:?}");
        }
    }

    #[test]
    fn raw_paths_and_their_segments() {
        let table: &[(&str, &str, &[&str])] = &[
            ("/", "/", &[""]),
            ("*", "*", &[]),
            ("/a/b", "/a/b", &["a", "b"]),
            ("/a/b/", "/a/b/", &["a", "b", ""]),
            ("/a%2Fb/c?x=/y", "/a%2Fb/c", &["a/b", "c"]),
            ("/caf%C3%A9//x", "/caf%C3%A9//x", &["café", "", "x"]),
            ("/%2E%2E/x", "/%2E%2E/x", &["..", "x"]),
            ("http://h:1/p/q?z", "/p/q", &["p", "q"]),
            ("http://h?z", "/", &[""]),
        ];
        for (target, raw, segments) in table {
            let req = Request::new(Method::Get, target).unwrap();
            assert_eq!(req.raw_path(), *raw, "{target}");
            assert_eq!(req.path_segments().collect::<Vec<_>>(), *segments, "{target}");
        }
    }

    #[test]
    fn trim_ows_edges() {
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b" a b\t"), b"a b");
    }
}
