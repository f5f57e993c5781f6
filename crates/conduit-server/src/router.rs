//! Routes by method and path: exact paths, and patterns with parameters such as `/items/{id}`.

use crate::reply::Reply;
use crate::response::Response;
use conduit_http::{Method, Request, StatusCode};

type BoxedHandler = Box<dyn Fn(&Request) -> Reply + Send + Sync>;
type BoxedGuard = Box<dyn Fn(&Request) -> Result<(), Response> + Send + Sync>;

/// Path parameters as `(name, decoded value)`, in the order of the pattern.
type Params = Vec<(String, String)>;

/// One segment of a route pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Matches a path segment that decodes to exactly this text.
    Literal(String),
    /// Matches any one segment (see [`param_value_ok`]) and names its decoded value.
    Param(String),
}

struct Route {
    method: Method,
    /// The path as given to [`Router::route`].
    path: String,
    /// `None` for an exact path; the segments after the leading `/` for a pattern.
    pattern: Option<Vec<Segment>>,
    handler: BoxedHandler,
    /// The largest body the route takes; `None` for the server's `limits.max_body_bytes`.
    body_limit: Option<usize>,
    /// Decides from the head alone whether the request may go on (authorisation, say).
    guard: Option<BoxedGuard>,
}

impl Route {
    /// The body this route takes: as set, or none at all for methods whose requests carry none.
    fn body_limit(&self) -> Option<usize> {
        self.body_limit.or(match self.method {
            Method::Get | Method::Head | Method::Delete | Method::Options => Some(0),
            _ => None,
        })
    }

    fn check(&self, req: &Request) -> Result<(), Response> {
        self.guard.as_ref().map_or(Ok(()), |guard| guard(req))
    }

    /// True if both routes match the same requests (parameter names aside).
    fn same_place(&self, method: &Method, path: &str, pattern: Option<&[Segment]>) -> bool {
        if &self.method != method {
            return false;
        }
        match (&self.pattern, pattern) {
            (None, None) => self.path == path,
            (Some(a), Some(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|pair| match pair {
                        (Segment::Literal(x), Segment::Literal(y)) => x == y,
                        (Segment::Param(_), Segment::Param(_)) => true,
                        _ => false,
                    })
            }
            _ => false,
        }
    }

    /// The parameters of this pattern route for the request's decoded path segments, if it matches, and how
    /// specific the match is: one flag per segment, true for a literal.
    fn matches(&self, segments: &[std::borrow::Cow<'_, str>]) -> Option<(Vec<bool>, Params)> {
        let pattern = self.pattern.as_ref()?;
        if pattern.len() != segments.len() {
            return None;
        }
        let mut specificity = Vec::with_capacity(pattern.len());
        let mut params = Vec::new();
        for (want, got) in pattern.iter().zip(segments) {
            match want {
                Segment::Literal(text) if text == got => specificity.push(true),
                Segment::Param(name) if param_value_ok(got) => {
                    specificity.push(false);
                    params.push((name.clone(), got.clone().into_owned()));
                }
                _ => return None,
            }
        }
        Some((specificity, params))
    }
}

/// What a parameter may match: one whole, non-empty segment, after percent-decoding. A value that could
/// reach outside its segment once a handler builds a path or a key from it (a `/` or `\` sent encoded, `.`,
/// `..`) or that holds control characters does not match, so the request gets `404`.
fn param_value_ok(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && !value.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// Splits a route's path into pattern segments, or `None` for an exact path (one without braces).
///
/// # Panics
/// On a malformed pattern: braces that are not a whole segment `{name}`, a name that is not letters, digits
/// and `_`, a repeated name, or a pattern that does not start with `/`. Routes are written by programmers;
/// a typo should stop the program at start-up rather than leave a route that never matches.
fn parse_pattern(path: &str) -> Option<Vec<Segment>> {
    if !path.contains(['{', '}']) {
        return None;
    }
    let Some(rest) = path.strip_prefix('/') else {
        panic!("invalid route pattern {path:?}: it must start with '/'");
    };
    let mut segments = Vec::new();
    for piece in rest.split('/') {
        let segment = match piece.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                if segments.iter().any(|s| matches!(s, Segment::Param(n) if n == name)) {
                    panic!("invalid route pattern {path:?}: parameter {{{name}}} appears twice");
                }
                Segment::Param(name.to_owned())
            }
            _ if piece.contains(['{', '}']) => {
                panic!("invalid route pattern {path:?}: a parameter is a whole segment {{name}} (letters, digits, _)")
            }
            _ => Segment::Literal(piece.to_owned()),
        };
        segments.push(segment);
    }
    Some(segments)
}

