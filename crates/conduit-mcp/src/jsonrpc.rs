//! JSON-RPC 2.0 messages as MCP uses them: one message per HTTP body (revisions 2025-06-18 and later removed
//! batches), ids that are strings or integers, `params` that are structured values.

use serde_json::{Map, Value, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON is not a valid JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (an unknown tool among them).
pub const INVALID_PARAMS: i64 = -32602;
/// An error inside the server.
pub const INTERNAL_ERROR: i64 = -32603;
/// A transport-level refusal (a limit reached, a session unknown...): the start of the range JSON-RPC leaves to
/// implementations.
pub const SERVER_ERROR: i64 = -32000;

/// A request id: MCP allows strings and integers, never `null`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestId {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl RequestId {
    /// Reads an id: a string or an integer.
    pub fn from_json(value: &Value) -> Option<RequestId> {
        match value {
            Value::String(s) => Some(RequestId::String(s.clone())),
            Value::Number(n) => n.as_i64().map(RequestId::Number),
            _ => None,
        }
    }

    /// The id as it appears in a message.
    pub fn to_json(&self) -> Value {
        match self {
            RequestId::Number(n) => Value::from(*n),
            RequestId::String(s) => Value::from(s.as_str()),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The `error` member of a response.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// One of the codes above, or one of the application's.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Anything more the receiver may use.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), data: None }
    }

    /// The error as it appears in a message.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A call that expects a response.
    Request {
        /// Its id, echoed by the response.
        id: RequestId,
        /// What to call.
        method: String,
        /// Its parameters, if any.
        params: Option<Value>,
    },
    /// A call without a response.
    Notification {
        /// What it announces.
        method: String,
        /// Its parameters, if any.
        params: Option<Value>,
    },
    /// The answer to a request the other side received.
    Response {
        /// The request's id.
        id: RequestId,
        /// `result` or `error`.
        outcome: Result<Value, RpcError>,
    },
}

/// Why a body is not one JSON-RPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON (or not UTF-8).
    Json(String),
    /// A JSON array: a batch, which the supported revisions do not allow.
    Batch,
    /// JSON, but not a valid message; says what is wrong.
    Invalid(&'static str),
}

impl ParseError {
    /// The JSON-RPC error code for this error.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => PARSE_ERROR,
            ParseError::Batch | ParseError::Invalid(_) => INVALID_REQUEST,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Json(e) => write!(f, "parse error: {e}"),
            ParseError::Batch => f.write_str("invalid request: JSON-RPC batches are not supported by this revision"),
            ParseError::Invalid(why) => write!(f, "invalid request: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one message from an HTTP body.
///
/// ```
/// use conduit_mcp::jsonrpc::{parse, Message, RequestId};
///
/// let message = parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)?;
/// assert_eq!(message, Message::Request { id: RequestId::Number(1), method: "ping".into(), params: None });
/// # Ok::<(), conduit_mcp::jsonrpc::ParseError>(())
/// ```
///
/// # Errors
/// [`ParseError::Json`] for a body that is not JSON, [`ParseError::Batch`] for an array, and
/// [`ParseError::Invalid`] for JSON that is not a well-formed request, notification or response.
pub fn parse(body: &[u8]) -> Result<Message, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    match value {
        Value::Array(_) => Err(ParseError::Batch),
        Value::Object(object) => from_object(object),
        _ => Err(ParseError::Invalid("a message is a JSON object")),
    }
}

fn from_object(mut object: Map<String, Value>) -> Result<Message, ParseError> {
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\""));
    }
    let id = match object.get("id") {
        None => None,
        Some(value) => {
            Some(RequestId::from_json(value).ok_or(ParseError::Invalid("\"id\" must be a string or an integer"))?)
        }
    };
    if let Some(method) = object.remove("method") {
        let Value::String(method) = method else {
            return Err(ParseError::Invalid("\"method\" must be a string"));
        };
        let params = match object.remove("params") {
            None => None,
            Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
            Some(_) => return Err(ParseError::Invalid("\"params\" must be an object or an array")),
        };
        return Ok(match id {
            Some(id) => Message::Request { id, method, params },
            None => Message::Notification { method, params },
        });
    }
    let id = id.ok_or(ParseError::Invalid("a message needs a \"method\" or an \"id\""))?;
    let outcome = match (object.remove("result"), object.remove("error")) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(error_from_json(&error)?),
        _ => return Err(ParseError::Invalid("a response has exactly one of \"result\" and \"error\"")),
    };
    Ok(Message::Response { id, outcome })
}

