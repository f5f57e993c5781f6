//! The [`Event`] builder and its wire encoding.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::lines::{self, Breaks};

pub(crate) const COMMENT_PREFIX: &[u8] = b": ";
pub(crate) const EVENT_PREFIX: &[u8] = b"event: ";
pub(crate) const ID_PREFIX: &[u8] = b"id: ";
pub(crate) const RETRY_PREFIX: &[u8] = b"retry: ";
pub(crate) const DATA_PREFIX: &[u8] = b"data: ";

/// One server-sent event, built with consuming setters in the style of axum's `Event`.
///
/// Every setter replaces the previous value of its field. Values are validated
/// (and scanned for line breaks) once, when set, so [`encode`](Event::encode) and
/// [`encoded_len`](Event::encoded_len) do no validation and, for single-line
/// values, no searching.
///
/// ```
/// use conduit_sse::Event;
///
/// let event = Event::new().event("tick")?.id("7")?.data("one\ntwo");
/// let mut buf = Vec::new();
/// event.encode(&mut buf);
/// assert_eq!(buf, b"event: tick\nid: 7\ndata: one\ndata: two\n\n");
/// assert_eq!(event.encoded_len(), buf.len());
/// # Ok::<(), conduit_sse::EventError>(())
/// ```
///
/// # Cheap events
///
/// Each of the setters above copies its value into a `String` of its own. An event built many times a second
/// can avoid every allocation: [`event_static`](Event::event_static) keeps a `&'static str` name as it is,
/// [`id_u64`](Event::id_u64) keeps a number's digits inside the event, and data can be shared
/// ([`data_shared`](Event::data_shared), one `Arc<str>` for many events), static
/// ([`data_static`](Event::data_static)), or formatted straight into the event
/// ([`data_fmt`](Event::data_fmt): up to [`INLINE_DATA`] bytes are kept inside the event itself).
///
/// ```
/// use conduit_sse::Event;
///
/// let i = 7;
/// let event = Event::new().event_static("tick")?.id_u64(i).data_fmt(format_args!("{{\"n\": {i}}}"));
/// let mut buf = Vec::new();
/// event.encode(&mut buf);
/// assert_eq!(buf, b"event: tick\nid: 7\ndata: {\"n\": 7}\n\n");
/// # Ok::<(), conduit_sse::EventError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    data: Option<Text>,
    data_breaks: Breaks,
    event: Option<Cow<'static, str>>,
    id: Option<Id>,
    retry: Option<Duration>,
    comment: Option<String>,
    comment_breaks: Breaks,
}

/// Bytes of data [`Event::data_fmt`] keeps inside the event; longer data goes to a `String`.
pub const INLINE_DATA: usize = 62;

/// A field's text, wherever it lives.
#[derive(Clone)]
enum Text {
    Owned(String),
    Static(&'static str),
    Shared(Arc<str>),
    Inline(InlineText),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Text::Owned(s) => s,
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Inline(s) => s.as_str(),
        }
    }

    /// The bytes, without the UTF-8 check that `as_str` makes of inline text (encoding needs none).
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Owned(s) => s.as_bytes(),
            Text::Static(s) => s.as_bytes(),
            Text::Shared(s) => s.as_bytes(),
            Text::Inline(s) => s.as_bytes(),
        }
    }
}

/// Equality and `Debug` by text, whatever the storage: an id set as a number equals the same id set as text.
macro_rules! compared_as_str {
    ($($ty:ty),*) => {$(
        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $ty {}

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }
    )*};
}

compared_as_str!(Text, Id);

/// Up to [`INLINE_DATA`] bytes of UTF-8 kept in place.
#[derive(Clone, Copy)]
struct InlineText {
    len: u8,
    bytes: [u8; INLINE_DATA],
}

impl InlineText {
    const EMPTY: InlineText = InlineText { len: 0, bytes: [0; INLINE_DATA] };

