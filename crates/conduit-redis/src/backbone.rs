//! The Redis backbone as the hub sees it: [`RedisBackbone`] implements `conduit_server::Backbone`.

use crate::config::{ConfigError, RedisConfig};
use crate::entry::Entry;
use crate::node::RedisNode;
use crate::reader::{HistoryError, HistoryRequest, Reader, ReaderEvent};
use conduit_server::backbone::{
    Backbone, BackboneError, BackboneEvent, Deliver, HistoryAnswer, HistoryError as TopicHistoryError, shared_event,
};
use conduit_server::{Hub, HubConfig};
use conduit_sse::{Event, SharedEvent};
use std::fmt;
use std::sync::{Arc, Mutex};

/// A hub backbone on Redis Streams: build the hub with it and every server on the same Redis (and key prefix)
/// is one cluster.
///
/// ```no_run
/// use conduit_redis::{RedisBackbone, RedisConfig};
/// use conduit_server::{Hub, HubConfig};
///
/// let backbone = RedisBackbone::new(RedisConfig::from_url("redis://127.0.0.1:6379")?)?;
/// let hub = Hub::with_backbone(HubConfig::default(), backbone);
/// // Bind servers with `Server::bind_with_hub(.., &hub)` exactly as with the embedded hub.
/// # Ok::<(), conduit_redis::ConfigError>(())
/// ```
///
/// The node's reader starts when a server binds the hub; it encodes each event once for all the node's event
/// loops. A publish blocks its caller for one Redis round trip, and `Hub::history` for one `XRANGE` (both
/// bounded by the configured timeouts): event loops should leave both to other threads.
pub struct RedisBackbone {
    node: RedisNode,
    reader: Mutex<Option<Reader>>,
    deliver: Arc<Mutex<Option<Deliver>>>,
}

impl fmt::Debug for RedisBackbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackbone").field("node", &self.node).finish_non_exhaustive()
    }
}

impl RedisBackbone {
    /// A backbone on the Redis `config` describes; nothing connects before a server starts it.
    ///
    /// # Errors
    /// [`ConfigError`] for a setting out of its bounds.
    pub fn new(config: RedisConfig) -> Result<RedisBackbone, ConfigError> {
        Ok(RedisBackbone { node: RedisNode::new(config)?, reader: Mutex::new(None), deliver: Arc::default() })
    }

    /// A hub on Redis when `redis` is given, the embedded hub otherwise: for programs with an optional
    /// `--redis` setting.
    ///
    /// # Errors
    /// [`ConfigError`] for a Redis setting out of its bounds.
    pub fn hub_or_embedded(config: HubConfig, redis: Option<RedisConfig>) -> Result<Hub, ConfigError> {
        Ok(match redis {
            Some(redis) => Hub::with_backbone(config, RedisBackbone::new(redis)?),
            None => Hub::new(config),
        })
    }

    /// The node underneath, to publish without a hub (a producer process, say).
    pub fn node(&self) -> &RedisNode {
        &self.node
    }

    fn with_reader(&self, f: impl FnOnce(&Reader)) {
        match self.reader.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(reader) => f(reader),
            None => log::warn!("the Redis backbone was used before a server started it"),
        }
    }
}

impl Backbone for RedisBackbone {
    fn publish(&self, topic: &str, event: &Event) -> Result<u64, BackboneError> {
        self.node.publish(topic, event)
    }

    fn start(&self, deliver: Deliver) -> std::io::Result<()> {
        *self.deliver.lock().unwrap_or_else(|e| e.into_inner()) = Some(deliver);
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if reader.is_none() {
            let target = Arc::clone(&self.deliver);
            *reader = Some(self.node.start_reader(move |event| {
                if let Some(event) = to_backbone_event(event)
                    && let Some(deliver) = target.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                {
                    deliver(event);
                }
            })?);
        }
        Ok(())
    }

    fn follow(&self, topic: &str) {
        self.with_reader(|r| r.follow(topic));
    }

    fn unfollow(&self, topic: &str) {
        self.with_reader(|r| r.unfollow(topic));
    }

    fn request_history(&self, token: u64, after: u64, topics: &[Arc<str>], max: usize) {
        let request = HistoryRequest { token, after, topics: topics.to_vec(), max };
        self.with_reader(|r| r.request_history(request));
    }

    fn is_up(&self) -> bool {
        self.reader.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(Reader::is_up)
    }

    fn topic_history(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SharedEvent>, TopicHistoryError> {
        Ok(self.node.topic_history(topic, after, limit)?.iter().map(shared).collect())
    }
}

/// Encodes an entry once for all of the node's loops.
fn shared(entry: &Entry) -> SharedEvent {
    shared_event(entry.seq, &entry.event)
}

/// What the hub's loops need of a reader event; up and down are read through [`Backbone::is_up`].
fn to_backbone_event(event: ReaderEvent) -> Option<BackboneEvent> {
    Some(match event {
        ReaderEvent::Up { .. } | ReaderEvent::Down { .. } => return None,
        ReaderEvent::NewEpoch { through } => BackboneEvent::NewEpoch { through },
        ReaderEvent::Joined { topic, tail, through } => BackboneEvent::Joined {
            missing_through: tail.first().map_or(0, |e| e.prev),
            tail: tail.iter().map(shared).collect(),
            topic,
            through,
        },
        ReaderEvent::Left { topic } => BackboneEvent::Left { topic },
        ReaderEvent::Batch { entries, gaps, through } => BackboneEvent::Batch {
            events: entries.iter().map(|e| (Arc::clone(&e.topic), shared(e))).collect(),
            gaps: gaps.into_iter().map(|g| (g.topic, g.until - 1)).collect(),
            through,
        },
        ReaderEvent::History { token, result } => BackboneEvent::History {
            token,
            result: match result {
                Ok(history) => Ok(HistoryAnswer {
                    events: history.entries.iter().map(shared).collect(),
                    through: history.through,
                    complete: history.complete,
                }),
                Err(HistoryError::Unavailable(why)) => Err(BackboneError::Unavailable(why)),
            },
        },
    })
}
