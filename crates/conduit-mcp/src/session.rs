//! Sessions: what the server remembers between the requests of one client, and the bounded registry of them.
//!
//! A session is shared by the event loop (which answers requests) and the threads running its tool calls (which
//! send messages on their streams), so it sits behind its own lock; the registry's lock is only held to find,
//! add or remove a session, never while a session is locked.

use crate::jsonrpc::{RequestId, RpcError};
use crate::logging::LogLevel;
use crate::stream::{EventId, McpStream, ResumeError};
use conduit_server::Sse;
use conduit_sse::BacklogLimits;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// The limits one session enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionLimits {
    pub(crate) max_streams: usize,
    pub(crate) max_finished_streams: usize,
    pub(crate) store: BacklogLimits,
    pub(crate) retry: Duration,
}

/// Why a stream was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The session has as many open streams as it may.
    TooManyStreams,
    /// A call with this id is already running.
    DuplicateId,
    /// A `GET` stream is already connected.
    StandaloneConnected,
    /// The session has ended.
    Ended,
}

/// Where a client's answer to one of the server's requests goes.
type Waiter = mpsc::Sender<Result<Value, RpcError>>;

/// One client's session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) protocol_version: &'static str,
    pub(crate) client_capabilities: Value,
    /// Set by `logging/setLevel`; log messages below it are not sent. `None` sends all.
    pub(crate) log_level: Option<LogLevel>,
    limits: SessionLimits,
    streams: HashMap<u64, McpStream>,
    /// Finished streams kept for resumption, oldest first.
    finished: VecDeque<u64>,
    next_stream: u64,
    /// The stream opened by `GET`, for messages unrelated to any call.
    standalone: Option<u64>,
    /// Calls running, with the flag that cancels each.
    calls: HashMap<RequestId, Arc<AtomicBool>>,
    /// Requests the server sent the client, waiting for its answer.
    waiting: HashMap<RequestId, Waiter>,
    next_request: u64,
    last_active: Instant,
    ended: bool,
}

impl Session {
    pub(crate) fn new(protocol_version: &'static str, client_capabilities: Value, limits: SessionLimits) -> Self {
        Session {
            protocol_version,
            client_capabilities,
            log_level: None,
            limits,
            streams: HashMap::new(),
            finished: VecDeque::new(),
            next_stream: 0,
            standalone: None,
            calls: HashMap::new(),
            waiting: HashMap::new(),
            next_request: 0,
            last_active: Instant::now(),
            ended: false,
        }
    }

    pub(crate) fn touch(&mut self, now: Instant) {
        self.last_active = self.last_active.max(now);
    }

    fn open_streams(&self) -> usize {
        self.streams.values().filter(|s| !s.is_finished()).count()
    }

    /// A new stream and its first connection.
    fn new_stream(&mut self) -> Result<(u64, Sse), Refused> {
        if self.ended {
            return Err(Refused::Ended);
        }
        if self.open_streams() >= self.limits.max_streams {
            return Err(Refused::TooManyStreams);
        }
        let number = self.next_stream;
        self.next_stream += 1;
        let mut stream = McpStream::new(number, self.limits.store);
        let sse = stream.open(self.limits.retry);
        self.streams.insert(number, stream);
        Ok((number, sse))
    }

    /// Opens the stream that carries call `id`'s messages and response. Returns its number, its first
    /// connection and the flag that cancels the call.
    pub(crate) fn open_call(&mut self, id: &RequestId) -> Result<(u64, Sse, Arc<AtomicBool>), Refused> {
        if self.calls.contains_key(id) {
            return Err(Refused::DuplicateId);
        }
        let (number, sse) = self.new_stream()?;
        let cancelled = Arc::new(AtomicBool::new(false));
        self.calls.insert(id.clone(), Arc::clone(&cancelled));
        Ok((number, sse, cancelled))
    }

    /// Forgets a call that could not be started.
    pub(crate) fn abandon_call(&mut self, id: &RequestId, stream: u64) {
        self.calls.remove(id);
        if let Some(mut s) = self.streams.remove(&stream) {
            s.detach();
        }
    }

    /// Opens the `GET` stream for messages unrelated to calls. A new one replaces one whose client has gone.
    pub(crate) fn open_standalone(&mut self) -> Result<Sse, Refused> {
        if let Some(old) = self.standalone {
            if self.streams.get(&old).is_some_and(McpStream::is_connected) {
                return Err(Refused::StandaloneConnected);
            }
            self.streams.remove(&old);
            self.standalone = None;
        }
        let (number, sse) = self.new_stream()?;
        self.standalone = Some(number);
        Ok(sse)
    }