fn error_from_json(error: &Value) -> Result<RpcError, ParseError> {
    let invalid = ParseError::Invalid("\"error\" needs an integer \"code\" and a string \"message\"");
    let code = error.get("code").and_then(Value::as_i64).ok_or(invalid.clone())?;
    let message = error.get("message").and_then(Value::as_str).ok_or(invalid)?;
    Ok(RpcError { code, message: message.to_owned(), data: error.get("data").cloned() })
}

/// A success response.
pub fn result(id: &RequestId, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.to_json(), "result": result })
}

/// An error response; `None` for an error about a message whose id could not be read (`"id": null`).
pub fn error(id: Option<&RequestId>, error: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.map_or(Value::Null, RequestId::to_json), "error": error.to_json() })
}

/// A notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// A request.
pub fn request(id: &RequestId, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.to_json(), "method": method, "params": params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: RequestId, method: &str, params: Option<Value>) -> Message {
        Message::Request { id, method: method.into(), params }
    }

    #[test]
    fn parses_every_kind_of_message() {
        let cases: Vec<(&str, Result<Message, ParseError>)> = vec![
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, Ok(req(RequestId::Number(1), "ping", None))),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":"x","params":{"k":1}}"#,
                Ok(req(RequestId::String("a".into()), "x", Some(json!({"k":1})))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":-7,"method":"x","params":[1]}"#,
                Ok(req(RequestId::Number(-7), "x", Some(json!([1])))),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Ok(Message::Notification { method: "notifications/initialized".into(), params: None }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
                Ok(Message::Response { id: RequestId::Number(3), outcome: Ok(json!({})) }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"s-1","error":{"code":-1,"message":"no","data":[2]}}"#,
                Ok(Message::Response {
                    id: RequestId::String("s-1".into()),
                    outcome: Err(RpcError { code: -1, message: "no".into(), data: Some(json!([2])) }),
                }),
            ),
            // Refusals.
            ("", Err(ParseError::Json(String::new()))),
            ("{", Err(ParseError::Json(String::new()))),
            ("\u{FF}", Err(ParseError::Json(String::new()))),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, Err(ParseError::Batch)),
            ("[]", Err(ParseError::Batch)),
            ("42", Err(ParseError::Invalid(""))),
            (r#"{"id":1,"method":"ping"}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","method":"x","params":null}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0"}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","result":{}}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":1}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#, Err(ParseError::Invalid(""))),
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#, Err(ParseError::Invalid(""))),
        ];
        for (body, want) in cases {
            let got = parse(body.as_bytes());
            match (&got, &want) {
                // The wording of errors is not part of the contract, their kind is.
                (Err(g), Err(w)) => assert_eq!(std::mem::discriminant(g), std::mem::discriminant(w), "{body}: {got:?}"),
                _ => assert_eq!(got, want, "{body}"),
            }
        }
    }

    #[test]
    fn error_codes_follow_json_rpc() {
        assert_eq!(ParseError::Json("x".into()).code(), PARSE_ERROR);
        assert_eq!(ParseError::Batch.code(), INVALID_REQUEST);
        assert_eq!(ParseError::Invalid("x").code(), INVALID_REQUEST);
    }

    #[test]
    fn builds_messages() {
        let id = RequestId::String("q".into());
        assert_eq!(result(&id, json!({})), json!({"jsonrpc":"2.0","id":"q","result":{}}));
        let e = RpcError::new(METHOD_NOT_FOUND, "nope");
        assert_eq!(error(None, &e), json!({"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"nope"}}));
        assert_eq!(
            notification("notifications/progress", json!({"progress": 1})),
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}})
        );
        assert_eq!(
            request(&RequestId::Number(2), "m", json!({})),
            json!({"jsonrpc":"2.0","id":2,"method":"m","params":{}})
        );
        // What is built parses back.
        let body = error(Some(&id), &RpcError { data: Some(json!(1)), ..e }).to_string();
        assert!(matches!(
            parse(body.as_bytes()),
            Ok(Message::Response { outcome: Err(RpcError { data: Some(_), .. }), .. })
        ));
    }
}
