//! # conduit-redis
//!
//! A Redis Streams backbone for Conduit: many nodes share one ordered history of events, so an event published
//! on any node reaches the subscribers of every node, in the same order everywhere, and a client resumes with
//! its `Last-Event-ID` on any node and across restarts.
//!
//! ```text
//!  conduit-redis    this crate: RedisBackbone, publish script, reader thread, history   <-> Redis (one slot)
//!        |
//!  conduit-server   the hub and its Backbone trait: topics, subscribers, resume
//!        |
//!  conduit-sse      Event
//! ```
//!
//! A server uses it through [`RedisBackbone`], picked when the hub is built:
//! `Hub::with_backbone(HubConfig::default(), RedisBackbone::new(config)?)`. [`RedisNode`] is the same machinery
//! without a hub.
//!
//! It uses the `redis` crate's synchronous API on dedicated threads: no async runtime.
//!
//! ## How it works
//! - **Publish** ([`Publisher`]) is one Lua script, one atomic step in Redis: `INCR` the global sequence, and
//!   `XADD` the event to its topic's stream with that number as the entry id (`<seq>-0`), trimmed with
//!   `MAXLEN ~ backlog`. The sequence number is the event's SSE id, so ids increase across all topics and nodes.
//!   Nothing is numbered locally: when Redis is unreachable a publish fails with a typed error, within the
//!   configured timeouts.
//! - **Delivery** ([`Reader`]): each node has one reader thread that reads every topic with local followers in
//!   one atomic snapshot, merges them by sequence, and hands batches to a sink (the hub's event loops). The node
//!   that publishes does not deliver directly, so every node delivers the same events in the same order.
//! - **Resume**: a topic that a node starts following first has its tail loaded, for the node's cache; older
//!   positions are answered from Redis ([`HistoryRequest`]). Readers that are not streams (`Hub::history`)
//!   read a topic from Redis with one `XRANGE` per call ([`RedisNode::topic_history`]).
//! - **Failures**: the reader reconnects with capped backoff and continues from its position, losing nothing
//!   Redis still holds. If Redis lost its data, that is a new epoch ([`ReaderEvent::NewEpoch`]), never a silent
//!   gap or a reused id (see the `epoch` notes on [`ReaderEvent::NewEpoch`]).
//!
//! All keys share the hash tag `{prefix}` ([`Keys`]), so the design also runs on one Redis Cluster slot. Redis
//! should run with `maxmemory-policy noeviction` (an evicted key is lost history) and, to survive its own
//! restarts, `appendonly yes`.
//!
//! ```no_run
//! use conduit_redis::{ReaderEvent, RedisConfig, RedisNode};
//! use conduit_sse::Event;
//!
//! let mut config = RedisConfig::from_url("redis://:secret@127.0.0.1:6379/0")?;
//! config.backlog = 10_000;
//! let node = RedisNode::new(config)?;
//! let reader = node.start_reader(|event| match event {
//!     ReaderEvent::Batch { entries, .. } => {
//!         for entry in entries {
//!             println!("{} #{}: {:?}", entry.topic, entry.seq, entry.event.data_str());
//!         }
//!     }
//!     other => println!("{other:?}"),
//! })?;
//! reader.follow("news");
//! match node.publish("news", &Event::new().data("hello")) {
//!     Ok(seq) => println!("published as {seq}"),
//!     Err(e) => eprintln!("not published: {e}"), // answer 503, try again later
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backbone;
mod config;
mod conn;
mod entry;
mod epoch;
mod keys;
mod merge;
mod node;
mod publisher;
mod query;
mod reader;
mod script;
pub mod testing;
mod url;

pub use backbone::RedisBackbone;
pub use conduit_server::BackboneError;
pub use config::{
    BACKLOG_RANGE, BATCH_RANGE, BLOCK_RANGE, ConfigError, RECONNECT_INITIAL_RANGE, RECONNECT_MAX_LIMIT, RedisConfig,
    TIMEOUT_RANGE,
};
pub use entry::Entry;
pub use keys::{InvalidPrefix, Keys, MAX_PREFIX_LEN};
pub use merge::Gap;
pub use node::RedisNode;
pub use publisher::Publisher;
pub use reader::{History, HistoryError, HistoryRequest, Reader, ReaderEvent};
pub use url::{DEFAULT_PORT, MAX_CREDENTIAL_LEN, MAX_DB, MAX_HOST_LEN, MAX_URL_LEN, RedisUrl, UrlError};
