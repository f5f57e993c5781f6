//! The stream a handler returns ([`Sse`]) and the places its events come from: loop timers, other threads
//! (through [`channel`](crate::channel)), pulled iterators, and hub topics.

use crate::channel::{Channel, DEFAULT_CHANNEL_CAPACITY, SseSender};
use conduit_http::Request;
use conduit_sse::{Event, EventError, EventSink, SharedEvent};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An event stream a handler returns. Build it from one source:
///
/// - [`Sse::interval`]: a callback run on the event loop every period (the first time at once);
/// - [`Sse::channel`]: an [`SseSender`] that any thread can use;
/// - [`Sse::from_iter`]: an iterator the loop pulls from whenever the client has read what was sent, so a long
///   stream goes out as fast as the client reads while memory stays bounded by the write queue;
/// - [`Sse::from_fn`]: the same, with a function that writes its events straight into the connection's buffer
///   (the cheapest way to send many events);
/// - [`Sse::subscribe`]: topics of the server's hub.
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
            Source::Write(_) => "fn",
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

pub(crate) type WriteFn = Box<dyn FnMut(&mut EventSink<'_>) -> Result<ControlFlow<()>, EventError> + Send>;

pub(crate) enum Source {
    Interval {
        period: Duration,
        tick: TickFn,
    },
    Iter(Box<dyn Iterator<Item = Event> + Send>),
    Write(WriteFn),
    Channel(Arc<Channel>),
    /// Boxed: a subscription's state is several times the size of the other sources', and every stream's
    /// `Source` would otherwise be as large (about 70 bytes more per idle stream).
    Subscription(Box<Subscription>),
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
    /// Where it starts is decided (on an external backbone it may wait for its topics or for history).
    pub(crate) planned: bool,
    /// Events older than the cache, read from the external backbone, to send before the cache's.
    pub(crate) replay: VecDeque<SharedEvent>,
    /// A history request from this position is on its way.
    pub(crate) history_after: Option<u64>,
    /// The history showed events after the client's position are gone: the stream opens with a `reset`.
    pub(crate) history_lossy: bool,
    /// Without a `Last-Event-ID`, start with the oldest event held rather than with the next one published.
    pub(crate) from_oldest: bool,
    /// The oldest events were asked of the external backbone once (for `from_oldest`); not again.
    pub(crate) replay_asked: bool,
    /// `event: NAME\n` lines: the stream ends right after an event that has one of these names.
    pub(crate) end_after: Vec<Box<[u8]>>,
}

impl Subscription {
    /// True if `body`, an encoded event, is one after which this stream ends. The encoder writes comment
    /// lines first, then the `event:` line, so only those are looked at.
    pub(crate) fn ends_with(&self, body: &[u8]) -> bool {
        if self.end_after.is_empty() {
            return false;
        }
        let mut rest = body;
        while rest.first() == Some(&b':') {
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else { return false };
            let skip = if rest[end..].starts_with(b"\r\n") { 2 } else { 1 };
            rest = &rest[end + skip..];
        }
        self.end_after.iter().any(|line| rest.starts_with(line))
    }
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

    /// A stream written by `write`, which the loop calls whenever the client has read what was sent: each
    /// call writes one or more events into the connection's buffer through the [`EventSink`] (with
    /// [`EventSink::event`], which formats fields in place, or [`EventSink::send`] for a built [`Event`]) and
    /// returns `Ok(`[`ControlFlow::Break`]`(()))` to end the stream after them. This is
    /// [`from_iter`](Self::from_iter) without building each event and then encoding it: every byte is produced
    /// once, where it is sent from. The connection's high-water mark is checked between calls, so each call
    /// should write a bounded amount (an event or a few): what one call writes is sent whole.
    ///
    /// The stream ends with an `error` event (and the error is logged) if `write` returns an `Err` (an event
    /// name or id it refused; the half-written event is not sent), panics, or returns `Continue` without
    /// writing an event: a source with nothing to send now would otherwise be called in a busy loop. Events
    /// that wait on something else belong on a [`channel`](Self::channel).
    ///
    /// ```
    /// use conduit_server::{Router, Sse};
    /// use std::ops::ControlFlow;
    ///
    /// let router = Router::new().get("/count", |_req: &_| {
    ///     let mut i = 0u64;
    ///     Sse::from_fn(move |out| {
    ///         out.event().event("count")?.id_u64(i).data_fmt(format_args!("{{\"n\": {i}}}"));
    ///         i += 1;
    ///         Ok(if i == 1000 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    ///     })
    /// });
    /// # let _ = router;
    /// ```
    pub fn from_fn<F>(write: F) -> Self
    where
        F: FnMut(&mut EventSink<'_>) -> Result<ControlFlow<()>, EventError> + Send + 'static,
    {
        Sse::with_source(Source::Write(Box::new(write)))
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
        Sse::with_source(Source::Subscription(Box::new(Subscription {
            topics: names,
            last_event_id: None,
            cursor: 0,
            live: false,
            following: false,
            announced_gap: 0,
            planned: false,
            replay: VecDeque::new(),
            history_after: None,
            history_lossy: false,
            from_oldest: false,
            replay_asked: false,
            end_after: Vec::new(),
        })))
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

    /// For a subscription opened without a `Last-Event-ID`: start with the oldest event its topics still hold,
    /// then the live stream, instead of only the events published from now on. For a topic that stands for one
    /// piece of work (a chat reply, a job), so a client that has nothing yet gets all of it. Ignored for other
    /// sources, and when a `Last-Event-ID` is given (the client then resumes after it).
    #[must_use]
    pub fn from_oldest(mut self) -> Self {
        if let Source::Subscription(sub) = &mut self.source {
            sub.from_oldest = true;
        }
        self
    }

    /// For a subscription: end the stream, cleanly, right after delivering an event whose name (its `event:`
    /// field) is one of `names`; say the last event of a reply. A client that reconnects after it can then be
    /// answered `204` by the handler (see [`Hub::history`](crate::Hub::history)), so an `EventSource` stops.
    /// Names that could not be event names (empty, or with a line break) are ignored. Ignored for other
    /// sources.
    #[must_use]
    pub fn end_after<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        if let Source::Subscription(sub) = &mut self.source {
            for name in names {
                let name = name.as_ref();
                if !name.is_empty() && !name.contains(['\r', '\n']) {
                    sub.end_after.push(format!("event: {name}\n").into_bytes().into_boxed_slice());
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(sse: Sse) -> Subscription {
        match sse.source {
            Source::Subscription(sub) => *sub,
            _ => unreachable!("built with Sse::subscribe"),
        }
    }

    #[test]
    fn a_subscription_ends_after_the_events_named_for_it() {
        let sub = subscription(Sse::subscribe(["t"]).end_after(["stream_end", "error", "", "bad\nname"]));
        assert_eq!(sub.end_after.len(), 2, "impossible names are ignored");
        let encoded = |event: Event| {
            let mut body = Vec::new();
            event.encode(&mut body);
            body
        };
        let named = |name: &str| Event::new().event(name).unwrap();
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (encoded(named("stream_end").id("9").unwrap().data("{}")), true),
            (encoded(named("error").data("x")), true),
            (encoded(named("stream_end").comment("first a comment\nof two lines").data("x")), true),
            (encoded(named("stream_ended").data("x")), false),
            (encoded(named("message").data("event: stream_end")), false),
            (encoded(Event::new().data("stream_end")), false),
            (encoded(Event::new().comment("event: stream_end").data("x")), false),
            (b": note\r\nevent: error\n\n".to_vec(), true),
            (b": unterminated".to_vec(), false),
        ];
        for (body, ends) in cases {
            assert_eq!(sub.ends_with(&body), ends, "{:?}", String::from_utf8_lossy(&body));
        }
        let plain = subscription(Sse::subscribe(["t"]));
        assert!(!plain.ends_with(b"event: stream_end\n\n"), "no names: never ends");
    }
}