/// What the router decided for a request.
enum Selected<'a> {
    /// Run this route's handler with these path parameters.
    Route(&'a Route, Params),
    /// The router answers itself (`404`, `405`, `OPTIONS`).
    Answer(Response),
}

/// Maps `(method, path)` to handlers. Unknown paths get `404`, known paths with another method `405` with an
/// `Allow` header, `HEAD` is answered by the `GET` handler without a body, and `OPTIONS` lists what is allowed.
///
/// A path is either exact (`/api/chat/stream`) or a pattern whose segments may be parameters
/// (`/api/chat/stream/{id}`), read in the handler with [`Request::param`]. A request's path is served by the
/// routes of one place: those with exactly its path if there are any, otherwise the matching pattern that
/// is most specific (comparing segment by segment from the left, a literal beats a parameter), so
/// `/items/new` wins over `/items/{id}`, and `/a/b/{y}` over `/a/{x}/c`. The methods of that place alone
/// decide between the handler, `405` and the `Allow` list.
///
/// A parameter matches exactly one segment of the path as sent, split at its `/` separators and then
/// percent-decoded, so `%2F` inside a value never acts as a separator; and a value that decodes to `.` or
/// `..`, or contains `/`, `\` or control characters, matches nothing (`404`), so a handler can use a
/// parameter as a file name or a key without it escaping its place.
///
/// ```
/// use conduit_server::{Request, Response, Router};
///
/// let router = Router::new()
///     .get("/items/new", |_: &Request| Response::text("a form"))
///     .get("/items/{id}", |req: &Request| Response::text(format!("item {}", req.param("id").unwrap_or(""))));
/// # let _ = router;
/// ```
///
/// Handlers run on the event loop's thread and must return quickly: long work belongs on another thread
/// feeding an [`SseSender`](crate::SseSender), or in an event source the loop pulls from.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|r| format!("{} {}", r.method, r.path))).finish()
    }
}

