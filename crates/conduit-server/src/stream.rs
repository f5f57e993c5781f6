//! Event streams and the three places their events come from: loop timers, other threads, and pulled sources.

use crate::server::Msg;
use conduit_http::Request;
use conduit_net::{ConnId, Remote, SendError};
use conduit_sse::Event;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Events a channel-fed stream buffers by default before [`SseSender::send`] waits.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 1024;

/// An event stream a handler returns. Build it from one source:
///
/// - [`Sse::interval`]: a callback run on the event loop every period (the first time at once);
/// - [`Sse::channel`]: an [`SseSender`] that any thread can use;
/// - [`Sse::from_iter`]: an iterator the loop pulls from whenever the client has read what was sent, so a long
///   stream goes out as fast as the client reads while memory stays bounded by the write queue.
///
/// ```
/// use conduit_server::{Router, Sse, Ticker};
/// use conduit_sse::Event;
/// use std::time::Duration;
///
/// let router = Router::new()
///     .get("/ticks", |_req: &_| Sse::interval(Duration::from_secs(1), |t: &mut Ticker| {
///         t.send(Event::new().data(format!("tick {}", t.tick())));
///         if t.tick() == 9 {
///             t.end();
///         }
///     }))
///     .get("/numbers", |_req: &_| Sse::from_iter((1..=1000).map(|i| Event::new().data(i.to_string()))));
/// # let _ = router;
/// ```
pub struct Sse {
    pub(crate) source: Source,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) keep_alive: Option<Option<Duration>>,
    pub(crate) retry: Option<Duration>,
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.source {
            Source::Interval { .. } => "interval",
            Source::Iter(_) => "iter",
            Source::Channel(_) => "channel",
            Source::Subscription(_) => "subscription",
        };
        f.debug_struct("Sse")
            .field("source", &kind)
            .field("headers", &self.headers)
            .field("keep_alive", &self.keep_alive)
            .field("retry", &self.retry)
            .finish()
    }
}

pub(crate) type TickFn = Box<dyn FnMut(&mut Ticker) + Send>;

pub(crate) enum Source {
    Interval { period: Duration, tick: TickFn },
    Iter(Box<dyn Iterator<Item = Event> + Send>),
    Channel(Arc<Channel>),
    Subscription(Subscription),
}

/// A stream following hub topics.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) topics: Vec<Arc<str>>,
    pub(crate) last_event_id: Option<String>,
    /// The sequence number of the last event queued to the client.
    pub(crate) cursor: u64,
    /// Registered with its topics for immediate delivery (otherwise catching up from the backlogs).
    pub(crate) live: bool,
    /// Counted in its topics' followers.
    pub(crate) following: bool,
    /// Evictions up to this sequence number were announced with a `reset` event when the stream opened; only
    /// later ones mean the client fell behind.
    pub(crate) announced_gap: u64,
}

impl Sse {
    fn with_source(source: Source) -> Self {
        Sse { source, headers: Vec::new(), keep_alive: None, retry: None }
    }

    /// A stream driven by the loop's timers: `tick` runs once when the stream opens and then every `period`,
    /// and sends events or ends the stream through its [`Ticker`]. It runs on the loop: keep it short.
    pub fn interval(period: Duration, tick: impl FnMut(&mut Ticker) + Send + 'static) -> Self {
        Sse::with_source(Source::Interval { period, tick: Box::new(tick) })
    }

    /// A stream fed by an iterator the loop pulls from while the client keeps up. It ends when the iterator
    /// does, and the iterator is dropped when the client leaves.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I>(events: I) -> Self
    where
        I: IntoIterator<Item = Event>,
        I::IntoIter: Send + 'static,
    {
        Sse::with_source(Source::Iter(Box::new(events.into_iter())))
    }

    /// A stream fed from any thread through the returned sender, buffering up to
    /// [`DEFAULT_CHANNEL_CAPACITY`] events. The stream ends after the last sender is dropped (or
    /// [`SseSender::close`]) and its buffered events are sent.
    pub fn channel() -> (SseSender, Sse) {
        Sse::channel_with_capacity(DEFAULT_CHANNEL_CAPACITY)
    }

    /// Like [`channel`](Self::channel) with room for `capacity` buffered events (at least 1).
    pub fn channel_with_capacity(capacity: usize) -> (SseSender, Sse) {
        let channel = Arc::new(Channel {
            state: Mutex::new(ChannelState {
                events: VecDeque::new(),
                senders: 1,
                closed: false,
                link: None,
                notified: false,
            }),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
        });
        let sender = SseSender { channel: Arc::clone(&channel) };
        (sender, Sse::with_source(Source::Channel(channel)))
    }

