//! The MCP endpoint: one path answering `POST` (client messages), `GET` (the server's stream, and resuming any
//! stream) and `DELETE` (ending a session), built from a [`McpServer`] description.

use crate::config::McpConfig;
use crate::headers::{
    Accepts, PROTOCOL_VERSION_HEADER, SESSION_ID_HEADER, check_protocol_version, is_json_content_type,
    negotiate_version,
};
use crate::jsonrpc::{self, Message, RequestId, RpcError};
use crate::logging::LogLevel;
use crate::pool::{Busy, Pool};
use crate::session::{Refused, Registry, Session, SessionLimits, lock};
use crate::session_id::{is_valid_session_id, new_session_id};
use crate::stream::{EventId, ResumeError};
use crate::tool::{Call, Tool, ToolContext};
use conduit_http::{Method, Request, StatusCode};
use conduit_server::{Reply, Response, Router, Sse};
use conduit_sse::{BacklogLimits, Event};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// A description of an MCP server: its name, its tools and its limits. [`start`](Self::start) turns it into
/// a running [`McpEndpoint`].
#[derive(Debug)]
pub struct McpServer {
    config: McpConfig,
    name: String,
    version: String,
    instructions: Option<String>,
    tools: Vec<Tool>,
}

impl McpServer {
    /// A server with no tools, named `conduit-mcp`.
    pub fn new(config: McpConfig) -> Self {
        McpServer {
            config,
            name: "conduit-mcp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            instructions: None,
            tools: Vec::new(),
        }
    }

    /// The name and version sent as `serverInfo`.
    #[must_use]
    pub fn info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.name = name.into();
        self.version = version.into();
        self
    }

    /// Instructions for the client's model, sent with the `initialize` result.
    #[must_use]
    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions = Some(text.into());
        self
    }

    /// Adds a tool; a later tool with the same name replaces the earlier one.
    #[must_use]
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.retain(|t| t.name() != tool.name());
        self.tools.push(tool);
        self
    }

    /// Starts the threads that run tool calls and returns the endpoint.
    ///
    /// # Errors
    /// The error from spawning a thread.
    pub fn start(self) -> std::io::Result<McpEndpoint> {
        let pool = Pool::new(self.config.max_running_calls, self.config.max_queued_calls)?;
        Ok(McpEndpoint { inner: Arc::new(Inner { server: self, pool, sessions: Mutex::new(Registry::default()) }) })
    }
}

#[derive(Debug)]
struct Inner {
    server: McpServer,
    pool: Pool,
    sessions: Mutex<Registry>,
}

/// A running MCP endpoint. Cheap to clone; [`mount`](Self::mount) it on a [`Router`].
///
/// ```no_run
/// use conduit_mcp::{McpConfig, McpServer, Tool, ToolContext, ToolResult};
/// use conduit_server::{Router, Server, ServerConfig};
/// use serde_json::json;
///
/// let endpoint = McpServer::new(McpConfig::default())
///     .info("demo", "1.0.0")
///     .tool(Tool::new("hello", "Says hello", json!({"type": "object"}), |_: &ToolContext| {
///         Ok(ToolResult::text("hello"))
///     }))
///     .start()?;
/// let router = endpoint.mount(Router::new(), "/mcp");
/// Server::bind(ServerConfig::default(), router)?.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct McpEndpoint {
    inner: Arc<Inner>,
}

/// An HTTP refusal with a JSON-RPC error body that has no id, as the transport allows.
fn refuse(status: StatusCode, code: i64, message: impl std::fmt::Display) -> Reply {
    let body = jsonrpc::error(None, &RpcError::new(code, message.to_string()));
    Response::json(&body).status(status).into()
}

fn bad_request(message: impl std::fmt::Display) -> Reply {
    refuse(StatusCode::BAD_REQUEST, jsonrpc::INVALID_REQUEST, message)
}

/// One message as the reply to a `POST`: JSON when the client takes it, otherwise a one-event stream.
fn answer(accepts: Accepts, message: &Value) -> Reply {
    if accepts.json {
        Response::json(message).into()
    } else {
        Sse::from_iter(std::iter::once(Event::new().data(message.to_string()))).into()
    }
}

impl McpEndpoint {
    /// Adds the endpoint's `POST`, `GET` and `DELETE` routes at `path`.
    pub fn mount(&self, router: Router, path: &str) -> Router {
        let (post, get, delete) = (self.clone(), self.clone(), self.clone());
        router.post(path, move |req: &Request| post.handle(req)).get(path, move |req: &Request| get.handle(req)).route(
            Method::Delete,
            path,
            move |req: &Request| delete.handle(req),
        )
    }

