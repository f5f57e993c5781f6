//! The stream a handler returns ([`Sse`]) and the places its events come from: loop timers, other threads
//! (through [`channel`](crate::channel)), pulled iterators, and hub topics.

use crate::channel::{Channel, DEFAULT_CHANNEL_CAPACITY, SseSender};
use conduit_http::Request;
use conduit_sse::Event;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        let (channel, sender) = Channel::new(capacity);
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
    pub(crate) fn new(tick: u64, now: Instant) -> Self {
        Ticker { tick, now, events: Vec::new(), end: false }
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