    /// A connection resuming the stream named by `last`, after that event.
    pub(crate) fn resume(&mut self, last: EventId) -> Result<Sse, ResumeError> {
        match self.streams.get_mut(&last.stream) {
            Some(stream) => stream.resume(last.seq),
            // A stream this session had, finished and since forgotten.
            None if last.stream < self.next_stream => Err(ResumeError::Evicted),
            None => Err(ResumeError::Unknown),
        }
    }

    /// Sends a message on a stream (stored for resumption if no client is connected). False once the session
    /// has ended or the stream is finished or gone.
    pub(crate) fn send(&mut self, stream: u64, message: &Value) -> bool {
        if self.ended {
            return false;
        }
        match self.streams.get_mut(&stream) {
            Some(s) if !s.is_finished() => {
                s.send(message.to_string());
                true
            }
            _ => false,
        }
    }

    /// Sends on the `GET` stream, if one was opened. False if there is none.
    pub(crate) fn send_standalone(&mut self, message: &Value) -> bool {
        match self.standalone {
            Some(stream) => self.send(stream, message),
            None => false,
        }
    }

    /// Sends call `id`'s response (unless the call was cancelled) and finishes its stream; it is kept for
    /// resumption until `max_finished_streams` newer ones push it out.
    pub(crate) fn finish_call(&mut self, id: &RequestId, stream: u64, response: &Value) {
        let cancelled = self.calls.remove(id).is_some_and(|c| c.load(Ordering::SeqCst));
        if !cancelled {
            self.send(stream, response);
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            s.finish();
            self.finished.push_back(stream);
        }
        while self.finished.len() > self.limits.max_finished_streams {
            if let Some(old) = self.finished.pop_front() {
                self.streams.remove(&old);
            }
        }
    }

