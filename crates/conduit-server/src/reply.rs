//! What a handler returns: a whole [`Response`], an event stream ([`Sse`]), or a [`Deferred`] answer that
//! another thread gives later through its [`Responder`].
//!
//! Handlers run on the event loop and must return at once. Work that takes time (a call to another service,
//! a database, a tool) runs elsewhere and answers through a `Responder`; meanwhile the connection waits, the
//! loop serves everyone else, and requests the client pipelined behind wait their turn.
//!
//! ```
//! use conduit_server::{Reply, Request, Response, Router};
//!
//! let router = Router::new().post("/slow", |_: &Request| {
//!     let (responder, reply) = Reply::deferred();
//!     std::thread::spawn(move || {
//!         // ... the long work ...
//!         let _ = responder.send(Response::text("done")); // Err: the client has gone
//!     });
//!     reply
//! });
//! # let _ = router;
//! ```

use crate::message::Msg;
use crate::response::Response;
use crate::sse::Sse;
use conduit_net::{ConnId, Remote};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a handler returns.
#[derive(Debug)]
pub enum Reply {
    /// A response with a body of known length.
    Response(Response),
    /// A `text/event-stream` that stays open while its source produces events.
    Stream(Sse),
    /// An answer another thread gives later through the [`Responder`] made with it.
    Deferred(Deferred),
}

impl Reply {
    /// A reply given later: return the [`Reply`] from the handler and answer through the [`Responder`] from
    /// any thread. A responder dropped without answering gets the request a `500`; one that takes longer
    /// than [`ServerConfig::deferred_timeout`](crate::ServerConfig::deferred_timeout) a `504`.
    pub fn deferred() -> (Responder, Reply) {
        let slot = Arc::new(Slot::default());
        (Responder { slot: Arc::clone(&slot) }, Reply::Deferred(Deferred { slot, headers: Vec::new() }))
    }

    /// Adds a response header to whatever the reply turns out to be.
    #[must_use]
    pub fn header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Response(r) => Reply::Response(r.header(name, value)),
            Reply::Stream(s) => Reply::Stream(s.header(name, value)),
            Reply::Deferred(mut d) => {
                d.headers.push((name.to_owned(), value.to_owned()));
                Reply::Deferred(d)
            }
        }
    }
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Response(r)
    }
}

impl From<Sse> for Reply {
    fn from(s: Sse) -> Self {
        Reply::Stream(s)
    }
}

/// Lets handlers use `?`: both the success and the error side become the reply.
impl<T: Into<Reply>, E: Into<Reply>> From<Result<T, E>> for Reply {
    fn from(r: Result<T, E>) -> Self {
        match r {
            Ok(t) => t.into(),
            Err(e) => e.into(),
        }
    }
}

/// The loop's side of a deferred reply (see [`Reply::deferred`]).
#[derive(Debug)]
pub struct Deferred {
    slot: Arc<Slot>,
    /// Headers to add to the answer when it comes (CORS, say).
    pub(crate) headers: Vec<(String, String)>,
}

/// Answers a deferred request from any thread, once.
#[derive(Debug)]
pub struct Responder {
    slot: Arc<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    answer: Option<Reply>,
    /// The responder answered or was dropped.
    done: bool,
    /// The client left or the request timed out: answers are refused from now on.
    closed: bool,
    /// Where to say that the answer is here, once the loop has taken the deferred reply.
    link: Option<(Remote<Msg>, ConnId)>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the loop, if it is waiting, that the answer (or its absence) is in.
    fn wake(&self, mut state: MutexGuard<'_, SlotState>) {
        state.done = true;
        if let Some((remote, conn)) = state.link.take() {
            drop(state);
            // Past the mailbox limit: a reply must never be lost, and each request sends one message at most.
            let _ = remote.send_past_limit(Msg::Answer(conn));
        }
    }
}

impl Responder {
    /// Answers the request.
    ///
    /// # Errors
    /// The reply is handed back when the client has gone or the request timed out.
    // The reply is handed back by value, as `std::sync::mpsc::SendError` does: the rare failure is not worth an
    // allocation on every answer.
    #[allow(clippy::result_large_err)]
    pub fn send(self, reply: impl Into<Reply>) -> Result<(), Reply> {
        let reply = reply.into();
        let mut state = self.slot.lock();
        if state.closed {
            return Err(reply);
        }
        state.answer = Some(reply);
        self.slot.wake(state);
        Ok(())
    }

    /// True once the client has gone or the request timed out: nobody will read the answer.
    pub fn is_closed(&self) -> bool {
        self.slot.lock().closed
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let state = self.slot.lock();
        if !state.done {
            self.slot.wake(state);
        }
    }
}

/// What the loop finds when it looks at a deferred reply.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Not yet: the loop is told when it comes.
    Pending,
    /// The responder answered.
    Ready(Reply),
    /// The responder was dropped without answering.
    Abandoned,
}

impl Deferred {
    /// Registers where to send the wake-up, and returns the answer if it is already in.
    pub(crate) fn attach(&self, remote: Remote<Msg>, conn: ConnId) -> Answer {
        let mut state = self.slot.lock();
        if state.done {
            return match state.answer.take() {
                Some(reply) => Answer::Ready(reply),
                None => Answer::Abandoned,
            };
        }
        state.link = Some((remote, conn));
        Answer::Pending
    }

    /// Takes the answer after the loop was told it is in.
    pub(crate) fn take(&self) -> Answer {
        let mut state = self.slot.lock();
        match state.answer.take() {
            Some(reply) => Answer::Ready(reply),
            None if state.done => Answer::Abandoned,
            None => Answer::Pending,
        }
    }

    /// The client left or the request timed out: the responder's answers are refused from now on.
    pub(crate) fn close(&self) {
        let mut state = self.slot.lock();
        state.closed = true;
        state.link = None;
        state.answer = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_http::StatusCode;

    fn status(answer: Answer) -> Option<u16> {
        match answer {
            Answer::Ready(Reply::Response(r)) => Some(r.status_code().as_u16()),
            Answer::Ready(_) => Some(0),
            Answer::Pending => None,
            Answer::Abandoned => Some(500),
        }
    }

    fn deferred(reply: Reply) -> Deferred {
        match reply {
            Reply::Deferred(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answer_is_taken_once_and_a_dropped_responder_abandons() {
        let (responder, reply) = Reply::deferred();
        let d = deferred(reply);
        assert_eq!(status(d.take()), None);
        responder.send(Response::new(StatusCode::ACCEPTED)).unwrap();
        assert_eq!(status(d.take()), Some(202));

        let (responder, reply) = Reply::deferred();
        let d = deferred(reply);
        drop(responder);
        assert_eq!(status(d.take()), Some(500));
    }

    #[test]
    fn a_closed_request_refuses_answers() {
        let (responder, reply) = Reply::deferred();
        let d = deferred(reply);
        d.close();
        assert!(responder.is_closed());
        assert!(responder.send(Response::text("late")).is_err());
    }

    #[test]
    fn headers_wait_for_the_answer() {
        let (_responder, reply) = Reply::deferred();
        let d = deferred(reply.header("X-A", "1"));
        assert_eq!(d.headers, [("X-A".to_owned(), "1".to_owned())]);
        let r = match Reply::from(Response::text("x")).header("X-B", "2") {
            Reply::Response(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(r.headers().contains(&("X-B".to_owned(), "2".to_owned())));
    }
}
