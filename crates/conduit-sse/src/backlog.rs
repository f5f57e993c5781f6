//! Bounded per-topic backlogs and the resume decision, sans-I/O.
//!
//! A hub numbers every published event with one increasing sequence shared by all its topics. A subscriber's
//! position is the sequence number of the last event it received, so one `Last-Event-ID` positions it in every
//! topic it follows. Resuming is lossless when no event after that position has been evicted from any of the
//! subscriber's topics; otherwise the plan says so and the server must tell the client ([`ResumePlan::Reset`]).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

/// An event encoded once and shared by every subscriber: `bytes` may carry transport framing around the event
/// (a chunk header and trailer, say), and `body` is the range of the event itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedEvent {
    seq: u64,
    id: Arc<str>,
    bytes: Arc<[u8]>,
    body: Range<usize>,
}

impl SharedEvent {
    /// Wraps an encoded event. A `body` range outside `bytes` is clamped to it.
    pub fn new(seq: u64, id: &str, bytes: Arc<[u8]>, body: Range<usize>) -> Self {
        let end = body.end.min(bytes.len());
        let start = body.start.min(end);
        SharedEvent { seq, id: Arc::from(id), bytes, body: start..end }
    }

    /// The same event with bytes of its own. Queues count references to the bytes as they send them: threads
    /// that each send to many connections should each have their own copy, so that they do not contend for
    /// one reference count on every send.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// let event = conduit_sse::SharedEvent::new(1, "1", Arc::from(&b"data: x\n\n"[..]), 0..9);
    /// let copy = event.detached();
    /// assert_eq!(copy, event);
    /// assert!(!Arc::ptr_eq(copy.bytes(), event.bytes()));
    /// ```
    pub fn detached(&self) -> SharedEvent {
        SharedEvent { bytes: Arc::from(&self.bytes[..]), ..self.clone() }
    }

    /// The hub's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The id clients see (and send back as `Last-Event-ID`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The encoded bytes with any framing.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// Where the event itself lies within [`bytes`](Self::bytes).
    pub fn body_range(&self) -> Range<usize> {
        self.body.clone()
    }

    /// The event without framing.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body.clone()]
    }
}

/// How much a backlog keeps; the oldest events go first when either bound is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Events kept at most (0 keeps none: resuming then only works from the newest event).
    pub max_events: usize,
    /// Bytes of encoded events kept at most (framing included).
    pub max_bytes: usize,
}

impl Default for BacklogLimits {
    fn default() -> Self {
        BacklogLimits { max_events: 1000, max_bytes: 1024 * 1024 }
    }
}

/// The recent events of one topic, in sequence order.
#[derive(Debug)]
pub struct Backlog {
    entries: VecDeque<SharedEvent>,
    bytes: usize,
    limits: BacklogLimits,
    /// The newest sequence number evicted (0 if none): a subscriber behind it has missed events.
    evicted_through: u64,
    /// The newest event, kept even when the limits keep nothing, so a client that saw it can resume.
    newest: Option<(u64, Arc<str>)>,
}

/// [`Backlog::push`] refused an event whose sequence number does not follow the newest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfOrder {
    /// The newest sequence number held.
    pub newest: u64,
    /// The refused one.
    pub refused: u64,
}

impl std::fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event {} does not follow event {}", self.refused, self.newest)
    }
}

impl std::error::Error for OutOfOrder {}

