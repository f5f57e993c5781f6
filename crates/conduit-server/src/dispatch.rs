//! Request dispatch: what a parsed request is answered with. CORS is decided first (a refused origin or a
//! preflight never reaches a handler), then the router runs the route's guard and handler, whose panic
//! becomes a `500`. A request that announces a body is first *admitted* from its head alone: the same CORS
//! and routing decisions, the route's guard and its body limit, so a request that will be refused is
//! answered before any of its body is read.

use crate::config::ServerConfig;
use crate::cors;
use crate::reply::Reply;
use crate::response::Response;
use crate::router::Router;
use conduit_http::{Request, StatusCode};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The reply to `req`: the CORS answer (under `config`'s CORS settings and public scheme), or the handler's
/// reply with any CORS headers added. The router sets the request's path parameters. `admitted` says the head already passed [`admit`] (its guard is not run
/// again).
pub(crate) fn dispatch(router: &Router, config: &ServerConfig, req: &mut Request, admitted: bool) -> Reply {
    match verdict(router, config, req) {
        cors::Verdict::Answer(response) => Reply::Response(response),
        cors::Verdict::SameOrigin => unwound("handler", req, |req| router.handle_in_place(req, admitted), Reply::from),
        cors::Verdict::Allowed(headers) => {
            let reply = unwound("handler", req, |req| router.handle_in_place(req, admitted), Reply::from);
            headers.iter().fold(reply, |reply, (name, value)| reply.header(name, value))
        }
    }
}

/// Decides from the head of a request that announced a body (`announced`: its length, if known) whether to
/// read it: `Ok` with the route's body limit (`None`: the server's), or the response that answers the request
/// instead, with CORS headers when the origin is allowed so that a page can read why.
pub(crate) fn admit(
    router: &Router,
    config: &ServerConfig,
    req: &mut Request,
    announced: Option<u64>,
) -> Result<Option<usize>, Response> {
    let admit = |req: &mut Request| router.admit(req, announced);
    match verdict(router, config, req) {
        cors::Verdict::Answer(response) => Err(response),
        cors::Verdict::SameOrigin => unwound("guard", req, admit, Err),
        cors::Verdict::Allowed(headers) => unwound("guard", req, admit, Err)
            .map_err(|r| headers.iter().fold(r, |r, (name, value)| r.header(name, value))),
    }
}

/// What CORS says of `req` (nothing to do without an `Origin`), the server's origin having the scheme
/// `config` gives it.
fn verdict(router: &Router, config: &ServerConfig, req: &Request) -> cors::Verdict {
    match req.header("origin") {
        Some(_) => {
            let scheme = config.public_scheme.of(config.listener_scheme(), req);
            cors::check(config.cors.as_ref(), req, scheme, &router.allowed(req))
        }
        None => cors::Verdict::SameOrigin,
    }
}

/// Runs application code (`what`: a handler or a guard) on `req`; a panic is logged and becomes a `500`,
/// made into the caller's type by `failed`.
fn unwound<T>(
    what: &str,
    req: &mut Request,
    run: impl FnOnce(&mut Request) -> T,
    failed: impl FnOnce(Response) -> T,
) -> T {
    match catch_unwind(AssertUnwindSafe(|| run(&mut *req))) {
        Ok(value) => value,
        Err(_) => {
            log::error!("{what} for {} {} panicked", req.method(), req.path());
            failed(Response::error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"))
        }
    }
}
