//! The HTTP response head of an event stream.

/// Response headers every event stream sends.
///
/// `no-cache` and `X-Accel-Buffering: no` stop caches and nginx from holding
/// events back; the body must also never be compressed, which is why no
/// `Content-Encoding` is offered.
pub const STREAM_HEADERS: [(&str, &str); 4] = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("Connection", "keep-alive"),
    ("X-Accel-Buffering", "no"),
];

const STATUS_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// Appends a complete HTTP/1.1 `200 OK` head with [`STREAM_HEADERS`] and no
/// length, for people who use this crate on their own over a raw socket.
///
/// The body is delimited by closing the connection, so neither
/// `Content-Length` nor chunked encoding is used.
///
/// ```
/// let mut buf = Vec::new();
/// conduit_sse::write_response_head(&mut buf);
/// assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
/// assert!(buf.ends_with(b"\r\n\r\n"));
/// ```
pub fn write_response_head(buf: &mut Vec<u8>) {
    let len = STATUS_LINE.len()
        + STREAM_HEADERS.iter().map(|(name, value)| name.len() + 2 + value.len() + 2).sum::<usize>()
        + 2;
    buf.reserve(len);
    buf.extend_from_slice(STATUS_LINE);
    for (name, value) in STREAM_HEADERS {
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_head() {
        let mut buf = b"x".to_vec();
        write_response_head(&mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "xHTTP/1.1 200 OK\r\n\
             Content-Type: text/event-stream\r\n\
             Cache-Control: no-cache\r\n\
             Connection: keep-alive\r\n\
             X-Accel-Buffering: no\r\n\
             \r\n"
        );
    }
}
