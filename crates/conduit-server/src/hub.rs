//! The broadcast hub's publishing side: named topics, one sequence, events encoded once.
//!
//! With the embedded backbone, publishing happens on any thread: the event is numbered, encoded and framed
//! once under the hub's lock, then handed to every event loop, so each loop sees events in sequence order.
//! With an external [`Backbone`], the backbone numbers the event and every node's reader hands it back to the
//! loops (see `backbone`). What a loop does with events (backlogs, live and catching-up subscribers) is in
//! `topics` and `fanout`.

use crate::backbone::{Backbone, BackboneError, BackboneEvent, HistoryError, shared_event};
use crate::health::BackboneHealth;
use crate::message::Msg;
use crate::registry::{Registry, RegistryError};
use conduit_net::Remote;
use conduit_sse::{BacklogLimits, Decoder, Event, MessageEvent, SharedEvent};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Hub limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// What each topic keeps for clients that resume (default 1,000 events / 1 MiB).
    pub backlog: BacklogLimits,
    /// Topics holding events at most. Publishing to a new topic past it forgets the topic nobody follows whose
    /// newest event is oldest; if every topic has followers, the publish fails with
    /// [`PublishError::TooManyTopics`].
    pub max_topics: usize,
    /// Topics that streams follow before anything was published to them, at most. Past it, a subscription that
    /// would create another gets `503`. Kept apart from `max_topics` so that subscribers, who need no token,
    /// can never fill the table that publishing needs. On an external backbone, where events are not kept in
    /// this table, every topic a stream follows counts here.
    pub max_unpublished_topics: usize,
    /// Topics one stream may follow at once.
    pub max_topics_per_stream: usize,
    /// Bytes in a topic name at most.
    pub max_topic_len: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            backlog: BacklogLimits::default(),
            max_topics: 10_000,
            max_unpublished_topics: 1_000,
            max_topics_per_stream: 16,
            max_topic_len: 128,
        }
    }
}

/// Why a publish was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic name is empty, too long, or has control characters.
    InvalidTopic,
    /// The hub is not attached to a running server.
    NotRunning,
    /// The server's mailbox is full: it is receiving events faster than it can deliver them.
    Busy,
    /// The topic is new, `max_topics` topics exist and every one has followers: the event could not be kept.
    TooManyTopics,
    /// The external backbone did not take the event (its store is unreachable, say): try again later.
    Backbone(BackboneError),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublishError::InvalidTopic => "invalid topic name",
            PublishError::NotRunning => "the hub is not attached to a running server",
            PublishError::Busy => "the server is busy; publish again shortly",
            PublishError::TooManyTopics => "too many topics with followers; publish again later",
            PublishError::Backbone(e) => return e.fmt(f),
        })
    }
}

impl std::error::Error for PublishError {}

/// The response header naming the oldest event a subscription's topics still hold.
pub const OLDEST_EVENT_ID_HEADER: &str = "Conduit-Oldest-Event-Id";

/// Checks a topic name: 1 to `max_len` bytes, no control characters.
pub(crate) fn valid_topic(name: &str, max_len: usize) -> bool {
    !name.is_empty() && name.len() <= max_len && !name.chars().any(char::is_control)
}

/// What a hub has published and holds, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Events accepted by [`Hub::publish`].
    pub published: u64,
    /// Topics known (holding events or followed).
    pub topics: usize,
    /// Events held in the topics' backlogs.
    pub backlog_events: usize,
    /// Bytes held in the topics' backlogs.
    pub backlog_bytes: usize,
}

#[derive(Debug)]
struct Publisher {
    /// The last sequence number handed out.
    seq: u64,
    /// Events accepted.
    published: u64,
    /// The server's event loops; every one keeps every topic's state, so each gets every event.
    loops: Vec<Remote<Msg>>,
    registry: Registry,
}

/// The next sequence number after `last`: microseconds since the Unix epoch, or `last + 1` when that is
/// greater. Ids then never repeat across restarts of the process (unless the clock is set back past the
/// previous run's last event), so an id from an earlier run is unknown to this one and its resume gets a
/// `reset`, instead of matching an unrelated event of the new run.
fn next_sequence(last: u64, now: SystemTime) -> u64 {
    let micros = now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    micros.max(last + 1)
}

/// A handle for publishing to a server's topics from any thread. Cheap to clone.
///
/// ```no_run
/// use conduit_server::{Hub, HubConfig, Request, Router, Server, ServerConfig, Sse};
/// use conduit_sse::Event;
///
/// let hub = Hub::new(HubConfig::default());
/// let router = Router::new().get("/stream", |req: &Request| Sse::subscribe_request(req));
/// let server = Server::bind_with_hub(ServerConfig::default(), router, &hub)?;
/// let handle = server.spawn()?;
/// hub.publish("news", Event::new().data("hello")).unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<HubShared>,
}

