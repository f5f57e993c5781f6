//! Which topics exist and how many streams follow each, across all of a server's event loops; the one place
//! that decides when a topic may be created and which one is forgotten to make room. It lives under the hub's
//! publishing lock, so a publish learns *before* it is acknowledged whether its topic can be kept.
//!
//! Two kinds of topic are bounded separately:
//!
//! - *published* topics hold events, at most `max_topics`. Publishing to a new topic past that forgets the
//!   published topic nobody follows whose newest event is oldest; if every published topic has followers,
//!   the publish is refused ([`RegistryError::TooManyTopics`]).
//! - *unpublished* topics are followed by streams but have never had an event, at most
//!   `max_unpublished_topics`; past that a subscription that would create another is refused
//!   ([`RegistryError::TooManyUnpublished`]). They are forgotten as soon as nobody follows them.
//!
//! So subscribers alone, however many, can never fill the table that publishing needs, and a subscription to
//! several new topics gets all of them or none.

use crate::backbone::HistoryError;
use conduit_sse::{Backlog, BacklogLimits, SharedEvent};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Why the registry refused a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegistryError {
    /// `max_topics` published topics exist and every one has followers.
    TooManyTopics,
    /// `max_unpublished_topics` topics are waited on before anything was published to them.
    TooManyUnpublished,
}

#[derive(Debug)]
struct Entry {
    /// Sequence number of the topic's newest event; 0 while unpublished.
    newest: u64,
    followers: usize,
    /// What the topic holds, for readers outside the loops ([`Registry::history`]); the bytes are shared with
    /// the loops' copies.
    backlog: Backlog,
}

impl Entry {
    fn new(limits: BacklogLimits) -> Entry {
        Entry { newest: 0, followers: 0, backlog: Backlog::new(limits) }
    }
}

/// What the registry holds, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) topics: usize,
    pub(crate) events: usize,
    pub(crate) bytes: usize,
}

/// The node-wide topic table.
#[derive(Debug)]
pub(crate) struct Registry {
    max_topics: usize,
    backlog: BacklogLimits,
    max_unpublished: usize,
    topics: HashMap<Arc<str>, Entry>,
    /// Published topics nobody follows, by their newest event: the first is forgotten first.
    idle: BTreeMap<u64, Arc<str>>,
    published: usize,
    unpublished: usize,
}

impl Registry {
    pub(crate) fn new(max_topics: usize, max_unpublished: usize, backlog: BacklogLimits) -> Registry {
        Registry {
            max_topics,
            backlog,
            max_unpublished,
            topics: HashMap::new(),
            idle: BTreeMap::new(),
            published: 0,
            unpublished: 0,
        }
    }

    /// Records `event` of `topic` (sequence numbers increase from call to call). Returns the topic forgotten
    /// to make room, if one was.
    ///
    /// # Errors
    /// [`RegistryError::TooManyTopics`]: nothing was changed.
    pub(crate) fn publish(&mut self, topic: &Arc<str>, event: &SharedEvent) -> Result<Option<Arc<str>>, RegistryError> {
        let seq = event.seq();
        let newest = self.topics.get(topic).map(|e| e.newest);
        let mut forgotten = None;
        if newest.is_none_or(|n| n == 0) {
            // A new published topic: find it a place first, so a refusal changes nothing.
            if self.published >= self.max_topics {
                let (_, name) = self.idle.pop_first().ok_or(RegistryError::TooManyTopics)?;
                self.topics.remove(&name);
                self.published -= 1;
                forgotten = Some(name);
            }
            self.published += 1;
            if newest == Some(0) {
                self.unpublished -= 1;
            }
        }
        let limits = self.backlog;
        let entry = self.topics.entry(Arc::clone(topic)).or_insert_with(|| Entry::new(limits));
        if entry.followers == 0 {
            self.idle.remove(&entry.newest);
            self.idle.insert(seq, Arc::clone(topic));
        }
        entry.newest = seq;
        // Sequence numbers only increase, so the push cannot be out of order.
        let _ = entry.backlog.push(event.clone());
        Ok(forgotten)
    }

