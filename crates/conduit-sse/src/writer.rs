//! Events written straight into a caller's buffer as they are built: [`EventSink`] and [`EventWriter`], whose
//! docs say why (building an [`Event`] and then encoding it is a second pass that a stream of hundreds of
//! thousands of events pays for) and what they guarantee.

use std::fmt;
use std::time::Duration;

use crate::event::{
    COMMENT_PREFIX, DATA_PREFIX, EVENT_PREFIX, Event, EventError, ID_PREFIX, RETRY_PREFIX, push_decimal, write_digits,
    write_field,
};
use crate::lines::{self, find_break};

/// A batch of events being written into a caller-owned buffer, counting the events written.
///
/// ```
/// use conduit_sse::{Event, EventSink};
///
/// let mut buf = Vec::new();
/// let mut sink = EventSink::new(&mut buf);
/// for i in 0..2u64 {
///     sink.event().event("tick")?.id_u64(i).data_fmt(format_args!("{{\"n\": {}}}", i * 10));
/// }
/// sink.send(&Event::new().data("built the usual way"));
/// assert_eq!(sink.events(), 3);
/// assert_eq!(
///     buf,
///     b"event: tick\nid: 0\ndata: {\"n\": 0}\n\n\
///       event: tick\nid: 1\ndata: {\"n\": 10}\n\n\
///       data: built the usual way\n\n"
/// );
/// # Ok::<(), conduit_sse::EventError>(())
/// ```
#[derive(Debug)]
pub struct EventSink<'a> {
    buf: &'a mut Vec<u8>,
    events: u64,
}

impl<'a> EventSink<'a> {
    /// A sink appending to `buf`, which may already hold bytes (they are kept).
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        EventSink { buf, events: 0 }
    }

    /// Starts an event at the end of the buffer. It is written whole by the writer's final call
    /// ([`data`](EventWriter::data), [`data_fmt`](EventWriter::data_fmt), [`json`](EventWriter::json) or
    /// [`finish`](EventWriter::finish)), and taken back if the writer is dropped before one.
    #[inline]
    pub fn event(&mut self) -> EventWriter<'_> {
        EventWriter { start: self.buf.len(), buf: self.buf, events: &mut self.events, fields: false, done: false }
    }

    /// Appends an event built the usual way. An empty [`Event`] writes nothing and is not counted.
    pub fn send(&mut self, event: &Event) {
        if !event.is_empty() {
            event.encode(self.buf);
            self.events += 1;
        }
    }

    /// Events written through this sink so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes in the buffer, including any it held before the sink was made.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// One event being written into an [`EventSink`]'s buffer, each field in its wire form as it is set: every byte
/// is produced once, where it is sent from, instead of building an [`Event`] and then encoding it. The
/// guarantees are the builder's: a name or id with a line break is refused before anything is written, data
/// can never inject fields, and an event is written whole or not at all (a writer dropped before its final
/// call, by an early `?` or a panic, takes back what it wrote).
///
/// Fields go on the wire in the order they are set, and the event ends with one of the final calls, which
/// write the data (if any) and the blank line that dispatches it. Setting a field twice writes it twice; for
/// `event` and `id` the client keeps the last one, as it would from any server.
///
/// ```
/// use conduit_sse::{EventError, EventSink};
///
/// let mut buf = Vec::new();
/// let mut sink = EventSink::new(&mut buf);
/// sink.event().comment("two lines").data("a\r\nb");
/// // Refused before anything is written, and the half-built event is taken back.
/// let refused: Result<(), EventError> = (|| {
///     sink.event().id_u64(9).event("bad\nname")?.data("never sent");
///     Ok(())
/// })();
/// assert!(refused.is_err());
/// assert_eq!(sink.events(), 1);
/// assert_eq!(buf, b": two lines\ndata: a\ndata: b\n\n");
/// ```
#[must_use = "an event is only written by its final call: data, data_fmt, json or finish"]
pub struct EventWriter<'s> {
    buf: &'s mut Vec<u8>,
    events: &'s mut u64,
    /// Where the event starts in `buf`: what a dropped writer takes back.
    start: usize,
    /// A field was written, so the event needs its blank line (a comment alone needs none).
    fields: bool,
    /// A final call completed the event.
    done: bool,
}

