//! The names of the backbone's keys.
//!
//! Every key starts with the prefix in braces, `{prefix}`, which Redis Cluster takes as the key's hash tag: all
//! of them hash to one slot, so the publish script (which touches the sequence, the epoch and a topic's stream
//! at once) is legal on a cluster, and every node reads one shard.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:seq` | string | the last sequence number handed out |
//! | `{prefix}:epoch` | string | a random token naming the current history |
//! | `{prefix}:topic:<name>` | stream | the topic's events, entry id `<seq>-0` |
//! | `{prefix}:publisher:<node>` | string, expires after an hour | the last publish of one node's publisher, so a publish re-sent after a lost reply is not applied twice |

use std::fmt;

/// Bytes in a key prefix at most.
pub const MAX_PREFIX_LEN: usize = 64;

/// The key names for one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    seq: String,
    epoch: String,
    topic_prefix: String,
    publisher_prefix: String,
}

/// Why a key prefix was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPrefix;

impl fmt::Display for InvalidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a key prefix is 1 to {MAX_PREFIX_LEN} printable ASCII characters without spaces, '{{' or '}}'")
    }
}

impl std::error::Error for InvalidPrefix {}

impl Keys {
    /// The keys under `prefix`: 1 to [`MAX_PREFIX_LEN`] printable ASCII characters, no space and no brace (a
    /// brace would move the hash tag).
    ///
    /// ```
    /// let keys = conduit_redis::Keys::new("app")?;
    /// assert_eq!((keys.seq(), keys.topic("news")), ("{app}:seq", "{app}:topic:news".to_owned()));
    /// # Ok::<(), conduit_redis::InvalidPrefix>(())
    /// ```
    ///
    /// # Errors
    /// [`InvalidPrefix`].
    pub fn new(prefix: &str) -> Result<Keys, InvalidPrefix> {
        let allowed = |b: u8| b.is_ascii_graphic() && b != b'{' && b != b'}';
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.bytes().all(allowed) {
            return Err(InvalidPrefix);
        }
        Ok(Keys {
            seq: format!("{{{prefix}}}:seq"),
            epoch: format!("{{{prefix}}}:epoch"),
            topic_prefix: format!("{{{prefix}}}:topic:"),
            publisher_prefix: format!("{{{prefix}}}:publisher:"),
        })
    }

    /// The global sequence's key.
    pub fn seq(&self) -> &str {
        &self.seq
    }

    /// The epoch token's key.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The stream key of `topic`.
    pub fn topic(&self, topic: &str) -> String {
        let mut key = String::with_capacity(self.topic_prefix.len() + topic.len());
        key.push_str(&self.topic_prefix);
        key.push_str(topic);
        key
    }

    /// The marker key of the publisher of `node`.
    pub fn publisher(&self, node: &str) -> String {
        format!("{}{node}", self.publisher_prefix)
    }

    /// The topic whose stream `key` is, if it is one of these keys.
    pub fn topic_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let name = key.strip_prefix(self.topic_prefix.as_bytes())?;
        std::str::from_utf8(name).ok()
    }
}

/// Redis Cluster's hash tag of `key`: what lies between the first `{` and the next `}`, when that is not empty;
/// otherwise the whole key.
#[cfg(test)]
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        let long = "p".repeat(MAX_PREFIX_LEN);
        let too_long = "p".repeat(MAX_PREFIX_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("conduit", true),
            ("a:b-c.d_1", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("a b", false),
            ("a{b", false),
            ("a}b", false),
            ("a\nb", false),
            ("é", false),
        ];
        for (prefix, ok) in cases {
            assert_eq!(Keys::new(prefix).is_ok(), *ok, "{prefix:?}");
        }
    }

    #[test]
    fn every_key_shares_one_hash_tag() {
        let keys = Keys::new("app").unwrap();
        // Topic names may hold braces of their own; the prefix's tag comes first, so it still wins.
        let topics = ["news", "a{b}c", "{x}", "}{", ""];
        let mut all = vec![keys.seq().to_owned(), keys.epoch().to_owned(), keys.publisher("0123abcd")];
        all.extend(topics.iter().map(|t| keys.topic(t)));
        for key in &all {
            assert_eq!(hash_tag(key), "app", "{key}");
        }
    }

    #[test]
    fn topics_come_back_from_their_keys() {
        let keys = Keys::new("app").unwrap();
        for topic in ["news", "a:b", "{x}", "ünï"] {
            assert_eq!(keys.topic_of(keys.topic(topic).as_bytes()), Some(topic));
        }
        assert_eq!(keys.topic_of(b"{app}:seq"), None);
        assert_eq!(keys.topic_of(b"{other}:topic:news"), None);
        assert_eq!(keys.topic_of(b"{app}:topic:\xff"), None);
    }
}
