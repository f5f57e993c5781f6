//! Cross-origin resource sharing: which other origins' pages may use the server's streams and endpoints.

use crate::response::Response;
use conduit_http::{Method, Request, StatusCode};
use std::time::Duration;

/// Which cross-origin pages may call the server. Same-origin requests are never affected.
///
/// A request from an allowed origin gets `Access-Control-Allow-Origin` (and the rest) on its response or
/// stream; a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered with what the route allows.
/// A request from any other origin is refused with `403` before a stream starts, so no resources go to a
/// page the browser would not let read the stream anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins, exactly as browsers send them (`http://localhost:3000`); `"*"` allows any.
    pub allowed_origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true`, so pages may send cookies (`withCredentials`).
    pub allow_credentials: bool,
    /// Request headers a page may send.
    pub allowed_headers: Vec<String>,
    /// Response headers a page may read.
    pub exposed_headers: Vec<String>,
    /// How long browsers may cache a preflight answer.
    pub max_age: Duration,
}

impl CorsConfig {
    /// Allows the given origins, with the headers SSE clients need (`Authorization`, `Content-Type`,
    /// `Last-Event-ID`) and the resume header exposed.
    pub fn allow_origins<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CorsConfig {
            allowed_origins: origins.into_iter().map(Into::into).collect(),
            allow_credentials: false,
            allowed_headers: ["Authorization", "Content-Type", "Last-Event-ID", "Cache-Control"]
                .map(String::from)
                .to_vec(),
            exposed_headers: vec![crate::hub::OLDEST_EVENT_ID_HEADER.to_owned()],
            max_age: Duration::from_secs(600),
        }
    }

    /// Allows every origin.
    pub fn allow_any_origin() -> Self {
        CorsConfig::allow_origins(["*"])
    }

    /// Lets pages send cookies and other credentials (`withCredentials`).
    ///
    /// # Errors
    /// [`CorsError::AnyOriginWithCredentials`] when any origin is allowed: that would let every site on the
    /// web read responses with the user's credentials.
    pub fn with_credentials(mut self) -> Result<Self, CorsError> {
        self.allow_credentials = true;
        self.validate()?;
        Ok(self)
    }

    /// Checks the configuration as a whole; [`Server::bind`](crate::Server::bind) refuses one that fails.
    ///
    /// # Errors
    /// [`CorsError::AnyOriginWithCredentials`] for `"*"` together with `allow_credentials`.
    pub fn validate(&self) -> Result<(), CorsError> {
        if self.allow_credentials && self.allowed_origins.iter().any(|o| o == "*") {
            return Err(CorsError::AnyOriginWithCredentials);
        }
        Ok(())
    }

    fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// The headers for a response to an allowed `origin`.
    fn response_headers(&self, origin: &str) -> Vec<(String, String)> {
        // With credentials the origin must be named; naming it always is simplest and caches correctly with Vary.
        let mut headers = vec![
            ("Access-Control-Allow-Origin".to_owned(), origin.to_owned()),
            ("Vary".to_owned(), "Origin".to_owned()),
        ];
        if self.allow_credentials {
            headers.push(("Access-Control-Allow-Credentials".to_owned(), "true".to_owned()));
        }
        if !self.exposed_headers.is_empty() {
            headers.push(("Access-Control-Expose-Headers".to_owned(), self.exposed_headers.join(", ")));
        }
        headers
    }
}

/// Why a [`CorsConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorsError {
    /// Any origin (`"*"`) with credentials: every site could read responses with the user's credentials.
    AnyOriginWithCredentials,
}

impl std::fmt::Display for CorsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorsError::AnyOriginWithCredentials => {
                f.write_str("CORS: credentials cannot be allowed together with any origin (\"*\"); list the origins")
            }
        }
    }
}

impl std::error::Error for CorsError {}

/// What CORS means for one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a cross-origin request (no `Origin`, or the page's own origin): nothing to add.
    SameOrigin,
    /// Allowed: add these headers to the response or stream.
    Allowed(Vec<(String, String)>),
    /// Answer with this response instead of running the handler: a preflight, or a refusal.
    Answer(Response),
}

/// The scheme of an origin the server can be reached by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port an origin of this scheme has when it names none.
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `http` or `https`, in any case.
    fn parse(text: &str) -> Option<Scheme> {
        [Scheme::Http, Scheme::Https].into_iter().find(|s| text.eq_ignore_ascii_case(s.as_str()))
    }
}