impl fmt::Debug for EventWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWriter").field("written", &&self.buf[self.start..]).finish()
    }
}

impl EventWriter<'_> {
    /// Writes comment lines (`": text"`, one per line of `text`), which clients ignore.
    #[inline]
    pub fn comment(self, text: &str) -> Self {
        for line in lines::lines(text.as_bytes()) {
            write_field(self.buf, COMMENT_PREFIX, line);
        }
        self
    }

    /// Writes the event type.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidEventName`] if `name` contains CR or LF; the event is taken back.
    #[inline]
    pub fn event(mut self, name: &str) -> Result<Self, EventError> {
        if find_break(name.as_bytes()).is_some() {
            return Err(EventError::InvalidEventName);
        }
        write_field(self.buf, EVENT_PREFIX, name.as_bytes());
        self.fields = true;
        Ok(self)
    }

    /// Writes the id.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidId`] if `id` contains CR, LF or NUL; the event is taken back.
    pub fn id(mut self, id: &str) -> Result<Self, EventError> {
        let bytes = id.as_bytes();
        if find_break(bytes).is_some() || bytes.contains(&0) {
            return Err(EventError::InvalidId);
        }
        write_field(self.buf, ID_PREFIX, bytes);
        self.fields = true;
        Ok(self)
    }

    /// Writes a numeric id in decimal, without allocating.
    #[inline]
    pub fn id_u64(mut self, id: u64) -> Self {
        let mut digits = [0u8; 20];
        let start = write_digits(id, &mut digits);
        write_field(self.buf, ID_PREFIX, &digits[start..]);
        self.fields = true;
        self
    }

    /// Writes the client's reconnection time, in whole milliseconds.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.buf.extend_from_slice(RETRY_PREFIX);
        push_decimal(self.buf, retry.as_millis());
        self.buf.push(b'\n');
        self.fields = true;
        self
    }

    /// Writes `data` (one `data:` line per line of it) and ends the event.
    #[inline]
    pub fn data(mut self, data: &str) {
        let start = self.begin_data();
        self.buf.extend_from_slice(data.as_bytes());
        self.end_data(start);
    }

    /// Formats `args` straight into the buffer as the data, and ends the event. Line breaks in the output
    /// become new `data:` lines, as in [`data`](Self::data).
    ///
    /// ```
    /// let mut buf = Vec::new();
    /// let mut sink = conduit_sse::EventSink::new(&mut buf);
    /// sink.event().data_fmt(format_args!("{}\r{}", "one", "two"));
    /// assert_eq!(buf, b"data: one\ndata: two\n\n");
    /// ```
    #[inline]
    pub fn data_fmt(mut self, args: fmt::Arguments<'_>) {
        let start = self.begin_data();
        // Formatting into a Vec cannot fail; a `Display` impl that reports an error leaves what it wrote.
        let _ = fmt::write(&mut Append(self.buf), args);
        self.end_data(start);
    }

    /// Serializes `value` with `serde_json` straight into the buffer as the data, and ends the event.
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if serialization fails; the event is taken back.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Result<(), EventError> {
        let start = self.begin_data();
        serde_json::to_writer(&mut *self.buf, value)?;
        // Compact JSON has no raw line breaks, but `end_data` splits lines anyway: a `RawValue` may hold some.
        self.end_data(start);
        Ok(())
    }

    /// Ends an event without data (an id alone moves the client's last event id; a comment alone is sent as
    /// it is). A writer with nothing written writes nothing and is not counted.
    pub fn finish(mut self) {
        if self.buf.len() == self.start {
            self.done = true;
            return;
        }
        self.end();
    }

    /// Writes the first `data: ` and returns where the data starts.
    #[inline]
    fn begin_data(&mut self) -> usize {
        self.buf.extend_from_slice(DATA_PREFIX);
        self.fields = true;
        self.buf.len()
    }

    /// Splits the data written since `start` into lines, ends the last, then ends the event.
    ///
    /// The data goes in unchecked, piece by piece as it is formatted, and is searched for line breaks once,
    /// whole: a search per piece cost more than all the rest of writing a short event. Data with a break (rare)
    /// is taken out from the first break on and written back line by line.
    #[inline]
    fn end_data(&mut self, start: usize) {
        if let Some(at) = find_break(&self.buf[start..]) {
            let rest = self.buf.split_off(start + at);
            write_data_lines(self.buf, &rest);
        }
        self.buf.push(b'\n');
        self.end();
    }

    /// Writes the blank line that dispatches the event (a comment alone has none) and counts it.
    #[inline]
    fn end(&mut self) {
        if self.fields {
            self.buf.push(b'\n');
        }
        *self.events += 1;
        self.done = true;
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.buf.truncate(self.start);
        }
    }
}

