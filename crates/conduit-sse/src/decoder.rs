//! [`Decoder`]: the client side of `text/event-stream`, following the WHATWG
//! "interpret an event stream" algorithm exactly.
//!
//! Bytes are fed in chunks of any size. Each chunk is scanned once for CR and LF
//! (eight bytes a step), and bytes of an unfinished line wait in a buffer until
//! its line end arrives, so a line delivered one byte per call still costs linear
//! time. Lines are decoded as UTF-8 only once complete, so a character split
//! across chunks is never mangled.

use std::collections::VecDeque;
use std::fmt;
use std::mem;
use std::time::Duration;

use crate::lines::find_break;

/// The UTF-8 byte order mark, stripped once at the start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Line-buffer capacity kept between lines; a larger buffer (left by one long
/// line) is released, so an idle connection does not pin it.
const LINE_KEEP: usize = 64 * 1024;

/// The event type used when a block sets none (or sets it to "").
const DEFAULT_EVENT_TYPE: &str = "message";

/// One dispatched event, as a browser's `EventSource` would deliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageEvent {
    /// The `event` field, or `"message"` when the block had none (or an empty one).
    pub event_type: String,
    /// The `data` lines joined with LF (no trailing LF).
    pub data: String,
    /// The last event id when this event was dispatched; it persists across
    /// events, so an event without an `id` field carries an earlier one.
    pub last_event_id: String,
}

/// Why [`Decoder::feed`] reported a problem. The decoder stays usable after any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The event being assembled (its data so far plus the current line) grew
    /// past `limit` bytes; it was discarded, up to the next blank line.
    EventTooLarge {
        /// The decoder's [maximum event size](Decoder::with_max_event_size).
        limit: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::EventTooLarge { limit } => {
                write!(f, "event larger than the limit of {limit} bytes; it was discarded")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// How far the byte order mark check at the start of a stream has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bom {
    /// This many leading bytes (0 to 2) matched the BOM so far.
    Matched(u8),
    /// Stripped, or the stream did not start with one.
    Done,
}

/// Discarding an event that grew too large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    /// Decoding normally.
    Off,
    /// Inside a non-blank line of the discarded event.
    RestOfLine,
    /// At a line start: a blank line ends the discarded event.
    UntilBlank,
}

/// Counts bytes examined, so tests can prove the decoder linear without timing
/// anything. Zero-sized outside tests.
#[derive(Clone, Copy, Debug, Default)]
struct Probe {
    #[cfg(test)]
    examined: usize,
}

impl Probe {
    #[inline]
    fn add(&mut self, bytes: usize) {
        #[cfg(test)]
        {
            self.examined += bytes;
        }
        #[cfg(not(test))]
        let _ = bytes;
    }
}