    fn as_str(&self) -> &str {
        // Only whole `str`s are ever appended, so the bytes are UTF-8; an empty text is the safe answer otherwise.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Formats into a text in place: inline until it is full, then into a `String` holding everything so far.
struct DataWriter<'a>(&'a mut Text);

impl fmt::Write for DataWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.0 {
            Text::Inline(inline) => {
                let len = usize::from(inline.len);
                match inline.bytes.get_mut(len..len + s.len()) {
                    Some(room) => {
                        room.copy_from_slice(s.as_bytes());
                        inline.len += s.len() as u8;
                    }
                    None => {
                        let mut spilled = String::with_capacity(2 * (len + s.len()));
                        spilled.push_str(inline.as_str());
                        spilled.push_str(s);
                        *self.0 = Text::Owned(spilled);
                    }
                }
            }
            Text::Owned(string) => string.push_str(s),
            // Never made for a writer; appending keeps the text whole all the same.
            Text::Static(_) | Text::Shared(_) => *self.0 = Text::Owned(format!("{}{s}", self.0.as_str())),
        }
        Ok(())
    }
}

/// An id: text as given, or a number's decimal digits kept in place.
#[derive(Clone)]
enum Id {
    Text(String),
    Decimal(Decimal),
}

impl Id {
    fn as_str(&self) -> &str {
        match self {
            Id::Text(s) => s,
            Id::Decimal(d) => d.as_str(),
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Id::Text(s) => s.as_bytes(),
            Id::Decimal(d) => d.as_bytes(),
        }
    }
}

/// A `u64` in decimal: at most 20 digits, right-aligned.
#[derive(Clone, Copy)]
struct Decimal {
    start: u8,
    digits: [u8; 20],
}

impl Decimal {
    #[inline]
    fn new(n: u64) -> Decimal {
        let mut digits = [b'0'; 20];
        let start = write_digits(n, &mut digits);
        Decimal { start: start as u8, digits }
    }

    fn as_str(&self) -> &str {
        // ASCII digits only.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        &self.digits[usize::from(self.start)..]
    }
}

impl Event {
    /// An event with no fields set; it encodes to nothing until a field is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (replaces) the data.
    ///
    /// Any line breaks (LF, CR, CRLF — CRLF counts as ONE break) split it over
    /// several `data:` lines, which clients join back with LF. Data therefore can
    /// never inject other fields, and needs no validation.
    #[must_use]
    pub fn data(self, data: impl Into<String>) -> Self {
        self.with_data(Text::Owned(data.into()))
    }

    /// Sets (replaces) the data with text that lives for the whole program, without copying it.
    #[must_use]
    #[inline]
    pub fn data_static(self, data: &'static str) -> Self {
        self.with_data(Text::Static(data))
    }

    /// Sets (replaces) the data with shared text, without copying it: the same `Arc<str>` can be the data of
    /// any number of events.
    #[must_use]
    #[inline]
    pub fn data_shared(self, data: Arc<str>) -> Self {
        self.with_data(Text::Shared(data))
    }

    /// Sets (replaces) the data with `args` formatted straight into the event: up to [`INLINE_DATA`] bytes are
    /// kept inside it without allocating; longer data is moved to a `String`.
    ///
    /// ```
    /// let event = conduit_sse::Event::new().data_fmt(format_args!("{} + {} = {}", 1, 2, 1 + 2));
    /// assert_eq!(event.data_str(), Some("1 + 2 = 3"));
    /// ```
    #[must_use]
    #[inline(always)]
    pub fn data_fmt(mut self, args: fmt::Arguments<'_>) -> Self {
        // Formatted where it stays, so the inline bytes are never moved afterwards.
        let data = self.data.insert(Text::Inline(InlineText::EMPTY));
        // Writing to either kind of buffer never fails; a `Display` impl that reports an error leaves what it
        // wrote before that.
        let _ = fmt::write(&mut DataWriter(data), args);
        self.data_breaks = Breaks::scan(data.as_bytes());
        self
    }

    #[inline]
    fn with_data(mut self, data: Text) -> Self {
        self.data_breaks = Breaks::scan(data.as_bytes());
        self.data = Some(data);
        self
    }

