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

/// True when `origin` (`scheme://host[:port]`) names the host the request was sent to.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    authority.eq_ignore_ascii_case(host)
}

/// Decides what CORS requires for `req`; `allowed_methods` lists the methods the request's path accepts.
pub(crate) fn check(config: Option<&CorsConfig>, req: &Request, allowed_methods: &[&str]) -> Verdict {
    let Some(origin) = req.header("origin") else { return Verdict::SameOrigin };
    if same_origin(origin, req.header("host")) {
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

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn decides_per_origin() {
        let config = CorsConfig::allow_origins(["http://app.test:3000"]);
        let methods = ["GET", "HEAD", "OPTIONS"];
        let host = ("Host", "api.test:8000");
        // No Origin, or the server's own: nothing to do, with or without a configuration.
        assert_eq!(check(Some(&config), &req(Method::Get, &[host]), &methods), Verdict::SameOrigin);
        let own = [host, ("Origin", "http://api.test:8000")];
        assert_eq!(check(Some(&config), &req(Method::Get, &own), &methods), Verdict::SameOrigin);
        // Without a configuration cross-origin requests get no headers (the browser refuses to read).
        let other = [host, ("Origin", "http://evil.test")];
        assert_eq!(check(None, &req(Method::Get, &other), &methods), Verdict::SameOrigin);

        let allowed = [host, ("Origin", "http://app.test:3000")];
        match check(Some(&config), &req(Method::Get, &allowed), &methods) {
            Verdict::Allowed(h) => {
                assert_eq!(header(&h, "Access-Control-Allow-Origin"), Some("http://app.test:3000"));
                assert_eq!(header(&h, "Vary"), Some("Origin"));
                assert_eq!(header(&h, "Access-Control-Expose-Headers"), Some("Conduit-Oldest-Event-Id"));
                assert_eq!(header(&h, "Access-Control-Allow-Credentials"), None);
            }
            other => panic!("{other:?}"),
        }
        match check(Some(&config), &req(Method::Get, &other), &methods) {
            Verdict::Answer(r) => assert_eq!(r.status_code(), StatusCode::FORBIDDEN),
            v => panic!("{v:?}"),
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
        match check(Some(&config), &req(Method::Options, &preflight), &["GET", "POST", "HEAD", "OPTIONS"]) {
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
