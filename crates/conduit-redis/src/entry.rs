//! What a stream entry holds, and how an [`Event`] becomes one and comes back.
//!
//! An entry stores the event's fields, not its encoded bytes: `XRANGE` in `redis-cli` shows the events as they
//! were published, every node encodes them with the same encoder, and an entry written by anything else is
//! checked by the [`Event`] setters as it is read, so a malformed or hostile entry can never inject SSE fields.
//! Encoding happens once per node per event, the same cost the in-memory hub pays at publish.
//!
//! | field | holds | present |
//! |---|---|---|
//! | `p` | the sequence number of the topic's previous entry (0 for its first) | always |
//! | `d` | data | when set |
//! | `e` | event name | when set |
//! | `i` | the publisher's own id | when the event carried one; otherwise the SSE id is the sequence number |
//! | `r` | retry, in milliseconds | when set |
//! | `c` | comment | when set |

use conduit_sse::Event;
use redis::Value;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const FIELD_PREV: &str = "p";
const FIELD_DATA: &str = "d";
const FIELD_EVENT: &str = "e";
const FIELD_ID: &str = "i";
const FIELD_RETRY: &str = "r";
const FIELD_COMMENT: &str = "c";

/// One event of the shared history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its number in the global sequence: events of all topics are ordered by it.
    pub seq: u64,
    /// The sequence number of the topic's previous event (0 if none). A reader that does not hold that event has
    /// missed events of this topic: they were trimmed before it read them.
    pub prev: u64,
    /// The topic it was published to.
    pub topic: Arc<str>,
    /// The event, with its SSE id set: the publisher's own id if it had one, otherwise the sequence number.
    pub event: Event,
}

/// The stream fields for `event` (without `p`, which the publish script adds), in a fixed order.
pub(crate) fn event_fields(event: &Event) -> Vec<(&'static str, String)> {
    let mut fields = Vec::with_capacity(5);
    if let Some(data) = event.data_str() {
        fields.push((FIELD_DATA, data.to_owned()));
    }
    if let Some(name) = event.event_name() {
        fields.push((FIELD_EVENT, name.to_owned()));
    }
    if let Some(id) = event.id_str() {
        fields.push((FIELD_ID, id.to_owned()));
    }
    if let Some(retry) = event.retry_duration() {
        fields.push((FIELD_RETRY, retry.as_millis().to_string()));
    }
    if let Some(comment) = event.comment_str() {
        fields.push((FIELD_COMMENT, comment.to_owned()));
    }
    fields
}

/// Why an entry could not be read back. The reader logs it and skips the entry: the event is lost to this node,
/// and the topic's chain (`p`) shows the gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CorruptEntry {
    /// The entry id is not `<seq>-0` with a sequence number above 0.
    Id,
    /// The fields are not name/value pairs, `p` is missing, or a value is not what its name says.
    Fields,
}

impl std::fmt::Display for CorruptEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CorruptEntry::Id => "an entry id that is not <seq>-0",
            CorruptEntry::Fields => "entry fields that are not an event",
        })
    }
}

/// The sequence number of a stream id `<seq>-0`.
pub(crate) fn parse_stream_id(id: &[u8]) -> Option<u64> {
    let digits = id.strip_suffix(b"-0")?;
    parse_u64(digits).filter(|&seq| seq > 0)
}

/// Decimal digits only, no sign.
pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Builds an entry from a stream id and its flat list of field names and values.
pub(crate) fn decode_entry(topic: &Arc<str>, id: &[u8], fields: &[Value]) -> Result<Entry, CorruptEntry> {
    let seq = parse_stream_id(id).ok_or(CorruptEntry::Id)?;
    if !fields.len().is_multiple_of(2) {
        return Err(CorruptEntry::Fields);
    }
    let mut prev = None;
    let mut own_id = None;
    let mut event = Event::new();
    for pair in fields.chunks_exact(2) {
        let (Some(name), Some(value)) = (bytes_of(&pair[0]), bytes_of(&pair[1])) else {
            return Err(CorruptEntry::Fields);
        };
        let text = || std::str::from_utf8(value).map_err(|_| CorruptEntry::Fields);
        match std::str::from_utf8(name).unwrap_or("") {
            FIELD_PREV => prev = Some(parse_u64(value).ok_or(CorruptEntry::Fields)?),
            FIELD_DATA => event = event.data(text()?),
            FIELD_EVENT => event = event.event(text()?).map_err(|_| CorruptEntry::Fields)?,
            FIELD_ID => own_id = Some(text()?.to_owned()),
            FIELD_RETRY => {
                event = event.retry(Duration::from_millis(parse_u64(value).ok_or(CorruptEntry::Fields)?));
            }
            FIELD_COMMENT => event = event.comment(text()?),
            // Fields a later version may add are ignored.
            _ => {}
        }
    }
    let prev = prev.ok_or(CorruptEntry::Fields)?;
    let event = match own_id {
        Some(id) => event.id(id),
        None => event.id(seq.to_string()),
    }
    .map_err(|_| CorruptEntry::Fields)?;
    Ok(Entry { seq, prev, topic: Arc::clone(topic), event })
}