/// Sans-I/O decoder of a `text/event-stream`, following the WHATWG "interpret an
/// event stream" algorithm.
///
/// Feed it bytes as they arrive with [`feed`](Decoder::feed), then drain
/// [`next_event`](Decoder::next_event) until it returns `None`. Events are queued
/// only until drained, so the queue holds at most what one `feed` produced if the
/// caller drains after each call (which it should: the queue itself is not
/// bounded by [`DEFAULT_MAX_EVENT_SIZE`](Decoder::DEFAULT_MAX_EVENT_SIZE)).
///
/// - Bytes are UTF-8, invalid sequences decode to U+FFFD; decoding never fails.
///   One byte order mark at the very start of the stream is dropped.
/// - LF, CR and CRLF end lines, even when the CR and LF arrive in different chunks.
/// - A blank line dispatches the event assembled so far; a line starting with `:`
///   is a comment; other lines are `name:value` fields (one space after the colon
///   is dropped) or a bare `name` with an empty value. `event`, `data`, `id` and
///   `retry` are understood, exactly so spelled; anything else is ignored.
/// - An event cut off by the end of the stream is dropped by [`finish`](Decoder::finish).
///
/// Memory is bounded: the unfinished line plus the event's data never exceed the
/// maximum event size (bytes past it are not buffered; see
/// [`DecodeError::EventTooLarge`]).
///
/// ```
/// use conduit_sse::{Decoder, MessageEvent};
///
/// let mut decoder = Decoder::new();
/// decoder.feed(b"\xEF\xBB\xBF: hello\r\nevent: quote\r\nid: 7\r\ndata: YHOO\r\ndata: +2")?;
/// assert_eq!(decoder.next_event(), None); // the event is not over yet
/// decoder.feed(b"\r\n\r\nretry: 2500\n")?;
/// assert_eq!(
///     decoder.next_event(),
///     Some(MessageEvent {
///         event_type: "quote".into(),
///         data: "YHOO\n+2".into(),
///         last_event_id: "7".into(),
///     }),
/// );
/// assert_eq!(decoder.last_event_id(), "7");
/// assert_eq!(decoder.retry(), Some(std::time::Duration::from_millis(2500)));
/// decoder.finish();
/// # Ok::<(), conduit_sse::DecodeError>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    max_event_size: usize,
    bom: Bom,
    /// Bytes of the current line received so far (its line end not yet seen).
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting the next one is part of that line end.
    after_cr: bool,
    skip: Skip,
    /// The spec's data buffer.
    data: String,
    /// The spec's event type buffer.
    event_type: String,
    /// The spec's last event ID buffer: set by `id` fields, committed on dispatch.
    id_buffer: String,
    /// The last event ID string, as of the last dispatch.
    last_event_id: String,
    retry: Option<Duration>,
    queue: VecDeque<MessageEvent>,
    probe: Probe,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// The default cap on one event's size: 1 MiB.
    pub const DEFAULT_MAX_EVENT_SIZE: usize = 1024 * 1024;

    /// A decoder for a new stream, capping events at [`Self::DEFAULT_MAX_EVENT_SIZE`].
    pub fn new() -> Self {
        Self::with_max_event_size(Self::DEFAULT_MAX_EVENT_SIZE)
    }

    /// A decoder for a new stream that refuses events larger than `max` bytes,
    /// counting the data received so far plus the line being received.
    pub fn with_max_event_size(max: usize) -> Self {
        Decoder {
            max_event_size: max,
            bom: Bom::Matched(0),
            line: Vec::new(),
            after_cr: false,
            skip: Skip::Off,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
            queue: VecDeque::new(),
            probe: Probe::default(),
        }
    }

    /// The cap on one event's size, in bytes.
    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// Feeds bytes; complete events are queued for [`next_event`](Decoder::next_event).
    ///
    /// Chunks may be split anywhere, even inside a line end, a UTF-8 character or
    /// the byte order mark: the result is the same as feeding everything at once.
    ///
    /// # Errors
    ///
    /// [`DecodeError::EventTooLarge`] when the event being assembled (its data
    /// buffer plus the current line) passes the limit. The decoder stays usable:
    /// it discards that event and everything up to the next blank line, then goes
    /// on. The whole chunk is still decoded, so events before and after the
    /// oversized one are queued; a chunk with several oversized events reports
    /// one error. Fields of the discarded event have no effect, except a `retry`
    /// read before the limit was hit, since the standard applies `retry` at once.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        let mut result = Ok(());
        let mut rest = self.strip_bom(chunk);
        if self.after_cr
            && let Some((&first, tail)) = rest.split_first()
        {
            self.after_cr = false;
            if first == b'\n' {
                self.probe.add(1);
                rest = tail;
            }
        }
        while !rest.is_empty() {
            let Some(at) = find_break(rest) else {
                self.probe.add(rest.len());
                self.partial_line(rest, &mut result);
                break;
            };
            self.probe.add(at + 1);
            let (segment, tail) = rest.split_at(at);
            let is_cr = tail.first() == Some(&b'\r');
            rest = tail.get(1..).unwrap_or_default();
            if is_cr {
                match rest.split_first() {
                    Some((b'\n', after_lf)) => {
                        self.probe.add(1);
                        rest = after_lf;
                    }
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.end_line(segment, &mut result);
        }
        result
    }

    /// The next dispatched event, oldest first.
    pub fn next_event(&mut self) -> Option<MessageEvent> {
        self.queue.pop_front()
    }

    /// The reconnection time from the last valid `retry:` field, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The last event id (persists across events; an empty `id:` line resets it to "").
    ///
    /// It changes when a block ends with a blank line, as in the standard: an
    /// `id` field of an event cut off by the end of the stream does not count.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Sets the last event id (a reconnecting client starts from what it had).
    pub fn set_last_event_id(&mut self, id: &str) {
        self.last_event_id.clear();
        self.last_event_id.push_str(id);
        self.id_buffer.clear();
        self.id_buffer.push_str(id);
    }

    /// End of stream: a partially received event is discarded (per spec), queued
    /// ones stay available.
    ///
    /// The decoder is then ready for a new stream, as after
    /// [`reset_stream`](Decoder::reset_stream).
    pub fn finish(&mut self) {
        self.reset_stream();
    }

    /// Clears the line/event state for a new connection, keeping
    /// `last_event_id` and `retry` (as a reconnecting `EventSource` does),
    /// including the BOM check. Queued events stay available.
    pub fn reset_stream(&mut self) {
        self.bom = Bom::Matched(0);
        self.clear_line();
        self.after_cr = false;
        self.skip = Skip::Off;
        self.discard_event();
    }

    #[cfg(test)]
    fn examined(&self) -> usize {
        self.probe.examined
    }

    /// Drops the byte order mark at the start of a stream, remembering a partial
    /// match across chunks. Returns the bytes still to decode.
    fn strip_bom<'a>(&mut self, mut rest: &'a [u8]) -> &'a [u8] {
        while let Bom::Matched(matched) = self.bom {
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            let matched = usize::from(matched);
            if BOM.get(matched) == Some(&byte) {
                rest = tail;
                self.bom = match matched + 1 {
                    n if n >= BOM.len() => Bom::Done,
                    n => Bom::Matched(n as u8),
                };
            } else {
                // A false start: the bytes held back are ordinary bytes of the
                // first line (none is a line break).
                self.bom = Bom::Done;
                self.line.extend_from_slice(BOM.get(..matched).unwrap_or_default());
            }
        }
        rest
    }

    /// Bytes of a line whose end has not arrived yet.
    fn partial_line(&mut self, bytes: &[u8], result: &mut Result<(), DecodeError>) {
        match self.skip {
            Skip::Off => {
                if self.too_large(bytes.len()) {
                    self.overflow(result);
                    self.skip = Skip::RestOfLine;
                } else {
                    self.line.extend_from_slice(bytes);
                }
            }
            Skip::RestOfLine => {}
            // `bytes` is never empty, so this line is not blank.
            Skip::UntilBlank => self.skip = Skip::RestOfLine,
        }
    }

    /// A line end, after `segment` (the line's last bytes, after any buffered ones).
    fn end_line(&mut self, segment: &[u8], result: &mut Result<(), DecodeError>) {
        match self.skip {
            Skip::Off => {}
            Skip::RestOfLine => {
                self.skip = Skip::UntilBlank;
                return;
            }
            Skip::UntilBlank => {
                if segment.is_empty() {
                    self.skip = Skip::Off;
                }
                return;
            }
        }
        if self.too_large(segment.len()) {
            self.overflow(result);
            self.skip = Skip::UntilBlank;
            return;
        }
        if self.line.is_empty() {
            self.process_line(segment, result);
        } else {
            let mut line = mem::take(&mut self.line);
            line.extend_from_slice(segment);
            self.process_line(&line, result);
            line.clear();
            self.line = line;
            if self.line.capacity() > LINE_KEEP {
                self.line = Vec::new();
            }
        }
    }

    /// Whether buffering `more` bytes of the current line would pass the limit.
    fn too_large(&self, more: usize) -> bool {
        self.data.len().saturating_add(self.line.len()).saturating_add(more) > self.max_event_size
    }

    /// Discards the event being assembled because it is too large; the caller
    /// sets how much of the stream to skip.
    fn overflow(&mut self, result: &mut Result<(), DecodeError>) {
        self.clear_line();
        self.discard_event();
        if result.is_ok() {
            *result = Err(DecodeError::EventTooLarge { limit: self.max_event_size });
        }
    }

    fn clear_line(&mut self) {
        self.line.clear();
        if self.line.capacity() > LINE_KEEP {
            self.line = Vec::new();
        }
    }

    /// Forgets the event being assembled, including an `id` it set.
    fn discard_event(&mut self) {
        self.data.clear();
        self.event_type.clear();
        if self.id_buffer != self.last_event_id {
            self.id_buffer.clone_from(&self.last_event_id);
        }
    }

    /// One complete line, without its line end.
    fn process_line(&mut self, line: &[u8], result: &mut Result<(), DecodeError>) {
        self.probe.add(line.len());
        if line.is_empty() {
            self.dispatch();
            return;
        }
        // The colon is ASCII, so splitting the bytes before decoding them gives
        // the same text as decoding first: no UTF-8 sequence spans an ASCII byte.
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // comment
            Some(colon) => {
                let value = line.get(colon + 1..).unwrap_or_default();
                (line.get(..colon).unwrap_or_default(), value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => {
                self.event_type.clear();
                push_lossy(&mut self.event_type, value);
            }
            b"data" => {
                push_lossy(&mut self.data, value);
                self.data.push('\n');
                // Replacement characters can make the text longer than its bytes.
                if self.data.len() > self.max_event_size {
                    self.overflow(result);
                    self.skip = Skip::UntilBlank;
                }
            }
            // An id containing NUL is ignored.
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                push_lossy(&mut self.id_buffer, value);
            }
            b"retry" => {
                if let Some(ms) = parse_retry(value) {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }

    /// The blank line: the standard's "dispatch the event".
    fn dispatch(&mut self) {
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type =
            if self.event_type.is_empty() { DEFAULT_EVENT_TYPE.to_owned() } else { mem::take(&mut self.event_type) };
        self.queue.push_back(MessageEvent {
            event_type,
            data: mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        });
    }
}

/// Appends `bytes` decoded as UTF-8, with U+FFFD for invalid sequences.
fn push_lossy(dst: &mut String, bytes: &[u8]) {
    dst.push_str(&String::from_utf8_lossy(bytes));
}

/// A `retry` value: one or more ASCII digits, in milliseconds; `None` if it has
/// anything else or does not fit in a `u64`.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |ms, &b| {
        if b.is_ascii_digit() { ms.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::XorShift;
    use std::error::Error as _;

    /// An expected event: (type, data, last event id).
    type Ev = (&'static str, &'static str, &'static str);

    struct Case {
        name: &'static str,
        input: &'static [u8],
        events: &'static [Ev],
        last_event_id: &'static str,
        retry: Option<u64>,
    }

    const fn case(
        name: &'static str,
        input: &'static [u8],
        events: &'static [Ev],
        last_event_id: &'static str,
        retry: Option<u64>,
    ) -> Case {
        Case { name, input, events, last_event_id, retry }
    }

    const CASES: &[Case] = &[
        // The standard's own examples.
        case(
            "spec: stock ticker, three data lines",
            b"data: YHOO\ndata: +2\ndata: 10\n\n",
            &[("message", "YHOO\n+2\n10", "")],
            "",
            None,
        ),
        case(
            "spec: comment, ids, empty id, leading spaces",
            b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
            &[
                ("message", "first event", "1"),
                ("message", "second event", ""),
                ("message", " third event", ""),
            ],
            "",
            None,
        ),
        case(
            "spec: bare data lines, final unterminated block",
            b"data\n\ndata\ndata\n\ndata:",
            &[("message", "", ""), ("message", "\n", "")],
            "",
            None,
        ),
        case(
            "spec: data:test and data: test are the same",
            b"data:test\n\ndata: test\n\n",
            &[("message", "test", ""), ("message", "test", "")],
            "",
            None,
        ),
        case(
            "spec: messages, one over two lines",
            b"data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\ndata: This is the third message.\n\n",
            &[
                ("message", "This is the first message.", ""),
                (
                    "message",
                    "This is the second message, it\nhas two lines.",
                    "",
                ),
                ("message", "This is the third message.", ""),
            ],
            "",
            None,
        ),
        case(
            "spec: event types",
            b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
            &[
                ("add", "73857293", ""),
                ("remove", "2153", ""),
                ("add", "113411", ""),
            ],
            "",
            None,
        ),
        // Line ends.
        case(
            "CRLF",
            b"data: a\r\ndata: b\r\n\r\n",
            &[("message", "a\nb", "")],
            "",
            None,
        ),
        case(
            "CR",
            b"data: a\rdata: b\r\r",
            &[("message", "a\nb", "")],
            "",
            None,
        ),
        case(
            "mixed line ends",
            b"data: a\rdata: b\ndata: c\r\n\ndata: d\n\r",
            &[("message", "a\nb\nc", ""), ("message", "d", "")],
            "",
            None,
        ),
        case(
            "LF CR is two line ends",
            b"data: a\n\rdata: b\n\n",
            &[("message", "a", ""), ("message", "b", "")],
            "",
            None,
        ),
        case(
            "CR CR LF is a blank line",
            b"data: a\r\r\ndata: b\r\n\r\n",
            &[("message", "a", ""), ("message", "b", "")],
            "",
            None,
        ),
        case(
            "CRLF CRLF after CR",
            b"data: x\r\r\n\r\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "leading blank lines",
            b"\n\r\n\r\ndata: x\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        // Fields.
        case(
            "one leading space removed, not two",
            b"data:  two\n\ndata:\tx\n\n",
            &[("message", " two", ""), ("message", "\tx", "")],
            "",
            None,
        ),
        case(
            "value keeps later colons",
            b"data: a: b:c\n\n",
            &[("message", "a: b:c", "")],
            "",
            None,
        ),
        case(
            "field names are case-sensitive",
            b"Data: x\nDATA: y\nEvent: e\nID: 3\nRetry: 5\n\n",
            &[],
            "",
            None,
        ),
        case(
            "space before the colon is part of the name",
            b"data : x\n data: y\n\n",
            &[],
            "",
            None,
        ),
        case(
            "unknown fields and comments ignored",
            b"foo: bar\n:data: x\n: id: 9\nbaz\ndata: ok\n\n",
            &[("message", "ok", "")],
            "",
            None,
        ),
        case(
            "data empty value dispatches empty data",
            b"data: \n\n",
            &[("message", "", "")],
            "",
            None,
        ),
        case(
            "data trailing empty line keeps one LF",
            b"data: a\ndata:\n\n",
            &[("message", "a\n", "")],
            "",
            None,
        ),
        case(
            "no data dispatches nothing and resets type",
            b"event: a\n\ndata: x\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "empty event name means message",
            b"event: a\nevent:\ndata: x\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "last event field wins, type resets per event",
            b"event: a\nevent: b\ndata: x\n\ndata: y\n\n",
            &[("b", "x", ""), ("message", "y", "")],
            "",
            None,
        ),
        case(
            "bare event line",
            b"event\ndata: x\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "event type keeps unicode and NUL",
            b"event: \xC3\xA9v\x00\ndata: x\n\n",
            &[("\u{e9}v\0", "x", "")],
            "",
            None,
        ),
        // Ids.
        case(
            "id persists across events",
            b"id: 1\ndata: a\n\ndata: b\n\n",
            &[("message", "a", "1"), ("message", "b", "1")],
            "1",
            None,
        ),
        case(
            "id-only block updates the id without an event",
            b"id: 5\n\ndata: a\n\n",
            &[("message", "a", "5")],
            "5",
            None,
        ),
        case(
            "empty id resets",
            b"id: 5\ndata: a\n\nid:\ndata: b\n\nid: 6\n\nid\n\n",
            &[("message", "a", "5"), ("message", "b", "")],
            "",
            None,
        ),
        case(
            "id with NUL is ignored",
            b"id: 1\n\nid: a\x00b\ndata: x\n\nid: \x00\n\n",
            &[("message", "x", "1")],
            "1",
            None,
        ),
        case(
            "last id line in a block wins",
            b"id: 1\nid: 2\ndata: x\nid: 3\n\n",
            &[("message", "x", "3")],
            "3",
            None,
        ),
        case(
            "id keeps spaces after the first",
            b"id:  7 \ndata: x\n\n",
            &[("message", "x", " 7 ")],
            " 7 ",
            None,
        ),
        case(
            "id set in an unterminated block does not count",
            b"id: 1\n\nid: 2\ndata: x\n",
            &[],
            "1",
            None,
        ),
        // Retry.
        case("retry", b"retry: 1500\n", &[], "", Some(1500)),
        case("retry zero", b"retry:0\n\n", &[], "", Some(0)),
        case(
            "retry last valid wins",
            b"retry: 100\nretry: 200\nretry: x\n",
            &[],
            "",
            Some(200),
        ),
        case(
            "retry with non-digits ignored",
            b"retry: 7\nretry: 1.5\nretry: -1\nretry: 15a\nretry: +3\nretry:  100\nretry: 100 \nretry:\nretry\nretry: \xD9\xA1\n",
            &[],
            "",
            Some(7),
        ),
        case(
            "retry u64::MAX fits",
            b"retry: 18446744073709551615\n",
            &[],
            "",
            Some(u64::MAX),
        ),
        case(
            "retry overflowing u64 ignored",
            b"retry: 3\nretry: 18446744073709551616\nretry: 99999999999999999999999999\n",
            &[],
            "",
            Some(3),
        ),
        case(
            "retry leading zeros",
            b"retry: 000000000000000000000000000042\n",
            &[],
            "",
            Some(42),
        ),
        case(
            "retry applies without a blank line",
            b"data: x\nretry: 9\n",
            &[],
            "",
            Some(9),
        ),
        // End of stream.
        case(
            "event cut off at end of stream discarded",
            b"data: a\n\ndata: b\n",
            &[("message", "a", "")],
            "",
            None,
        ),
        case(
            "event cut off mid-line discarded",
            b"data: a\n\ndata: b",
            &[("message", "a", "")],
            "",
            None,
        ),
        case(
            "stream ending in CR dispatches",
            b"data: a\r\r",
            &[("message", "a", "")],
            "",
            None,
        ),
        case("empty stream", b"", &[], "", None),
        // UTF-8.
        case(
            "unicode passes through",
            "data: h\u{e9}llo \u{2028} \u{4e16}\u{754c} \u{1f980}\n\n".as_bytes(),
            &[("message", "h\u{e9}llo \u{2028} \u{4e16}\u{754c} \u{1f980}", "")],
            "",
            None,
        ),
        case(
            "invalid UTF-8 becomes U+FFFD",
            b"data: a\xFFb\xC0\xAF\n\n",
            &[("message", "a\u{fffd}b\u{fffd}\u{fffd}", "")],
            "",
            None,
        ),
        case(
            "truncated sequence before a line end",
            b"data: \xE2\x82\ndata: \xF0\x9F\xA6\n\n",
            &[("message", "\u{fffd}\n\u{fffd}", "")],
            "",
            None,
        ),
        case(
            "truncated sequence before the colon",
            b"data\xE2: x\n\xE2\x82:y\ndata: ok\n\n",
            &[("message", "ok", "")],
            "",
            None,
        ),
        case(
            "invalid UTF-8 in id",
            b"id: \xFE1\ndata: x\n\n",
            &[("message", "x", "\u{fffd}1")],
            "\u{fffd}1",
            None,
        ),
        case(
            "U+FEFF inside a value is kept",
            "data: \u{feff}x\n\n".as_bytes(),
            &[("message", "\u{feff}x", "")],
            "",
            None,
        ),
        // Byte order mark.
        case(
            "BOM stripped",
            b"\xEF\xBB\xBFdata: x\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "BOM then a line end",
            b"\xEF\xBB\xBF\r\ndata: x\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "BOM then a comment",
            b"\xEF\xBB\xBF:hi\ndata: x\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "only one BOM: the second is part of the field name",
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n",
            &[("message", "y", "")],
            "",
            None,
        ),
        case(
            "BOM not at the start is part of the field name",
            b"data: x\n\n\xEF\xBB\xBFdata: y\n\n",
            &[("message", "x", "")],
            "",
            None,
        ),
        case(
            "partial BOM is not stripped",
            b"\xEF\xBBdata: x\n\ndata: y\n\n",
            &[("message", "y", "")],
            "",
            None,
        ),
        case(
            "partial BOM then a line end",
            b"\xEF\xBB\ndata: y\n\n",
            &[("message", "y", "")],
            "",
            None,
        ),
        case(
            "one BOM byte then the field",
            b"\xEFdata: x\n\n",
            &[],
            "",
            None,
        ),
        case("BOM alone", b"\xEF\xBB\xBF", &[], "", None),
        case(
            "BOM then data without a colon",
            b"\xEF\xBB\xBFdata\n\n",
            &[("message", "", "")],
            "",
            None,
        ),
    ];

    /// Everything a run produced: events, final last event id, retry.
    type Outcome = (Vec<MessageEvent>, String, Option<Duration>);

    fn run(decoder: &mut Decoder, chunks: &[&[u8]]) -> (Outcome, usize) {
        let mut events = Vec::new();
        let mut errors = 0;
        for chunk in chunks {
            if decoder.feed(chunk).is_err() {
                errors += 1;
            }
            events.extend(std::iter::from_fn(|| decoder.next_event()));
        }
        decoder.finish();
        events.extend(std::iter::from_fn(|| decoder.next_event()));
        let outcome = (events, decoder.last_event_id().to_owned(), decoder.retry());
        (outcome, errors)
    }

    fn whole(input: &[u8]) -> Vec<&[u8]> {
        vec![input]
    }

    fn bytewise(input: &[u8]) -> Vec<&[u8]> {
        input.chunks(1).collect()
    }

    fn random_chunks(input: &[u8], seed: u64) -> Vec<&[u8]> {
        let mut rng = XorShift::new(seed);
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            // Empty chunks too: they must change nothing.
            let n = (rng.below(8) as usize).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            chunks.push(chunk);
            rest = tail;
        }
        chunks
    }

    /// Every chunking used by the table tests.
    fn chunkings(input: &[u8]) -> Vec<(String, Vec<&[u8]>)> {
        let mut all = vec![("whole".to_owned(), whole(input)), ("bytewise".to_owned(), bytewise(input))];
        for seed in [1, 2, 3, 0xfeed, 0xdead_beef, 42] {
            all.push((format!("seed {seed}"), random_chunks(input, seed)));
        }
        // Every two-way split, which includes splitting each CRLF and BOM.
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            all.push((format!("split at {at}"), vec![a, b]));
        }
        all
    }

    fn expected(case: &Case) -> Outcome {
        let events = case
            .events
            .iter()
            .map(|&(event_type, data, id)| MessageEvent {
                event_type: event_type.into(),
                data: data.into(),
                last_event_id: id.into(),
            })
            .collect();
        (events, case.last_event_id.to_owned(), case.retry.map(Duration::from_millis))
    }

    #[test]
    fn table_under_every_chunking() {
        for case in CASES {
            let expected = expected(case);
            for (how, chunks) in chunkings(case.input) {
                let (got, errors) = run(&mut Decoder::new(), &chunks);
                assert_eq!(got, expected, "case {:?}, {how}", case.name);
                assert_eq!(errors, 0, "case {:?}, {how}", case.name);
            }
        }
    }

    #[test]
    fn bom_split_across_three_feeds() {
        let mut decoder = Decoder::new();
        for chunk in [&b"\xEF"[..], b"\xBB", b"\xBF", b"data: x\n\n"] {
            decoder.feed(chunk).unwrap();
        }
        assert_eq!(decoder.next_event().unwrap().data, "x");
        assert_eq!(decoder.next_event(), None);
    }

    #[test]
    fn second_bom_stays_in_the_field_name() {
        let mut decoder = Decoder::new();
        for chunk in [&b"\xEF\xBB"[..], b"\xBF\xEF", b"\xBB\xBFdata: x\n\n"] {
            decoder.feed(chunk).unwrap();
        }
        assert_eq!(decoder.next_event(), None);
    }

    #[test]
    fn cr_at_chunk_end_then_lf_is_one_line_end() {
        let mut decoder = Decoder::new();
        decoder.feed(b"data: a\r").unwrap();
        // An empty chunk in between must not forget the CR.
        decoder.feed(b"").unwrap();
        decoder.feed(b"\ndata: b\r").unwrap();
        decoder.feed(b"\n\r").unwrap();
        decoder.feed(b"\n").unwrap();
        assert_eq!(decoder.next_event().unwrap().data, "a\nb");
        assert_eq!(decoder.next_event(), None);
        // A CR then something else: the CR alone ended the line.
        decoder.feed(b"data: c\r").unwrap();
        decoder.feed(b"\r").unwrap();
        assert_eq!(decoder.next_event().unwrap().data, "c");
    }

    #[test]
    fn multibyte_character_split_across_feeds() {
        let text = "data: \u{e9}\u{1f980}\u{4e16}\n\n".as_bytes();
        for at in 0..=text.len() {
            let mut decoder = Decoder::new();
            decoder.feed(&text[..at]).unwrap();
            decoder.feed(&text[at..]).unwrap();
            assert_eq!(decoder.next_event().unwrap().data, "\u{e9}\u{1f980}\u{4e16}", "split at {at}");
        }
    }

    #[test]
    fn finish_discards_pending_and_keeps_queued() {
        let mut decoder = Decoder::new();
        decoder.feed(b"id: 1\ndata: a\n\nid: 2\nevent: e\ndata: b").unwrap();
        decoder.finish();
        let event = decoder.next_event().unwrap();
        assert_eq!((event.data.as_str(), event.last_event_id.as_str()), ("a", "1"));
        assert_eq!(decoder.next_event(), None);
        assert_eq!(decoder.last_event_id(), "1");
        // Nothing of the cut-off event leaks into the next stream.
        decoder.feed(b"\ndata: c\n\n").unwrap();
        assert_eq!(
            decoder.next_event(),
            Some(MessageEvent { event_type: "message".into(), data: "c".into(), last_event_id: "1".into() })
        );
    }

    #[test]
    fn queued_events_survive_finish_and_reset() {
        let mut decoder = Decoder::new();
        decoder.feed(b"data: a\n\ndata: b\n\n").unwrap();
        decoder.finish();
        decoder.reset_stream();
        assert_eq!(decoder.next_event().unwrap().data, "a");
        assert_eq!(decoder.next_event().unwrap().data, "b");
        assert_eq!(decoder.next_event(), None);
    }

    #[test]
    fn reset_stream_keeps_id_and_retry_and_rearms_bom() {
        let mut decoder = Decoder::new();
        decoder.feed(b"retry: 300\nid: 4\ndata: a\n\nid: 5\ndata: half\r").unwrap();
        assert_eq!(decoder.next_event().unwrap().last_event_id, "4");
        decoder.reset_stream();
        assert_eq!(decoder.last_event_id(), "4");
        assert_eq!(decoder.retry(), Some(Duration::from_millis(300)));
        // The pending CR is forgotten: this LF is a blank line of the new stream
        // (dispatching nothing), and a BOM at the new start is stripped.
        decoder.feed(b"\xEF\xBB\xBF\ndata: b\n\n").unwrap();
        assert_eq!(
            decoder.next_event(),
            Some(MessageEvent { event_type: "message".into(), data: "b".into(), last_event_id: "4".into() })
        );
    }

    #[test]
    fn reset_stream_forgets_a_partial_bom() {
        let mut decoder = Decoder::new();
        decoder.feed(b"\xEF\xBB").unwrap();
        decoder.reset_stream();
        decoder.feed(b"data: x\n\n").unwrap();
        assert_eq!(decoder.next_event().unwrap().data, "x");
    }

    #[test]
    fn set_last_event_id_is_used_until_an_id_field() {
        let mut decoder = Decoder::new();
        decoder.set_last_event_id("41");
        assert_eq!(decoder.last_event_id(), "41");
        decoder.feed(b"data: a\n\nid: 42\ndata: b\n\n").unwrap();
        assert_eq!(decoder.next_event().unwrap().last_event_id, "41");
        assert_eq!(decoder.next_event().unwrap().last_event_id, "42");
        decoder.set_last_event_id("");
        decoder.feed(b"data: c\n\n").unwrap();
        assert_eq!(decoder.next_event().unwrap().last_event_id, "");
    }

    #[test]
    fn defaults() {
        let decoder = Decoder::default();
        assert_eq!(decoder.max_event_size(), Decoder::DEFAULT_MAX_EVENT_SIZE);
        assert_eq!(Decoder::DEFAULT_MAX_EVENT_SIZE, 1024 * 1024);
        assert_eq!(decoder.last_event_id(), "");
        assert_eq!(decoder.retry(), None);
        assert_eq!(Decoder::with_max_event_size(7).max_event_size(), 7);
    }

    #[test]
    fn error_display() {
        let err = DecodeError::EventTooLarge { limit: 10 };
        assert_eq!(err.to_string(), "event larger than the limit of 10 bytes; it was discarded");
        assert!(err.source().is_none());
    }

    /// (name, limit, input, expected data of dispatched events with their ids, final id, errors when fed bytewise)
    type LimitCase = (&'static str, usize, &'static [u8], &'static [(&'static str, &'static str)], &'static str, usize);

    const LIMIT_CASES: &[LimitCase] = &[
        ("at the limit is fine", 10, b"data:12345\n\n", &[("12345", "")], "", 0),
        ("one past the limit", 10, b"data:123456\n\n", &[], "", 1),
        (
            "data lines add up",
            10,
            b"data:12\ndata:3\n\n",
            // "12\n" + "data:3" = 9, fine.
            &[("12\n3", "")],
            "",
            0,
        ),
        (
            "data lines add up past the limit",
            10,
            b"data:1234\ndata:56\n\n",
            // "1234\n" + "data:56" = 12.
            &[],
            "",
            1,
        ),
        (
            "recovery after the next blank line",
            10,
            b"data: a\n\nid: 9\ndata: 0123456789\ndata: more\nid: 10\n\ndata: b\n\n",
            &[("a", ""), ("b", "")],
            "",
            1,
        ),
        ("recovery with CRLF line ends", 10, b"data: 0123456789\r\n\r\ndata: b\r\n\r\n", &[("b", "")], "", 1),
        ("recovery with CR line ends", 10, b"data: 0123456789\r\rdata: b\r\r", &[("b", "")], "", 1),
        (
            "the id of a discarded event does not count",
            10,
            b"id: 1\n\nid: 2\ndata: 0123456789\n\ndata: b\n\n",
            &[("b", "1")],
            "1",
            1,
        ),
        ("a long comment counts too", 10, b": 0123456789\ndata: x\n\ndata: y\n\n", &[("y", "")], "", 1),
        (
            "two oversized events, two errors",
            10,
            b"data: 0123456789\n\ndata: ok\n\ndata: 0123456789\n\ndata: ok2\n\n",
            &[("ok", ""), ("ok2", "")],
            "",
            2,
        ),
        (
            "replacement characters count",
            10,
            // Four invalid bytes decode to twelve bytes of U+FFFD.
            b"data:\xFF\xFF\xFF\xFF\n\ndata: b\n\n",
            &[("b", "")],
            "",
            1,
        ),
        ("oversized unterminated event", 10, b"data: a\n\ndata: 0123456789", &[("a", "")], "", 1),
        ("limit zero refuses any line", 0, b"data\n\n", &[], "", 1),
        ("limit zero allows blank lines", 0, b"\n\r\n\r", &[], "", 0),
    ];

    #[test]
    fn event_too_large_then_recovery() {
        for &(name, limit, input, events, last_id, bytewise_errors) in LIMIT_CASES {
            let expected_events: Vec<MessageEvent> = events
                .iter()
                .map(|&(data, id)| MessageEvent {
                    event_type: "message".into(),
                    data: data.into(),
                    last_event_id: id.into(),
                })
                .collect();
            let expected = (expected_events, last_id.to_owned(), None);
            for (how, chunks) in chunkings(input) {
                let (got, errors) = run(&mut Decoder::with_max_event_size(limit), &chunks);
                assert_eq!(got, expected, "case {name:?}, {how}");
                if how == "bytewise" {
                    // One error per oversized event when every feed has at most one.
                    assert_eq!(errors, bytewise_errors, "case {name:?}, {how}");
                } else {
                    assert_eq!(errors > 0, bytewise_errors > 0, "case {name:?}, {how}");
                }
            }
        }
    }

    #[test]
    fn event_too_large_reports_limit_and_keeps_rest_of_chunk() {
        let mut decoder = Decoder::with_max_event_size(16);
        let err = decoder.feed(b"data: a\n\ndata: this line is far too long\n\ndata: b\n\n").unwrap_err();
        assert_eq!(err, DecodeError::EventTooLarge { limit: 16 });
        assert_eq!(decoder.next_event().unwrap().data, "a");
        assert_eq!(decoder.next_event().unwrap().data, "b");
        assert_eq!(decoder.next_event(), None);
    }

    #[test]
    fn buffered_line_is_bounded() {
        let mut decoder = Decoder::with_max_event_size(1000);
        let mut errors = 0;
        for _ in 0..10_000 {
            if decoder.feed(b"data: xxxxxxxxxx").is_err() {
                errors += 1;
            }
            assert!(decoder.line.len() <= 1000);
            assert!(decoder.line.capacity() <= LINE_KEEP);
        }
        assert_eq!(errors, 1);
        decoder.feed(b"\n\ndata: ok\n\n").unwrap();
        assert_eq!(decoder.next_event().unwrap().data, "ok");
    }

    #[test]
    fn long_line_byte_by_byte_is_linear() {
        const N: usize = 1 << 20;
        let mut input = b"data: ".to_vec();
        input.resize(N, b'x');
        input.extend_from_slice(b"\n\n");
        let mut decoder = Decoder::with_max_event_size(2 * N);
        for byte in input.chunks(1) {
            decoder.feed(byte).unwrap();
        }
        let event = decoder.next_event().unwrap();
        assert_eq!(event.data.len(), N - 6);
        // Each byte is scanned once for a line end and read once more when its
        // line is decoded: a rescan per feed would be about N * N / 2.
        let examined = decoder.examined();
        assert!(examined <= 2 * input.len(), "examined {examined} bytes");
        assert!(examined >= input.len(), "examined {examined} bytes");
    }

    #[test]
    fn many_short_lines_in_one_chunk_are_linear() {
        let input = b"data: a\r\n\r\n".repeat(100_000);
        let mut decoder = Decoder::new();
        decoder.feed(&input).unwrap();
        assert_eq!(std::iter::from_fn(|| decoder.next_event()).count(), 100_000);
        assert!(decoder.examined() <= 2 * input.len());
    }

    #[test]
    fn random_bytes_never_panic_and_ignore_chunking() {
        let mut rng = XorShift::new(0x5eed);
        const ALPHABET: &[u8] = b"\r\n:  dataeventidretry0123\xEF\xBB\xBF\xFF\xC3\xA9\x00";
        for round in 0..3000 {
            let len = rng.below(80) as usize;
            let input: Vec<u8> = (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect();
            let limit = if round % 3 == 0 { 24 } else { 1 << 20 };
            let (reference, _) = run(&mut Decoder::with_max_event_size(limit), &whole(&input));
            for (how, chunks) in [("bytewise", bytewise(&input)), ("random", random_chunks(&input, round))] {
                let (got, _) = run(&mut Decoder::with_max_event_size(limit), &chunks);
                assert_eq!(got, reference, "{how} {input:?}");
            }
        }
    }

    #[test]
    fn parse_retry_table() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"1500", Some(1500)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"184467440737095516150", None),
            (b"", None),
            (b" 1", None),
            (b"1 ", None),
            (b"1e3", None),
            (b"0x10", None),
        ];
        for &(value, expected) in cases {
            assert_eq!(parse_retry(value), expected, "{value:?}");
        }
    }
}