    /// A stream of the server hub's `topics`: events published to any of them from now on, in publish order.
    /// Follow it with [`resume_from`](Self::resume_from) to replay what a reconnecting client missed.
    /// Topic names are checked when the stream starts: an invalid name, or more topics than the hub allows,
    /// gets `400 Bad Request`.
    pub fn subscribe<I, T>(topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut names: Vec<Arc<str>> = Vec::new();
        for topic in topics {
            let topic = topic.as_ref();
            if !names.iter().any(|n| &**n == topic) {
                names.push(Arc::from(topic));
            }
        }
        Sse::with_source(Source::Subscription(Subscription {
            topics: names,
            last_event_id: None,
            cursor: 0,
            live: false,
            following: false,
            announced_gap: 0,
        }))
    }

    /// A subscription described by a request: topics from `topic` query parameters (repeated, or separated by
    /// commas; `default` when there is none), and the position from the `Last-Event-ID` header or, for
    /// clients that cannot set headers, the `last_event_id` query parameter.
    pub fn subscribe_request(req: &Request) -> Self {
        let mut topics: Vec<&str> = req
            .query_pairs()
            .iter()
            .filter(|(k, _)| k == "topic")
            .flat_map(|(_, v)| v.split(','))
            // Only spaces: trimming all whitespace would turn an invalid "\nname" into a valid name.
            .map(|t| t.trim_matches(' '))
            .collect();
        if topics.is_empty() {
            topics.push("default");
        }
        let last = req.header("last-event-id").or_else(|| req.query("last_event_id"));
        Sse::subscribe(topics).resume_from(last)
    }

    /// For a subscription: the id of the last event the client received. It then gets every event published
    /// after that one that the backlogs still hold, then the live stream, with no gap and no duplicate. If the
    /// id is unknown or events after it were evicted, the stream starts with a `reset` event saying so (see
    /// the README). Ignored for other sources.
    #[must_use]
    pub fn resume_from(mut self, last_event_id: Option<&str>) -> Self {
        if let Source::Subscription(sub) = &mut self.source {
            sub.last_event_id = last_event_id.map(str::to_owned);
        }
        self
    }

    /// Adds a response header (after the standard stream headers).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Overrides the server's keep-alive interval for this stream; `None` disables keep-alives.
    #[must_use]
    pub fn keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = Some(interval);
        self
    }

    /// Sends `retry:` with this reconnection time when the stream opens (instead of the server's default).
    #[must_use]
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }
}

/// What an interval callback gets each tick.
#[derive(Debug)]
pub struct Ticker {
    pub(crate) tick: u64,
    pub(crate) now: Instant,
    pub(crate) events: Vec<Event>,
    pub(crate) end: bool,
}

impl Ticker {
    pub(crate) fn new() -> Self {
        Ticker { tick: 0, now: Instant::now(), events: Vec::new(), end: false }
    }

    /// 0 when the stream opens, then 1, 2, ...
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The loop's time for this tick.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Sends an event.
    pub fn send(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Ends the stream after this tick's events.
    pub fn end(&mut self) {
        self.end = true;
    }
}

pub(crate) struct Channel {
    state: Mutex<ChannelState>,
    not_full: Condvar,
    capacity: usize,
}

struct ChannelState {
    /// Events already encoded by the sending thread, so the loop only copies bytes.
    events: VecDeque<Vec<u8>>,
    senders: usize,
    /// The stream is over: the client left or the stream ended. Senders fail from now on.
    closed: bool,
    /// Set once the stream is attached to a connection: where to say that events are waiting.
    link: Option<(Remote<Msg>, ConnId)>,
    /// A wake-up is on its way to the loop, so further sends need not send another.
    notified: bool,
}

/// What the loop took from a channel in one pull.
pub(crate) struct Pulled {
    /// More events are buffered than fitted.
    pub(crate) more: bool,
    /// No sender is left and nothing is buffered: the stream is complete.
    pub(crate) finished: bool,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn attach(&self, remote: Remote<Msg>, conn: ConnId) {
        let mut state = self.lock();
        state.link = Some((remote, conn));
        // The loop pulls right after attaching, so no wake-up is needed for what is already buffered.
        state.notified = true;
    }

    /// Hands buffered encoded events to `take`, which consumes each one it is given and returns whether it has
    /// room for another.
    pub(crate) fn pull(&self, mut take: impl FnMut(&[u8]) -> bool) -> Pulled {
        let mut state = self.lock();
        let mut taken = false;
        while let Some(event) = state.events.pop_front() {
            taken = true;
            if !take(&event) {
                break;
            }
        }
        let more = !state.events.is_empty();
        if !more {
            state.notified = false;
        }
        let finished = !more && state.senders == 0;
        if finished {
            state.closed = true;
        }
        drop(state);
        if taken {
            self.not_full.notify_all();
        }
        Pulled { more, finished }
    }