#[derive(Debug)]
struct HubShared {
    config: HubConfig,
    publisher: Mutex<Publisher>,
    /// An external backbone; `None` for the embedded one.
    backbone: Option<Arc<dyn Backbone>>,
    /// Where a backbone that is not a [`Backbone`] of this crate's kind (or an application) reports its state.
    health: BackboneHealth,
}

impl Hub {
    /// A hub on the embedded backbone (one process), not yet attached to a server.
    pub fn new(config: HubConfig) -> Hub {
        Hub::build(config, None)
    }

    /// A hub on an external backbone, such as `conduit_redis::RedisBackbone`: events are numbered and kept
    /// by the backbone's store, so every server on it (every node) delivers the same events in the same order,
    /// and clients resume on any node. The hub's backlogs become a cache of that history.
    pub fn with_backbone(config: HubConfig, backbone: impl Backbone + 'static) -> Hub {
        Hub::build(config, Some(Arc::new(backbone)))
    }

    fn build(config: HubConfig, backbone: Option<Arc<dyn Backbone>>) -> Hub {
        let registry = Registry::new(config.max_topics, config.max_unpublished_topics, config.backlog);
        let publisher = Publisher { seq: 0, published: 0, loops: Vec::new(), registry };
        let health = BackboneHealth::new();
        Hub { shared: Arc::new(HubShared { config, publisher: Mutex::new(publisher), backbone, health }) }
    }

    /// Whether the hub can publish and deliver: always with the embedded backbone; with an external one,
    /// whether its store is reachable (for readiness checks).
    pub fn backbone_up(&self) -> bool {
        self.backbone_state() != Some(false)
    }

    /// `Some(up)` for an external backbone, or once something reported through
    /// [`backbone_health`](Self::backbone_health); `None` for the embedded backbone.
    pub(crate) fn backbone_state(&self) -> Option<bool> {
        match &self.shared.backbone {
            Some(backbone) => Some(backbone.is_up() && self.shared.health.is_up() != Some(false)),
            None => self.shared.health.is_up(),
        }
    }

    /// Whether the hub runs on an external backbone.
    pub(crate) fn is_distributed(&self) -> bool {
        self.shared.backbone.is_some()
    }

