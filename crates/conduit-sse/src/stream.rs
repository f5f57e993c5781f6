//! [`SseStream`]: events and keep-alives over a blocking `std::io::Write`.

use std::fmt;
use std::io::{self, Write};
use std::time::Instant;

use crate::event::{Event, KEEP_ALIVE_COMMENT, encode_comment};
use crate::keep_alive::KeepAlive;

/// Scratch capacity kept between writes; anything larger is released after use so
/// one huge event does not pin memory for the life of a long-lived connection.
const SCRATCH_KEEP: usize = 64 * 1024;

/// An event stream over any [`std::io::Write`] (a `TcpStream`, a `Vec<u8>` in
/// tests): send events, send keep-alives when due, close.
///
/// Tracks the last id sent and the number of events. Every write is one
/// `write_all` followed by a flush, so each event leaves in one piece. After any
/// I/O error the stream is closed, because a partial write may have left half an
/// event on the wire and anything sent after it would be misparsed.
///
/// It assumes a blocking writer: `WouldBlock` is an error like any other.
///
/// ```
/// use std::time::{Duration, Instant};
/// use conduit_sse::{Event, KeepAlive, SseStream};
///
/// let start = Instant::now();
/// let mut stream = SseStream::new(Vec::new(), KeepAlive::new(Duration::from_secs(15), start));
/// stream.send_event(&Event::new().id("1")?.data("hello"), start)?;
/// assert!(!stream.poll_keep_alive(start + Duration::from_secs(14))?);
/// assert!(stream.poll_keep_alive(start + Duration::from_secs(15))?);
/// assert_eq!(stream.last_event_id(), Some("1"));
/// assert_eq!(stream.close()?, b"id: 1\ndata: hello\n\n: keep-alive\n\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SseStream<W: Write> {
    writer: W,
    keep_alive: KeepAlive,
    /// Reused across sends so steady-state encoding does not allocate.
    scratch: Vec<u8>,
    /// Reused for the same reason; only meaningful when `has_last_id`.
    last_id: String,
    has_last_id: bool,
    events_sent: u64,
    closed: bool,
}

impl<W: Write> SseStream<W> {
    /// Wraps `writer`. Writes nothing: the caller has already sent the response
    /// head, e.g. with [`write_response_head`](crate::write_response_head).
    pub fn new(writer: W, keep_alive: KeepAlive) -> Self {
        SseStream {
            writer,
            keep_alive,
            scratch: Vec::new(),
            last_id: String::new(),
            has_last_id: false,
            events_sent: 0,
            closed: false,
        }
    }

    /// Encodes and writes `event` with one `write_all`, flushes, and records
    /// activity at `now`.
    ///
    /// An empty event writes nothing and is not counted. Any other event,
    /// comment-only ones included, adds one to [`events_sent`](SseStream::events_sent);
    /// an event with an id updates [`last_event_id`](SseStream::last_event_id).
    ///
    /// # Errors
    ///
    /// [`StreamError::Closed`] after [`finish`](SseStream::finish) or after an
    /// earlier I/O error; [`StreamError::Io`] if writing or flushing fails, after
    /// which the stream is closed.
    pub fn send_event(&mut self, event: &Event, now: Instant) -> Result<(), StreamError> {
        self.ensure_open()?;
        if event.is_empty() {
            return Ok(());
        }
        self.scratch.clear();
        event.encode(&mut self.scratch);
        self.write_scratch(now)?;
        self.events_sent += 1;
        if let Some(id) = event.id_str() {
            self.last_id.clear();
            self.last_id.push_str(id);
            self.has_last_id = true;
        }
        Ok(())
    }

    /// Writes a comment (line breaks split it into several comment lines; no blank
    /// line is needed), flushes, and records activity at `now`.
    ///
    /// # Errors
    ///
    /// As for [`send_event`](SseStream::send_event).
    pub fn send_comment(&mut self, text: &str, now: Instant) -> Result<(), StreamError> {
        self.ensure_open()?;
        self.scratch.clear();
        encode_comment(&mut self.scratch, text);
        self.write_scratch(now)
    }