    /// Open sessions.
    pub fn sessions(&self) -> usize {
        self.registry().len()
    }

    /// Sends a notification to every session that has a `GET` stream open (for example
    /// `notifications/tools/list_changed`); each session gets it on its own stream only. Returns how many
    /// sessions it was sent to.
    pub fn notify_sessions(&self, method: &str, params: Value) -> usize {
        let message = jsonrpc::notification(method, params);
        let sessions = self.registry().all();
        sessions.iter().filter(|s| lock(s).send_standalone(&message)).count()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> &McpConfig {
        &self.inner.server.config
    }

    /// Answers one request to the endpoint, whatever its method.
    pub fn handle(&self, req: &Request) -> Reply {
        let now = Instant::now();
        self.registry().expire(now, self.config().session_idle_timeout, false);
        if let Some(refusal) = self.check_origin(req) {
            return refusal;
        }
        if let Err(version) = check_protocol_version(req.header(PROTOCOL_VERSION_HEADER)) {
            return bad_request(format_args!("unsupported {PROTOCOL_VERSION_HEADER}: {version}"));
        }
        match req.method() {
            Method::Post => self.post(req, now),
            Method::Get => self.get(req, now),
            Method::Delete => self.delete(req),
            _ => refuse(StatusCode::METHOD_NOT_ALLOWED, jsonrpc::SERVER_ERROR, "use POST, GET or DELETE")
                .header("Allow", "GET, POST, DELETE"),
        }
    }

    /// `403` for a page or host name the policy does not allow (DNS rebinding).
    fn check_origin(&self, req: &Request) -> Option<Reply> {
        let policy = &self.config().origins;
        for origin in req.headers().get_all("origin") {
            if !std::str::from_utf8(origin).is_ok_and(|o| policy.allows_origin(o.trim())) {
                log::debug!("refused Origin {:?}", String::from_utf8_lossy(origin));
                return Some(refuse(StatusCode::FORBIDDEN, jsonrpc::SERVER_ERROR, "origin not allowed"));
            }
        }
        if let Some(host) = req.headers().get_bytes("host")
            && !std::str::from_utf8(host).is_ok_and(|h| policy.allows_host(h.trim()))
        {
            log::debug!("refused Host {:?}", String::from_utf8_lossy(host));
            return Some(refuse(StatusCode::FORBIDDEN, jsonrpc::SERVER_ERROR, "host not allowed"));
        }
        None
    }

    /// The session the request names: `400` without a valid id, `404` for one that is unknown or has ended.
    fn session_of(&self, req: &Request, now: Instant) -> Result<Arc<Mutex<Session>>, Box<Reply>> {
        let Some(id) = req.header(SESSION_ID_HEADER) else {
            return Err(Box::new(bad_request(format_args!("missing {SESSION_ID_HEADER}: send initialize first"))));
        };
        if !is_valid_session_id(id) {
            return Err(Box::new(bad_request(format_args!("malformed {SESSION_ID_HEADER}"))));
        }
        let Some(session) = self.registry().get(id) else {
            return Err(Box::new(refuse(StatusCode::NOT_FOUND, jsonrpc::SERVER_ERROR, "session not found")));
        };
        lock(&session).touch(now);
        Ok(session)
    }

    fn post(&self, req: &Request, now: Instant) -> Reply {
        if !is_json_content_type(req.header("content-type")) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                jsonrpc::SERVER_ERROR,
                "Content-Type must be application/json",
            );
        }
        if req.body().len() > self.config().max_body_bytes {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                jsonrpc::SERVER_ERROR,
                format_args!("a message is at most {} bytes", self.config().max_body_bytes),
            );
        }
        let accepts = Accepts::parse(req.header("accept"));
        if !accepts.json && !accepts.event_stream {
            return refuse(
                StatusCode::NOT_ACCEPTABLE,
                jsonrpc::SERVER_ERROR,
                "Accept must list application/json or text/event-stream",
            );
        }
        let message = match jsonrpc::parse(req.body()) {
            Ok(message) => message,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.code(), e),
        };
        if let Message::Request { id, method, params } = &message
            && method == "initialize"
        {
            if req.header(SESSION_ID_HEADER).is_some() {
                return bad_request("initialize opens a session: send it without Mcp-Session-Id");
            }
            return self.initialize(id, params.as_ref(), accepts, now);
        }
        let session = match self.session_of(req, now) {
            Ok(session) => session,
            Err(refusal) => return *refusal,
        };
        match message {
            Message::Notification { method, params } => {
                if method == "notifications/cancelled" {
                    let id = params.as_ref().and_then(|p| p.get("requestId")).and_then(RequestId::from_json);
                    if let Some(id) = id {
                        lock(&session).cancel(&id);
                    }
                }
                Response::new(StatusCode::ACCEPTED).into()
            }
            Message::Response { id, outcome } => {
                if !lock(&session).answer(&id, outcome) {
                    log::debug!("a response to {id}, which nothing waits for");
                }
                Response::new(StatusCode::ACCEPTED).into()
            }
            Message::Request { id, method, params } => self.request(&session, id, &method, params, accepts),
        }
    }

    fn initialize(&self, id: &RequestId, params: Option<&Value>, accepts: Accepts, now: Instant) -> Reply {
        let config = self.config();
        let requested = params.and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
        let version = negotiate_version(requested);
        let capabilities = params.and_then(|p| p.get("capabilities")).cloned().unwrap_or_else(|| json!({}));
        let session_id = match new_session_id() {
            Ok(id) => id,
            Err(e) => {
                log::error!("no random source for a session id: {e}");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, jsonrpc::INTERNAL_ERROR, "cannot open a session");
            }
        };
        let limits = SessionLimits {
            max_streams: config.max_streams_per_session,
            max_finished_streams: config.max_finished_streams,
            store: BacklogLimits { max_events: config.max_stored_events, max_bytes: config.max_stored_bytes },
            retry: config.retry,
        };
        {
            let mut registry = self.registry();
            if registry.len() >= config.max_sessions {
                registry.expire(now, config.session_idle_timeout, true);
            }
            if registry.len() >= config.max_sessions {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    jsonrpc::SERVER_ERROR,
                    format_args!("{} sessions are open, the most this server allows", config.max_sessions),
                )
                .header("Retry-After", "1");
            }
            registry.insert(session_id.clone(), Session::new(version, capabilities, limits));
        }
        let server = &self.inner.server;
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": false }, "logging": {} },
            "serverInfo": { "name": server.name, "version": server.version },
        });
        if let Some(text) = &server.instructions {
            result["instructions"] = json!(text);
        }
        answer(accepts, &jsonrpc::result(id, result)).header(SESSION_ID_HEADER, &session_id)
    }

    fn request(
        &self,
        session: &Arc<Mutex<Session>>,
        id: RequestId,
        method: &str,
        params: Option<Value>,
        accepts: Accepts,
    ) -> Reply {
        let outcome = match method {
            "ping" => Ok(json!({})),
            "tools/list" => {
                Ok(json!({ "tools": self.inner.server.tools.iter().map(Tool::definition).collect::<Vec<_>>() }))
            }
            "logging/setLevel" => {
                match params.as_ref().and_then(|p| p.get("level")).and_then(Value::as_str).and_then(LogLevel::parse) {
                    Some(level) => {
                        lock(session).log_level = Some(level);
                        Ok(json!({}))
                    }
                    None => Err(RpcError::new(jsonrpc::INVALID_PARAMS, "level must be a syslog severity name")),
                }
            }
            "tools/call" => return self.call(session, id, params, accepts),
            _ => Err(RpcError::new(jsonrpc::METHOD_NOT_FOUND, format!("method not found: {method}"))),
        };
        let message = match outcome {
            Ok(result) => jsonrpc::result(&id, result),
            Err(error) => jsonrpc::error(Some(&id), &error),
        };
        answer(accepts, &message)
    }

    /// `tools/call`: the tool runs on the pool and its messages and result go on a new resumable stream.
    fn call(&self, session: &Arc<Mutex<Session>>, id: RequestId, params: Option<Value>, accepts: Accepts) -> Reply {
        let params = params.unwrap_or_else(|| json!({}));
        let invalid = |message: String| {
            answer(accepts, &jsonrpc::error(Some(&id), &RpcError::new(jsonrpc::INVALID_PARAMS, message)))
        };
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return invalid("tools/call needs the tool's name".into());
        };
        let Some(tool) = self.inner.server.tools.iter().find(|t| t.name() == name) else {
            return invalid(format!("unknown tool: {name}"));
        };
        let arguments = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
        if !arguments.is_object() {
            return invalid("arguments must be an object".into());
        }
        if !accepts.event_stream {
            // A tool runs off the event loop and a JSON reply cannot wait for it; clients must accept both forms.
            return refuse(
                StatusCode::NOT_ACCEPTABLE,
                jsonrpc::SERVER_ERROR,
                "tools/call is answered on an event stream: Accept must list text/event-stream",
            );
        }
        let progress_token =
            params.pointer("/_meta/progressToken").filter(|t| t.is_string() || t.is_i64() || t.is_u64()).cloned();
        let opened = lock(session).open_call(&id);
        let (stream, sse, cancelled) = match opened {
            Ok(opened) => opened,
            Err(Refused::DuplicateId) => {
                let error = RpcError::new(jsonrpc::INVALID_REQUEST, format!("request {id} is already running"));
                return answer(accepts, &jsonrpc::error(Some(&id), &error));
            }
            Err(Refused::TooManyStreams | Refused::StandaloneConnected) => {
                let message = format_args!(
                    "this session has {} streams open, the most it may",
                    self.config().max_streams_per_session
                );
                return refuse(StatusCode::TOO_MANY_REQUESTS, jsonrpc::SERVER_ERROR, message)
                    .header("Retry-After", "1");
            }
            Err(Refused::Ended) => return refuse(StatusCode::NOT_FOUND, jsonrpc::SERVER_ERROR, "session not found"),
        };
        let cx = ToolContext {
            arguments,
            progress_token,
            session: Arc::clone(session),
            stream,
            cancelled,
            request_timeout: self.config().client_request_timeout,
        };
        if let Err(Busy(call)) = self.inner.pool.submit(Call { id, tool: tool.clone(), cx }) {
            lock(session).abandon_call(&call.id, stream);
            let message = format_args!(
                "{} tool calls are running and {} waiting, the most this server allows",
                self.config().max_running_calls,
                self.config().max_queued_calls
            );
            return refuse(StatusCode::SERVICE_UNAVAILABLE, jsonrpc::SERVER_ERROR, message).header("Retry-After", "1");
        }
        sse.into()
    }

    /// `GET`: resumes the stream named by `Last-Event-ID`, or opens the session's stream for messages that
    /// belong to no call.
    fn get(&self, req: &Request, now: Instant) -> Reply {
        if !Accepts::parse(req.header("accept")).event_stream {
            return refuse(StatusCode::NOT_ACCEPTABLE, jsonrpc::SERVER_ERROR, "Accept must list text/event-stream");
        }
        let session = match self.session_of(req, now) {
            Ok(session) => session,
            Err(refusal) => return *refusal,
        };
        let mut session = lock(&session);
        let Some(last) = req.header("last-event-id") else {
            return match session.open_standalone() {
                Ok(sse) => sse.into(),
                Err(Refused::StandaloneConnected) => {
                    refuse(StatusCode::CONFLICT, jsonrpc::SERVER_ERROR, "this session's GET stream is already open")
                }
                Err(Refused::TooManyStreams | Refused::DuplicateId) => {
                    refuse(StatusCode::TOO_MANY_REQUESTS, jsonrpc::SERVER_ERROR, "too many streams open")
                        .header("Retry-After", "1")
                }
                Err(Refused::Ended) => refuse(StatusCode::NOT_FOUND, jsonrpc::SERVER_ERROR, "session not found"),
            };
        };
        let Some(last) = EventId::parse(last) else {
            return bad_request("Last-Event-ID is not an event id of this server");
        };
        match session.resume(last) {
            Ok(sse) => sse.into(),
            Err(ResumeError::Unknown) => bad_request(format_args!("no event {last} was sent in this session")),
            Err(ResumeError::Evicted) => {
                refuse(StatusCode::GONE, jsonrpc::SERVER_ERROR, format_args!("events after {last} are no longer held"))
            }
        }
    }

    /// `DELETE`: ends the session; its id gets `404` from now on.
    fn delete(&self, req: &Request) -> Reply {
        let Some(id) = req.header(SESSION_ID_HEADER) else {
            return bad_request(format_args!("missing {SESSION_ID_HEADER}"));
        };
        let removed = self.registry().remove(id);
        match removed {
            Some(session) => {
                lock(&session).end();
                Response::new(StatusCode::OK).into()
            }
            None => refuse(StatusCode::NOT_FOUND, jsonrpc::SERVER_ERROR, "session not found"),
        }
    }
}