    /// Serializes `value` with `serde_json` as the data.
    ///
    /// The output is compact, so it is one line: JSON strings escape control
    /// characters, so a compact document contains no raw line break.
    ///
    /// ```
    /// let event = conduit_sse::Event::new().json(&[1, 2, 3])?;
    /// assert_eq!(event.data_str(), Some("[1,2,3]"));
    /// # Ok::<(), conduit_sse::EventError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if serialization fails (for example a map with
    /// non-string keys, or a `Serialize` impl that reports an error).
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, EventError> {
        let text = serde_json::to_string(value)?;
        Ok(self.data(text))
    }

    /// Sets (replaces) the event type.
    ///
    /// An empty name is allowed: clients treat it as the default type, `message`.
    /// NUL is allowed too, since the standard only forbids line breaks here.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidEventName`] if `name` contains CR or LF, which would
    /// otherwise end the field early and let the rest inject new fields.
    pub fn event(self, name: impl Into<String>) -> Result<Self, EventError> {
        self.with_event(Cow::Owned(name.into()))
    }

    /// Sets (replaces) the event type with a name that lives for the whole program, without copying it.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidEventName`] if `name` contains CR or LF, as for [`event`](Event::event).
    #[inline(always)]
    pub fn event_static(self, name: &'static str) -> Result<Self, EventError> {
        self.with_event(Cow::Borrowed(name))
    }

    #[inline(always)]
    fn with_event(mut self, name: Cow<'static, str>) -> Result<Self, EventError> {
        if lines::find_break(name.as_bytes()).is_some() {
            return Err(EventError::InvalidEventName);
        }
        self.event = Some(name);
        Ok(self)
    }

    /// Sets (replaces) the event id, which clients echo back in `Last-Event-ID`
    /// when they reconnect.
    ///
    /// An empty id is allowed: it resets the client's last event id, so the client
    /// stops sending `Last-Event-ID`.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidId`] if `id` contains CR or LF (field injection) or NUL
    /// (clients silently ignore such an id, which would be a confusing no-op).
    pub fn id(mut self, id: impl Into<String>) -> Result<Self, EventError> {
        let id = id.into();
        let bytes = id.as_bytes();
        if lines::find_break(bytes).is_some() || bytes.contains(&0) {
            return Err(EventError::InvalidId);
        }
        self.id = Some(Id::Text(id));
        Ok(self)
    }

    /// Sets (replaces) the id with a number, written in decimal. Its digits are kept inside the event, so
    /// this never allocates, and digits never need checking.
    #[must_use]
    #[inline(always)]
    pub fn id_u64(mut self, id: u64) -> Self {
        self.id = Some(Id::Decimal(Decimal::new(id)));
        self
    }

