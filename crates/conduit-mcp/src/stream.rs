//! One SSE stream of a session: its numbered messages, the bounded store that lets a client resume it, and the
//! connection it is currently attached to.
//!
//! Event ids are `<stream>-<seq>`: the stream's number within the session, then the message's number within the
//! stream. They are unique across the session, and a `Last-Event-ID` names the stream to resume, so a message
//! is only ever replayed on the stream it was first sent on. Sequence 0 is the priming event, which carries no
//! message.

use conduit_server::{Sse, SseSender, TrySendError};
use conduit_sse::{Backlog, BacklogLimits, Event, SharedEvent};
use std::sync::Arc;
use std::time::Duration;

/// A parsed event id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventId {
    /// The stream's number within its session.
    pub stream: u64,
    /// The message's number within the stream (0 for the priming event).
    pub seq: u64,
}

impl EventId {
    /// Reads `<stream>-<seq>`; anything else is `None`.
    pub fn parse(value: &str) -> Option<EventId> {
        let (stream, seq) = value.trim().split_once('-')?;
        let number = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?;
        Some(EventId { stream: number(stream)?, seq: number(seq)? })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.stream, self.seq)
    }
}

/// Why a stream cannot be resumed from an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResumeError {
    /// The id names a message this stream never sent.
    Unknown,
    /// Messages after the id were evicted from the store.
    Evicted,
}

/// The state of one stream.
#[derive(Debug)]
pub(crate) struct McpStream {
    number: u64,
    store: Backlog,
    /// The connection the stream's messages go to now, if any.
    sender: Option<SseSender>,
    /// The stream's last message (a call's response) was sent: it ends once delivered.
    finished: bool,
    /// Events a fresh connection buffers: room for a whole replay, so attaching never has to wait.
    capacity: usize,
}

impl McpStream {
    pub(crate) fn new(number: u64, limits: BacklogLimits) -> Self {
        McpStream {
            number,
            store: Backlog::new(limits),
            sender: None,
            finished: false,
            capacity: limits.max_events + 2,
        }
    }

    /// Opens a connection for the stream: the priming event (id `<n>-0`, `retry`, empty data), so the client
    /// has an id to resume from before any message is sent.
    pub(crate) fn open(&mut self, retry: Duration) -> Sse {
        let (sender, sse) = Sse::channel_with_capacity(self.capacity);
        let primer = EventId { stream: self.number, seq: 0 }.to_string();
        let primer = Event::new().id(primer).map(|e| e.retry(retry).data(""));
        if let Ok(primer) = primer {
            // A fresh channel has room.
            let _ = sender.try_send(primer);
        }
        self.attach(sender);
        sse
    }

    /// Opens a connection that resumes after `last`: every stored message after it, then what comes next.
    pub(crate) fn resume(&mut self, last: u64) -> Result<Sse, ResumeError> {
        if last > self.store.newest_seq() {
            return Err(ResumeError::Unknown);
        }
        if !self.store.complete_after(last) {
            return Err(ResumeError::Evicted);
        }
        let (sender, sse) = Sse::channel_with_capacity(self.capacity);
        for stored in self.store.iter_after(last) {
            // The store holds fewer events than the channel's capacity, so replay never finds it full.
            let _ = sender.try_send(event_of(stored));
        }
        if self.finished {
            // Ends once the replay is delivered.
            sender.close();
        } else {
            self.attach(sender);
        }
        Ok(sse)
    }

    fn attach(&mut self, sender: SseSender) {
        // A client that reconnects while its old connection lingers gets the stream on the new one only.
        if let Some(old) = self.sender.replace(sender) {
            old.close();
        }
    }