/// Which scheme the server's own origin has, as the browser sees it: CORS lets a page on that origin through
/// as same-origin, and checks every other against [`CorsConfig`].
///
/// An origin is a scheme, a host and a port, so `http://example.com` is not `https://example.com`: a page
/// served over plain HTTP, which anyone on the network path can rewrite, must not pass for the HTTPS site.
/// Directly on a listener the scheme is known (`https` with `ServerConfig::tls`); behind a proxy that
/// terminates TLS the listener speaks `http` while browsers speak `https`, and this setting says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicScheme {
    /// The listener's own: `https` when it serves TLS, `http` otherwise.
    #[default]
    Listener,
    /// Always `http`.
    Http,
    /// Always `https`: browsers reach the server only through a proxy that terminates TLS.
    Https,
    /// The request's `X-Forwarded-Proto` (`http` or `https`), the listener's scheme when it has none; a request
    /// naming anything else, or several values, is treated as cross-origin. For a server behind a proxy that
    /// sets the header on every request (nginx `proxy_set_header X-Forwarded-Proto $scheme`, Caddy by default)
    /// and that nothing but the proxy can reach, since any client can send the header.
    XForwardedProto,
}

impl PublicScheme {
    /// The scheme of the origin `req` was sent to, on a listener speaking `listener`; `None` when it cannot be
    /// told (a forwarded scheme that is neither `http` nor `https`).
    pub(crate) fn of(self, listener: Scheme, req: &Request) -> Option<Scheme> {
        match self {
            PublicScheme::Listener => Some(listener),
            PublicScheme::Http => Some(Scheme::Http),
            PublicScheme::Https => Some(Scheme::Https),
            PublicScheme::XForwardedProto => {
                let mut values = req.headers().get_all("x-forwarded-proto");
                match (values.next(), values.next()) {
                    (None, _) => Some(listener),
                    (Some(value), None) => std::str::from_utf8(value).ok().and_then(|v| Scheme::parse(v.trim())),
                    (Some(_), Some(_)) => None,
                }
            }
        }
    }
}

/// `text` without `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// True when `origin` (`scheme://host[:port]`, as browsers serialize it) is the origin `req` was sent to: the
/// same scheme (`scheme`, the server's own), the same host, and the same port, a missing port being the
/// scheme's default on either side.
fn same_origin(origin: &str, scheme: Option<Scheme>, req: &Request) -> bool {
    let (Some(scheme), Some(host)) = (scheme, req.host()) else { return false };
    let Some(port) = strip_prefix_ignore_case(origin, scheme.as_str())
        .and_then(|rest| rest.strip_prefix("://"))
        .and_then(|rest| strip_prefix_ignore_case(rest, host))
    else {
        return false;
    };
    let origin_port = match port.strip_prefix(':') {
        None if port.is_empty() => scheme.default_port(),
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let Ok(port) = digits.parse::<u16>() else { return false };
            port
        }
        _ => return false,
    };
    origin_port == req.port().unwrap_or(scheme.default_port())
}