    /// Closes a stream's connection without finishing the stream.
    pub(crate) fn disconnect(&mut self, stream: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.detach();
        }
    }

    /// `notifications/cancelled`: the call stops being answered, and its handler can see the flag.
    pub(crate) fn cancel(&mut self, id: &RequestId) {
        if let Some(flag) = self.calls.get(id) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// A new id for a request to the client, and where its answer will arrive.
    pub(crate) fn expect_answer(&mut self) -> (RequestId, mpsc::Receiver<Result<Value, RpcError>>) {
        self.next_request += 1;
        let id = RequestId::String(format!("server-{}", self.next_request));
        let (tx, rx) = mpsc::channel();
        self.waiting.insert(id.clone(), tx);
        (id, rx)
    }

    pub(crate) fn forget_answer(&mut self, id: &RequestId) {
        self.waiting.remove(id);
    }

    /// Hands the client's answer to the call waiting for it. False if nothing waits for this id.
    pub(crate) fn answer(&mut self, id: &RequestId, outcome: Result<Value, RpcError>) -> bool {
        match self.waiting.remove(id) {
            Some(waiter) => waiter.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Ends the session: connections close, calls are cancelled, waiting requests fail.
    pub(crate) fn end(&mut self) {
        self.ended = true;
        for stream in self.streams.values_mut() {
            stream.detach();
        }
        for flag in self.calls.values() {
            flag.store(true, Ordering::SeqCst);
        }
        self.waiting.clear();
    }

    /// Idle: no request for `timeout`, no call running, no client connected to a stream.
    fn is_idle(&self, now: Instant, timeout: Duration) -> bool {
        self.calls.is_empty()
            && !self.streams.values().any(McpStream::is_connected)
            && now.saturating_duration_since(self.last_active) >= timeout
    }
}

/// Locks a session; a panic in a tool while it held the lock leaves the state usable.
pub(crate) fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sessions of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: HashMap<String, Arc<Mutex<Session>>>,
    last_sweep: Option<Instant>,
}

impl Registry {
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn insert(&mut self, id: String, session: Session) -> Arc<Mutex<Session>> {
        let session = Arc::new(Mutex::new(session));
        self.sessions.insert(id, Arc::clone(&session));
        session
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Mutex<Session>>> {
        self.sessions.get(id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Mutex<Session>>> {
        self.sessions.values().cloned().collect()
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<Mutex<Session>>> {
        self.sessions.remove(id)
    }

    /// Ends sessions idle for `timeout`. Runs at most once a second unless `force`d, so a busy endpoint does
    /// not scan every session on every request.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration, force: bool) -> usize {
        if !force && self.last_sweep.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            return 0;
        }
        self.last_sweep = Some(now);
        let before = self.sessions.len();
        self.sessions.retain(|id, session| {
            let mut session = lock(session);
            let idle = session.is_idle(now, timeout);
            if idle {
                log::info!("session {id} expired after {timeout:?} idle");
                session.end();
            }
            !idle
        });
        before - self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_streams: 2,
            max_finished_streams: 1,
            store: BacklogLimits { max_events: 8, max_bytes: 1 << 16 },
            retry: Duration::from_millis(10),
        }
    }

    fn session() -> Session {
        Session::new("2025-11-25", Value::Null, limits())
    }

    #[test]
    fn streams_are_bounded_and_numbered_apart() {
        let mut s = session();
        let (a, _, _) = s.open_call(&RequestId::Number(1)).unwrap();
        assert_eq!(s.open_call(&RequestId::Number(1)).err(), Some(Refused::DuplicateId));
        let (b, _, _) = s.open_call(&RequestId::Number(2)).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.open_call(&RequestId::Number(3)).err(), Some(Refused::TooManyStreams));
        s.finish_call(&RequestId::Number(1), a, &Value::Null);
        let (c, _, _) = s.open_call(&RequestId::Number(3)).unwrap();
        assert!(c != a && c != b, "stream numbers are never reused");
    }

    #[test]
    fn finished_streams_are_kept_for_resumption_within_bounds() {
        let mut s = session();
        let (a, _, _) = s.open_call(&RequestId::Number(1)).unwrap();
        s.finish_call(&RequestId::Number(1), a, &serde_json::json!({"r": 1}));
        assert!(s.resume(EventId { stream: a, seq: 0 }).is_ok());
        let (b, _, _) = s.open_call(&RequestId::Number(2)).unwrap();
        s.finish_call(&RequestId::Number(2), b, &Value::Null);
        assert_eq!(s.resume(EventId { stream: a, seq: 0 }).err(), Some(ResumeError::Evicted), "pushed out");
        assert_eq!(s.resume(EventId { stream: 99, seq: 0 }).err(), Some(ResumeError::Unknown), "never opened");
        assert!(s.resume(EventId { stream: b, seq: 1 }).is_ok());
    }

    #[test]
    fn cancelled_calls_are_not_answered() {
        let mut s = session();
        let id = RequestId::String("x".into());
        let (a, _, flag) = s.open_call(&id).unwrap();
        s.cancel(&id);
        assert!(flag.load(Ordering::SeqCst));
        s.finish_call(&id, a, &Value::Null);
        // Only the priming event exists: resuming after it replays nothing, and a response would be seq 1.
        assert_eq!(s.resume(EventId { stream: a, seq: 1 }).err(), Some(ResumeError::Unknown));
    }

    #[test]
    fn answers_reach_their_waiter_once() {
        let mut s = session();
        let (id, rx) = s.expect_answer();
        assert!(s.answer(&id, Ok(Value::Bool(true))));
        assert!(!s.answer(&id, Ok(Value::Bool(true))));
        assert_eq!(rx.recv().unwrap(), Ok(Value::Bool(true)));
        let (id2, rx2) = s.expect_answer();
        assert_ne!(id, id2);
        s.end();
        assert!(rx2.recv().is_err(), "ending the session fails the wait");
        assert!(s.open_call(&RequestId::Number(9)).is_err());
    }

    #[test]
    fn idle_sessions_expire() {
        let start = Instant::now();
        let mut registry = Registry::default();
        registry.insert("a".into(), session());
        let busy = registry.insert("b".into(), session());
        let _call = lock(&busy).open_call(&RequestId::Number(1)).unwrap();
        let timeout = Duration::from_secs(60);
        assert_eq!(registry.expire(start, timeout, true), 0);
        assert_eq!(registry.expire(start + timeout, timeout, false), 0, "swept less than a second ago");
        assert_eq!(registry.expire(start + timeout * 2, timeout, true), 1);
        assert!(registry.get("a").is_none());
        assert!(registry.get("b").is_some(), "a running call keeps its session");
    }
}