    /// The client is gone or the stream ended: fail all senders from now on.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.events.clear();
        state.link = None;
        drop(state);
        self.not_full.notify_all();
    }

    fn wake(&self, mut state: MutexGuard<'_, ChannelState>) {
        if state.notified {
            return;
        }
        let Some((remote, conn)) = state.link.clone() else {
            return;
        };
        state.notified = true;
        drop(state);
        match remote.send(Msg::ChannelReady(conn)) {
            Ok(()) => {}
            Err(SendError::Closed(_)) => self.close(),
            Err(SendError::Full(_)) => {
                // The next send tries again; the events stay buffered meanwhile.
                log::warn!("event loop mailbox full: stream {conn} will resume on its next event");
                self.lock().notified = false;
            }
        }
    }
}

/// Sends events into one stream from any thread. Clone it to share it between producers.
///
/// Sending fails once the client has gone, so producers know to stop.
pub struct SseSender {
    channel: Arc<Channel>,
}

impl std::fmt::Debug for SseSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.channel.lock();
        f.debug_struct("SseSender")
            .field("buffered", &state.events.len())
            .field("capacity", &self.channel.capacity)
            .field("closed", &state.closed)
            .finish()
    }
}

/// The client has gone (or the stream was closed); the event is handed back.
#[derive(Debug)]
pub struct Disconnected(pub Event);

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the event stream is closed: its client has gone")
    }
}

impl std::error::Error for Disconnected {}

/// Why [`SseSender::try_send`] did not send; the event is handed back.
#[derive(Debug)]
pub enum TrySendError {
    /// The stream's buffer is full: the client reads slower than events are produced.
    Full(Event),
    /// The client has gone.
    Disconnected(Event),
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the event stream's buffer is full"),
            TrySendError::Disconnected(_) => f.write_str("the event stream is closed: its client has gone"),
        }
    }
}

impl std::error::Error for TrySendError {}

// Failed sends hand the event back by value, as `std::sync::mpsc::SendError` does; boxing it would cost an
// allocation on every send to make the rare failure smaller.
#[allow(clippy::result_large_err)]
impl SseSender {
    /// Sends an event, waiting while the stream's buffer is full (the client reading slower than events come).
    ///
    /// # Errors
    /// [`Disconnected`] once the client has gone or the stream was closed.
    pub fn send(&self, event: Event) -> Result<(), Disconnected> {
        match self.send_inner(event, None) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(e) | TrySendError::Full(e)) => Err(Disconnected(e)),
        }
    }

    /// Sends an event, waiting at most `timeout` for room in the buffer.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if there was no room in time, [`TrySendError::Disconnected`] if the client has gone.
    pub fn send_timeout(&self, event: Event, timeout: Duration) -> Result<(), TrySendError> {
        self.send_inner(event, Some(timeout))
    }

    /// Sends an event if there is room now.
    ///
    /// # Errors
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn try_send(&self, event: Event) -> Result<(), TrySendError> {
        self.send_inner(event, Some(Duration::ZERO))
    }

    fn send_inner(&self, event: Event, timeout: Option<Duration>) -> Result<(), TrySendError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut encoded = Vec::with_capacity(event.encoded_len());
        event.encode(&mut encoded);
        let mut state = self.channel.lock();
        loop {
            if state.closed {
                return Err(TrySendError::Disconnected(event));
            }
            if state.events.len() < self.channel.capacity {
                break;
            }
            state = match deadline {
                None => self.channel.not_full.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(TrySendError::Full(event));
                    }
                    self.channel.not_full.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        state.events.push_back(encoded);
        self.channel.wake(state);
        Ok(())
    }

    /// True once the client has gone or the stream ended.
    pub fn is_closed(&self) -> bool {
        self.channel.lock().closed
    }

    /// Ends the stream once the events already sent are delivered, whatever other senders exist.
    pub fn close(&self) {
        let mut state = self.channel.lock();
        state.senders = 0;
        self.channel.wake(state);
    }
}

impl Clone for SseSender {
    fn clone(&self) -> Self {
        self.channel.lock().senders += 1;
        SseSender { channel: Arc::clone(&self.channel) }
    }
}

impl Drop for SseSender {
    fn drop(&mut self) {
        let mut state = self.channel.lock();
        state.senders = state.senders.saturating_sub(1);
        if state.senders == 0 {
            self.channel.wake(state);
        }
    }
}