    /// Counts one more follower for each of `topics` (distinct names), creating unknown ones as unpublished.
    /// Returns the topics that had no follower before.
    ///
    /// # Errors
    /// [`RegistryError::TooManyUnpublished`]: nothing was changed.
    pub(crate) fn follow(&mut self, topics: &[Arc<str>]) -> Result<Vec<Arc<str>>, RegistryError> {
        let new = topics.iter().filter(|t| !self.topics.contains_key(*t)).count();
        if self.unpublished + new > self.max_unpublished {
            return Err(RegistryError::TooManyUnpublished);
        }
        self.unpublished += new;
        let limits = self.backlog;
        let mut first = Vec::new();
        for topic in topics {
            let entry = self.topics.entry(Arc::clone(topic)).or_insert_with(|| Entry::new(limits));
            if entry.followers == 0 {
                if entry.newest > 0 {
                    self.idle.remove(&entry.newest);
                }
                first.push(Arc::clone(topic));
            }
            entry.followers += 1;
        }
        Ok(first)
    }

    /// Counts one follower less for each of `topics`, as counted by an earlier [`follow`](Self::follow).
    /// Returns the topics left without a follower.
    pub(crate) fn unfollow(&mut self, topics: &[Arc<str>]) -> Vec<Arc<str>> {
        let mut last = Vec::new();
        for topic in topics {
            let Some(entry) = self.topics.get_mut(topic) else { continue };
            entry.followers = entry.followers.saturating_sub(1);
            if entry.followers > 0 {
                continue;
            }
            last.push(Arc::clone(topic));
            if entry.newest == 0 {
                self.topics.remove(topic);
                self.unpublished -= 1;
            } else {
                self.idle.insert(entry.newest, Arc::clone(topic));
            }
        }
        last
    }

    /// Up to `limit` events of `topic` after the one with id `after` (from the oldest held without one).
    ///
    /// # Errors
    /// [`HistoryError::UnknownId`] when `after` is not held: too old, never published to this topic, or from
    /// an earlier run.
    pub(crate) fn history(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SharedEvent>, HistoryError> {
        let Some(entry) = self.topics.get(topic) else {
            return match after {
                None => Ok(Vec::new()),
                Some(_) => Err(HistoryError::UnknownId),
            };
        };
        let cursor = match after {
            None => 0,
            Some(id) => entry.backlog.seq_of(id).ok_or(HistoryError::UnknownId)?,
        };
        Ok(entry.backlog.iter_after(cursor).take(limit).cloned().collect())
    }

    /// Topics known, and the events and bytes their backlogs hold.
    pub(crate) fn held(&self) -> Held {
        let mut held = Held { topics: self.topics.len(), events: 0, bytes: 0 };
        for entry in self.topics.values() {
            held.events += entry.backlog.len();
            held.bytes += entry.backlog.bytes();
        }
        held
    }

    /// Published and unpublished topics known.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.published, self.unpublished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> SharedEvent {
        let body = format!("id: {seq}\ndata: x\n\n").into_bytes();
        let len = body.len();
        SharedEvent::new(seq, &seq.to_string(), Arc::from(body), 0..len)
    }

    fn registry(max_topics: usize, max_unpublished: usize) -> Registry {
        Registry::new(max_topics, max_unpublished, BacklogLimits { max_events: 3, max_bytes: 1 << 20 })
    }

