//! The HTTP replies built from JSON-RPC messages: one message as `application/json` or as a one-event stream,
//! and refusals, whose body is a JSON-RPC error without an id (as the transport allows).

use crate::headers::Accepts;
use crate::jsonrpc::{self, RpcError};
use conduit_http::StatusCode;
use conduit_server::{Reply, Response, Sse};
use conduit_sse::Event;
use serde_json::Value;

/// An HTTP refusal with a JSON-RPC error body that has no id, as the transport allows.
pub(crate) fn refuse(status: StatusCode, code: i64, message: impl std::fmt::Display) -> Reply {
    let body = jsonrpc::error(None, &RpcError::new(code, message.to_string()));
    Response::json(&body).status(status).into()
}

/// `400 Bad Request`, saying why.
pub(crate) fn bad_request(message: impl std::fmt::Display) -> Reply {
    refuse(StatusCode::BAD_REQUEST, jsonrpc::INVALID_REQUEST, message)
}

/// One message as the reply to a `POST`: JSON when the client takes it, otherwise a one-event stream.
pub(crate) fn answer(accepts: Accepts, message: &Value) -> Reply {
    if accepts.json {
        Response::json(message).into()
    } else {
        Sse::from_iter(std::iter::once(Event::new().data(message.to_string()))).into()
    }
}