/// Decides what CORS requires for `req`, sent to an origin of scheme `scheme` (`None`: unknown, so no page is
/// same-origin); `allowed_methods` lists the methods the request's path accepts.
pub(crate) fn check(
    config: Option<&CorsConfig>,
    req: &Request,
    scheme: Option<Scheme>,
    allowed_methods: &[&str],
) -> Verdict {
    let Some(origin) = req.header("origin") else { return Verdict::SameOrigin };
    if same_origin(origin, scheme, req) {
        return Verdict::SameOrigin;
    }
    let Some(config) = config else { return Verdict::SameOrigin };
    if !config.allows(origin) {
        log::debug!("refused {} {} from origin {origin:?}", req.method(), req.path());
        return Verdict::Answer(Response::error(StatusCode::FORBIDDEN, "this origin may not use this server"));
    }
    let preflight = req.method() == &Method::Options && req.header("access-control-request-method").is_some();
    if !preflight {
        return Verdict::Allowed(config.response_headers(origin));
    }
    let mut response = Response::new(StatusCode::NO_CONTENT);
    let mut headers = config.response_headers(origin);
    headers.push(("Access-Control-Allow-Methods".to_owned(), allowed_methods.join(", ")));
    headers.push(("Access-Control-Allow-Headers".to_owned(), config.allowed_headers.join(", ")));
    headers.push(("Access-Control-Max-Age".to_owned(), config.max_age.as_secs().to_string()));
    for (name, value) in headers {
        response = response.header(&name, &value);
    }
    Verdict::Answer(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, headers: &[(&str, &str)]) -> Request {
        headers.iter().fold(Request::new(method, "/stream").unwrap(), |r, (n, v)| r.with_header(n, v))
    }

    const HTTP: Option<Scheme> = Some(Scheme::Http);

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn decides_per_origin() {
        let config = CorsConfig::allow_origins(["http://app.test:3000"]);
        let methods = ["GET", "HEAD", "OPTIONS"];
        let host = ("Host", "api.test:8000");
        // No Origin, or the server's own: nothing to do, with or without a configuration.
        assert_eq!(check(Some(&config), &req(Method::Get, &[host]), HTTP, &methods), Verdict::SameOrigin);
        let own = [host, ("Origin", "http://api.test:8000")];
        assert_eq!(check(Some(&config), &req(Method::Get, &own), HTTP, &methods), Verdict::SameOrigin);
        // Without a configuration cross-origin requests get no headers (the browser refuses to read).
        let other = [host, ("Origin", "http://evil.test")];
        assert_eq!(check(None, &req(Method::Get, &other), HTTP, &methods), Verdict::SameOrigin);

        let allowed = [host, ("Origin", "http://app.test:3000")];
        match check(Some(&config), &req(Method::Get, &allowed), HTTP, &methods) {
            Verdict::Allowed(h) => {
                assert_eq!(header(&h, "Access-Control-Allow-Origin"), Some("http://app.test:3000"));
                assert_eq!(header(&h, "Vary"), Some("Origin"));
                assert_eq!(header(&h, "Access-Control-Expose-Headers"), Some("Conduit-Oldest-Event-Id"));
                assert_eq!(header(&h, "Access-Control-Allow-Credentials"), None);
            }
            other => panic!("{other:?}"),
        }
        match check(Some(&config), &req(Method::Get, &other), HTTP, &methods) {
            Verdict::Answer(r) => assert_eq!(r.status_code(), StatusCode::FORBIDDEN),
            v => panic!("{v:?}"),
        }
    }

    /// Same-origin means the same scheme, host and port as the origin the request was sent to; the scheme is
    /// the listener's unless the configuration says where browsers' scheme comes from.
    #[test]
    fn same_origin_needs_the_scheme_the_host_and_the_port() {
        use PublicScheme::{Listener, XForwardedProto};
        let (http, https) = (Scheme::Http, Scheme::Https);
        let host = |h| ("Host", h);
        let proto = |p| ("X-Forwarded-Proto", p);
        /// Listener, public scheme, request headers, Origin, same origin?
        type Case<'a> = (Scheme, PublicScheme, &'a [(&'a str, &'a str)], &'a str, bool);
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            (http, Listener, &[host("api.test:8000")], "http://api.test:8000", true),
            (http, Listener, &[host("API.test:8000")], "HTTP://api.TEST:8000", true),
            (http, Listener, &[host("api.test:8000")], "https://api.test:8000", false),
            (https, Listener, &[host("api.test:8443")], "https://api.test:8443", true),
            // A plaintext page (which anyone on the path can rewrite) on the TLS site's host and port.
            (https, Listener, &[host("api.test:8443")], "http://api.test:8443", false),
            (https, Listener, &[host("api.test")], "http://api.test", false),
            // A missing port is the scheme's default, on either side.
            (https, Listener, &[host("api.test")], "https://api.test", true),
            (https, Listener, &[host("api.test:443")], "https://api.test", true),
            (https, Listener, &[host("api.test")], "https://api.test:443", true),
            (http, Listener, &[host("api.test")], "http://api.test:80", true),
            (http, Listener, &[host("api.test")], "http://api.test:443", false),
            (http, Listener, &[host("api.test:8000")], "http://api.test:8001", false),
            (http, Listener, &[host("api.test:8000")], "http://api.test", false),
            (http, Listener, &[host("[::1]:8000")], "http://[::1]:8000", true),
            (http, Listener, &[host("[::1]:8000")], "http://[::2]:8000", false),
            // Not an origin of this host, or not an origin at all.
            (http, Listener, &[host("api.test")], "http://api.test.evil", false),
            (http, Listener, &[host("api.test")], "http://api.test:+80", false),
            (http, Listener, &[host("api.test")], "http://api.test:", false),
            (http, Listener, &[host("api.test")], "http://api.test:99999", false),
            (http, Listener, &[host("api.test")], "http://api.test/", false),
            (http, Listener, &[host("api.test")], "api.test", false),
            (http, Listener, &[host("api.test")], "null", false),
            (http, Listener, &[], "http://api.test", false),
            // Behind a proxy that terminates TLS: a fixed scheme, or the forwarded one.
            (http, PublicScheme::Https, &[host("api.test")], "https://api.test", true),
            (http, PublicScheme::Https, &[host("api.test")], "http://api.test", false),
            (https, PublicScheme::Http, &[host("api.test")], "http://api.test", true),
            (http, XForwardedProto, &[host("api.test"), proto("https")], "https://api.test", true),
            (http, XForwardedProto, &[host("api.test"), proto(" HTTPS ")], "https://api.test", true),
            (http, XForwardedProto, &[host("api.test"), proto("https")], "http://api.test", false),
            (http, XForwardedProto, &[host("api.test"), proto("http")], "http://api.test", true),
            (http, XForwardedProto, &[host("api.test")], "http://api.test", true),
            (https, XForwardedProto, &[host("api.test")], "https://api.test", true),
            (http, XForwardedProto, &[host("api.test"), proto("https, http")], "https://api.test", false),
            (http, XForwardedProto, &[host("api.test"), proto("https"), proto("https")], "https://api.test", false),
            (http, XForwardedProto, &[host("api.test"), proto("ftp")], "http://api.test", false),
            // Believed only when configured.
            (http, Listener, &[host("api.test"), proto("https")], "https://api.test", false),
        ];
        for &(listener, public, headers, origin, expected) in cases {
            let request = req(Method::Get, headers);
            let scheme = public.of(listener, &request);
            let what = format!("{listener:?} listener, {public:?}, {headers:?}, Origin {origin}");
            assert_eq!(same_origin(origin, scheme, &request), expected, "{what}");
            // The verdict follows: same-origin runs the handler untouched, anything else meets the allow list.
            let with_origin = request.with_header("Origin", origin);
            let verdict = check(Some(&CorsConfig::allow_origins(["http://app.test"])), &with_origin, scheme, &["GET"]);
            assert_eq!(verdict == Verdict::SameOrigin, expected, "{what}: {verdict:?}");
        }
    }

    #[test]
    fn any_origin_with_credentials_is_refused() {
        assert_eq!(CorsConfig::allow_any_origin().with_credentials(), Err(CorsError::AnyOriginWithCredentials));
        let mut config = CorsConfig::allow_origins(["http://a.test", "*"]);
        config.allow_credentials = true;
        assert_eq!(config.validate(), Err(CorsError::AnyOriginWithCredentials));
        assert!(CorsConfig::allow_origins(["http://a.test"]).with_credentials().is_ok());
        assert!(CorsConfig::allow_any_origin().validate().is_ok());
    }

    #[test]
    fn answers_preflights() {
        let config = CorsConfig::allow_origins(["http://app.test"]).with_credentials().unwrap();
        let preflight = [
            ("Host", "api.test"),
            ("Origin", "http://app.test"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
        ];
        match check(Some(&config), &req(Method::Options, &preflight), HTTP, &["GET", "POST", "HEAD", "OPTIONS"]) {
            Verdict::Answer(r) => {
                assert_eq!(r.status_code(), StatusCode::NO_CONTENT);
                let h = r.headers();
                assert_eq!(header(h, "Access-Control-Allow-Origin"), Some("http://app.test"));
                assert_eq!(header(h, "Access-Control-Allow-Methods"), Some("GET, POST, HEAD, OPTIONS"));
                assert!(header(h, "Access-Control-Allow-Headers").unwrap().contains("Last-Event-ID"));
                assert_eq!(header(h, "Access-Control-Allow-Credentials"), Some("true"));
                assert_eq!(header(h, "Access-Control-Max-Age"), Some("600"));
            }
            v => panic!("{v:?}"),
        }
    }
}