/// Appends `text` to a `data:` line already begun: every CR, LF or CRLF in it ends the line and starts the
/// next one. The LF of the last line is left to the caller.
fn write_data_lines(buf: &mut Vec<u8>, text: &[u8]) {
    let mut lines = lines::lines(text);
    if let Some(first) = lines.next() {
        buf.extend_from_slice(first);
    }
    for line in lines {
        buf.push(b'\n');
        buf.extend_from_slice(DATA_PREFIX);
        buf.extend_from_slice(line);
    }
}

/// `fmt::Write` for a byte buffer: formatted text appended as it comes.
struct Append<'a>(&'a mut Vec<u8>);

impl fmt::Write for Append<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{XorShift, random_text};

    fn written(write: impl FnOnce(&mut EventSink<'_>)) -> (String, u64) {
        let mut buf = Vec::new();
        let mut sink = EventSink::new(&mut buf);
        write(&mut sink);
        let events = sink.events();
        (String::from_utf8(buf).unwrap(), events)
    }

    #[test]
    fn writes_each_field_in_its_wire_form() {
        // (name, written through the writer, the wire form); the random test below compares with the builder.
        type Case = (&'static str, fn(&mut EventSink<'_>), &'static str);
        let cases: Vec<Case> = vec![
            ("data only", |s| s.event().data("hello"), "data: hello\n\n"),
            ("empty data", |s| s.event().data(""), "data: \n\n"),
            ("lf", |s| s.event().data("a\nb"), "data: a\ndata: b\n\n"),
            ("crlf once", |s| s.event().data("a\r\nb"), "data: a\ndata: b\n\n"),
            ("lone cr", |s| s.event().data("a\rb"), "data: a\ndata: b\n\n"),
            ("trailing break", |s| s.event().data("a\n"), "data: a\ndata: \n\n"),
            ("lf cr is two", |s| s.event().data("a\n\rb"), "data: a\ndata: \ndata: b\n\n"),
            (
                "all fields, in the order set",
                |s| {
                    s.event()
                        .comment("c")
                        .event("tick")
                        .unwrap()
                        .id("7")
                        .unwrap()
                        .retry(Duration::from_millis(1500))
                        .data("x")
                },
                ": c\nevent: tick\nid: 7\nretry: 1500\ndata: x\n\n",
            ),
            ("numeric id", |s| s.event().id_u64(u64::MAX).finish(), "id: 18446744073709551615\n\n"),
            ("id zero", |s| s.event().id_u64(0).data("z"), "id: 0\ndata: z\n\n"),
            ("empty id", |s| s.event().id("").unwrap().finish(), "id: \n\n"),
            ("comment alone", |s| s.event().comment("a\nb").finish(), ": a\n: b\n"),
            (
                "formatted",
                |s| s.event().event("n").unwrap().data_fmt(format_args!("{}-{}", 1, "x\r\ny")),
                "event: n\ndata: 1-x\ndata: y\n\n",
            ),
            (
                "json, its escaped line break kept",
                |s| s.event().json(&serde_json::json!({"a": "line\nbreak"})).unwrap(),
                "data: {\"a\":\"line\\nbreak\"}\n\n",
            ),
        ];
        for (name, write, want) in cases {
            let (got, events) = written(write);
            assert_eq!(got, want, "{name}");
            assert_eq!(events, 1, "{name}");
        }
    }

    #[test]
    fn a_crlf_split_between_pieces_is_one_break() {
        struct Pieces(&'static [&'static str]);
        impl fmt::Display for Pieces {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|p| f.write_str(p))
            }
        }
        let table: [(&[&str], &str); 5] = [
            (&["a\r", "\nb"], "data: a\ndata: b\n\n"),
            (&["a\r", "b"], "data: a\ndata: b\n\n"),
            (&["a\r", "\r", "\nb"], "data: a\ndata: \ndata: b\n\n"),
            (&["a\r", "", "\nb"], "data: a\ndata: b\n\n"),
            (&["a\r"], "data: a\ndata: \n\n"),
        ];
        for (pieces, want) in table {
            let (got, _) = written(|s| s.event().data_fmt(format_args!("{}", Pieces(pieces))));
            assert_eq!(got, want, "{pieces:?}");
        }
    }

    #[test]
    fn random_text_in_random_pieces_matches_the_builder() {
        let mut rng = XorShift::new(0x5eed_f11e);
        for _ in 0..2000 {
            let text = random_text(&mut rng, 24);
            // Cut at character boundaries, as `Display` impls do.
            let mut pieces = Vec::new();
            let mut piece = String::new();
            for c in text.chars() {
                piece.push(c);
                if rng.below(3) == 0 {
                    pieces.push(std::mem::take(&mut piece));
                }
            }
            pieces.push(piece);
            let mut buf = Vec::new();
            let mut sink = EventSink::new(&mut buf);
            let mut writer = sink.event();
            let start = writer.begin_data();
            for p in &pieces {
                fmt::Write::write_str(&mut Append(writer.buf), p).unwrap();
            }
            writer.end_data(start);
            drop(writer);
            let mut want = Vec::new();
            Event::new().data(text.clone()).encode(&mut want);
            assert_eq!(buf, want, "{pieces:?}");
        }
    }

    #[test]
    fn refused_and_dropped_events_are_taken_back() {
        let (got, events) = written(|s| {
            s.event().data("kept");
            assert!(s.event().comment("c").id_u64(1).event("a\rb").is_err());
            assert!(s.event().event("e").unwrap().id("x\0").is_err());
            assert!(s.event().id("a\nb").is_err());
            let failing = std::collections::BTreeMap::from([((1, 2), 3)]);
            assert!(s.event().id_u64(2).json(&failing).is_err());
            drop(s.event().event("never").unwrap().id_u64(3));
        });
        assert_eq!(got, "data: kept\n\n");
        assert_eq!(events, 1);
    }

    #[test]
    fn a_panic_while_formatting_takes_the_event_back() {
        struct Panics;
        impl fmt::Display for Panics {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("partial")?;
                panic!("formatting failed")
            }
        }
        let mut buf = b"before\n\n".to_vec();
        let mut sink = EventSink::new(&mut buf);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sink.event().id_u64(1).data_fmt(format_args!("{}", Panics));
        }));
        assert!(result.is_err());
        assert_eq!(sink.events(), 0);
        assert_eq!(buf, b"before\n\n");
    }

    #[test]
    fn empty_writers_and_events_write_nothing() {
        let (got, events) = written(|s| {
            s.event().finish();
            s.send(&Event::new());
        });
        assert_eq!((got.as_str(), events), ("", 0));
    }
}
