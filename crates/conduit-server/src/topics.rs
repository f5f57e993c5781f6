//! The loop's side of the hub: each topic's backlog and who follows it on this loop. Every event loop keeps
//! its own copy of the topics it has seen; the events themselves are shared bytes. Which topics may exist is
//! decided node-wide by the hub's registry: a loop creates a topic when an event or a subscription for it
//! arrives, and drops it when the hub says it was forgotten or when nobody here follows it and it holds
//! nothing.
//!
//! On an external backbone the backlogs are a cache of the backbone's history, and the backbone decides which
//! topics are cached: a topic is usable once it has *joined* (its tail loaded), on every loop at once, and
//! stays until it *leaves*.

use crate::hub::{Hub, HubConfig};
use conduit_net::ConnId;
use conduit_sse::Backlog;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// One topic as the loop keeps it.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) backlog: Backlog,
    /// Subscribers that get each event as it is published, in the order of their connections' places in the
    /// loop's slab (see `fanout::deliver` for why the order matters).
    pub(crate) live: BTreeSet<ConnId>,
    /// Subscribers reading the backlog through a cursor; each eviction checks that none of them needed it.
    pub(crate) catching_up: HashSet<ConnId>,
    /// The backlog holds the topic's history up to the loop's position: always, on the embedded backbone; on an
    /// external one, from the topic's `Joined` until its `Left`.
    pub(crate) joined: bool,
}

impl Topic {
    pub(crate) fn is_followed(&self) -> bool {
        !self.live.is_empty() || !self.catching_up.is_empty()
    }
}

/// The loop's side of the hub.
#[derive(Debug)]
pub(crate) struct HubState {
    pub(crate) hub: Hub,
    pub(crate) config: HubConfig,
    pub(crate) topics: HashMap<Arc<str>, Topic>,
    /// The newest sequence number the loop has received (on an external backbone: the position it has read
    /// through).
    pub(crate) published: u64,
    /// On an external backbone.
    pub(crate) distributed: bool,
    /// Positions up to here belong to an earlier epoch of the external backbone's history: unknown here.
    pub(crate) epoch_start: u64,
    /// Subscriptions whose stream is open but whose start is not decided yet: their topics have not joined, or
    /// history older than the cache is on its way.
    pub(crate) waiting: HashSet<ConnId>,
    /// Subscriptions that just sent the event they end after ([`Sse::end_after`](crate::Sse::end_after)); the
    /// dispatcher ends them after each fan-out step.
    pub(crate) ended: Vec<ConnId>,
}

impl HubState {
    pub(crate) fn new(hub: Hub) -> Self {
        HubState {
            config: hub.config().clone(),
            distributed: hub.is_distributed(),
            hub,
            topics: HashMap::new(),
            published: 0,
            epoch_start: 0,
            waiting: HashSet::new(),
            ended: Vec::new(),
        }
    }

    /// The topic, created if this loop has not seen it yet.
    pub(crate) fn topic(&mut self, name: &Arc<str>) -> &mut Topic {
        let backlog = self.config.backlog;
        let joined = !self.distributed;
        self.topics.entry(Arc::clone(name)).or_insert_with(|| Topic {
            backlog: Backlog::new(backlog),
            live: BTreeSet::new(),
            catching_up: HashSet::new(),
            joined,
        })
    }

    /// True when every one of `topics` is cached here.
    pub(crate) fn all_joined(&self, topics: &[Arc<str>]) -> bool {
        topics.iter().all(|t| self.topics.get(t).is_some_and(|t| t.joined))
    }

    /// The hub forgot `name` to make room. A stream here may have started following it since the hub decided
    /// (the hub then knows it again, as a followed topic): such a topic is kept.
    pub(crate) fn forget(&mut self, name: &Arc<str>) {
        if self.topics.get(name).is_some_and(|t| !t.is_followed()) {
            log::debug!("forgetting idle topic {name:?}: {} topics is the maximum", self.config.max_topics);
            self.topics.remove(name);
        }
    }

    /// Drops `name` if nobody here follows it and it holds no event; topics with events stay until the hub
    /// forgets them, for clients that resume.
    /// On an external backbone a joined topic stays until it leaves, even empty: other loops' followers keep
    /// it joined.
    pub(crate) fn drop_if_unused(&mut self, name: &Arc<str>) {
        let unused = |t: &Topic| !t.is_followed() && t.backlog.is_empty() && !(self.distributed && t.joined);
        if self.topics.get(name).is_some_and(unused) {
            self.topics.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_topics_go_unless_followed_and_empty_unfollowed_ones_go_at_once() {
        let mut state = HubState::new(Hub::new(HubConfig::default()));
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        state.topic(&a).live.insert(ConnId::from_u64(1));
        state.topic(&b);
        state.forget(&a);
        state.forget(&b);
        assert!(state.topics.contains_key(&a), "a is followed here");
        assert!(!state.topics.contains_key(&b));
        state.topic(&c);
        state.drop_if_unused(&c);
        assert!(!state.topics.contains_key(&c));
    }
}