    /// Asks the external backbone for history (see [`Backbone::request_history`]); nothing without one.
    pub(crate) fn request_history(&self, token: u64, after: u64, topics: &[Arc<str>], max: usize) {
        if let Some(backbone) = &self.shared.backbone {
            backbone.request_history(token, after, topics, max);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Publisher> {
        self.shared.publisher.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new stream among the followers of `topics` (distinct names), or refuses it when that would
    /// create more unpublished topics than allowed.
    /// An external backbone reads the topics that gain their first follower.
    pub(crate) fn follow(&self, topics: &[Arc<str>]) -> Result<(), RegistryError> {
        let first = self.lock().registry.follow(topics)?;
        if let Some(backbone) = &self.shared.backbone {
            first.iter().for_each(|t| backbone.follow(t));
        }
        Ok(())
    }

    /// Up to `limit` events that `topic` holds, oldest first: those after the event with id `after`, or all
    /// of them. For readers that are not streams (a tool reading a topic, a handler checking whether a reply
    /// is complete). Events are decoded back into their fields; `last_event_id` is each event's own id.
    ///
    /// **Which thread.** With the embedded backbone this reads the hub's memory under a short lock, from any
    /// thread. On an external backbone it reads the backbone's store (`XRANGE` on Redis) and blocks until the
    /// store answers, for as long as the backbone's connect and command timeouts allow: call it from a thread of
    /// your own (a worker, an [`Offload`](crate::Offload) answering a deferred reply, an MCP tool), never from a
    /// handler or callback running on an event loop, which would stall every connection of that loop meanwhile.
    /// An external backbone also answers at most a bound of its own per call (Redis: its `batch` setting), so
    /// fewer than `limit` events does not mean there are no more: ask again after the last one until the
    /// answer is empty.
    ///
    /// # Errors
    /// [`HistoryError::UnknownId`] when `after` is not among the events the topic holds;
    /// [`HistoryError::Backbone`] when the external backbone's store could not be read (try again later).
    pub fn history(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<MessageEvent>, HistoryError> {
        if !valid_topic(topic, self.shared.config.max_topic_len) {
            // No such topic can hold anything.
            return match after {
                None => Ok(Vec::new()),
                Some(_) => Err(HistoryError::UnknownId),
            };
        }
        let held = match &self.shared.backbone {
            Some(backbone) => backbone.topic_history(topic, after, limit)?,
            None => self.lock().registry.history(topic, after, limit)?,
        };
        Ok(held.iter().map(decode_held).collect())
    }

    /// A stream counted by [`follow`](Self::follow) has ended.
    pub(crate) fn unfollow(&self, topics: &[Arc<str>]) {
        let last = self.lock().registry.unfollow(topics);
        if let Some(backbone) = &self.shared.backbone {
            last.iter().for_each(|t| backbone.unfollow(t));
        }
    }

    /// The hub's limits.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// What the hub has published and holds now.
    pub fn stats(&self) -> HubStats {
        let publisher = self.lock();
        let held = publisher.registry.held();
        HubStats {
            published: publisher.published,
            topics: held.topics,
            backlog_events: held.events,
            backlog_bytes: held.bytes,
        }
    }

    /// A hook for reporting whether a backbone is up from outside the [`Backbone`] trait (an application's own
    /// store, say): it keeps a clone and calls [`BackboneHealth::set_up`]; readiness checks and the
    /// `conduit_backbone_up` metric read it together with an external [`Backbone`]'s own state.
    pub fn backbone_health(&self) -> &BackboneHealth {
        &self.shared.health
    }

    pub(crate) fn attach(&self, loops: Vec<Remote<Msg>>) -> std::io::Result<()> {
        let mut publisher = self.lock();
        if publisher.loops.iter().any(Remote::is_open) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the hub is already attached to a running server",
            ));
        }
        if let Some(backbone) = &self.shared.backbone {
            backbone.start(deliver_to(loops.clone()))?;
        }
        publisher.loops = loops;
        Ok(())
    }

    /// Publishes `event` to every subscriber of `topic`, in order, exactly once, and keeps it in the topic's
    /// backlog for clients that resume. Unless the event has an id, the hub gives it the next number of its
    /// sequence (shared by all its topics, so ids increase within every topic, and taken from the clock in
    /// microseconds, so ids of an earlier run of the process are never reused). Returns the event's id.
    /// Never blocks on subscribers.
    ///
    /// **Which thread.** With the embedded backbone it numbers the event and hands it to the loops' mailboxes,
    /// under a lock held only for that, so async tasks and handlers on the loop may call it directly. On an
    /// external backbone it waits for the store to number and keep the event (one round trip to Redis), for
    /// as long as the backbone's connect and command timeouts allow when the store is slow or down: a handler
    /// on an event loop should then not call it, since the whole loop would wait with it. Defer instead (an
    /// [`Offload`](crate::Offload), or [`Reply::deferred`](crate::Reply::deferred) and a thread of your own),
    /// and answer once the publish returned; async code calls it from a blocking task.
    ///
    /// # Errors
    /// [`PublishError::InvalidTopic`], [`PublishError::NotRunning`] before the server runs or after it stopped,
    /// [`PublishError::Busy`] when the server's mailbox is full, [`PublishError::TooManyTopics`] when the
    /// topic is new and could not be kept, and [`PublishError::Backbone`] when the external backbone's store
    /// did not take it. An event that was not kept is never acknowledged with an id.
    pub fn publish(&self, topic: &str, event: Event) -> Result<String, PublishError> {
        if !valid_topic(topic, self.shared.config.max_topic_len) {
            return Err(PublishError::InvalidTopic);
        }
        if let Some(backbone) = &self.shared.backbone {
            // Numbered by the store, delivered by the node's reader like every other node's events.
            let seq = backbone.publish(topic, &event).map_err(PublishError::Backbone)?;
            self.lock().published += 1;
            return Ok(event.id_str().map_or_else(|| seq.to_string(), str::to_owned));
        }
        let topic: Arc<str> = Arc::from(topic);
        // Numbering and sending under one lock keeps every loop's arrival order equal to sequence order.
        let mut publisher = self.lock();
        let open: Vec<Remote<Msg>> = publisher.loops.iter().filter(|r| r.is_open()).cloned().collect();
        if open.is_empty() {
            return Err(PublishError::NotRunning);
        }
        // Every loop takes the event or none does: all have room now, and nothing else adds hub events while
        // the lock is held.
        if !open.iter().all(Remote::has_room) {
            return Err(PublishError::Busy);
        }
        let seq = next_sequence(publisher.seq, SystemTime::now());
        let (event, id) = match event.id_str() {
            Some(id) => {
                let id = id.to_owned();
                (event, id)
            }
            // A decimal number has no line break, so setting it cannot fail.
            None => match event.id(seq.to_string()) {
                Ok(e) => (e, seq.to_string()),
                Err(_) => return Err(PublishError::InvalidTopic),
            },
        };
        let shared = shared_event(seq, &event);
        let forgotten = publisher.registry.publish(&topic, &shared).map_err(|_| PublishError::TooManyTopics)?;
        let mut delivered = false;
        for (i, remote) in open.iter().enumerate() {
            if let Some(name) = &forgotten {
                // Before the event, so each loop has forgotten the old topic before it keeps the new one.
                let _ = remote.send_past_limit(Msg::Forget { topic: Arc::clone(name) });
            }
            // Each loop its own copy of the bytes, so loops on different cores never share a reference count
            // that every delivery changes.
            let event = if i == 0 { shared.clone() } else { shared.detached() };
            // A loop that stopped since the check is shutting down; the others still get the event.
            let msg = Msg::Publish { topic: Arc::clone(&topic), event, published_at: Instant::now() };
            delivered |= remote.send_past_limit(msg).is_ok();
        }
        if !delivered {
            return Err(PublishError::NotRunning);
        }
        publisher.seq = seq;
        publisher.published += 1;
        Ok(id)
    }
}

/// Hands a backbone's events to every loop, in order. A loop whose mailbox is full makes the backbone wait (it
/// holds the events, not the loop), up to a bound after which the event is queued anyway: order and
/// completeness matter more than the mailbox's soft limit.
fn deliver_to(loops: Vec<Remote<Msg>>) -> crate::backbone::Deliver {
    const PATIENCE: Duration = Duration::from_secs(1);
    Box::new(move |event: BackboneEvent| {
        let event = Arc::new(event);
        for remote in &loops {
            let deadline = Instant::now() + PATIENCE;
            while remote.is_open() && !remote.has_room() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            // A stopped loop is shutting down; the others still get the event.
            let _ = remote.send_past_limit(Msg::Backbone(Arc::clone(&event)));
        }
    })
}

/// The fields of an event the hub encoded. An event without data dispatches nothing in the SSE algorithm,
/// so it is read back as an event with empty data.
fn decode_held(event: &SharedEvent) -> MessageEvent {
    let mut decoder = Decoder::new();
    // The hub encoded these bytes itself: they are valid and far below any decoder limit.
    let _ = decoder.feed(event.body());
    decoder.next_event().unwrap_or_else(|| MessageEvent {
        event_type: "message".to_owned(),
        data: String::new(),
        last_event_id: event.id().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn topic_names_are_checked() {
        for (name, ok) in [("news", true), ("a/b-c.d", true), ("", false), ("a\nb", false), ("x\0", false)] {
            assert_eq!(valid_topic(name, 128), ok, "{name:?}");
        }
        assert!(valid_topic(&"a".repeat(128), 128));
        assert!(!valid_topic(&"a".repeat(129), 128));
    }

    #[test]
    fn publishing_needs_a_running_server() {
        let hub = Hub::new(HubConfig::default());
        assert_eq!(hub.publish("t", Event::new().data("x")), Err(PublishError::NotRunning));
        assert_eq!(hub.publish("", Event::new().data("x")), Err(PublishError::InvalidTopic));
    }

    #[test]
    fn sequence_numbers_come_from_the_clock_and_always_increase() {
        let at = |micros: u64| UNIX_EPOCH + Duration::from_micros(micros);
        for (last, now, want) in [
            (0, 1_700_000_000_000_000, 1_700_000_000_000_000),
            (1_700_000_000_000_000, 1_700_000_000_000_000, 1_700_000_000_000_001),
            (1_700_000_000_000_005, 1_700_000_000_000_002, 1_700_000_000_000_006),
            (5, 1_000, 1_000),
        ] {
            assert_eq!(next_sequence(last, at(now)), want, "after {last} at {now}");
        }
        assert_eq!(next_sequence(7, UNIX_EPOCH - Duration::from_secs(1)), 8, "a clock before 1970 is no clock");
    }

    #[test]
    fn held_events_decode_back_into_their_fields() {
        let event = Event::new().event("token").unwrap().data("a\nb");
        let held = decode_held(&shared_event(9, &event.id("9").unwrap()));
        assert_eq!((held.event_type.as_str(), held.data.as_str(), held.last_event_id.as_str()), ("token", "a\nb", "9"));
        let empty = decode_held(&shared_event(10, &Event::new().id("10").unwrap()));
        assert_eq!((empty.data.as_str(), empty.last_event_id.as_str()), ("", "10"));
    }
}