impl Router {
    /// No routes.
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds a route; a later route for the same method and path (or pattern of the same shape) replaces the
    /// earlier one.
    ///
    /// # Panics
    /// If `path` is a malformed pattern: braces that are not a whole segment `{name}`, a name other than
    /// letters, digits and `_`, a name used twice, or a pattern not starting with `/`.
    #[must_use]
    pub fn route<R, F>(mut self, method: Method, path: &str, handler: F) -> Self
    where
        R: Into<Reply>,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        let pattern = parse_pattern(path);
        self.routes.retain(|r| !r.same_place(&method, path, pattern.as_deref()));
        self.routes.push(Route {
            method,
            path: path.to_owned(),
            pattern,
            handler: Box::new(move |req| handler(req).into()),
            body_limit: None,
            guard: None,
        });
        self
    }

    /// Sets the largest request body the route added last takes. A request announcing more gets `413` from
    /// its head, before any of its body is read. By default `GET`, `HEAD`, `DELETE` and `OPTIONS` routes take
    /// no body and others take up to the server's `limits.max_body_bytes` (which also caps this value).
    ///
    /// # Panics
    /// If no route was added yet.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.last_route().body_limit = Some(bytes);
        self
    }

    /// Guards the route added last with a check of the request's head: authorisation, say. It runs before the
    /// body is read (a refused request never makes the server hold its body, and gets no `100 Continue`) and
    /// before the handler; its `Err` response is the answer.
    ///
    /// ```
    /// use conduit_server::auth::require_bearer;
    /// use conduit_server::{Request, Response, Router};
    ///
    /// let router = Router::new()
    ///     .post("/publish", |req: &Request| Response::text(format!("{} bytes", req.body().len())))
    ///     .body_limit(64 * 1024)
    ///     .guard(|req: &Request| require_bearer(req, "secret"));
    /// # let _ = router;
    /// ```
    ///
    /// # Panics
    /// If no route was added yet.
    #[must_use]
    pub fn guard<G>(mut self, guard: G) -> Self
    where
        G: Fn(&Request) -> Result<(), Response> + Send + Sync + 'static,
    {
        self.last_route().guard = Some(Box::new(guard));
        self
    }

    fn last_route(&mut self) -> &mut Route {
        self.routes.last_mut().expect("body_limit and guard apply to the route added before them")
    }

    /// Adds a `GET` route.
    #[must_use]
    pub fn get<R, F>(self, path: &str, handler: F) -> Self
    where
        R: Into<Reply>,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route(Method::Get, path, handler)
    }

    /// Adds a `POST` route.
    #[must_use]
    pub fn post<R, F>(self, path: &str, handler: F) -> Self
    where
        R: Into<Reply>,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route(Method::Post, path, handler)
    }

    /// Adds a `DELETE` route.
    #[must_use]
    pub fn delete<R, F>(self, path: &str, handler: F) -> Self
    where
        R: Into<Reply>,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route(Method::Delete, path, handler)
    }

    /// The routes serving `req`'s path, with the parameters each would get: those with exactly its path, or
    /// else the most specific matching patterns. Empty when nothing serves the path.
    fn place(&self, req: &Request) -> Vec<(&Route, Params)> {
        let exact: Vec<_> = self
            .routes
            .iter()
            .filter(|r| r.pattern.is_none() && r.path == req.path())
            .map(|r| (r, Vec::new()))
            .collect();
        if !exact.is_empty() || !req.raw_path().starts_with('/') {
            return exact;
        }
        let segments: Vec<_> = req.path_segments().collect();
        let mut best: Vec<bool> = Vec::new();
        let mut place = Vec::new();
        for route in &self.routes {
            let Some((specificity, params)) = route.matches(&segments) else { continue };
            if place.is_empty() || specificity > best {
                best = specificity;
                place.clear();
            } else if specificity < best {
                continue;
            }
            place.push((route, params));
        }
        place
    }

    /// The methods allowed on `req`'s path, `HEAD` and `OPTIONS` included.
    pub(crate) fn allowed(&self, req: &Request) -> Vec<&str> {
        allowed_methods(&self.place(req))
    }

    fn select(&self, req: &Request) -> Selected<'_> {
        let method = match req.method() {
            Method::Head => &Method::Get,
            m => m,
        };
        let mut place = self.place(req);
        if let Some(i) = place.iter().position(|(r, _)| &r.method == method) {
            let (route, params) = place.swap_remove(i);
            return Selected::Route(route, params);
        }
        if place.is_empty() {
            return Selected::Answer(Response::error(
                StatusCode::NOT_FOUND,
                format_args!("no route for {}", req.path()),
            ));
        }
        let allow = allowed_methods(&place).join(", ");
        if req.method() == &Method::Options {
            return Selected::Answer(Response::new(StatusCode::NO_CONTENT).header("Allow", &allow));
        }
        Selected::Answer(
            Response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format_args!("{} is not allowed on {}", req.method(), req.path()),
            )
            .header("Allow", &allow),
        )
    }

    /// Runs the route's guard and handler for `req`, or answers 404, 405 or `OPTIONS` itself. A pattern
    /// route's handler gets a copy of the request with its path parameters set.
    pub fn handle(&self, req: &Request) -> Reply {
        match self.select(req) {
            Selected::Route(route, params) => {
                let mut req = req.clone();
                req.set_params(params);
                match route.check(&req) {
                    Ok(()) => (route.handler)(&req),
                    Err(refused) => refused.into(),
                }
            }
            Selected::Answer(response) => response.into(),
        }
    }

    /// Like [`handle`](Self::handle), setting the path parameters on `req` itself instead of on a copy; the
    /// guard is skipped when `admitted` (it already passed on the head).
    pub(crate) fn handle_in_place(&self, req: &mut Request, admitted: bool) -> Reply {
        match self.select(req) {
            Selected::Route(route, params) => {
                req.set_params(params);
                match if admitted { Ok(()) } else { route.check(req) } {
                    Ok(()) => (route.handler)(req),
                    Err(refused) => refused.into(),
                }
            }
            Selected::Answer(response) => response.into(),
        }
    }

    /// Decides from the head of a request that announced a body whether to read it: the body limit of its
    /// route, or the response refusing it (404, 405, a guard's refusal, `413` for a route that takes less).
    pub(crate) fn admit(&self, req: &mut Request, announced: Option<u64>) -> Result<Option<usize>, Response> {
        let (route, params) = match self.select(req) {
            Selected::Route(route, params) => (route, params),
            Selected::Answer(response) => return Err(response),
        };
        req.set_params(params);
        route.check(req)?;
        let limit = route.body_limit();
        match (limit, announced) {
            (Some(0), _) => Err(Response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format_args!("{} {} takes no request body", req.method(), req.path()),
            )),
            (Some(limit), Some(length)) if length > limit as u64 => Err(Response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format_args!("{} {} takes a body of at most {limit} bytes", req.method(), req.path()),
            )),
            _ => Ok(limit),
        }
    }
}