impl Backlog {
    /// An empty backlog.
    pub fn new(limits: BacklogLimits) -> Self {
        Backlog { entries: VecDeque::new(), bytes: 0, limits, evicted_through: 0, newest: None }
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no event is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest event held.
    pub fn oldest(&self) -> Option<&SharedEvent> {
        self.entries.front()
    }

    /// The sequence number of the newest event ever pushed (0 if none).
    pub fn newest_seq(&self) -> u64 {
        self.newest.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// Appends an event, evicting the oldest past the limits. Returns how many were evicted.
    ///
    /// # Errors
    /// [`OutOfOrder`] if `event.seq()` is not greater than every sequence number pushed before.
    pub fn push(&mut self, event: SharedEvent) -> Result<usize, OutOfOrder> {
        let newest = self.newest_seq();
        if event.seq <= newest && self.newest.is_some() {
            return Err(OutOfOrder { newest, refused: event.seq });
        }
        self.newest = Some((event.seq, Arc::clone(&event.id)));
        self.bytes += event.bytes.len();
        self.entries.push_back(event);
        let mut evicted = 0;
        while self.entries.len() > self.limits.max_events || self.bytes > self.limits.max_bytes {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= old.bytes.len();
            self.evicted_through = old.seq;
            evicted += 1;
        }
        Ok(evicted)
    }

    /// The sequence number of the held event with this id, newest first (ids need not be unique).
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        if let Some((seq, newest)) = &self.newest
            && &**newest == id
        {
            return Some(*seq);
        }
        self.entries.iter().rev().find(|e| &*e.id == id).map(|e| e.seq)
    }

    /// The newest sequence number evicted so far (0 if none).
    pub fn evicted_through(&self) -> u64 {
        self.evicted_through
    }

    /// Records that events up to `seq` are not here although they may exist (a cache that never received
    /// them, say), so a resume from before `seq` is not lossless. Never lowers what was recorded.
    pub fn mark_missing_through(&mut self, seq: u64) {
        self.evicted_through = self.evicted_through.max(seq);
    }

    /// True if no event after `seq` has been evicted, so everything after it is still here.
    pub fn complete_after(&self, seq: u64) -> bool {
        self.evicted_through <= seq
    }

    /// The first held event after `seq`.
    pub fn next_after(&self, seq: u64) -> Option<&SharedEvent> {
        let i = self.entries.partition_point(|e| e.seq <= seq);
        self.entries.get(i)
    }

    /// Held events after `seq`, oldest first.
    pub fn iter_after(&self, seq: u64) -> impl Iterator<Item = &SharedEvent> {
        let i = self.entries.partition_point(|e| e.seq <= seq);
        self.entries.range(i..)
    }
}

/// Why a resume could not be lossless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// No topic holds an event with the client's id: it is too old, from another server run, or made up.
    UnknownId,
    /// The id is known but events after it were evicted from at least one topic.
    EventsDropped,
}

impl ResetReason {
    /// A short machine-readable name (`unknown_id`, `events_dropped`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::UnknownId => "unknown_id",
            ResetReason::EventsDropped => "events_dropped",
        }
    }
}

/// Where a new subscriber starts, as a sequence position: it receives every held event after `cursor`, then
/// the live stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumePlan {
    /// No `Last-Event-ID`: start with events published from now on.
    Live {
        /// The newest sequence number already published.
        cursor: u64,
    },
    /// Lossless: replay what came after the client's event.
    Replay {
        /// The client's event.
        cursor: u64,
    },
    /// The client missed events that are gone, or its id is unknown: tell it, then replay what is held after
    /// its position (everything held, for an unknown id).
    Reset {
        /// The client's event, or just before the oldest event held when its id is unknown.
        cursor: u64,
        /// Why.
        reason: ResetReason,
    },
}

impl ResumePlan {
    /// The position the subscriber starts after.
    pub fn cursor(self) -> u64 {
        match self {
            ResumePlan::Live { cursor } | ResumePlan::Replay { cursor } | ResumePlan::Reset { cursor, .. } => cursor,
        }
    }
}

