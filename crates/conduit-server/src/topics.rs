//! The loop's side of the hub: each topic's backlog and who follows it. Every event loop keeps its own copy of
//! every topic's state; the events themselves are shared bytes.

use crate::hub::HubConfig;
use conduit_net::ConnId;
use conduit_sse::Backlog;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One topic as the loop keeps it.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) backlog: Backlog,
    /// Subscribers that get each event as it is published.
    pub(crate) live: HashSet<ConnId>,
    /// Subscribers reading the backlog through a cursor; each eviction checks that none of them needed it.
    pub(crate) catching_up: HashSet<ConnId>,
}

impl Topic {
    /// A topic anyone follows is never forgotten.
    pub(crate) fn is_followed(&self) -> bool {
        !self.live.is_empty() || !self.catching_up.is_empty()
    }
}

/// The loop's side of the hub.
#[derive(Debug)]
pub(crate) struct HubState {
    pub(crate) config: HubConfig,
    pub(crate) topics: HashMap<Arc<str>, Topic>,
    /// The newest sequence number the loop has received.
    pub(crate) published: u64,
}

impl HubState {
    pub(crate) fn new(config: HubConfig) -> Self {
        HubState { config, topics: HashMap::new(), published: 0 }
    }

    /// The topic, created if needed. Past `max_topics` the idle topic with the oldest last event is
    /// forgotten to make room; if every topic has followers, `None`.
    pub(crate) fn topic(&mut self, name: &Arc<str>) -> Option<&mut Topic> {
        if !self.topics.contains_key(name) {
            if self.topics.len() >= self.config.max_topics {
                let idle = self
                    .topics
                    .iter()
                    .filter(|(_, t)| !t.is_followed())
                    .min_by_key(|(_, t)| t.backlog.newest_seq())
                    .map(|(n, _)| Arc::clone(n))?;
                log::info!("forgetting idle topic {idle:?}: {} topics is the maximum", self.config.max_topics);
                self.topics.remove(&idle);
            }
            let topic =
                Topic { backlog: Backlog::new(self.config.backlog), live: HashSet::new(), catching_up: HashSet::new() };
            self.topics.insert(Arc::clone(name), topic);
        }
        self.topics.get_mut(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_topics_make_room_and_followed_ones_do_not() {
        let mut state = HubState::new(HubConfig { max_topics: 2, ..HubConfig::default() });
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let follower = ConnId::from_u64(1);
        state.topic(&a).unwrap().live.insert(follower);
        state.topic(&b).unwrap();
        assert!(state.topic(&c).is_some(), "b was idle and made room");
        assert!(!state.topics.contains_key(&b));
        state.topic(&c).unwrap().catching_up.insert(follower);
        assert!(state.topic(&b).is_none(), "every topic is followed");
    }
}
