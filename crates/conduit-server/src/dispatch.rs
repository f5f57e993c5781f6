//! Request dispatch: what a parsed request is answered with. CORS is decided first (a refused origin or a
//! preflight never reaches a handler), then the router runs the route's guard and handler, whose panic
//! becomes a `500`. A request that announces a body is first *admitted* from its head alone: the same CORS
//! and routing decisions, the route's guard and its body limit, so a request that will be refused is
//! answered before any of its body is read.

use crate::cors::{self, CorsConfig};
use crate::reply::Reply;
use crate::response::Response;
use crate::router::Router;
use conduit_http::{Request, StatusCode};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The reply to `req`: the CORS answer, or the handler's reply with any CORS headers added. The router sets
/// the request's path parameters. `admitted` says the head already passed [`admit`] (its guard is not run
/// again).
pub(crate) fn dispatch(router: &Router, cors: Option<&CorsConfig>, req: &mut Request, admitted: bool) -> Reply {
    let verdict = match req.header("origin") {
        Some(_) => cors::check(cors, req, &router.allowed(req)),
        None => cors::Verdict::SameOrigin,
    };
    let mut run = || match catch_unwind(AssertUnwindSafe(|| router.handle_in_place(req, admitted))) {
        Ok(reply) => reply,
        Err(_) => {
            log::error!("handler for {} {} panicked", req.method(), req.path());
            Reply::Response(Response::error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"))
        }
    };
    match verdict {
        cors::Verdict::Answer(response) => Reply::Response(response),
        cors::Verdict::SameOrigin => run(),
        cors::Verdict::Allowed(headers) => headers.iter().fold(run(), |reply, (name, value)| reply.header(name, value)),
    }
}

/// Decides from the head of a request that announced a body (`announced`: its length, if known) whether to
/// read it: `Ok` with the route's body limit (`None`: the server's), or the response that answers the request
/// instead, with CORS headers when the origin is allowed so that a page can read why.
pub(crate) fn admit(
    router: &Router,
    cors: Option<&CorsConfig>,
    req: &mut Request,
    announced: Option<u64>,
) -> Result<Option<usize>, Response> {
    let verdict = match req.header("origin") {
        Some(_) => cors::check(cors, req, &router.allowed(req)),
        None => cors::Verdict::SameOrigin,
    };
    let mut admitted = || match catch_unwind(AssertUnwindSafe(|| router.admit(req, announced))) {
        Ok(admitted) => admitted,
        Err(_) => {
            log::error!("guard for {} {} panicked", req.method(), req.path());
            Err(Response::error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"))
        }
    };
    match verdict {
        cors::Verdict::Answer(response) => Err(response),
        cors::Verdict::SameOrigin => admitted(),
        cors::Verdict::Allowed(headers) => {
            admitted().map_err(|r| headers.iter().fold(r, |r, (name, value)| r.header(name, value)))
        }
    }
}