/// Decides where a subscriber of `topics` starts, given the `Last-Event-ID` it sent (if any) and the newest
/// sequence number the hub has published.
pub fn plan_resume(topics: &[&Backlog], last_event_id: Option<&str>, published: u64) -> ResumePlan {
    let Some(id) = last_event_id else {
        return ResumePlan::Live { cursor: published };
    };
    let oldest_held = || topics.iter().filter_map(|b| b.oldest()).map(|e| e.seq).min();
    match topics.iter().filter_map(|b| b.seq_of(id)).max() {
        Some(seq) if topics.iter().all(|b| b.complete_after(seq)) => ResumePlan::Replay { cursor: seq },
        // The client's position is known, so nothing it has is sent again; what was evicted is simply gone.
        Some(seq) => ResumePlan::Reset { cursor: seq, reason: ResetReason::EventsDropped },
        None => {
            ResumePlan::Reset { cursor: oldest_held().map_or(published, |s| s - 1), reason: ResetReason::UnknownId }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, id: &str, len: usize) -> SharedEvent {
        SharedEvent::new(seq, id, Arc::from(vec![b'x'; len]), 0..len)
    }

    fn limits(max_events: usize, max_bytes: usize) -> BacklogLimits {
        BacklogLimits { max_events, max_bytes }
    }

    #[test]
    fn evicts_by_count_and_by_bytes() {
        let mut b = Backlog::new(limits(3, 1000));
        for seq in 1..=5 {
            b.push(ev(seq, &seq.to_string(), 10)).unwrap();
        }
        assert_eq!(b.iter_after(0).map(SharedEvent::seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(b.bytes(), 30);
        assert!(b.complete_after(2) && !b.complete_after(1));

        let mut b = Backlog::new(limits(100, 25));
        for seq in 1..=5 {
            b.push(ev(seq, "", 10)).unwrap();
        }
        assert_eq!(b.len(), 2);
        assert_eq!(b.oldest().map(SharedEvent::seq), Some(4));
    }

    #[test]
    fn refuses_out_of_order_events() {
        let mut b = Backlog::new(BacklogLimits::default());
        b.push(ev(5, "a", 1)).unwrap();
        assert_eq!(b.push(ev(5, "b", 1)), Err(OutOfOrder { newest: 5, refused: 5 }));
        assert_eq!(b.push(ev(3, "b", 1)), Err(OutOfOrder { newest: 5, refused: 3 }));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn finds_positions_by_id_and_seq() {
        let mut b = Backlog::new(BacklogLimits::default());
        for seq in [2, 4, 7] {
            b.push(ev(seq, &format!("e{seq}"), 1)).unwrap();
        }
        assert_eq!(b.seq_of("e4"), Some(4));
        assert_eq!(b.seq_of("nope"), None);
        assert_eq!(b.next_after(0).map(SharedEvent::seq), Some(2));
        assert_eq!(b.next_after(4).map(SharedEvent::seq), Some(7));
        assert_eq!(b.next_after(5).map(SharedEvent::seq), Some(7));
        assert_eq!(b.next_after(7), None);
    }

    #[test]
    fn the_newest_event_stays_resumable_with_an_empty_backlog() {
        let mut b = Backlog::new(limits(0, 0));
        b.push(ev(1, "one", 5)).unwrap();
        b.push(ev(2, "two", 5)).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.seq_of("two"), Some(2));
        assert_eq!(plan_resume(&[&b], Some("two"), 2), ResumePlan::Replay { cursor: 2 });
        assert_eq!(plan_resume(&[&b], Some("one"), 2), ResumePlan::Reset { cursor: 2, reason: ResetReason::UnknownId });
    }

    #[test]
    fn plans_resumes() {
        // Topic a holds 1, 3, 5, 7 (1 was evicted by count 3); topic b holds 2, 4, 6.
        let mut a = Backlog::new(limits(3, 1 << 20));
        let mut b = Backlog::new(limits(10, 1 << 20));
        for seq in 1..=7u64 {
            let target = if seq % 2 == 1 { &mut a } else { &mut b };
            target.push(ev(seq, &seq.to_string(), 1)).unwrap();
        }
        let cases: &[(&[&Backlog], Option<&str>, ResumePlan)] = &[
            (&[&a, &b], None, ResumePlan::Live { cursor: 7 }),
            (&[&a], Some("5"), ResumePlan::Replay { cursor: 5 }),
            (&[&a, &b], Some("4"), ResumePlan::Replay { cursor: 4 }),
            (&[&b], Some("2"), ResumePlan::Replay { cursor: 2 }),
            // 3 is still in a, but a evicted 1 only, so after 3 nothing is missing.
            (&[&a, &b], Some("3"), ResumePlan::Replay { cursor: 3 }),
            // 2 is held by b, but a dropped 1... which is before 2: still complete.
            (&[&a, &b], Some("2"), ResumePlan::Replay { cursor: 2 }),
            (&[&a], Some("zzz"), ResumePlan::Reset { cursor: 2, reason: ResetReason::UnknownId }),
            (&[&a, &b], Some("99"), ResumePlan::Reset { cursor: 1, reason: ResetReason::UnknownId }),
        ];
        for (topics, id, want) in cases {
            assert_eq!(plan_resume(topics, *id, 7), *want, "{id:?}");
        }
        // Evict more from a so that an id b still holds is behind a's gap.
        a.push(ev(9, "9", 1)).unwrap();
        a.push(ev(11, "11", 1)).unwrap();
        assert_eq!(a.oldest().map(SharedEvent::seq), Some(7));
        assert_eq!(
            plan_resume(&[&a, &b], Some("4"), 11),
            ResumePlan::Reset { cursor: 4, reason: ResetReason::EventsDropped }
        );
        assert_eq!(plan_resume(&[&b], Some("4"), 11), ResumePlan::Replay { cursor: 4 });
    }

    #[test]
    fn missing_events_make_a_resume_before_them_lossy() {
        let mut b = Backlog::new(BacklogLimits::default());
        b.mark_missing_through(4);
        b.push(ev(6, "6", 1)).unwrap();
        assert!(!b.complete_after(3) && b.complete_after(4));
        b.mark_missing_through(2);
        assert_eq!(b.evicted_through(), 4, "never lowered");
        assert_eq!(plan_resume(&[&b], Some("6"), 6), ResumePlan::Replay { cursor: 6 });
    }

    #[test]
    fn shared_event_ranges_are_clamped() {
        let e = SharedEvent::new(1, "x", Arc::from(&b"3\r\nabc\r\n"[..]), 3..6);
        assert_eq!(e.body(), b"abc");
        let e = SharedEvent::new(1, "x", Arc::from(&b"abc"[..]), 2..99);
        assert_eq!(e.body(), b"c");
    }
}
