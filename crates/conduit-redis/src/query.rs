//! Reading one topic's history for callers that are not streams (`Hub::history`: a handler's worker checking
//! whether a reply is complete, a tool reading a topic). One connection per node, opened on first use and
//! shared by the calling threads; each call is one `XRANGE`, bounded in events by the `batch` setting and in
//! time by the connect and command timeouts.

use crate::conn::{self, Link};
use crate::entry::{Entry, decode_entries, parse_u64};
use crate::node::NodeShared;
use conduit_server::{BackboneError, HistoryError};
use redis::Value;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A node's reads of topic history.
pub(crate) struct Queries {
    node: Arc<NodeShared>,
    link: Mutex<Link>,
}

impl fmt::Debug for Queries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queries").finish_non_exhaustive()
    }
}

impl Queries {
    pub(crate) fn new(node: Arc<NodeShared>) -> Queries {
        let link = Mutex::new(Link::new(&node.config, "history"));
        Queries { node, link }
    }

    /// Up to `limit` (and at most `batch`) entries of `topic`, oldest first: those after the entry whose SSE id
    /// is `after`, or from the oldest the stream holds.
    ///
    /// `after` is found by its number, so an id the publisher chose itself (`Event::id`) is unknown here unless
    /// it is the entry's sequence number.
    ///
    /// # Errors
    /// [`HistoryError::UnknownId`] when the stream holds no entry with that id; [`HistoryError::Backbone`] with
    /// `Unavailable` when Redis could not be reached or answered too slowly, `Rejected` when it answered with an
    /// error.
    pub(crate) fn topic_history(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, HistoryError> {
        let node = &*self.node;
        let count = limit.min(node.config.batch);
        let (start, count) = match after {
            None if count == 0 => return Ok(Vec::new()),
            None => ("-".to_owned(), count),
            // The entry itself comes first, to show that it is there.
            Some(id) => match parse_u64(id.as_bytes()).filter(|&seq| seq > 0) {
                Some(seq) => (format!("{seq}-0"), count + 1),
                None => return Err(HistoryError::UnknownId),
            },
        };
        let mut command = redis::cmd("XRANGE");
        command.arg(node.keys.topic(topic)).arg(&start).arg("+").arg("COUNT").arg(count);
        let reply = self.query(&command)?;
        let topic: Arc<str> = Arc::from(topic);
        let mut entries = decode_entries(&topic, &reply);
        if let Some(id) = after {
            match entries.first() {
                Some(first) if first.event.id_str() == Some(id) => {
                    entries.remove(0);
                }
                _ => return Err(HistoryError::UnknownId),
            }
        }
        Ok(entries)
    }

    /// Runs a read-only command; a connection found broken is replaced once, since a command that reads can be
    /// sent again.
    fn query(&self, command: &redis::Cmd) -> Result<Value, HistoryError> {
        let unavailable = |why: String| HistoryError::Backbone(BackboneError::Unavailable(why));
        let config = &self.node.config;
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        // A connection left from before may have been closed by Redis since (a restart); a new one is not retried.
        let mut retry = link.is_open();
        loop {
            let conn = link.get(config).map_err(unavailable)?;
            match command.query::<Value>(conn) {
                Ok(reply) => return Ok(reply),
                Err(e) if conn::is_reply_error(&e) => {
                    return Err(HistoryError::Backbone(BackboneError::Rejected(e.to_string())));
                }
                Err(e) => {
                    link.broken();
                    if !std::mem::take(&mut retry) {
                        return Err(unavailable(e.to_string()));
                    }
                    log::debug!("history read: {e}; trying once more on a new connection");
                }
            }
        }
    }
}
