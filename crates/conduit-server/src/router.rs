//! Routes by method and exact path.

use crate::reply::Reply;
use crate::response::Response;
use conduit_http::{Method, Request, StatusCode};

type BoxedHandler = Box<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Route {
    method: Method,
    path: String,
    handler: BoxedHandler,
}

/// Maps `(method, path)` to handlers. Unknown paths get `404`, known paths with another method `405` with an
/// `Allow` header, `HEAD` is answered by the `GET` handler without a body, and `OPTIONS` lists what is allowed.
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

    /// Adds a route; a later route for the same method and path replaces the earlier one.
    #[must_use]
    pub fn route<R, F>(mut self, method: Method, path: &str, handler: F) -> Self
    where
        R: Into<Reply>,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.routes.retain(|r| !(r.method == method && r.path == path));
        self.routes.push(Route { method, path: path.to_owned(), handler: Box::new(move |req| handler(req).into()) });
        self
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

    fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| &r.method == method && r.path == path)
    }

    /// The methods `path` accepts, `HEAD` and `OPTIONS` included.
    pub(crate) fn allowed(&self, path: &str) -> Vec<&str> {
        let mut allowed: Vec<&str> = self.routes.iter().filter(|r| r.path == path).map(|r| r.method.as_str()).collect();
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        allowed.push("OPTIONS");
        allowed
    }

    /// Runs the handler for `req`, or answers 404, 405 or `OPTIONS` itself.
    pub fn handle(&self, req: &Request) -> Reply {
        let method = match req.method() {
            Method::Head => &Method::Get,
            m => m,
        };
        if let Some(route) = self.find(method, req.path()) {
            return (route.handler)(req);
        }
        if !self.routes.iter().any(|r| r.path == req.path()) {
            return Response::error(StatusCode::NOT_FOUND, format_args!("no route for {}", req.path())).into();
        }
        let allow = self.allowed(req.path()).join(", ");
        if req.method() == &Method::Options {
            return Response::new(StatusCode::NO_CONTENT).header("Allow", &allow).into();
        }
        Response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format_args!("{} is not allowed on {}", req.method(), req.path()),
        )
        .header("Allow", &allow)
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reply: Reply) -> (u16, Vec<(String, String)>) {
        match reply {
            Reply::Response(r) => (r.status_code().as_u16(), r.headers().to_vec()),
            Reply::Stream(_) | Reply::Deferred(_) => (0, vec![]),
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
            assert_eq!(status(router.handle(&req)).0, *want, "{method} {path}");
        }
        let (_, headers) = status(router.handle(&Request::new(Method::Put, "/a").unwrap()));
        let allow = headers.iter().find(|(k, _)| k == "Allow").map(|(_, v)| v.as_str());
        assert_eq!(allow, Some("GET, POST, HEAD, OPTIONS"));
    }

    #[test]
    fn later_routes_replace_earlier_ones() {
        let router =
            Router::new().get("/a", |_: &Request| Response::text("old")).get("/a", |_: &Request| Response::text("new"));
        match router.handle(&Request::new(Method::Get, "/a").unwrap()) {
            Reply::Response(r) => assert_eq!(r.body(), b"new"),
            _ => panic!("expected a response"),
        }
    }
}