/// Reads a stream's entries: an array of `[id, [name, value, ...]]`. Corrupt entries are logged and skipped.
pub(crate) fn decode_entries(topic: &Arc<str>, reply: &Value) -> Vec<Entry> {
    let Value::Array(items) = reply else { return Vec::new() };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let decoded = match item {
            Value::Array(pair) if pair.len() == 2 => match (bytes_of(&pair[0]), &pair[1]) {
                (Some(id), Value::Array(fields)) => decode_entry(topic, id, fields),
                _ => Err(CorruptEntry::Fields),
            },
            _ => Err(CorruptEntry::Fields),
        };
        match decoded {
            Ok(entry) => entries.push(entry),
            Err(e) => log::warn!("skipping an entry of topic {topic:?}: {e}"),
        }
    }
    entries
}

/// The bytes of a string reply.
pub(crate) fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn flat(fields: &[(&str, &str)]) -> Vec<Value> {
        fields.iter().flat_map(|(n, v)| [bulk(n), bulk(v)]).collect()
    }

    #[test]
    fn stream_ids_are_sequence_numbers() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"1-0", Some(1)),
            (b"18446744073709551615-0", Some(u64::MAX)),
            (b"0-0", None),
            (b"5-1", None),
            (b"5", None),
            (b"-0", None),
            (b"+5-0", None),
            (b"18446744073709551616-0", None),
            (b"a-0", None),
        ];
        for (id, want) in cases {
            assert_eq!(parse_stream_id(id), *want, "{:?}", String::from_utf8_lossy(id));
        }
    }

    #[test]
    fn events_survive_the_round_trip() {
        let topic: Arc<str> = "news".into();
        let events = [
            Event::new().data("plain"),
            Event::new().data("two\nlines").event("update").unwrap(),
            Event::new().data("").id("own-7").unwrap(),
            Event::new().retry(Duration::from_millis(2500)).comment("note"),
            Event::new().event("").unwrap(),
        ];
        for event in events {
            let mut fields: Vec<Value> = vec![bulk("p"), bulk("3")];
            for (name, value) in event_fields(&event) {
                fields.extend([bulk(name), bulk(&value)]);
            }
            let entry = decode_entry(&topic, b"9-0", &fields).unwrap();
            let want = match event.id_str() {
                Some(_) => event.clone(),
                None => event.clone().id("9").unwrap(),
            };
            assert_eq!((entry.seq, entry.prev, &*entry.topic, &entry.event), (9, 3, "news", &want));
        }
    }

    #[test]
    fn corrupt_entries_are_refused() {
        let topic: Arc<str> = "t".into();
        let cases: &[(&[u8], Vec<Value>, CorruptEntry)] = &[
            (b"1-1", flat(&[("p", "0")]), CorruptEntry::Id),
            (b"1-0", flat(&[("d", "x")]), CorruptEntry::Fields),
            (b"1-0", flat(&[("p", "x")]), CorruptEntry::Fields),
            (b"1-0", flat(&[("p", "0"), ("e", "a\nid: 6")]), CorruptEntry::Fields),
            (b"1-0", flat(&[("p", "0"), ("i", "a\rb")]), CorruptEntry::Fields),
            (b"1-0", flat(&[("p", "0"), ("r", "soon")]), CorruptEntry::Fields),
            (b"1-0", vec![bulk("p")], CorruptEntry::Fields),
            (b"1-0", vec![bulk("p"), Value::Int(0)], CorruptEntry::Fields),
            (b"1-0", vec![bulk("p"), bulk("0"), bulk("d"), Value::BulkString(vec![0xff])], CorruptEntry::Fields),
        ];
        for (id, fields, want) in cases {
            assert_eq!(decode_entry(&topic, id, fields), Err(want.clone()), "{fields:?}");
        }
        // Unknown fields are ignored.
        let entry = decode_entry(&topic, b"2-0", &flat(&[("p", "1"), ("x", "y"), ("d", "ok")])).unwrap();
        assert_eq!(entry.event.data_str(), Some("ok"));
    }

    #[test]
    fn a_reply_skips_its_corrupt_entries() {
        let topic: Arc<str> = "t".into();
        let entry = |id: &str, prev: &str| Value::Array(vec![bulk(id), Value::Array(flat(&[("p", prev)]))]);
        let reply = Value::Array(vec![entry("1-0", "0"), entry("bad", "1"), Value::Nil, entry("3-0", "2")]);
        let seqs: Vec<u64> = decode_entries(&topic, &reply).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert!(decode_entries(&topic, &Value::Nil).is_empty());
    }
}
