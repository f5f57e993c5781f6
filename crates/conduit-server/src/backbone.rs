//! The hub's backbone: the part that numbers events and keeps their history.
//!
//! The embedded backbone is the hub itself: it numbers events in the process and each event loop keeps the
//! backlogs. An external backbone (the Redis Streams one in `conduit-redis`) implements [`Backbone`]: it
//! numbers events in a store shared by many nodes, and feeds every node's loops the same [`BackboneEvent`]s in
//! the same order; the loops keep their backlogs as a cache of that history. Library users pick one when they
//! build the [`Hub`](crate::Hub) ([`Hub::with_backbone`](crate::Hub::with_backbone)); nothing else changes.
//!
//! ```text
//!  Hub::publish ──> Backbone::publish ──> the shared store (numbers the event)
//!                                               |
//!  every loop <── Deliver <── the backbone's reader (same events, same order, on every node)
//! ```
//!
//! This module sits at the bottom of the crate: it knows events and bytes, not loops or connections.

use conduit_http::{CHUNK_END, write_chunk_header};
use conduit_sse::{Event, SharedEvent};
use std::fmt;
use std::sync::Arc;

/// Why a backbone did not take an event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackboneError {
    /// The store could not be reached: nothing was published. Try again later.
    Unavailable(String),
    /// The store was reached but the outcome is unknown (the reply was lost); the event may or may not be
    /// published.
    Uncertain(String),
    /// The store refused the event.
    Rejected(String),
}

impl fmt::Display for BackboneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackboneError::Unavailable(why) => write!(f, "the backbone is unavailable: {why}"),
            BackboneError::Uncertain(why) => write!(f, "the publish may or may not have happened: {why}"),
            BackboneError::Rejected(why) => write!(f, "the backbone refused the event: {why}"),
        }
    }
}

impl std::error::Error for BackboneError {}

/// Why [`Hub::history`](crate::Hub::history) (or [`Backbone::topic_history`]) could not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryError {
    /// The id is not among the events the topic holds (too old, never published to it, or from an earlier
    /// run): what follows it cannot be told.
    UnknownId,
    /// The external backbone's store could not be read (unreachable, or too slow): try again later.
    Backbone(BackboneError),
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::UnknownId => f.write_str("the event id is not among those the topic holds"),
            HistoryError::Backbone(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HistoryError {}

/// Events after a position, answering [`Backbone::request_history`].
#[derive(Clone, Debug)]
pub struct HistoryAnswer {
    /// The events of the requested topics after the position, up to `through`, in sequence order.
    pub events: Vec<SharedEvent>,
    /// How far the answer goes; every [`BackboneEvent::Batch`] up to here was delivered before it.
    pub through: u64,
    /// False when events after the position are gone from the store: the answer holds what is left.
    pub complete: bool,
}

/// What a backbone tells every event loop of its node, in order.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BackboneEvent {
    /// The store lost the history the node delivered from: every cached event and earlier position is void;
    /// subscribers are told with a `reset`. `Joined` follows for every followed topic.
    NewEpoch {
        /// The node's position in the new history.
        through: u64,
    },
    /// A topic is now read, with its tail: the cache of the topic becomes exactly this.
    Joined {
        /// The topic.
        topic: Arc<str>,
        /// Its newest events up to `through`, oldest first.
        tail: Vec<SharedEvent>,
        /// Events of the topic up to here are not in `tail` (0: it holds everything).
        missing_through: u64,
        /// The node's position.
        through: u64,
    },
    /// A topic is no longer read: its cache goes stale.
    Left {
        /// The topic.
        topic: Arc<str>,
    },
    /// New events, in sequence order.
    Batch {
        /// Each event with its topic.
        events: Vec<(Arc<str>, SharedEvent)>,
        /// Topics whose events up to the given sequence number were lost to this node before their next event
        /// in `events`.
        gaps: Vec<(Arc<str>, u64)>,
        /// The node's position after this batch.
        through: u64,
    },
    /// The answer to a history request.
    History {
        /// The request's token.
        token: u64,
        /// The events, or why not.
        result: Result<HistoryAnswer, BackboneError>,
    },
}

/// Where a backbone hands its events: every event loop of the server gets each one, in order. It waits while a
/// loop's mailbox is full, so a slow node slows its reader instead of growing its memory.
pub type Deliver = Box<dyn FnMut(BackboneEvent) + Send>;

/// An external backbone: numbers events in a store shared by many nodes and feeds them back to this node.
///
/// Calls come from the hub: `publish` and `topic_history` from any thread (they may block for a bounded time;
/// the hub documents that event loops should not make them), `follow`, `unfollow` and `request_history` from
/// event loops (they must not block).
pub trait Backbone: Send + Sync + fmt::Debug {
    /// Numbers `event` and stores it under `topic`; returns its sequence number. The event reaches the loops
    /// through [`Deliver`], like everyone else's.
    ///
    /// # Errors
    /// [`BackboneError`]; an event that was not stored is never given a number.
    fn publish(&self, topic: &str, event: &Event) -> Result<u64, BackboneError>;

    /// The server's loops are running: deliver to `deliver` from now on (a later call replaces it).
    ///
    /// # Errors
    /// The backbone could not start (a thread could not be spawned, say).
    fn start(&self, deliver: Deliver) -> std::io::Result<()>;

    /// `topic` gained its first follower on this node: read it ([`BackboneEvent::Joined`] follows).
    fn follow(&self, topic: &str);

    /// `topic` lost its last follower on this node.
    fn unfollow(&self, topic: &str);

    /// Asks for the events of `topics` after `after`, at most `max`; answered with [`BackboneEvent::History`].
    fn request_history(&self, token: u64, after: u64, topics: &[Arc<str>], max: usize);

    /// Whether the store is reachable and the node reading from it.
    fn is_up(&self) -> bool;

    /// Up to `limit` events that the store holds for `topic`, oldest first: those after the event whose SSE id
    /// is `after`, or from the oldest. It reads the store and blocks its caller, for a time bounded by the
    /// backbone's timeouts; it needs no running server. A backbone may answer with fewer than `limit` events
    /// (a bound of its own per read): a caller that wants more asks again after the last one.
    ///
    /// # Errors
    /// [`HistoryError::UnknownId`] when `after` is not an event the topic holds, [`HistoryError::Backbone`] when
    /// the store could not be read.
    fn topic_history(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<SharedEvent>, HistoryError>;
}

/// Encodes an event once, framed as one HTTP chunk, for every subscriber of every loop; HTTP/1.0 subscribers
/// get the unframed range. The event's id is its SSE id.
pub fn shared_event(seq: u64, event: &Event) -> SharedEvent {
    let len = event.encoded_len();
    let mut bytes = Vec::with_capacity(len + 20);
    write_chunk_header(&mut bytes, len);
    let start = bytes.len();
    event.encode(&mut bytes);
    let end = bytes.len();
    bytes.extend_from_slice(CHUNK_END);
    SharedEvent::new(seq, event.id_str().unwrap_or(""), Arc::from(bytes), start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_events_are_framed_once() {
        let event = Event::new().id("7").unwrap().data("hi");
        let shared = shared_event(7, &event);
        assert_eq!(shared.bytes().as_ref(), b"10\r\nid: 7\ndata: hi\n\n\r\n");
        assert_eq!(shared.body(), b"id: 7\ndata: hi\n\n");
        assert_eq!((shared.seq(), shared.id()), (7, "7"));
    }
}
