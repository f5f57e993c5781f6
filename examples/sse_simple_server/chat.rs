//! The chat API: replies that outlive the connection that asked for them.
//!
//! `POST /api/chat/stream` starts a reply. A worker thread (playing the part of a model) publishes its events
//! to a hub topic of the reply's own, `chat/<message id>`, and the response is a subscription to that topic,
//! so every event carries the hub's id. If the client leaves, the worker goes on to the end; the events stay
//! in the hub, and `GET /api/chat/stream/{message_id}` with `Last-Event-ID` (or `?last_event_id=`) replays
//! what the client missed and follows the rest live. `DELETE` on the same path cancels the reply.
//!
//! | event             | data                                                          |
//! |-------------------|---------------------------------------------------------------|
//! | `stream_start`    | `{"message_id", "status": "streaming"}`                       |
//! | `conversation_id` | `{"conversation_id"}`, for a new conversation                 |
//! | `message`         | `{"token"}`, one per token                                    |
//! | `stream_end`      | `{"message_id", "status": "complete" \| "cancelled" \| "truncated"}` |
//! | `error`           | `{"message_id", "error"}`: the reply failed or ran out of time |
//!
//! `stream_end` or `error` is a reply's last event; the streams of both routes end after it.
//!
//! Who may do what: every route needs the bearer token, as starting a reply always did; message ids are 128
//! random bits from the operating system (`getrandom`), so a reply cannot be found by guessing. Hub topics
//! under `chat/` are reserved: `/stream` and `/publish` refuse them, since they take no token or would let a
//! client write into someone's reply.
//!
//! Completion is decided from what the hub holds ([`Hub::history`]), not from this process's memory, so a
//! resume works on any node that shares the hub's history (every node on one Redis). Cancelling reaches a
//! reply generated on this node at once (nothing is published after its `stream_end`); a reply whose worker
//! runs on another node is ended in the hub, and its worker, which reads the topic before each token, stops
//! at its next one. That is best-effort: the worker may publish the token it was about to publish after the
//! `stream_end` `cancelled`, which no reader ever gets (streams end at a reply's first last event).
//!
//! Which thread: every route checks the token and the request on the event loop, then reads and publishes
//! from one of the server's hub threads (an [`Offload`], answering a deferred reply). On an external backbone
//! each read or publish waits for the store, which the loop must never do.

use super::{busy, event, json_error, off_the_loop};
use conduit::server::auth::require_bearer;
use conduit::server::{HistoryError, Hub, Offload, PublishError, Reply, Request, Response, Sse, StatusCode};
use conduit::sse::{Event, MessageEvent};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The response header naming the message a chat stream carries.
pub const MESSAGE_ID_HEADER: &str = "Conduit-Message-Id";
/// Hub topics of chat replies start with this; `/stream` and `/publish` refuse them.
pub const TOPIC_PREFIX: &str = "chat/";
/// The events after which a reply is over.
const LAST_EVENTS: [&str; 2] = ["stream_end", "error"];
const MAX_CHAT_MESSAGE: usize = 4000;
/// The largest request body `POST /api/chat/stream` reads: a message of `MAX_CHAT_MESSAGE` characters of up to
/// four bytes each, JSON escapes and the other fields.
pub const MAX_REQUEST_BYTES: usize = 8 * MAX_CHAT_MESSAGE + 1024;
/// Bytes of randomness in a message id (hex-encoded: twice as many characters).
const MESSAGE_ID_BYTES: usize = 16;
/// How long a worker waits, in all, for a busy server to take one event before giving the reply up.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(2);
/// Events read from the hub at once when looking through a reply.
const HISTORY_PAGE: usize = 256;
/// Events a worker reads at once when looking for an end published elsewhere (normally one: its last token).
const CHECK_PAGE: usize = 16;