    #[test]
    fn history_reads_what_a_topic_holds_after_an_id() {
        let mut r = registry(10, 10);
        let t: Arc<str> = Arc::from("t");
        for seq in 1..=5 {
            r.publish(&t, &ev(seq)).unwrap();
        }
        let seqs = |events: Vec<SharedEvent>| events.iter().map(SharedEvent::seq).collect::<Vec<_>>();
        assert_eq!(seqs(r.history("t", None, 10).unwrap()), [3, 4, 5], "the backlog keeps 3");
        assert_eq!(seqs(r.history("t", Some("3"), 1).unwrap()), [4]);
        assert_eq!(seqs(r.history("t", Some("5"), 10).unwrap()), Vec::<u64>::new());
        assert_eq!(r.history("t", Some("1"), 10), Err(HistoryError::UnknownId), "evicted");
        assert_eq!(r.history("nope", None, 10), Ok(vec![]));
        assert_eq!(r.history("nope", Some("1"), 10), Err(HistoryError::UnknownId));
        let one = ev(1).body().len();
        assert_eq!(r.held(), Held { topics: 1, events: 3, bytes: 3 * one }, "what the backlog keeps");
    }

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|&n| Arc::from(n)).collect()
    }

    #[test]
    fn publishing_past_the_limit_forgets_the_idle_topic_with_the_oldest_event() {
        let mut r = registry(2, 10);
        let [a, b, c] = ["a", "b", "c"].map(Arc::<str>::from);
        assert_eq!(r.publish(&a, &ev(1)), Ok(None));
        assert_eq!(r.publish(&b, &ev(2)), Ok(None));
        assert_eq!(r.publish(&a, &ev(3)), Ok(None), "a is known: no room needed");
        assert_eq!(r.publish(&c, &ev(4)), Ok(Some(Arc::clone(&b))), "b's newest event (2) is older than a's (3)");
        assert_eq!(r.counts(), (2, 0));
    }

    #[test]
    fn followed_topics_are_never_forgotten_and_a_publish_that_cannot_be_kept_is_refused() {
        let mut r = registry(2, 10);
        let [a, b, c] = ["a", "b", "c"].map(Arc::<str>::from);
        r.publish(&a, &ev(1)).unwrap();
        r.publish(&b, &ev(2)).unwrap();
        r.follow(&names(&["a", "b"])).unwrap();
        assert_eq!(r.publish(&c, &ev(3)), Err(RegistryError::TooManyTopics));
        assert_eq!(r.counts(), (2, 0), "a refusal changes nothing");
        r.unfollow(&names(&["b"]));
        assert_eq!(r.publish(&c, &ev(4)), Ok(Some(b)));
    }

    #[test]
    fn a_subscription_gets_all_its_new_topics_or_none() {
        let mut r = registry(10, 3);
        r.follow(&names(&["x", "y"])).unwrap();
        assert_eq!(r.follow(&names(&["p", "q"])), Err(RegistryError::TooManyUnpublished));
        assert_eq!(r.counts(), (0, 2), "nothing of the refused subscription was kept");
        assert_eq!(r.follow(&names(&["x", "p"])), Ok(names(&["p"])), "x already had a follower");
        assert_eq!(r.counts(), (0, 3));
        assert_eq!(r.unfollow(&names(&["x", "p"])), names(&["p"]), "x has one more");
    }

    #[test]
    fn unpublished_topics_never_take_the_room_publishing_needs() {
        let mut r = registry(2, 1000);
        for k in 0..1000 {
            r.follow(&names(&[&format!("squat-{k}")])).unwrap();
        }
        let [v, w] = ["victim", "other"].map(Arc::<str>::from);
        assert_eq!(r.publish(&v, &ev(1)), Ok(None));
        assert_eq!(r.publish(&w, &ev(2)), Ok(None));
        assert_eq!(r.counts(), (2, 1000));
    }

    #[test]
    fn an_unpublished_topic_becomes_published_with_its_first_event_and_is_forgotten_when_unfollowed_before() {
        let mut r = registry(1, 5);
        let [a, b] = ["a", "b"].map(Arc::<str>::from);
        r.follow(std::slice::from_ref(&a)).unwrap();
        r.follow(std::slice::from_ref(&b)).unwrap();
        assert_eq!(r.publish(&a, &ev(1)), Ok(None));
        assert_eq!(r.counts(), (1, 1));
        assert_eq!(r.publish(&b, &ev(2)), Err(RegistryError::TooManyTopics), "a is followed, b cannot get a place");
        r.unfollow(std::slice::from_ref(&b));
        assert_eq!(r.counts(), (1, 0), "b never had an event: forgotten at once");
        r.unfollow(std::slice::from_ref(&a));
        assert_eq!(r.publish(&b, &ev(3)), Ok(Some(a)));
    }
}