    /// Numbers and stores a message, and sends it on the attached connection if any. A connection too slow to
    /// take it is closed: the message stays stored, and the client resumes from its last id.
    pub(crate) fn send(&mut self, message: String) {
        let seq = self.store.newest_seq() + 1;
        let id = EventId { stream: self.number, seq }.to_string();
        let bytes: Arc<[u8]> = Arc::from(message.into_bytes());
        let len = bytes.len();
        let stored = SharedEvent::new(seq, &id, bytes, 0..len);
        let event = event_of(&stored);
        // Sequence numbers increase by construction.
        let _ = self.store.push(stored);
        if let Some(sender) = &self.sender {
            match sender.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    log::info!("stream {} is not read fast enough: closing its connection", self.number);
                    self.detach();
                }
                Err(TrySendError::Disconnected(_)) => self.sender = None,
            }
        }
    }

    /// The stream's last message was sent: its connection ends once it is delivered.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
        self.detach();
    }

    /// Ends the current connection without finishing the stream; the client resumes by `GET` with its last id.
    pub(crate) fn detach(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.close();
        }
    }

    /// True while a client's connection is attached.
    pub(crate) fn is_connected(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }
}

fn event_of(stored: &SharedEvent) -> Event {
    let data = String::from_utf8_lossy(stored.body()).into_owned();
    // Ids are `<digits>-<digits>`: no line break, so setting one cannot fail.
    Event::new().id(stored.id()).unwrap_or_else(|_| Event::new()).data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids() {
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            ("0-0", Some((0, 0))),
            ("3-17", Some((3, 17))),
            (" 3-17 ", Some((3, 17))),
            ("18446744073709551615-1", Some((u64::MAX, 1))),
            ("18446744073709551616-1", None),
            ("3", None),
            ("3-", None),
            ("-3", None),
            ("a-1", None),
            ("1-+2", None),
            ("1-2-3", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(EventId::parse(value).map(|e| (e.stream, e.seq)), *want, "{value:?}");
        }
        assert_eq!(EventId { stream: 4, seq: 9 }.to_string(), "4-9");
    }

    #[test]
    fn resumes_within_the_store() {
        let mut stream = McpStream::new(2, BacklogLimits { max_events: 3, max_bytes: 1 << 20 });
        for i in 1..=3 {
            stream.send(format!("m{i}"));
        }
        assert!(stream.resume(0).is_ok());
        assert!(stream.resume(3).is_ok());
        assert_eq!(stream.resume(4).err(), Some(ResumeError::Unknown));
        stream.send("m4".into());
        // m1 was evicted: resuming from before it cannot be lossless.
        assert_eq!(stream.resume(0).err(), Some(ResumeError::Evicted));
        assert!(stream.resume(1).is_ok());
    }

    #[test]
    fn a_connection_too_slow_for_the_stream_is_closed_and_nothing_is_lost() {
        // Nothing drains this channel (no event loop): it fills as a stalled client's would.
        let mut stream = McpStream::new(0, BacklogLimits { max_events: 4, max_bytes: 1 << 20 });
        let _unread = stream.open(Duration::from_secs(1));
        let room = stream.capacity - 1; // the primer took one place
        for i in 1..=room {
            stream.send(format!("m{i}"));
        }
        assert!(stream.is_connected(), "the channel is full, not overflowing");
        stream.send("one too many".into());
        assert!(!stream.is_connected(), "the slow connection was closed");
        // Every message is numbered and the newest are stored: the client resumes from its last id.
        assert_eq!(stream.store.newest_seq(), room as u64 + 1);
        assert!(stream.resume(room as u64 - 3).is_ok());
        assert_eq!(stream.resume(0).err(), Some(ResumeError::Evicted), "the store's bound still holds");
    }

    #[test]
    fn stored_events_keep_their_ids() {
        let mut stream = McpStream::new(7, BacklogLimits::default());
        stream.send("{\"a\":1}".into());
        let stored = stream.store.iter_after(0).next().unwrap();
        let event = event_of(stored);
        assert_eq!(event.id_str(), Some("7-1"));
        assert_eq!(event.data_str(), Some("{\"a\":1}"));
    }
}
