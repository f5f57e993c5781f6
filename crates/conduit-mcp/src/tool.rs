//! Tools: a name, a description, a JSON Schema for the arguments, and a handler that runs on a worker thread
//! and may send progress, log messages and requests on its call's stream before its result.

use crate::jsonrpc::{self, RequestId, RpcError};
use crate::logging::LogLevel;
use crate::session::{Session, lock};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a handler returns: a result, or an error message that the client receives as a result with
/// `isError: true` (so the model calling the tool can read it and try again).
pub type ToolOutcome = Result<ToolResult, String>;

type Handler = dyn Fn(&ToolContext) -> ToolOutcome + Send + Sync;

/// A tool the server offers.
///
/// ```
/// use conduit_mcp::{Tool, ToolContext, ToolResult};
/// use serde_json::json;
///
/// let echo = Tool::new(
///     "echo",
///     "Returns its message",
///     json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
///     |cx: &ToolContext| {
///         let message = cx.arguments()["message"].as_str().ok_or("`message` must be a string")?;
///         Ok(ToolResult::text(message))
///     },
/// );
/// assert_eq!(echo.name(), "echo");
/// ```
#[derive(Clone)]
pub struct Tool {
    name: String,
    description: String,
    input_schema: Value,
    handler: Arc<Handler>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Tool {
    /// A tool. `input_schema` is the JSON Schema of its `arguments` object, sent to clients as it is; handlers
    /// check their own arguments (an error result tells the caller what was wrong).
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        handler: impl Fn(&ToolContext) -> ToolOutcome + Send + Sync + 'static,
    ) -> Self {
        Tool { name: name.into(), description: description.into(), input_schema, handler: Arc::new(handler) }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its entry in `tools/list`.
    pub fn definition(&self) -> Value {
        json!({ "name": self.name, "description": self.description, "inputSchema": self.input_schema })
    }

    pub(crate) fn run(&self, cx: &ToolContext) -> ToolOutcome {
        (self.handler)(cx)
    }
}

/// A tool's result: content blocks, optionally structured content, and whether it reports an error.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    content: Vec<Value>,
    structured: Option<Value>,
    is_error: bool,
}

impl ToolResult {
    /// One text block.
    pub fn text(text: impl Into<String>) -> Self {
        ToolResult::content(vec![json!({ "type": "text", "text": text.into() })])
    }

    /// Any content blocks (`text`, `image`, `audio`, `resource`, `resource_link`), as the protocol spells them.
    pub fn content(content: Vec<Value>) -> Self {
        ToolResult { content, structured: None, is_error: false }
    }

    /// A text block reporting a failure (`isError: true`).
    pub fn error(message: impl Into<String>) -> Self {
        ToolResult { is_error: true, ..ToolResult::text(message) }
    }

    /// Adds `structuredContent`.
    #[must_use]
    pub fn structured(mut self, value: Value) -> Self {
        self.structured = Some(value);
        self
    }

    /// The `result` of a `tools/call` response.
    pub fn to_json(&self) -> Value {
        let mut result = json!({ "content": self.content });
        if let Some(s) = &self.structured {
            result["structuredContent"] = s.clone();
        }
        if self.is_error {
            result["isError"] = Value::Bool(true);
        }
        result
    }
}

/// Why [`ToolContext::request`] got no answer.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientRequestError {
    /// The client answered with an error.
    Rejected(RpcError),
    /// No answer within the configured time; the request was cancelled.
    Timeout,
    /// The session ended or the call was cancelled.
    Ended,
}

impl std::fmt::Display for ClientRequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientRequestError::Rejected(e) => write!(f, "the client refused: {e}"),
            ClientRequestError::Timeout => f.write_str("the client did not answer in time"),
            ClientRequestError::Ended => f.write_str("the session ended or the call was cancelled"),
        }
    }
}

impl std::error::Error for ClientRequestError {}

/// The session ended (or the call was cancelled): nothing more can be sent for this call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallEnded;

impl std::fmt::Display for CallEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call was cancelled or its session ended")
    }
}

impl std::error::Error for CallEnded {}

/// What a tool's handler gets: its arguments, and the call's stream.
///
/// Messages sent here go on the stream of the `POST` that made the call, before its result, and are stored so a
/// client that loses its connection can resume by `GET` with `Last-Event-ID` and miss none. A client's
/// disconnection does not cancel a call; `notifications/cancelled` or the session's end does, which
/// [`is_cancelled`](Self::is_cancelled) reports and which makes sends fail.
#[derive(Debug)]
pub struct ToolContext {
    pub(crate) arguments: Value,
    pub(crate) progress_token: Option<Value>,
    pub(crate) session: Arc<Mutex<Session>>,
    pub(crate) stream: u64,
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) request_timeout: Duration,
}

impl ToolContext {
    /// The call's `arguments` (an empty object if it had none).
    pub fn arguments(&self) -> &Value {
        &self.arguments
    }