    /// Sets (replaces) the client's reconnection time.
    ///
    /// It is written in whole milliseconds (sub-millisecond parts are truncated)
    /// because the field only accepts ASCII digits.
    #[must_use]
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets (replaces) a comment.
    ///
    /// Line breaks split it over several comment lines (each written `": text"`),
    /// so it can never inject fields.
    #[must_use]
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.comment_breaks = Breaks::scan(text.as_bytes());
        self.comment = Some(text);
        self
    }

    /// The data, as given to [`data`](Event::data) or produced by [`json`](Event::json).
    pub fn data_str(&self) -> Option<&str> {
        self.data.as_ref().map(Text::as_str)
    }

    /// The event type set with [`event`](Event::event).
    pub fn event_name(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The id set with [`id`](Event::id).
    pub fn id_str(&self) -> Option<&str> {
        self.id.as_ref().map(Id::as_str)
    }

    /// The reconnection time set with [`retry`](Event::retry), untruncated.
    pub fn retry_duration(&self) -> Option<Duration> {
        self.retry
    }

    /// The comment set with [`comment`](Event::comment), as given.
    pub fn comment_str(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// True when nothing was set.
    pub fn is_empty(&self) -> bool {
        self.comment.is_none() && !self.has_fields()
    }

    /// Whether a blank line must follow: anything but a comment affects client
    /// state only once the block is terminated.
    fn has_fields(&self) -> bool {
        self.data.is_some() || self.event.is_some() || self.id.is_some() || self.retry.is_some()
    }

    /// Appends the wire form to `buf`.
    ///
    /// Order: comment lines (`": text"`), then `event: name`, `id: value`,
    /// `retry: ms`, then one `data: line` per data line, then the blank line.
    /// Every field is written `name: value` with one space, and lines end in LF.
    ///
    /// An empty `Event` appends nothing. An `Event` with only a comment appends
    /// the comment lines and no blank line, since a comment needs no dispatch.
    /// Data `""` writes `"data: \n"` then `"\n"`, which clients dispatch as an
    /// event with empty data.
    ///
    /// `buf` grows at most once, by exactly [`encoded_len`](Event::encoded_len).
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.reserve(self.encoded_len());
        if let Some(comment) = &self.comment {
            lines::write_lines(buf, COMMENT_PREFIX, comment.as_bytes(), self.comment_breaks);
        }
        if let Some(name) = &self.event {
            write_field(buf, EVENT_PREFIX, name.as_bytes());
        }
        if let Some(id) = &self.id {
            write_field(buf, ID_PREFIX, id.as_bytes());
        }
        if let Some(retry) = self.retry {
            buf.extend_from_slice(RETRY_PREFIX);
            push_decimal(buf, retry.as_millis());
            buf.push(b'\n');
        }
        if let Some(data) = &self.data {
            lines::write_lines(buf, DATA_PREFIX, data.as_bytes(), self.data_breaks);
        }
        if self.has_fields() {
            buf.push(b'\n');
        }
    }

    /// Exact number of bytes [`encode`](Event::encode) would append, computed
    /// without scanning the values, so callers can frame without a scratch buffer.
    pub fn encoded_len(&self) -> usize {
        let mut len = 0;
        if let Some(comment) = &self.comment {
            len += self.comment_breaks.encoded_len(COMMENT_PREFIX.len(), comment.len());
        }
        if let Some(name) = &self.event {
            len += EVENT_PREFIX.len() + name.len() + 1;
        }
        if let Some(id) = &self.id {
            len += ID_PREFIX.len() + id.as_bytes().len() + 1;
        }
        if let Some(retry) = self.retry {
            len += RETRY_PREFIX.len() + decimal_len(retry.as_millis()) + 1;
        }
        if let Some(data) = &self.data {
            len += self.data_breaks.encoded_len(DATA_PREFIX.len(), data.as_bytes().len());
        }
        if self.has_fields() {
            len += 1;
        }
        len
    }
}

/// Appends a comment line `": text\n"`; line breaks in `text` split it into
/// several comment lines, so it can never inject fields.
///
/// No blank line follows: a comment needs no dispatch.
///
/// ```
/// let mut buf = Vec::new();
/// conduit_sse::encode_comment(&mut buf, "hello\nworld");
/// assert_eq!(buf, b": hello\n: world\n");
/// ```
pub fn encode_comment(buf: &mut Vec<u8>, text: &str) {
    let text = text.as_bytes();
    // Exact for the common single-line case; a multi-line comment may grow once more.
    buf.reserve(COMMENT_PREFIX.len() + text.len() + 1);
    for line in lines::lines(text) {
        buf.extend_from_slice(COMMENT_PREFIX);
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
}

/// The keep-alive comment a stream sends when it has been idle.
///
/// The trailing blank line is harmless to clients (an empty block dispatches
/// nothing) and makes line-buffering proxies pass the comment on at once.
pub const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

#[inline]
pub(crate) fn write_field(buf: &mut Vec<u8>, prefix: &[u8], value: &[u8]) {
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// `u128::MAX` has 39 decimal digits.
const MAX_DIGITS: usize = 39;

pub(crate) fn push_decimal(buf: &mut Vec<u8>, n: u128) {
    let mut digits = [0u8; MAX_DIGITS];
    let start = write_digits(n, &mut digits);
    buf.extend_from_slice(&digits[start..]);
}

/// Writes `n` in decimal at the end of `digits` (which must have room: 20 bytes for a `u64`, 39 for a `u128`)
/// and returns where the digits start. Generic so that a `u64` is divided as a `u64`.
#[inline]
pub(crate) fn write_digits<T>(mut n: T, digits: &mut [u8]) -> usize
where
    T: Copy + PartialEq + From<u8> + std::ops::Rem<Output = T> + std::ops::Div<Output = T> + TryInto<u8>,
{
    let (ten, zero) = (T::from(10), T::from(0));
    let mut start = digits.len();
    loop {
        start -= 1;
        // A remainder of ten is below ten: the conversion cannot fail.
        digits[start] = b'0' + (n % ten).try_into().unwrap_or(0);
        n = n / ten;
        if n == zero {
            return start;
        }
    }
}

fn decimal_len(n: u128) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Why an [`Event`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum EventError {
    /// The event name contained CR or LF.
    InvalidEventName,
    /// The id contained CR, LF or NUL.
    InvalidId,
    /// [`Event::json`] could not serialize the value.
    Json(serde_json::Error),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventError::InvalidEventName => "event name contains a line break",
            EventError::InvalidId => "event id contains a line break or NUL",
            EventError::Json(_) => "event data could not be serialized as JSON",
        })
    }
}

