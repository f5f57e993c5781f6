//! Response heads and the chunked transfer coding for response bodies.

use std::error::Error;
use std::fmt;

use crate::{StatusCode, Version};

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length: n`; exactly `n` body bytes follow.
    Length(u64),
    /// `Transfer-Encoding: chunked`; the body is written with
    /// [`write_chunk`] and ends with [`LAST_CHUNK`]. HTTP/1.1 only: an
    /// HTTP/1.0 client cannot decode it, so use [`BodyFraming::Close`] there.
    Chunked,
    /// `Connection: close` and no length; the body ends when the server
    /// closes the connection.
    Close,
    /// No framing header at all, for 1xx, 204 and 304 responses and for
    /// answers to `HEAD` that should not advertise a length.
    None,
}

/// Why [`ResponseHead::header`] refused a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The name is empty or not an RFC 9110 token.
    InvalidName,
    /// The value contains CR, LF, NUL or another control character other
    /// than HTAB.
    InvalidValue,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::InvalidName => f.write_str("invalid header name"),
            HeaderError::InvalidValue => f.write_str("invalid header value"),
        }
    }
}

impl Error for HeaderError {}

/// A response head being built; written into a caller's buffer.
///
/// Framing headers (`Content-Length`, `Transfer-Encoding`, `Connection`)
/// come from [`ResponseHead::framing`] and [`ResponseHead::keep_alive`];
/// adding them again with [`ResponseHead::header`] would duplicate them.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    status: StatusCode,
    version: Version,
    headers: Vec<(String, String)>,
    framing: BodyFraming,
    keep_alive: bool,
}

impl ResponseHead {
    /// A head for `status`: HTTP/1.1, keep-alive, no extra headers, and
    /// framing `Length(0)` — or [`BodyFraming::None`] for statuses that
    /// cannot carry a body (1xx, 204, 304), where a `Content-Length` would be
    /// wrong.
    pub fn new(status: StatusCode) -> Self {
        let framing = if status.allows_body() { BodyFraming::Length(0) } else { BodyFraming::None };
        ResponseHead { status, version: Version::Http11, headers: Vec::new(), framing, keep_alive: true }
    }

    /// Appends a header field; surrounding spaces and tabs in `value` are
    /// trimmed.
    ///
    /// # Errors
    ///
    /// [`HeaderError::InvalidName`] if `name` is not an RFC 9110 token;
    /// [`HeaderError::InvalidValue`] if `value` contains CR, LF, NUL or any
    /// other control character except HTAB. Either would let the value
    /// inject extra header lines or corrupt the head.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HeaderError> {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(HeaderError::InvalidName);
        }
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(HeaderError::InvalidValue);
        }
        let value = value.trim_matches([' ', '\t']);
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Sets how the body is delimited.
    #[must_use]
    pub fn framing(mut self, framing: BodyFraming) -> Self {
        self.framing = framing;
        self
    }

    /// `false` adds `Connection: close` (once, even with
    /// [`BodyFraming::Close`]).
    #[must_use]
    pub fn keep_alive(mut self, keep_alive: bool) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Sets the version written in the status line, e.g. `HTTP/1.0 200 OK`.
    ///
    /// An HTTP/1.0 head that keeps the connection open also gets
    /// `Connection: keep-alive`, since 1.0 clients close by default.
    #[must_use]
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The framing that [`ResponseHead::write`] will announce.
    pub fn body_framing(&self) -> BodyFraming {
        self.framing
    }

    /// True if this head tells the client the connection closes after the
    /// response, so the server should close once the body is written.
    pub fn closes_connection(&self) -> bool {
        !self.keep_alive || self.framing == BodyFraming::Close
    }

    /// Appends the status line, user headers in insertion order, the framing
    /// header(s) and the blank line to `buf`.
    ///
    /// `Content-Length` and `Transfer-Encoding` are never written for 1xx and
    /// 204 responses, which must not carry them (RFC 9110 §8.6, RFC 9112
    /// §6.1).
    pub fn write(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.version.as_str().as_bytes());
        buf.push(b' ');
        push_decimal(buf, u64::from(self.status.as_u16()));
        // The space stays even with an empty reason: the grammar requires it.
        buf.push(b' ');
        buf.extend_from_slice(self.status.reason().as_bytes());
        buf.extend_from_slice(b"\r\n");

        for (name, value) in &self.headers {
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(value.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }

        let forbids_length = self.status.is_informational() || self.status.as_u16() == 204;
        match self.framing {
            BodyFraming::Length(n) if !forbids_length => {
                buf.extend_from_slice(b"Content-Length: ");
                push_decimal(buf, n);
                buf.extend_from_slice(b"\r\n");
            }
            BodyFraming::Chunked if !forbids_length => {
                buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            _ => {}
        }
        if self.closes_connection() {
            buf.extend_from_slice(b"Connection: close\r\n");
        } else if self.version == Version::Http10 && !self.status.is_informational() {
            buf.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        buf.extend_from_slice(b"\r\n");
    }
}

/// RFC 9110 §5.6.2 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[start..]);
}

fn push_hex(buf: &mut Vec<u8>, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Two hex digits per byte of the widest usize.
    let mut digits = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = HEX[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[start..]);
}

fn hex_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 16 {
        n /= 16;
        len += 1;
    }
    len
}

/// What follows each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The zero-size chunk plus the blank line that ends a chunked body (no
/// trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends one chunk: `{len:x}\r\n{data}\r\n`.
///
/// Writes nothing for empty `data`, because a zero-size chunk would end the
/// body.
pub fn write_chunk(buf: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    buf.reserve(data.len() + chunk_overhead(data.len()));
    write_chunk_header(buf, data.len());
    buf.extend_from_slice(data);
    buf.extend_from_slice(CHUNK_END);
}

/// Appends a chunk-size line, `{len:x}\r\n`; the caller then writes `len`
/// bytes of data and [`CHUNK_END`].
///
/// `len` 0 writes `0\r\n`, the start of the last chunk; only do that to end
/// the body (then write a final `\r\n`, or just use [`LAST_CHUNK`]).
pub fn write_chunk_header(buf: &mut Vec<u8>, len: usize) {
    push_hex(buf, len);
    buf.extend_from_slice(b"\r\n");
}

/// The framing bytes [`write_chunk`] adds around `len` bytes of data: the hex
/// size, its CRLF and the trailing CRLF. So `write_chunk` grows a buffer by
/// exactly `len + chunk_overhead(len)`; 0 for `len` 0, as nothing is
/// written.
pub fn chunk_overhead(len: usize) -> usize {
    if len == 0 { 0 } else { hex_len(len) + 2 + CHUNK_END.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(head: &ResponseHead) -> String {
        let mut buf = Vec::new();
        head.write(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn each_framing_exact_bytes() {
        let base = || {
            ResponseHead::new(StatusCode::OK)
                .header("Content-Type", "text/event-stream")
                .unwrap()
                .header("X-A", "1")
                .unwrap()
        };
        let table = [
            (base(), "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"),
            (
                base().framing(BodyFraming::Length(1234)),
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nContent-Length: 1234\r\n\r\n",
            ),
            (
                base().framing(BodyFraming::Chunked),
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            (
                base().framing(BodyFraming::Close),
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nConnection: close\r\n\r\n",
            ),
            (base().framing(BodyFraming::None), "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\n\r\n"),
            (
                base().framing(BodyFraming::Length(5)).keep_alive(false),
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            ),
            (
                base().framing(BodyFraming::Close).keep_alive(false),
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nConnection: close\r\n\r\n",
            ),
            (
                base().framing(BodyFraming::Chunked).keep_alive(false),
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            ),
        ];
        for (head, want) in table {
            assert_eq!(written(&head), want);
        }
    }

    #[test]
    fn status_lines_and_bodiless_statuses() {
        let table = [
            (ResponseHead::new(StatusCode::CONTINUE), "HTTP/1.1 100 Continue\r\n\r\n"),
            (ResponseHead::new(StatusCode::NO_CONTENT), "HTTP/1.1 204 No Content\r\n\r\n"),
            (
                ResponseHead::new(StatusCode::NO_CONTENT).framing(BodyFraming::Length(3)),
                "HTTP/1.1 204 No Content\r\n\r\n",
            ),
            (ResponseHead::new(StatusCode::NOT_MODIFIED), "HTTP/1.1 304 Not Modified\r\n\r\n"),
            (
                ResponseHead::new(StatusCode::NOT_FOUND).framing(BodyFraming::Length(9)),
                "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n",
            ),
            (ResponseHead::new(StatusCode::from_u16(599).unwrap()), "HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"),
            (
                ResponseHead::new(StatusCode::OK).version(Version::Http10),
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
            ),
            (
                ResponseHead::new(StatusCode::OK).version(Version::Http10).keep_alive(false),
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
            (
                ResponseHead::new(StatusCode::OK).version(Version::Http10).framing(BodyFraming::Close),
                "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n",
            ),
        ];
        for (head, want) in table {
            assert_eq!(written(&head), want);
        }
    }

    #[test]
    fn accessors() {
        let head = ResponseHead::new(StatusCode::CREATED);
        assert_eq!(head.status(), StatusCode::CREATED);
        assert_eq!(head.body_framing(), BodyFraming::Length(0));
        assert!(!head.closes_connection());
        assert!(head.clone().keep_alive(false).closes_connection());
        assert!(head.framing(BodyFraming::Close).closes_connection());
        assert_eq!(ResponseHead::new(StatusCode::CONTINUE).body_framing(), BodyFraming::None);
    }

    #[test]
    fn header_validation() {
        let ok = |n: &str, v: &str| ResponseHead::new(StatusCode::OK).header(n, v).map(|_| ());
        for name in ["", "Bad Name", "a:b", "ü", "x\r\ny", "(", "a/b", "a\"b"] {
            assert_eq!(ok(name, "v"), Err(HeaderError::InvalidName), "{name:?}");
        }
        for value in ["a\rb", "a\nb", "a\0b", "\x01", "\x7f", "x\r\nSet-Cookie: y"] {
            assert_eq!(ok("X", value), Err(HeaderError::InvalidValue), "{value:?}");
        }
        for (name, value) in [("X-Ok", ""), ("!#$%&'*+-.^_`|~09az", "tab\there"), ("X", "üñí")] {
            assert_eq!(ok(name, value), Ok(()), "{name:?}");
        }
        let head = ResponseHead::new(StatusCode::OK).header("X", "  padded\t").unwrap();
        assert!(written(&head).contains("X: padded\r\n"));
        assert_eq!(HeaderError::InvalidName.to_string(), "invalid header name");
        assert_eq!(HeaderError::InvalidValue.to_string(), "invalid header value");
    }

    #[test]
    fn chunks() {
        let mut buf = Vec::new();
        write_chunk(&mut buf, b"hello");
        assert_eq!(buf, b"5\r\nhello\r\n");

        buf.clear();
        write_chunk(&mut buf, &[b'x'; 26]);
        assert!(buf.starts_with(b"1a\r\n"));
        assert!(buf.ends_with(b"x\r\n"));
        assert_eq!(buf.len(), 26 + chunk_overhead(26));

        buf.clear();
        write_chunk(&mut buf, b"");
        assert!(buf.is_empty());
        assert_eq!(chunk_overhead(0), 0);

        for (len, header) in
            [(0usize, "0\r\n"), (1, "1\r\n"), (15, "f\r\n"), (16, "10\r\n"), (255, "ff\r\n"), (4096, "1000\r\n")]
        {
            let mut buf = Vec::new();
            write_chunk_header(&mut buf, len);
            assert_eq!(buf, header.as_bytes());
            if len > 0 {
                assert_eq!(chunk_overhead(len), header.len() + 2);
            }
        }
        let mut buf = Vec::new();
        write_chunk_header(&mut buf, usize::MAX);
        assert_eq!(buf.len(), 2 * std::mem::size_of::<usize>() + 2);
        assert!(buf.iter().take(buf.len() - 2).all(|&b| b == b'f'));

        assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
        assert_eq!(CHUNK_END, b"\r\n");
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut buf = Vec::new();
            push_decimal(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
        }
    }
}
