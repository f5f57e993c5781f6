//! One node's handle on the backbone: its publisher, its reader, and what they share.

use crate::config::{ConfigError, RedisConfig};
use crate::entry::Entry;
use crate::epoch::Tokens;
use crate::keys::Keys;
use crate::publisher::Publisher;
use crate::query::Queries;
use crate::reader::{Reader, ReaderEvent};
use conduit_server::{BackboneError, HistoryError};
use conduit_sse::Event;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// What a node's publisher and reader share.
#[derive(Debug)]
pub(crate) struct NodeShared {
    pub(crate) config: RedisConfig,
    pub(crate) keys: Keys,
    /// The highest sequence number this node has seen, published or delivered: Redis holding less means it lost
    /// history (see [`crate::epoch`]).
    pub(crate) floor: AtomicU64,
    pub(crate) tokens: Tokens,
}

/// A node of a Conduit cluster on Redis: publishes into the shared history and reads it back in order.
///
/// A node holds at most four Redis connections whatever its number of topics: the publisher's, the reader's
/// (one blocking `XREAD` for every followed topic), a control connection that wakes the reader when the set of
/// topics changes, and one for [`topic_history`](Self::topic_history) reads. None is opened before it is
/// needed, and a node starts whether or not Redis is up.
///
/// ```no_run
/// use conduit_redis::{ReaderEvent, RedisConfig, RedisNode};
/// use conduit_sse::Event;
///
/// let node = RedisNode::new(RedisConfig::from_url("redis://127.0.0.1:6379")?)?;
/// let reader = node.start_reader(|event| {
///     if let ReaderEvent::Batch { entries, .. } = event {
///         for entry in entries {
///             println!("{} #{}: {:?}", entry.topic, entry.seq, entry.event.data_str());
///         }
///     }
/// })?;
/// reader.follow("news");
/// let seq = node.publish("news", &Event::new().data("hello"))?;
/// # let _ = seq;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RedisNode {
    shared: Arc<NodeShared>,
    publisher: Publisher,
    queries: Arc<Queries>,
}

impl fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisNode").field("url", &self.shared.config.url).finish_non_exhaustive()
    }
}

impl RedisNode {
    /// A node with `config`; no connection is opened yet.
    ///
    /// # Errors
    /// [`ConfigError`] when a setting is out of its bounds.
    pub fn new(config: RedisConfig) -> Result<RedisNode, ConfigError> {
        config.validate()?;
        let keys = config.keys()?;
        let shared = Arc::new(NodeShared { config, keys, floor: AtomicU64::new(0), tokens: Tokens::new() });
        let publisher = Publisher::new(Arc::clone(&shared));
        let queries = Arc::new(Queries::new(Arc::clone(&shared)));
        Ok(RedisNode { shared, publisher, queries })
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    /// The publisher, for threads that only publish.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Publishes `event` to `topic` and returns its sequence number; see [`Publisher::publish`].
    ///
    /// # Errors
    /// [`BackboneError`].
    pub fn publish(&self, topic: &str, event: &Event) -> Result<u64, BackboneError> {
        self.publisher.publish(topic, event)
    }

    /// Up to `limit` events of `topic` that Redis holds, oldest first: those after the event whose SSE id is
    /// `after`, or from the oldest. One `XRANGE`, returning at most `batch` events (ask again after the last one
    /// for more); it blocks for at most about twice `connect_timeout + command_timeout` (a connection found
    /// broken is replaced once), and fails at once while a failed connection waits out its backoff. For
    /// callers other than event loops. `after` is found by its number: an id the publisher chose itself
    /// (`Event::id`) is unknown here.
    ///
    /// # Errors
    /// [`HistoryError::UnknownId`] when the topic holds no event with that id, [`HistoryError::Backbone`] when
    /// Redis could not be read (`Unavailable`) or refused the read (`Rejected`).
    pub fn topic_history(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Entry>, HistoryError> {
        self.queries.topic_history(topic, after, limit)
    }

    /// Starts the node's reader thread (and its control thread), which hands everything it reads to `sink`, in
    /// order, on the reader thread. A node needs one reader.
    ///
    /// # Errors
    /// The OS refused to start a thread.
    pub fn start_reader<S>(&self, sink: S) -> std::io::Result<Reader>
    where
        S: FnMut(ReaderEvent) + Send + 'static,
    {
        Reader::start(Arc::clone(&self.shared), sink)
    }
}