impl std::error::Error for EventError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EventError::Json(err) => Some(err),
            EventError::InvalidEventName | EventError::InvalidId => None,
        }
    }
}

impl From<serde_json::Error> for EventError {
    fn from(err: serde_json::Error) -> Self {
        EventError::Json(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{XorShift, random_text};
    use std::collections::BTreeMap;
    use std::error::Error as _;

    fn encoded(event: &Event) -> Vec<u8> {
        let mut buf = Vec::new();
        event.encode(&mut buf);
        buf
    }

    fn table() -> Vec<(&'static str, Event, &'static str)> {
        let ev = Event::new;
        vec![
            ("empty", ev(), ""),
            ("data only", ev().data("hello"), "data: hello\n\n"),
            (
                "event id data",
                ev().event("update").unwrap().id("42").unwrap().data("x"),
                "event: update\nid: 42\ndata: x\n\n",
            ),
            (
                "fixed field order",
                ev().data("d").retry(Duration::from_secs(3)).id("i").unwrap().event("e").unwrap().comment("c"),
                ": c\nevent: e\nid: i\nretry: 3000\ndata: d\n\n",
            ),
            ("retry", ev().retry(Duration::from_millis(1500)), "retry: 1500\n\n"),
            ("retry zero", ev().retry(Duration::ZERO), "retry: 0\n\n"),
            ("retry truncates sub-millisecond", ev().retry(Duration::from_micros(2999)), "retry: 2\n\n"),
            ("retry max", ev().retry(Duration::MAX), "retry: 18446744073709551615999\n\n"),
            ("id only", ev().id("5").unwrap(), "id: 5\n\n"),
            ("empty id resets", ev().id("").unwrap(), "id: \n\n"),
            ("empty event name", ev().event("").unwrap(), "event: \n\n"),
            ("comment only", ev().comment("hi"), ": hi\n"),
            ("empty comment", ev().comment(""), ": \n"),
            ("comment with breaks", ev().comment("a\nid: 1\rb\r\nc"), ": a\n: id: 1\n: b\n: c\n"),
            ("comment and data", ev().comment("note").data("x"), ": note\ndata: x\n\n"),
            ("data LF", ev().data("a\nb"), "data: a\ndata: b\n\n"),
            ("data CR", ev().data("a\rb"), "data: a\ndata: b\n\n"),
            ("data CRLF is one break", ev().data("a\r\nb"), "data: a\ndata: b\n\n"),
            ("data mixed", ev().data("a\nb\rc\r\nd\n\re"), "data: a\ndata: b\ndata: c\ndata: d\ndata: \ndata: e\n\n"),
            ("data trailing break", ev().data("a\n"), "data: a\ndata: \n\n"),
            ("data leading break", ev().data("\na"), "data: \ndata: a\n\n"),
            ("data only CRLF", ev().data("\r\n"), "data: \ndata: \n\n"),
            ("data only CR", ev().data("\r"), "data: \ndata: \n\n"),
            ("data LF CR is two", ev().data("\n\r"), "data: \ndata: \ndata: \n\n"),
            ("data empty", ev().data(""), "data: \n\n"),
            ("data keeps spaces and colons", ev().data(" id: x :"), "data:  id: x :\n\n"),
            ("data unicode", ev().data("héllo \u{2028} 世界 🦀"), "data: héllo \u{2028} 世界 🦀\n\n"),
            ("data replaced", ev().data("old").data("new"), "data: new\n\n"),
            ("event name with NUL", ev().event("a\0b").unwrap(), "event: a\0b\n\n"),
            (
                "json struct",
                ev().json(&Point { x: 1, label: "a\nb".into() }).unwrap(),
                "data: {\"x\":1,\"label\":\"a\\nb\"}\n\n",
            ),
            ("json map", ev().json(&BTreeMap::from([("b", 2), ("a", 1)])).unwrap(), "data: {\"a\":1,\"b\":2}\n\n"),
            ("json str", ev().json("hi").unwrap(), "data: \"hi\"\n\n"),
        ]
    }

    #[derive(serde::Serialize)]
    struct Point {
        x: i32,
        label: String,
    }

    #[test]
    fn exact_bytes_table() {
        for (name, event, expected) in table() {
            let got = encoded(&event);
            assert_eq!(String::from_utf8_lossy(&got), expected, "case {name:?}: {event:?}");
            assert_eq!(event.encoded_len(), got.len(), "case {name:?}");
            assert_eq!(event.is_empty(), expected.is_empty(), "case {name:?}");
        }
    }

    #[test]
    fn encode_appends_and_reserves_exactly() {
        for (name, event, expected) in table() {
            let mut buf = b"prefix".to_vec();
            buf.shrink_to_fit();
            event.encode(&mut buf);
            assert_eq!(&buf[..6], b"prefix", "case {name:?}");
            assert_eq!(&buf[6..], expected.as_bytes(), "case {name:?}");
        }
    }

    #[test]
    fn cheap_setters_encode_as_the_plain_ones() {
        let long = "x".repeat(INLINE_DATA + 1);
        let cases: Vec<(&str, Event, Event)> = vec![
            ("static name", Event::new().event_static("tick").unwrap(), Event::new().event("tick").unwrap()),
            ("number id", Event::new().id_u64(42), Event::new().id("42").unwrap()),
            ("zero id", Event::new().id_u64(0), Event::new().id("0").unwrap()),
            ("largest id", Event::new().id_u64(u64::MAX), Event::new().id(u64::MAX.to_string()).unwrap()),
            ("static data", Event::new().data_static("a\nb"), Event::new().data("a\nb")),
            ("shared data", Event::new().data_shared(Arc::from("a\r\nb")), Event::new().data("a\r\nb")),
            ("formatted data", Event::new().data_fmt(format_args!("{}-{}", 1, "\r")), Event::new().data("1-\r")),
            ("empty formatted", Event::new().data_fmt(format_args!("")), Event::new().data("")),
            ("spilled", Event::new().data_fmt(format_args!("{long}")), Event::new().data(long.clone())),
            (
                "all cheap",
                Event::new().event_static("update").unwrap().id_u64(7).data_fmt(format_args!("{{\"n\": {}}}", 7)),
                Event::new().event("update").unwrap().id("7").unwrap().data("{\"n\": 7}"),
            ),
        ];
        for (name, cheap, plain) in cases {
            assert_eq!(encoded(&cheap), encoded(&plain), "case {name:?}");
            assert_eq!(cheap.encoded_len(), encoded(&plain).len(), "case {name:?}");
            assert_eq!(cheap, plain, "case {name:?}");
            assert_eq!(
                (cheap.data_str(), cheap.id_str(), cheap.event_name()),
                (plain.data_str(), plain.id_str(), plain.event_name())
            );
        }
    }

    #[test]
    fn formatted_data_spills_at_the_inline_limit() {
        // Pieces of every size around the limit, with multi-byte characters straddling it.
        for len in 0..INLINE_DATA + 8 {
            for piece in ["a", "é", "世", "🦀"] {
                let text: String = piece.repeat(len / piece.len() + 1).chars().take(len).collect();
                let event = Event::new().data_fmt(format_args!("{text}{piece}"));
                let want = format!("{text}{piece}");
                assert_eq!(event.data_str(), Some(want.as_str()), "{len} x {piece:?}");
                assert_eq!(event.encoded_len(), encoded(&event).len());
            }
        }
    }

    #[test]
    fn formatting_errors_keep_what_was_written() {
        struct Fails;
        impl fmt::Display for Fails {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("part")?;
                Err(fmt::Error)
            }
        }
        let event = Event::new().data_fmt(format_args!("a {Fails} b"));
        assert_eq!(event.data_str(), Some("a part"));
    }

    #[test]
    fn static_names_are_checked_too() {
        assert!(matches!(Event::new().event_static("a\nb"), Err(EventError::InvalidEventName)));
        assert!(matches!(Event::new().event_static("\r"), Err(EventError::InvalidEventName)));
        assert_eq!(Event::new().event_static("").unwrap().event_name(), Some(""));
    }

    #[test]
    fn cheap_events_stay_small() {
        // Events are moved through builder chains and queued by the thousand: keep an eye on their size.
        assert!(std::mem::size_of::<Event>() <= 200, "{}", std::mem::size_of::<Event>());
    }

    #[test]
    fn getters_return_what_was_set() {
        let event = Event::new()
            .data("a\r\nb")
            .event("e")
            .unwrap()
            .id("")
            .unwrap()
            .retry(Duration::from_micros(1500))
            .comment("c\n");
        assert_eq!(event.data_str(), Some("a\r\nb"));
        assert_eq!(event.event_name(), Some("e"));
        assert_eq!(event.id_str(), Some(""));
        assert_eq!(event.retry_duration(), Some(Duration::from_micros(1500)));
        assert_eq!(event.comment_str(), Some("c\n"));
        assert!(!event.is_empty());

        let empty = Event::new();
        assert!(empty.is_empty());
        assert_eq!(empty, Event::default());
        assert_eq!(empty.data_str(), None);
        assert_eq!(empty.event_name(), None);
        assert_eq!(empty.id_str(), None);
        assert_eq!(empty.retry_duration(), None);
        assert_eq!(empty.comment_str(), None);
    }

    #[test]
    fn rejected_names_and_ids() {
        for bad in ["a\nb", "a\rb", "\n", "\r", "\r\n", "end\n", "\u{2028}ok\n"] {
            assert!(matches!(Event::new().event(bad), Err(EventError::InvalidEventName)), "event {bad:?}");
            assert!(matches!(Event::new().id(bad), Err(EventError::InvalidId)), "id {bad:?}");
        }
        for bad in ["\0", "a\0b", "7\0"] {
            assert!(matches!(Event::new().id(bad), Err(EventError::InvalidId)), "id {bad:?}");
            assert!(Event::new().event(bad).is_ok(), "event {bad:?}");
        }
        for good in ["", "a", "a b: c", "é\u{2028}"] {
            assert_eq!(Event::new().event(good).unwrap().event_name(), Some(good));
            assert_eq!(Event::new().id(good).unwrap().id_str(), Some(good));
        }
    }

    #[test]
    fn json_errors() {
        let err = Event::new().json(&BTreeMap::from([((1, 2), 3)])).unwrap_err();
        assert!(matches!(err, EventError::Json(_)));
        assert!(err.source().is_some());
        assert_eq!(err.to_string(), "event data could not be serialized as JSON");
        assert!(EventError::InvalidId.source().is_none());
        assert!(!EventError::InvalidEventName.to_string().is_empty());
    }

    fn random_event(rng: &mut XorShift) -> Event {
        let mut event = Event::new();
        if rng.below(2) == 0 {
            event = event.data(random_text(rng, 30));
        }
        if rng.below(3) == 0 {
            event = event.comment(random_text(rng, 10));
        }
        if rng.below(3) == 0 {
            let name = random_text(rng, 8);
            event = match event.clone().event(name) {
                Ok(ok) => ok,
                Err(EventError::InvalidEventName) => event,
                Err(other) => panic!("unexpected {other:?}"),
            };
        }
        if rng.below(3) == 0 {
            let id = random_text(rng, 8);
            event = match event.clone().id(id) {
                Ok(ok) => ok,
                Err(EventError::InvalidId) => event,
                Err(other) => panic!("unexpected {other:?}"),
            };
        }
        if rng.below(4) == 0 {
            event = event.retry(Duration::from_nanos(rng.next_u64()));
        }
        event
    }

    #[test]
    fn encoded_len_matches_random_events() {
        let mut rng = XorShift::new(0x5eed);
        let mut buf = Vec::new();
        for _ in 0..5000 {
            let event = random_event(&mut rng);
            buf.clear();
            event.encode(&mut buf);
            assert_eq!(event.encoded_len(), buf.len(), "{event:?}");
            // Output is always well-formed UTF-8 with LF-only line ends.
            assert!(std::str::from_utf8(&buf).is_ok());
            assert!(!buf.contains(&b'\r'), "{event:?}");
            assert_eq!(buf.is_empty(), event.is_empty());
            if event.data_str().is_some() || event.id_str().is_some() {
                assert!(buf.ends_with(b"\n\n"), "{event:?}");
            }
        }
    }

    #[test]
    fn data_cannot_inject_fields() {
        let mut rng = XorShift::new(0xdead_beef);
        for round in 0..5000 {
            // Bias towards text that looks like fields, so injection would be visible.
            let mut data = random_text(&mut rng, 30);
            if round % 2 == 0 {
                data.push_str("\nid: 9\revent: x\r\nretry: 1\n");
            }
            let event = Event::new().data(data.clone());
            let out = String::from_utf8(encoded(&event)).unwrap();
            let body = out.strip_suffix("\n\n").expect("block ends with a blank line");
            let mut values = Vec::new();
            for line in body.split('\n') {
                let value = line.strip_prefix("data: ").unwrap_or_else(|| panic!("line {line:?} in {out:?}"));
                assert!(!value.contains('\r'));
                values.push(value);
            }
            // Joining the lines back with LF must give the data with breaks normalized.
            let normalized = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(values.join("\n"), normalized);
        }
    }

    #[test]
    fn comment_cannot_inject_fields() {
        let mut rng = XorShift::new(3);
        for _ in 0..2000 {
            let text = random_text(&mut rng, 30);
            for out in [encoded(&Event::new().comment(text.clone())), {
                let mut buf = Vec::new();
                encode_comment(&mut buf, &text);
                buf
            }] {
                let out = String::from_utf8(out).unwrap();
                let body = out.strip_suffix('\n').unwrap();
                for line in body.split('\n') {
                    assert!(line.starts_with(": "), "{line:?} in {out:?}");
                    assert!(!line.contains('\r'));
                }
            }
        }
    }

    #[test]
    fn encode_comment_table() {
        let cases = [("", ": \n"), ("x", ": x\n"), ("a\nb", ": a\n: b\n"), ("a\r\nb\r", ": a\n: b\n: \n")];
        for (text, expected) in cases {
            let mut buf = b"..".to_vec();
            encode_comment(&mut buf, text);
            assert_eq!(&buf[2..], expected.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn keep_alive_comment_is_exact() {
        assert_eq!(KEEP_ALIVE_COMMENT, b": keep-alive\n\n");
        let mut buf = Vec::new();
        encode_comment(&mut buf, "keep-alive");
        buf.push(b'\n');
        assert_eq!(buf, KEEP_ALIVE_COMMENT);
    }

    #[test]
    fn decimal_helpers() {
        for n in [0u128, 1, 9, 10, 99, 100, 1500, u64::MAX as u128, u128::MAX] {
            let mut buf = Vec::new();
            push_decimal(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
            assert_eq!(decimal_len(n), buf.len());
        }
    }
}
