//! Publishing: one script call per event over one connection per node.

use crate::conn::{self, Link};
use crate::entry::event_fields;
use crate::node::NodeShared;
use crate::script::{self, PUBLISH};
use conduit_server::BackboneError;
use conduit_sse::Event;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Publishes events into the shared history from any thread; clones share one connection.
///
/// A publish takes one round trip. It never numbers anything itself, and it never waits longer than twice
/// `connect_timeout + command_timeout` (a second attempt only follows a connection that failed with the
/// event possibly sent); after a failed connection attempt it fails at once until the reconnect backoff has
/// passed.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<NodeShared>,
    marker: String,
    script: redis::Script,
    state: Mutex<State>,
}

struct State {
    link: Link,
    /// The number of the last publish sent, for the script's idempotence marker.
    number: u64,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").field("url", &self.inner.node.config.url).finish_non_exhaustive()
    }
}

impl Publisher {
    pub(crate) fn new(node: Arc<NodeShared>) -> Publisher {
        let link = Link::new(&node.config, "publisher");
        let marker = node.keys.publisher(&node.tokens.node());
        let state = Mutex::new(State { link, number: 0 });
        Publisher { inner: Arc::new(Inner { node, marker, script: redis::Script::new(PUBLISH), state }) }
    }

    /// Appends `event` to `topic`'s stream as the next number of the global sequence, and returns that number.
    /// The topic name is used as given (the hub checks names).
    ///
    /// # Errors
    /// `BackboneError`: `Unavailable` (nothing was sent), `Uncertain` (sent, and its fate could not be learned
    /// on a second connection) or `Rejected` (Redis answered with an error: out of memory, read-only...).
    pub fn publish(&self, topic: &str, event: &Event) -> Result<u64, BackboneError> {
        let inner = &*self.inner;
        let node = &*inner.node;
        let mut invocation = inner.script.prepare_invoke();
        invocation.key(node.keys.seq()).key(node.keys.epoch()).key(node.keys.topic(topic)).key(&inner.marker);
        // Read before the script runs: every number this node saw was handed out before it.
        invocation.arg(node.floor.load(Ordering::Acquire)).arg(node.tokens.candidate()).arg(node.config.backlog);
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.number += 1;
        invocation.arg(state.number);
        for (name, value) in event_fields(event) {
            invocation.arg(name).arg(value);
        }
        // A second attempt only after the connection failed with the event possibly sent: the marker makes it
        // safe, and it saves the publish that would otherwise fail on a connection Redis closed when it restarted.
        for attempt in 0..2 {
            let sent_before = attempt > 0;
            let fail = |why: String| match sent_before {
                true => BackboneError::Uncertain(why),
                false => BackboneError::Unavailable(why),
            };
            let conn = state.link.get(&node.config).map_err(fail)?;
            match invocation.invoke::<redis::Value>(conn) {
                Ok(reply) => {
                    let (seq, _epoch) = script::seq_and_epoch(&reply)
                        .ok_or_else(|| BackboneError::Uncertain(format!("unexpected reply {reply:?}")))?;
                    node.floor.fetch_max(seq, Ordering::AcqRel);
                    return Ok(seq);
                }
                Err(e) if conn::is_reply_error(&e) => return Err(BackboneError::Rejected(e.to_string())),
                Err(e) => {
                    state.link.broken();
                    if sent_before {
                        return Err(BackboneError::Uncertain(e.to_string()));
                    }
                    log::debug!("publish: {e}; trying once more on a new connection");
                }
            }
        }
        Err(BackboneError::Uncertain("the connection failed twice".to_owned()))
    }
}