/// What bounds the replies.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Replies generated at once on this node; past it, `POST` gets `503`.
    pub max_replies: usize,
    /// How long one reply may take; past it, it ends with an `error` event.
    pub max_reply_time: Duration,
    /// Events in one reply at most; past it, it ends with `stream_end` `truncated`. Kept below the hub's
    /// backlog per topic (1,000 events by default), so no event of a reply is ever evicted while it is kept.
    pub max_reply_events: usize,
    /// Encoded bytes of one reply's tokens at most; past it, as for `max_reply_events`.
    pub max_reply_bytes: usize,
    /// The pause between tokens, like a model's generation speed.
    pub token_pause: Duration,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_replies: 64,
            max_reply_time: Duration::from_secs(120),
            max_reply_events: 600,
            max_reply_bytes: 256 * 1024,
            token_pause: Duration::from_millis(40),
        }
    }
}

/// The chat routes' shared state.
#[derive(Debug)]
pub struct Chat {
    hub: Hub,
    token: Arc<str>,
    config: ChatConfig,
    /// Where the work that waits for the hub runs.
    offload: Offload,
    /// Replies whose worker runs on this node, by message id, so a `DELETE` can reach them.
    running: Mutex<HashMap<String, Arc<RunningReply>>>,
}

/// One reply whose worker runs here.
#[derive(Debug)]
struct RunningReply {
    topic: String,
    /// Publishing to the topic happens under this lock, and it records whether the reply's last event was
    /// published: a cancellation and the worker never both end the reply, and nothing follows its end.
    state: Mutex<ReplyState>,
}

#[derive(Debug, Default)]
struct ReplyState {
    ended: bool,
    /// The id of the newest event of the topic the worker has looked at, from its `stream_start` on: every event
    /// after it is read before the next token, so an end that another node published is never skipped.
    checked: Option<String>,
}