/// The methods of the routes of one place, in the order they were added, then `HEAD` (if `GET` is among
/// them) and `OPTIONS`.
fn allowed_methods<'a>(place: &[(&'a Route, Params)]) -> Vec<&'a str> {
    let mut allowed: Vec<&str> = Vec::new();
    for (route, _) in place {
        if !allowed.contains(&route.method.as_str()) {
            allowed.push(route.method.as_str());
        }
    }
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    allowed.push("OPTIONS");
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, `Allow` header and body of a reply.
    fn outcome(reply: Reply) -> (u16, Option<String>, String) {
        match reply {
            Reply::Response(r) => {
                let allow = r.headers().iter().find(|(k, _)| k == "Allow").map(|(_, v)| v.clone());
                (r.status_code().as_u16(), allow, String::from_utf8_lossy(r.body()).into_owned())
            }
            Reply::Stream(_) | Reply::Deferred(_) => (0, None, String::new()),
        }
    }

    /// Answers with the route's name and its parameters, so a test sees which route ran and what it got.
    fn named(name: &'static str) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
        move |req: &Request| {
            let params: Vec<String> = req.params().iter().map(|(k, v)| format!("{k}={v}")).collect();
            Response::text(format!("{name} {}", params.join(" ")).trim_end().to_owned())
        }
    }

    #[test]
    fn dispatches_and_refuses() {
        let router = Router::new()
            .get("/a", |_: &Request| Response::text("a"))
            .post("/a", |_: &Request| Response::text("posted"))
            .get("/b", |_: &Request| Response::text("b"));
        let cases: &[(Method, &str, u16)] = &[
            (Method::Get, "/a", 200),
            (Method::Head, "/a", 200),
            (Method::Post, "/a", 200),
            (Method::Put, "/a", 405),
            (Method::Delete, "/b", 405),
            (Method::Get, "/c", 404),
            (Method::Options, "/a", 204),
        ];
        for (method, path, want) in cases {
            let req = Request::new(method.clone(), path).unwrap();
            assert_eq!(outcome(router.handle(&req)).0, *want, "{method} {path}");
        }
        let (_, allow, _) = outcome(router.handle(&Request::new(Method::Put, "/a").unwrap()));
        assert_eq!(allow.as_deref(), Some("GET, POST, HEAD, OPTIONS"));
    }

    #[test]
    fn later_routes_replace_earlier_ones() {
        let router = Router::new()
            .get("/a", |_: &Request| Response::text("old"))
            .get("/a", |_: &Request| Response::text("new"))
            .get("/p/{x}", named("old pattern"))
            .get("/p/{y}", named("new pattern"));
        assert_eq!(outcome(router.handle(&Request::new(Method::Get, "/a").unwrap())).2, "new");
        assert_eq!(outcome(router.handle(&Request::new(Method::Get, "/p/1").unwrap())).2, "new pattern y=1");
    }

    fn chat_router() -> Router {
        Router::new()
            .post("/api/chat/stream", named("start"))
            .get("/api/chat/stream/{id}", named("resume"))
            .delete("/api/chat/stream/{id}", named("cancel"))
            .get("/api/chat/stream/latest", named("latest"))
            .get("/files/{dir}/{name}", named("file"))
            .get("/files/{dir}/index", named("index"))
            .get("/files/docs/{name}", named("docs"))
            .get("/a/{x}/c", named("x-c"))
            .get("/a/b/{y}", named("b-y"))
    }

    #[test]
    fn patterns_match_whole_segments_and_exact_routes_win() {
        let router = chat_router();
        // (method, target, status, body, Allow)
        let cases: &[(Method, &str, u16, &str, Option<&str>)] = &[
            (Method::Get, "/api/chat/stream/abc123", 200, "resume id=abc123", None),
            (Method::Head, "/api/chat/stream/abc123", 200, "resume id=abc123", None),
            (Method::Delete, "/api/chat/stream/abc123", 200, "cancel id=abc123", None),
            (Method::Post, "/api/chat/stream", 200, "start", None),
            (Method::Get, "/api/chat/stream/a%20b", 200, "resume id=a b", None),
            (Method::Get, "/api/chat/stream/caf%C3%A9", 200, "resume id=café", None),
            (Method::Get, "/api/chat/stream/abc?last_event_id=5", 200, "resume id=abc", None),
            // The exact route is the only one serving its path: other methods are 405, whatever patterns say.
            (Method::Get, "/api/chat/stream/latest", 200, "latest", None),
            (Method::Delete, "/api/chat/stream/latest", 405, "", Some("GET, HEAD, OPTIONS")),
            (Method::Post, "/api/chat/stream/abc", 405, "", Some("GET, DELETE, HEAD, OPTIONS")),
            (Method::Options, "/api/chat/stream/abc", 204, "", Some("GET, DELETE, HEAD, OPTIONS")),
            (Method::Get, "/api/chat/stream", 405, "", Some("POST, OPTIONS")),
            // Literals beat parameters, from the left.
            (Method::Get, "/files/docs/index", 200, "docs name=index", None),
            (Method::Get, "/files/img/index", 200, "index dir=img", None),
            (Method::Get, "/files/img/cat.png", 200, "file dir=img name=cat.png", None),
            (Method::Get, "/a/b/c", 200, "b-y y=c", None),
            (Method::Get, "/a/z/c", 200, "x-c x=z", None),
            (Method::Get, "/a/b/d", 200, "b-y y=d", None),
            // A parameter is one non-empty segment.
            (Method::Get, "/api/chat/stream/", 404, "", None),
            (Method::Get, "/api/chat/stream/a/b", 404, "", None),
            (Method::Get, "/api/chat/stream//", 404, "", None),
            (Method::Get, "/files/img", 404, "", None),
            (Method::Get, "/api/chat", 404, "", None),
        ];
        for (method, target, status, body, allow) in cases {
            let req = Request::new(method.clone(), target).unwrap();
            let (got_status, got_allow, got_body) = outcome(router.handle(&req));
            assert_eq!(got_status, *status, "{method} {target}");
            if *status == 200 {
                assert_eq!(got_body, *body, "{method} {target}");
            }
            assert_eq!(got_allow.as_deref(), *allow, "{method} {target}");
        }
    }

    #[test]
    fn encoded_separators_and_dot_segments_never_reach_a_parameter() {
        let router = chat_router();
        for target in [
            "/api/chat/stream/a%2Fb",
            "/api/chat/stream/a%2fb",
            "/api/chat/stream/%2F",
            "/api/chat/stream/..%2Fetc",
            "/api/chat/stream/a%5Cb",
            "/api/chat/stream/..",
            "/api/chat/stream/.",
            "/api/chat/stream/%2E%2E",
            "/api/chat/stream/%2e",
            "/api/chat/stream/a%00b",
            "/api/chat/stream/a%0Ab",
            "/api/chat%2Fstream/abc",
            "/files/a%2Fb/c",
            "*",
        ] {
            let req = Request::new(Method::Get, target).unwrap();
            let (status, _, body) = outcome(router.handle(&req));
            assert_eq!(status, 404, "{target}: {body}");
        }
        // Names that merely contain dots are ordinary values.
        let req = Request::new(Method::Get, "/api/chat/stream/..a").unwrap();
        assert_eq!(outcome(router.handle(&req)).2, "resume id=..a");
    }

    #[test]
    fn in_place_handling_sets_the_parameters_on_the_request() {
        let router = chat_router();
        let mut req = Request::new(Method::Get, "/files/img/cat.png").unwrap();
        assert_eq!(outcome(router.handle_in_place(&mut req, false)).2, "file dir=img name=cat.png");
        assert_eq!((req.param("dir"), req.param("name")), (Some("img"), Some("cat.png")));
        let mut exact = Request::new(Method::Get, "/api/chat/stream/latest").unwrap();
        assert_eq!(outcome(router.handle_in_place(&mut exact, false)).2, "latest");
        assert!(exact.params().is_empty());
    }

    #[test]
    fn allowed_lists_the_methods_of_the_place_serving_the_path() {
        let router = chat_router();
        let allowed = |target: &str| router.allowed(&Request::new(Method::Options, target).unwrap()).join(", ");
        assert_eq!(allowed("/api/chat/stream/x"), "GET, DELETE, HEAD, OPTIONS");
        assert_eq!(allowed("/api/chat/stream/latest"), "GET, HEAD, OPTIONS");
        assert_eq!(allowed("/api/chat/stream"), "POST, OPTIONS");
        assert_eq!(allowed("/nowhere"), "OPTIONS");
    }

    #[test]
    fn malformed_patterns_are_refused_when_the_route_is_added() {
        for path in ["/a/{id", "/a/id}", "/a/{}", "/a/{i-d}", "/a/x{id}", "/a/{id}/{id}", "a/{id}", "/{a}{b}"] {
            let added = std::panic::catch_unwind(|| Router::new().get(path, |_: &Request| Response::text("")));
            assert!(added.is_err(), "{path} should be refused");
        }
        for path in ["/a/{id}", "/{a}/{b}", "/a/{snake_case_1}"] {
            let _ = Router::new().get(path, |_: &Request| Response::text(""));
        }
    }
}