    /// Writes [`KEEP_ALIVE_COMMENT`] if one is due at `now`; returns whether it wrote.
    ///
    /// # Errors
    ///
    /// As for [`send_event`](SseStream::send_event); a closed stream reports
    /// `Closed` even when no keep-alive is due, so a poller notices.
    pub fn poll_keep_alive(&mut self, now: Instant) -> Result<bool, StreamError> {
        self.ensure_open()?;
        if !self.keep_alive.poll(now) {
            return Ok(false);
        }
        self.write_bytes(KEEP_ALIVE_COMMENT)?;
        Ok(true)
    }

    /// When the next keep-alive is due (`None` if disabled).
    pub fn next_keep_alive(&self) -> Option<Instant> {
        self.keep_alive.next_deadline()
    }

    /// The id of the most recent event sent with an id, as written: `Some("")`
    /// means the last id sent was the empty reset. `None` if no id was ever sent.
    pub fn last_event_id(&self) -> Option<&str> {
        self.has_last_id.then_some(self.last_id.as_str())
    }

    /// Number of non-empty events written by [`send_event`](SseStream::send_event).
    pub fn events_sent(&self) -> u64 {
        self.events_sent
    }

    /// True after [`finish`](SseStream::finish) or an I/O error.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the stream in place: flushes, then makes every later send return
    /// [`StreamError::Closed`]. Useful when the stream lives inside another value
    /// and cannot be moved out for [`close`](SseStream::close).
    ///
    /// # Errors
    ///
    /// The flush error; the stream is closed either way.
    pub fn finish(&mut self) -> io::Result<()> {
        let was_closed = self.closed;
        self.closed = true;
        if was_closed {
            return Ok(());
        }
        self.writer.flush()
    }

    /// Flushes and returns the writer.
    ///
    /// # Errors
    ///
    /// The flush error.
    pub fn close(mut self) -> io::Result<W> {
        self.writer.flush()?;
        Ok(self.writer)
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    fn ensure_open(&self) -> Result<(), StreamError> {
        if self.closed { Err(StreamError::Closed) } else { Ok(()) }
    }

    fn write_scratch(&mut self, now: Instant) -> Result<(), StreamError> {
        let result = write_flush(&mut self.writer, &self.scratch);
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        self.finish_write(result, now)
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        let result = write_flush(&mut self.writer, bytes);
        if result.is_err() {
            self.closed = true;
        }
        result.map_err(StreamError::Io)
    }

    fn finish_write(&mut self, result: io::Result<()>, now: Instant) -> Result<(), StreamError> {
        match result {
            Ok(()) => {
                self.keep_alive.record_activity(now);
                Ok(())
            }
            Err(err) => {
                self.closed = true;
                Err(StreamError::Io(err))
            }
        }
    }
}

fn write_flush<W: Write>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes)?;
    writer.flush()
}

impl<W: Write + fmt::Debug> fmt::Debug for SseStream<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The scratch buffer is an implementation detail and can be large.
        f.debug_struct("SseStream")
            .field("writer", &self.writer)
            .field("keep_alive", &self.keep_alive)
            .field("last_event_id", &self.last_event_id())
            .field("events_sent", &self.events_sent)
            .field("closed", &self.closed)
            .finish()
    }
}

/// Why an [`SseStream`] write failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// The stream was finished, or closed by an earlier I/O error.
    Closed,
    /// Writing or flushing failed; the stream is now closed.
    Io(io::Error),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamError::Closed => "event stream is closed",
            StreamError::Io(_) => "event stream write failed",
        })
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamError::Io(err) => Some(err),
            StreamError::Closed => None,
        }
    }
}