impl RunningReply {
    fn lock(&self) -> MutexGuard<'_, ReplyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `event` unless the reply has ended; `last` ends it. Returns whether it was published. A
    /// busy server is given [`PUBLISH_PATIENCE`], with the lock released between attempts (a `DELETE` on
    /// the loop must never wait for a worker that waits for the loop).
    fn publish(&self, hub: &Hub, event: &Event, last: bool) -> Result<bool, PublishError> {
        let give_up = Instant::now() + PUBLISH_PATIENCE;
        loop {
            let mut state = self.lock();
            if state.ended {
                return Ok(false);
            }
            match hub.publish(&self.topic, event.clone()) {
                Ok(id) => {
                    state.checked.get_or_insert(id);
                    state.ended = last;
                    return Ok(true);
                }
                Err(PublishError::Busy) if Instant::now() < give_up => {
                    drop(state);
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// True if the reply has ended: here, or by a last event that another node published to its topic (a
    /// cancellation), found by reading the topic's events after the newest one looked at. The read waits for
    /// the hub's store, without the lock: a cancellation on this node never waits for it. A reply whose topic
    /// cannot be read now is looked at again before the next token.
    fn ended_elsewhere(&self, hub: &Hub) -> bool {
        let checked = {
            let state = self.lock();
            match (state.ended, &state.checked) {
                (true, _) => return true,
                (false, None) => return false,
                (false, Some(id)) => id.clone(),
            }
        };
        let newer = match hub.history(&self.topic, Some(&checked), CHECK_PAGE) {
            Ok(newer) => newer,
            Err(e) => {
                log::debug!("cannot look at {}: {e}", self.topic);
                return false;
            }
        };
        let mut state = self.lock();
        if let Some(newest) = newer.last() {
            state.checked = Some(newest.last_event_id.clone());
        }
        state.ended |= newer.iter().any(is_last);
        state.ended
    }
}

/// True for an event after which a reply is over.
fn is_last(event: &MessageEvent) -> bool {
    LAST_EVENTS.contains(&event.event_type.as_str())
}

/// Ends a worker's reply however the worker stops, a panic included: an `error` event if it had not ended
/// (readers are never left waiting for an end that will not come), and its place among the running replies.
struct WorkerDone<'a> {
    chat: &'a Chat,
    message_id: &'a str,
    reply: &'a RunningReply,
}

impl Drop for WorkerDone<'_> {
    fn drop(&mut self) {
        let failed = event("error", &json!({ "message_id": self.message_id, "error": "the reply failed" }));
        if let Ok(true) = self.reply.publish(&self.chat.hub, &failed, true) {
            log::warn!("reply {} stopped without its last event", self.message_id);
        }
        self.chat.running().remove(self.message_id);
    }
}

/// A well-formed message id: what [`new_message_id`] makes.
fn valid_message_id(id: &str) -> bool {
    id.len() == MESSAGE_ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_message_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; MESSAGE_ID_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn topic_of(message_id: &str) -> String {
    format!("{TOPIC_PREFIX}{message_id}")
}

fn valid_conversation_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn unknown_message() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such message (unknown, or no longer kept)")
}

/// The stream of a reply's topic: from its first event (or after `last_event_id`) to its last.
fn reply_stream(message_id: &str, last_event_id: Option<&str>) -> Sse {
    Sse::subscribe([topic_of(message_id)])
        .from_oldest()
        .resume_from(last_event_id)
        .end_after(LAST_EVENTS)
        .header(MESSAGE_ID_HEADER, message_id)
}

impl Chat {
    pub fn new(hub: &Hub, token: Arc<str>, config: ChatConfig, offload: Offload) -> Chat {
        Chat { hub: hub.clone(), token, config, offload, running: Mutex::new(HashMap::new()) }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, Arc<RunningReply>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `POST /api/chat/stream`: `{"user_message": "...", "conversation_id": optional}` in, the reply's stream
    /// out, with its id in the `Conduit-Message-Id` header. The request is checked here, on the loop; the
    /// reply starts on a hub thread.
    pub fn start(self: &Arc<Self>, req: &Request) -> Reply {
        match self.check_start(req) {
            Ok((message, conversation)) => {
                let chat = Arc::clone(self);
                off_the_loop(&self.offload, move || chat.begin(message, conversation))
            }
            Err(refused) => refused.into(),
        }
    }

    /// The message and conversation of a `POST`, or the response refusing it.
    fn check_start(&self, req: &Request) -> Result<(String, Option<String>), Response> {
        require_bearer(req, &self.token)?;
        let body: Value = serde_json::from_slice(req.body())
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, format_args!("invalid JSON: {e}")))?;
        let message = match body.get("user_message") {
            Some(Value::String(m)) if !m.trim().is_empty() && m.chars().count() <= MAX_CHAT_MESSAGE => m.clone(),
            Some(Value::String(_)) => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    format_args!("user_message must have 1 to {MAX_CHAT_MESSAGE} characters"),
                ));
            }
            _ => return Err(json_error(StatusCode::BAD_REQUEST, "user_message (a string) is required")),
        };
        let conversation = match body.get("conversation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if valid_conversation_id(id) => Some(id.clone()),
            Some(_) => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "conversation_id must be 1 to 64 letters, digits, '-' or '_'",
                ));
            }
        };
        Ok((message, conversation))
    }

    /// Starts a reply (on a hub thread): its `stream_start`, its worker, and the stream that follows it.
    fn begin(self: &Arc<Self>, message: String, conversation: Option<String>) -> Result<Sse, Response> {
        let message_id = new_message_id().map_err(|e| {
            log::error!("no randomness for a message id: {e}");
            busy("cannot start a reply now")
        })?;
        let reply = Arc::new(RunningReply { topic: topic_of(&message_id), state: Mutex::default() });
        {
            let mut running = self.running();
            if running.len() >= self.config.max_replies {
                return Err(busy("too many replies in progress"));
            }
            running.insert(message_id.clone(), Arc::clone(&reply));
        }
        // Published before the id is known to anyone, so a GET for it never finds an unknown topic; the
        // subscription below starts from the topic's oldest event, so it is the first event the client gets.
        let start = event("stream_start", &json!({ "message_id": message_id, "status": "streaming" }));
        if let Err(e) = reply.publish(&self.hub, &start, false) {
            self.running().remove(&message_id);
            log::warn!("cannot start a reply: {e}");
            return Err(busy("cannot start a reply now"));
        }
        let chat = Arc::clone(self);
        let id = message_id.clone();
        let worker = Arc::clone(&reply);
        let spawned = std::thread::Builder::new().name("chat-reply".into()).spawn(move || {
            let _done = WorkerDone { chat: &chat, message_id: &id, reply: &worker };
            chat.generate(&id, &worker, &message, conversation);
        });
        if let Err(e) = spawned {
            log::error!("cannot start a chat worker: {e}");
            let failed = event("error", &json!({ "message_id": message_id, "error": "the reply could not start" }));
            let _ = reply.publish(&self.hub, &failed, true);
            self.running().remove(&message_id);
            return Err(busy("cannot start a reply now"));
        }
        log::debug!("reply {message_id} started");
        Ok(reply_stream(&message_id, None))
    }

    /// `GET /api/chat/stream/{message_id}`: what the client missed after `Last-Event-ID` (all of the reply
    /// without one), then the rest live; `204` once the client has the reply's last event; `404` for a
    /// message the hub does not hold; `503` when the hub's store cannot be read now.
    pub fn resume(self: &Arc<Self>, req: &Request) -> Reply {
        if let Err(refused) = require_bearer(req, &self.token) {
            return refused.into();
        }
        let message_id = req.param("message_id").unwrap_or_default();
        if !valid_message_id(message_id) {
            return unknown_message().into();
        }
        let last = req.header("last-event-id").or_else(|| req.query("last_event_id")).filter(|id| !id.is_empty());
        let (chat, message_id, last) = (Arc::clone(self), message_id.to_owned(), last.map(str::to_owned));
        off_the_loop(&self.offload, move || chat.follow(&message_id, last.as_deref()))
    }

    /// Decides a `GET` from what the hub holds (on a hub thread).
    fn follow(&self, message_id: &str, last: Option<&str>) -> Result<Sse, Response> {
        // The client has everything up to its id; if that includes a last event, there is nothing more.
        let (mut over, mut client_has_end) = (false, false);
        let held = self.read_reply(&topic_of(message_id), |e| {
            let Some(last) = last else { return true }; // whether it exists is all that matters
            over |= is_last(e);
            client_has_end = over && e.last_event_id == last;
            e.last_event_id == last
        });
        match held {
            Err(e) => {
                log::warn!("cannot read reply {message_id}: {e}");
                Err(busy("cannot read the reply now"))
            }
            Ok(false) => Err(unknown_message()),
            Ok(true) if client_has_end => {
                Err(Response::new(StatusCode::NO_CONTENT).header(MESSAGE_ID_HEADER, message_id))
            }
            Ok(true) => Ok(reply_stream(message_id, last)),
        }
    }

    /// `DELETE /api/chat/stream/{message_id}`: stops the reply. `204` once the reply is over (cancelled now,
    /// ending with `stream_end` `cancelled`, or already over before); `404` for a message the hub does not
    /// hold; `503` if the cancellation could not be published (the reply then goes on).
    pub fn cancel(self: &Arc<Self>, req: &Request) -> Reply {
        if let Err(refused) = require_bearer(req, &self.token) {
            return refused.into();
        }
        let message_id = req.param("message_id").unwrap_or_default();
        if !valid_message_id(message_id) {
            return unknown_message().into();
        }
        let (chat, message_id) = (Arc::clone(self), message_id.to_owned());
        off_the_loop(&self.offload, move || chat.stop(&message_id))
    }

    /// Ends a reply (on a hub thread).
    fn stop(&self, message_id: &str) -> Response {
        let cancelled = event("stream_end", &json!({ "message_id": message_id, "status": "cancelled" }));
        let done = || Response::new(StatusCode::NO_CONTENT);
        let local = self.running().get(message_id).cloned();
        if let Some(reply) = local {
            return match reply.publish(&self.hub, &cancelled, true) {
                Ok(_) => done(),
                Err(e) => {
                    log::warn!("cannot cancel reply {message_id}: {e}");
                    busy("cannot cancel the reply now")
                }
            };
        }
        // Not generated here: the hub says whether it exists and whether it is over.
        let topic = topic_of(message_id);
        let mut over = false;
        match self.read_reply(&topic, |e| {
            over = is_last(e);
            over
        }) {
            Err(e) => {
                log::warn!("cannot read reply {message_id}: {e}");
                return busy("cannot cancel the reply now");
            }
            Ok(false) => return unknown_message(),
            Ok(true) if over => return done(),
            Ok(true) => {}
        }
        match self.hub.publish(&topic, cancelled) {
            Ok(_) => done(),
            Err(e) => {
                log::warn!("cannot cancel reply {message_id}: {e}");
                busy("cannot cancel the reply now")
            }
        }
    }

    /// Reads a reply's events from its first, a page at a time, until `enough` says so or they run out, and
    /// returns whether the hub holds any. Waits for the hub's store: for hub threads only. Bounded by the
    /// events a reply may have (and one more, a cancellation from another node).
    fn read_reply(&self, topic: &str, mut enough: impl FnMut(&MessageEvent) -> bool) -> Result<bool, HistoryError> {
        let (mut after, mut read) = (None::<String>, 0);
        while read <= self.config.max_reply_events + 1 {
            let page = match self.hub.history(topic, after.as_deref(), HISTORY_PAGE) {
                Ok(page) => page,
                // Forgotten since the last page (the hub needed the topic's place): it holds nothing more.
                Err(HistoryError::UnknownId) if after.is_some() => break,
                Err(e) => return Err(e),
            };
            let Some(newest) = page.last() else { break };
            read += page.len();
            if page.iter().any(&mut enough) {
                break;
            }
            after = Some(newest.last_event_id.clone());
        }
        Ok(read > 0)
    }

    /// Plays the part of a model, publishing the reply's events after `stream_start` until its last one.
    /// The message "/fail" makes the reply fail part-way, to show how errors reach the client.
    fn generate(&self, message_id: &str, reply: &RunningReply, message: &str, conversation: Option<String>) {
        let config = &self.config;
        let deadline = Instant::now() + config.max_reply_time;
        let publish = |event: Event, last: bool| match reply.publish(&self.hub, &event, last) {
            Ok(published) => published,
            Err(e) => {
                log::warn!("reply {message_id} stopped: {e}");
                false
            }
        };
        let end = |status: &str| {
            publish(event("stream_end", &json!({ "message_id": message_id, "status": status })), true);
        };
        let fail = |error: &str| {
            publish(event("error", &json!({ "message_id": message_id, "error": error })), true);
        };
        if conversation.is_none() {
            let id = new_message_id().map(|id| id[..16].to_owned()).unwrap_or_else(|_| "conversation".to_owned());
            if !publish(event("conversation_id", &json!({ "conversation_id": id })), false) {
                return;
            }
        }
        let text = format!(
            "You said: \"{}\". This reply is streamed by Conduit one token at a time over Server-Sent Events. \
             A worker thread publishes each token to a hub topic of this message's own, so the reply goes on \
             if you reload the page or lose the connection, and picks up where you left it.",
            message.trim()
        );
        let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        let (mut events, mut bytes) = (2, 0);
        for (i, word) in words.iter().enumerate() {
            if message.trim() == "/fail" && i == 3 {
                return fail("the model stopped unexpectedly (simulated failure)");
            }
            if Instant::now() >= deadline {
                return fail("the reply ran out of time");
            }
            if reply.ended_elsewhere(&self.hub) {
                log::debug!("reply {message_id} was ended on another node");
                return;
            }
            let token = if i + 1 < words.len() { format!("{word} ") } else { (*word).to_owned() };
            let next = event("message", &json!({ "token": token }));
            events += 1;
            bytes += next.encoded_len();
            // Room is kept for the last event.
            if events + 1 > config.max_reply_events || bytes > config.max_reply_bytes {
                return end("truncated");
            }
            if !publish(next, false) {
                return; // cancelled, or the hub refused
            }
            std::thread::sleep(config.token_pause);
        }
        end("complete");
    }
}