    /// True once the client cancelled the call or its session ended: the handler should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The protocol revision agreed in `initialize`.
    pub fn protocol_version(&self) -> &'static str {
        lock(&self.session).protocol_version
    }

    /// The capabilities the client declared in `initialize`.
    pub fn client_capabilities(&self) -> Value {
        lock(&self.session).client_capabilities.clone()
    }

    /// Sends `notifications/progress` if the caller asked for progress (a `progressToken`); otherwise does
    /// nothing. `progress` must increase from one notification to the next.
    ///
    /// # Errors
    /// [`CallEnded`] once the call was cancelled or the session ended.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) -> Result<(), CallEnded> {
        let Some(token) = &self.progress_token else {
            return if self.is_cancelled() { Err(CallEnded) } else { Ok(()) };
        };
        let mut params = json!({ "progressToken": token, "progress": progress });
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        if let Some(message) = message {
            params["message"] = json!(message);
        }
        self.notify("notifications/progress", params)
    }

    /// Sends `notifications/message` unless the client set a higher level with `logging/setLevel`.
    ///
    /// # Errors
    /// [`CallEnded`] once the call was cancelled or the session ended.
    pub fn log(&self, level: LogLevel, data: Value) -> Result<(), CallEnded> {
        let wanted = lock(&self.session).log_level.is_none_or(|min| level >= min);
        if !wanted {
            return if self.is_cancelled() { Err(CallEnded) } else { Ok(()) };
        }
        self.notify("notifications/message", json!({ "level": level.as_str(), "data": data }))
    }

    /// Sends any notification on the call's stream.
    ///
    /// # Errors
    /// [`CallEnded`] once the call was cancelled or the session ended.
    pub fn notify(&self, method: &str, params: Value) -> Result<(), CallEnded> {
        self.send(&jsonrpc::notification(method, params))
    }

    fn send(&self, message: &Value) -> Result<(), CallEnded> {
        if self.is_cancelled() {
            return Err(CallEnded);
        }
        if lock(&self.session).send(self.stream, message) { Ok(()) } else { Err(CallEnded) }
    }

    /// Sends a request to the client on the call's stream (`sampling/createMessage`, `elicitation/create`...)
    /// and waits for its answer, which the client sends in a `POST`.
    ///
    /// # Errors
    /// [`ClientRequestError`]: the client's error, no answer in time, or the call's end.
    pub fn request(&self, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        let (id, answer) = lock(&self.session).expect_answer();
        if self.send(&jsonrpc::request(&id, method, params)).is_err() {
            lock(&self.session).forget_answer(&id);
            return Err(ClientRequestError::Ended);
        }
        match answer.recv_timeout(self.request_timeout) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(ClientRequestError::Rejected(error)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(ClientRequestError::Ended),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.session).forget_answer(&id);
                let cancel = json!({ "requestId": id.to_json(), "reason": "timed out" });
                let _ = self.notify("notifications/cancelled", cancel);
                Err(ClientRequestError::Timeout)
            }
        }
    }

    /// Closes the client's connection to the call's stream without ending the stream, as a server that does
    /// not hold connections open for long does: the client reconnects after the stream's `retry` time with a
    /// `GET` and `Last-Event-ID`, and receives what was sent meanwhile.
    pub fn close_connection(&self) {
        lock(&self.session).disconnect(self.stream);
    }
}

/// The id of a call, for the worker that finishes it.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) id: RequestId,
    pub(crate) tool: Tool,
    pub(crate) cx: ToolContext,
}

impl Call {
    /// Runs the handler (a panic becomes an error result) and sends the response on the call's stream.
    pub(crate) fn run(self) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.tool.run(&self.cx)));
        let result = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(message)) => ToolResult::error(message),
            Err(_) => {
                log::error!("tool {} panicked", self.tool.name());
                ToolResult::error(format!("tool {} failed", self.tool.name()))
            }
        };
        let response = jsonrpc::result(&self.id, result.to_json());
        lock(&self.cx.session).finish_call(&self.id, self.cx.stream, &response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialize_as_the_protocol_spells_them() {
        let cases = [
            (ToolResult::text("hi"), json!({"content": [{"type": "text", "text": "hi"}]})),
            (ToolResult::error("bad"), json!({"content": [{"type": "text", "text": "bad"}], "isError": true})),
            (
                ToolResult::text("3").structured(json!({"n": 3})),
                json!({"content": [{"type": "text", "text": "3"}], "structuredContent": {"n": 3}}),
            ),
            (ToolResult::content(vec![]), json!({"content": []})),
        ];
        for (result, want) in cases {
            assert_eq!(result.to_json(), want);
        }
    }

    #[test]
    fn definitions() {
        let tool = Tool::new("t", "does t", json!({"type": "object"}), |_: &ToolContext| Ok(ToolResult::text("")));
        assert_eq!(tool.definition(), json!({"name": "t", "description": "does t", "inputSchema": {"type": "object"}}));
    }
}
