//! Request dispatch: what a parsed request is answered with. CORS is decided first (a refused origin or a
//! preflight never reaches a handler), then the router runs the handler, whose panic becomes a `500`.

use crate::config::ServerConfig;
use crate::cors;
use crate::reply::Reply;
use crate::response::Response;
use crate::router::Router;
use conduit_http::{Request, StatusCode};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The reply to `req`: the CORS answer (under `config`'s CORS settings and public scheme), or the handler's reply
/// with any CORS headers added. The router sets the request's path parameters.
pub(crate) fn dispatch(router: &Router, config: &ServerConfig, req: &mut Request) -> Reply {
    let verdict = match req.header("origin") {
        Some(_) => {
            let scheme = config.public_scheme.of(config.listener_scheme(), req);
            cors::check(config.cors.as_ref(), req, scheme, &router.allowed(req))
        }
        None => cors::Verdict::SameOrigin,
    };
    let mut run = || match catch_unwind(AssertUnwindSafe(|| router.handle_in_place(req))) {
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
