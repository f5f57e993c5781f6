//! `POST /api/chat/stream`: a chat reply streamed token by token from a worker thread, as a model client would.

use super::{event, json_error, random_hex};
use conduit::server::auth::require_bearer;
use conduit::server::{Request, Response, Sse, StatusCode};
use conduit::sse::Event;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Chat replies generated at once; each has a worker thread, as a call to a real model would.
const MAX_CHATS: usize = 64;
const MAX_CHAT_MESSAGE: usize = 4000;
/// Pause between chat tokens, like a model's generation speed.
const CHAT_TOKEN_PAUSE: Duration = Duration::from_millis(40);

/// `POST /api/chat/stream`: `{"user_message": "...", "conversation_id": optional}` in, a streamed reply out.
pub fn chat_stream(req: &Request, token: &str, chats: &Arc<AtomicUsize>) -> Result<Sse, Response> {
    require_bearer(req, token)?;
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
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        Some(_) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "conversation_id must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
    };
    if chats.fetch_add(1, Ordering::AcqRel) >= MAX_CHATS {
        chats.fetch_sub(1, Ordering::AcqRel);
        return Err(
            json_error(StatusCode::SERVICE_UNAVAILABLE, "too many replies in progress").header("Retry-After", "1")
        );
    }
    let (sender, stream) = Sse::channel_with_capacity(64);
    let chats = Arc::clone(chats);
    let spawned = std::thread::Builder::new().name("chat-reply".into()).spawn(move || {
        generate_reply(&message, conversation, |event| sender.send(event).is_ok());
        chats.fetch_sub(1, Ordering::AcqRel);
    });
    if let Err(e) = spawned {
        log::error!("cannot start a chat worker: {e}");
        return Err(json_error(StatusCode::SERVICE_UNAVAILABLE, "cannot start a reply now").header("Retry-After", "1"));
    }
    Ok(stream)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Plays the part of a model: `send` delivers each event and says whether the client is still there.
/// The message "/fail" makes the reply fail part-way, to show how errors reach the client.
fn generate_reply(message: &str, conversation: Option<String>, mut send: impl FnMut(Event) -> bool) {
    if !send(event("stream_start", &json!({ "status": "streaming" }))) {
        return;
    }
    if conversation.is_none() && !send(event("conversation_id", &json!({ "conversation_id": random_hex(8) }))) {
        return;
    }
    let reply = format!(
        "You said: \"{}\". This reply is streamed by Conduit one token at a time over Server-Sent Events, \
         from a worker thread through a bounded channel, the way a real model client would feed it.",
        message.trim()
    );
    let words: Vec<&str> = reply.split(' ').filter(|w| !w.is_empty()).collect();
    for (i, word) in words.iter().enumerate() {
        if message.trim() == "/fail" && i == 3 {
            send(event("error", &json!({ "error": "the model stopped unexpectedly (simulated failure)" })));
            return;
        }
        let token = if i + 1 < words.len() { format!("{word} ") } else { (*word).to_owned() };
        if !send(event("message", &json!({ "token": token }))) {
            return; // the client stopped the reply
        }
        std::thread::sleep(CHAT_TOKEN_PAUSE);
    }
    send(event("stream_end", &json!({ "message_id": random_hex(8), "status": "complete" })));
}