impl From<io::Error> for StreamError {
    fn from(err: io::Error) -> Self {
        StreamError::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::time::Duration;

    const SEC: Duration = Duration::from_secs(1);

    /// Accepts `limit` bytes (possibly in short writes), then fails every write.
    #[derive(Debug, Default)]
    struct FailAfter {
        written: Vec<u8>,
        limit: usize,
        max_chunk: usize,
        flushes: usize,
        fail_flush: bool,
    }

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.limit - self.written.len();
            if room == 0 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "peer gone"));
            }
            let n = buf.len().min(room).min(self.max_chunk.max(1));
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            if self.fail_flush { Err(io::Error::other("flush failed")) } else { Ok(()) }
        }
    }

    fn text(stream: &SseStream<Vec<u8>>) -> &str {
        std::str::from_utf8(stream.get_ref()).unwrap()
    }

    #[test]
    fn events_comments_and_ids() {
        let base = Instant::now();
        let mut s = SseStream::new(Vec::new(), KeepAlive::disabled());
        assert!(s.get_ref().is_empty());
        assert_eq!(s.last_event_id(), None);

        let steps: Vec<(Event, &str, Option<&str>, u64)> = vec![
            (Event::new().data("a"), "data: a\n\n", None, 1),
            (Event::new().id("1").unwrap().data("b"), "id: 1\ndata: b\n\n", Some("1"), 2),
            (Event::new().data("c"), "data: c\n\n", Some("1"), 3),
            (Event::new(), "", Some("1"), 3),
            (Event::new().comment("x"), ": x\n", Some("1"), 4),
            (Event::new().id("").unwrap(), "id: \n\n", Some(""), 5),
            (
                Event::new().id("long-id-2").unwrap().event("e").unwrap(),
                "event: e\nid: long-id-2\n\n",
                Some("long-id-2"),
                6,
            ),
        ];
        for (i, (event, bytes, last_id, count)) in steps.into_iter().enumerate() {
            let before = s.get_ref().len();
            s.send_event(&event, base).unwrap();
            assert_eq!(&text(&s)[before..], bytes, "step {i}");
            assert_eq!(s.last_event_id(), last_id, "step {i}");
            assert_eq!(s.events_sent(), count, "step {i}");
        }

        let before = s.get_ref().len();
        s.send_comment("hi\nthere", base).unwrap();
        assert_eq!(&text(&s)[before..], ": hi\n: there\n");
        assert_eq!(s.events_sent(), 6);
        assert!(!s.is_closed());
    }

    #[test]
    fn keep_alive_only_when_due() {
        let base = Instant::now();
        let mut s = SseStream::new(Vec::new(), KeepAlive::new(10 * SEC, base));
        assert_eq!(s.next_keep_alive(), Some(base + 10 * SEC));
        assert!(!s.poll_keep_alive(base + 9 * SEC).unwrap());
        assert!(s.get_ref().is_empty());

        // An event at 5 s pushes the keep-alive to 15 s.
        s.send_event(&Event::new().data("x"), base + 5 * SEC).unwrap();
        assert_eq!(s.next_keep_alive(), Some(base + 15 * SEC));
        assert!(!s.poll_keep_alive(base + 10 * SEC).unwrap());
        assert!(s.poll_keep_alive(base + 15 * SEC).unwrap());
        assert!(!s.poll_keep_alive(base + 15 * SEC).unwrap());
        assert_eq!(s.next_keep_alive(), Some(base + 25 * SEC));

        // Comments count as activity too.
        s.send_comment("c", base + 20 * SEC).unwrap();
        assert!(!s.poll_keep_alive(base + 25 * SEC).unwrap());
        assert!(s.poll_keep_alive(base + 30 * SEC).unwrap());

        assert_eq!(text(&s), "data: x\n\n: keep-alive\n\n: c\n: keep-alive\n\n");
        // Keep-alives are not events.
        assert_eq!(s.events_sent(), 1);
    }

    #[test]
    fn disabled_keep_alive_never_writes() {
        let base = Instant::now();
        let mut s = SseStream::new(Vec::new(), KeepAlive::disabled());
        assert_eq!(s.next_keep_alive(), None);
        for secs in [0, 15, 3600] {
            assert!(!s.poll_keep_alive(base + secs * SEC).unwrap());
        }
        assert!(s.close().unwrap().is_empty());
    }

    #[test]
    fn closed_after_finish() {
        let base = Instant::now();
        let mut s = SseStream::new(Vec::new(), KeepAlive::new(SEC, base));
        s.send_event(&Event::new().data("x"), base).unwrap();
        s.finish().unwrap();
        assert!(s.is_closed());
        assert!(matches!(s.send_event(&Event::new().data("y"), base), Err(StreamError::Closed)));
        assert!(matches!(s.send_comment("y", base), Err(StreamError::Closed)));
        assert!(matches!(s.poll_keep_alive(base + 100 * SEC), Err(StreamError::Closed)));
        // Even an empty event is refused, so the caller learns the stream is gone.
        assert!(matches!(s.send_event(&Event::new(), base), Err(StreamError::Closed)));
        s.finish().unwrap();
        assert_eq!(s.events_sent(), 1);
        assert_eq!(s.close().unwrap(), b"data: x\n\n");
    }

    #[test]
    fn closed_after_write_error() {
        let base = Instant::now();
        // Short writes exercise write_all's retry loop before the failure.
        for limit in [0, 1, 5, 12, 13, 14, 26, 30, 38] {
            let writer = FailAfter { limit, max_chunk: 3, ..FailAfter::default() };
            let mut s = SseStream::new(writer, KeepAlive::new(SEC, base));
            let mut failed = false;
            for i in 0..3 {
                match s.send_event(&Event::new().data("hello"), base) {
                    Ok(()) => assert!(!failed, "limit {limit} step {i}"),
                    Err(StreamError::Io(err)) => {
                        assert!(!failed);
                        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
                        failed = true;
                    }
                    Err(StreamError::Closed) => assert!(failed, "limit {limit} step {i}"),
                }
            }
            // 13 bytes per event: whole events only until the limit is hit.
            assert!(failed, "limit {limit}");
            assert!(s.is_closed());
            assert_eq!(s.events_sent(), (limit / 13) as u64, "limit {limit}");
            assert!(matches!(s.poll_keep_alive(base + 10 * SEC), Err(StreamError::Closed)));
            assert_eq!(s.get_ref().written.len(), limit);
        }
    }

    #[test]
    fn keep_alive_write_error_closes() {
        let base = Instant::now();
        let writer = FailAfter { limit: 3, max_chunk: 100, ..FailAfter::default() };
        let mut s = SseStream::new(writer, KeepAlive::new(SEC, base));
        assert!(matches!(s.poll_keep_alive(base + SEC), Err(StreamError::Io(_))));
        assert!(s.is_closed());
        assert!(matches!(s.send_comment("x", base), Err(StreamError::Closed)));
    }

    #[test]
    fn flush_error_closes_and_close_reports_it() {
        let base = Instant::now();
        let writer = FailAfter { limit: 1000, max_chunk: 1000, fail_flush: true, ..FailAfter::default() };
        let mut s = SseStream::new(writer, KeepAlive::disabled());
        let err = s.send_event(&Event::new().data("x"), base).unwrap_err();
        assert!(matches!(err, StreamError::Io(_)));
        assert!(err.source().is_some());
        assert!(s.is_closed());
        assert_eq!(s.events_sent(), 0);
        assert!(s.close().is_err());
    }

    #[test]
    fn every_send_flushes() {
        let base = Instant::now();
        let writer = FailAfter { limit: 1000, max_chunk: 1000, ..FailAfter::default() };
        let mut s = SseStream::new(writer, KeepAlive::new(SEC, base));
        s.send_event(&Event::new().data("x"), base).unwrap();
        s.send_comment("y", base).unwrap();
        assert!(s.poll_keep_alive(base + 2 * SEC).unwrap());
        assert_eq!(s.get_ref().flushes, 3);
        let writer = s.close().unwrap();
        assert_eq!(writer.flushes, 4);
    }

    #[test]
    fn large_event_releases_scratch() {
        let base = Instant::now();
        let mut s = SseStream::new(Vec::new(), KeepAlive::disabled());
        let big = "z".repeat(SCRATCH_KEEP * 2);
        s.send_event(&Event::new().data(big), base).unwrap();
        assert!(s.scratch.capacity() <= SCRATCH_KEEP);
        assert_eq!(s.get_ref().len(), SCRATCH_KEEP * 2 + 8);
    }

    #[test]
    fn errors_display_and_debug() {
        assert_eq!(StreamError::Closed.to_string(), "event stream is closed");
        assert!(StreamError::Closed.source().is_none());
        let err = StreamError::from(io::Error::other("x"));
        assert_eq!(err.to_string(), "event stream write failed");
        let s = SseStream::new(Vec::<u8>::new(), KeepAlive::disabled());
        assert!(format!("{s:?}").starts_with("SseStream"));
    }
}
