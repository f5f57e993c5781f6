//! One HTTP exchange: connect, send the request, read and check the response head, then feed the body to the
//! decoder in whatever framing the server chose.

use crate::error::ClientError;
use crate::transport::{Connector, Transport};
use crate::url::Url;
use conduit_http::{ChunkedConfig, ChunkedDecoder, Method, ResponseHead, StatusCode};
use conduit_sse::{DecodeError, Decoder};
use std::io::{self, Read, Write};

/// The largest response head accepted (status line and headers).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most response header fields accepted.
const MAX_HEADERS: usize = 100;
/// How a chunked response body is read: bare LF line ends accepted (RFC 9112 §2.2 lets recipients), the
/// chunk-size lines (1 KiB each) and the trailer section (64 KiB) bounded, the body itself not (it is a stream).
const CHUNKED: ChunkedConfig = ChunkedConfig::lenient().with_max_size_line(1024).with_max_trailer_bytes(64 * 1024);

/// What to send, identical on every (re)connection except for `Last-Event-ID`.
#[derive(Clone)]
pub(crate) struct RequestSpec {
    pub(crate) method: Method,
    pub(crate) url: Url,
    /// Validated custom headers, in the order given.
    pub(crate) headers: Vec<(String, String)>,
    /// The body of a POST, re-sent on every reconnection.
    pub(crate) body: Option<Vec<u8>>,
}

impl RequestSpec {
    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Appends the request to `out`.
    ///
    /// Custom headers named `Host`, `Accept` or `Cache-Control` replace the defaults. `Last-Event-ID` is sent
    /// when `last_event_id` is non-empty and is a valid header value (an id with control characters, which a
    /// server's parser would refuse, is left out rather than breaking the request).
    pub(crate) fn write(&self, last_event_id: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.url.target().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut defaults: Vec<(&str, String)> = Vec::with_capacity(4);
        if !self.has_header("host") {
            defaults.push(("Host", self.url.host_header()));
        }
        if !self.has_header("accept") {
            defaults.push(("Accept", "text/event-stream".to_owned()));
        }
        if !self.has_header("cache-control") {
            defaults.push(("Cache-Control", "no-cache".to_owned()));
        }
        if !last_event_id.is_empty() && valid_header_value(last_event_id) {
            defaults.push(("Last-Event-ID", last_event_id.to_owned()));
        }
        for (name, value) in defaults
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            write_header(out, name, value);
        }
        if let Some(body) = &self.body {
            write_header(out, "Content-Length", &body.len().to_string());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            out.extend_from_slice(body);
        }
    }
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Checks a request header the way `conduit-http` checks response headers: a token name, and a value without
/// CR, LF, NUL or other control characters (HTAB aside). Returns the value trimmed of spaces and tabs.
pub(crate) fn check_header(name: &str, value: &str) -> Result<String, String> {
    if let Err(e) = ResponseHead::new(StatusCode::OK).header(name, value) {
        return Err(format!("{name:?}: {e}"));
    }
    for managed in ["content-length", "transfer-encoding", "last-event-id"] {
        if name.eq_ignore_ascii_case(managed) {
            return Err(format!("{name:?} is set by the client itself (use last_event_id() for Last-Event-ID)"));
        }
    }
    Ok(value.trim_matches([' ', '\t']).to_owned())
}

fn valid_header_value(value: &str) -> bool {
    ResponseHead::new(StatusCode::OK).header("Last-Event-ID", value).is_ok()
}

/// How the response body is delimited.
#[derive(Debug)]
enum Framing {
    Chunked(ChunkedDecoder),
    /// Body bytes still to come.
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

/// How far a [`Connection::pump`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// Bytes were fed to the decoder; the body goes on.
    More,
    /// The body ended cleanly: chunked terminator, `Content-Length` reached, or EOF of a close-delimited body.
    End,
}

/// Why a [`Connection::pump`] failed.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The connection broke (I/O error, read timeout, truncated body, bad framing): worth a reconnect.
    Broken(ClientError),
    /// The decoder refused the stream: final.
    Decode(DecodeError),
}

/// An open response whose head said `200 text/event-stream`.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Transport,
    framing: Framing,
    /// Body bytes that arrived together with the head; fed before reading the socket again.
    early_body: Vec<u8>,
}

impl Connection {
    /// Connects, sends the request and reads the response head.
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] for network trouble; [`ClientError::NoContent`], [`ClientError::Http`] and
    /// [`ClientError::ContentType`] for refusals; [`ClientError::Protocol`] for a head that is not HTTP; for
    /// `https`, the TLS errors of [`Connector::connect`].
    pub(crate) fn open(
        request: &RequestSpec,
        last_event_id: &str,
        connector: &Connector,
        buf: &mut [u8],
    ) -> Result<Connection, ClientError> {
        let mut stream = connector.connect(&request.url)?;
        let mut out = Vec::with_capacity(256 + request.body.as_ref().map_or(0, Vec::len));
        request.write(last_event_id, &mut out);
        stream.write_all(&out).map_err(ClientError::from_io)?;
        stream.flush().map_err(ClientError::from_io)?;
        let (head, early_body) = read_head(&mut stream, buf)?;
        Ok(Connection { stream, framing: head.framing, early_body })
    }

    /// Reads what the socket has (or the body bytes that came with the head) and feeds the body to `decoder`.
    /// Blocks until at least one byte arrives, the body ends, or the read timeout passes.
    ///
    /// # Errors
    ///
    /// [`BodyError::Broken`] if the connection failed or the framing is bad; [`BodyError::Decode`] if the
    /// decoder refused the data.
    pub(crate) fn pump(&mut self, buf: &mut [u8], decoder: &mut Decoder) -> Result<Pumped, BodyError> {
        if let Framing::Length(0) = self.framing {
            return Ok(Pumped::End);
        }
        if !self.early_body.is_empty() {
            let early = std::mem::take(&mut self.early_body);
            return self.feed(&early, decoder);
        }
        let n = loop {
            match self.stream.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BodyError::Broken(ClientError::from_io(e))),
            }
        };
        if n == 0 {
            return match self.framing {
                Framing::Close => Ok(Pumped::End),
                Framing::Length(_) | Framing::Chunked(_) => Err(BodyError::Broken(
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection in the middle of the body",
                    )
                    .into(),
                )),
            };
        }
        self.feed(&buf[..n], decoder)
    }

    fn feed(&mut self, mut input: &[u8], decoder: &mut Decoder) -> Result<Pumped, BodyError> {
        match &mut self.framing {
            Framing::Close => {
                decoder.feed(input).map_err(BodyError::Decode)?;
                Ok(Pumped::More)
            }
            Framing::Length(remaining) => {
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                decoder.feed(&input[..take]).map_err(BodyError::Decode)?;
                *remaining -= take as u64;
                Ok(if *remaining == 0 { Pumped::End } else { Pumped::More })
            }
            Framing::Chunked(chunked) => {
                while let Some(data) =
                    chunked.decode(&mut input).map_err(|e| BodyError::Broken(ClientError::Protocol(e.to_string())))?
                {
                    decoder.feed(data).map_err(BodyError::Decode)?;
                }
                Ok(if chunked.is_done() { Pumped::End } else { Pumped::More })
            }
        }
    }

    /// Ends the connection (with `close_notify` first over TLS).
    pub(crate) fn shutdown(self) {
        self.stream.shutdown();
    }
}

/// The parts of a response head the client acts on.
#[derive(Debug)]
struct Head {
    framing: Framing,
}

/// Reads until a complete final (non-1xx) response head is in, checks it, and returns it with the body bytes
/// that followed it in the same reads.
fn read_head(stream: &mut Transport, buf: &mut [u8]) -> Result<(Head, Vec<u8>), ClientError> {
    let mut received: Vec<u8> = Vec::new();
    loop {
        // Parse what is buffered first: after a 1xx the final head may already be here.
        if !received.is_empty() {
            if let Some((head, used)) = parse_head(&received)? {
                match head {
                    Parsed::Interim => {
                        received.drain(..used);
                        continue;
                    }
                    Parsed::Final(head) => {
                        received.drain(..used);
                        return Ok((head, received));
                    }
                }
            }
            if received.len() >= MAX_HEAD_BYTES {
                return Err(ClientError::Protocol(format!("response head larger than {} KiB", MAX_HEAD_BYTES / 1024)));
            }
        }
        let n = loop {
            match stream.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::from_io(e)),
            }
        };
        if n == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before sending a complete response head",
            )));
        }
        received.extend_from_slice(&buf[..n]);
    }
}

enum Parsed {
    /// A 1xx response to skip.
    Interim,
    Final(Head),
}

/// Parses and checks one response head; `None` if it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<(Parsed, usize)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(bytes) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(ClientError::Protocol(format!("invalid response head: {e}")));
        }
    };
    if used > MAX_HEAD_BYTES {
        return Err(ClientError::Protocol(format!("response head larger than {} KiB", MAX_HEAD_BYTES / 1024)));
    }
    let status = response.code.unwrap_or(0);
    if (100..200).contains(&status) && status != 101 {
        return Ok(Some((Parsed::Interim, used)));
    }
    let headers = response.headers;
    if status == StatusCode::NO_CONTENT.as_u16() {
        return Err(ClientError::NoContent);
    }
    if status != StatusCode::OK.as_u16() {
        return Err(ClientError::Http { status });
    }
    let content_type = header_value(headers, "content-type").unwrap_or_default();
    if !is_event_stream(&content_type) {
        return Err(ClientError::ContentType(content_type));
    }
    if let Some(coding) = header_value(headers, "content-encoding")
        && !coding.trim().eq_ignore_ascii_case("identity")
    {
        return Err(ClientError::Protocol(format!(
            "unsupported Content-Encoding {coding:?} (the client does not ask for compression)"
        )));
    }
    Ok(Some((Parsed::Final(Head { framing: framing(headers)? }), used)))
}

/// The first value of `name`, lossily decoded.
fn header_value(headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value).into_owned())
}

/// `text/event-stream`, any case, parameters (such as a charset) allowed.
fn is_event_stream(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim_matches([' ', '\t']).eq_ignore_ascii_case("text/event-stream")
}

/// The body framing, per RFC 9112 §6.3: `Transfer-Encoding` wins over `Content-Length`; neither means the
/// body runs to the end of the connection.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, ClientError> {
    let mut codings = Vec::new();
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding")) {
        let value = String::from_utf8_lossy(h.value);
        codings.extend(
            value.split(',').map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase()).filter(|c| !c.is_empty()),
        );
    }
    if !codings.is_empty() {
        if codings.iter().all(|c| c == "chunked") && codings.len() == 1 {
            return Ok(Framing::Chunked(ChunkedDecoder::new(CHUNKED)));
        }
        return Err(ClientError::Protocol(format!("unsupported Transfer-Encoding {:?}", codings.join(", "))));
    }
    let mut length: Option<u64> = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        for part in h.value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            let parsed = (!part.is_empty() && part.len() <= 19 && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten();
            match (parsed, length) {
                (None, _) => {
                    return Err(ClientError::Protocol(format!(
                        "invalid Content-Length {:?}",
                        String::from_utf8_lossy(h.value)
                    )));
                }
                (Some(n), Some(m)) if n != m => {
                    return Err(ClientError::Protocol("conflicting Content-Length values".to_owned()));
                }
                (Some(n), _) => length = Some(n),
            }
        }
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Option<(Parsed, usize)>, ClientError> {
        parse_head(head.as_bytes())
    }

    fn final_framing(head: &str) -> Framing {
        match parse(head) {
            Ok(Some((Parsed::Final(h), used))) => {
                assert_eq!(used, head.len());
                h.framing
            }
            Ok(Some((Parsed::Interim, _))) => panic!("interim: {head}"),
            Ok(None) => panic!("partial: {head}"),
            Err(e) => panic!("{head}: {e}"),
        }
    }

    #[test]
    fn chunked_bodies_are_read_with_lenient_line_ends_and_bounds() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        let Framing::Chunked(mut chunked) = final_framing(head) else {
            panic!("not chunked");
        };
        assert_eq!(chunked.config(), &CHUNKED);
        assert!(CHUNKED.is_lenient());
        assert_eq!(
            (CHUNKED.max_size_line(), CHUNKED.max_trailer_bytes(), CHUNKED.max_body_bytes()),
            (1024, 65536, None)
        );
        let mut input: &[u8] = b"2\nhi\n0\nX: y\n\n";
        assert_eq!(chunked.decode(&mut input).unwrap(), Some(&b"hi"[..]));
        assert_eq!(chunked.decode(&mut input).unwrap(), None);
        assert!(chunked.is_done() && input.is_empty());
    }

    #[test]
    fn accepts_event_streams_in_every_framing() {
        let sse = "Content-Type: text/event-stream\r\n";
        assert!(matches!(
            final_framing(&format!("HTTP/1.1 200 OK\r\n{sse}Transfer-Encoding: chunked\r\n\r\n")),
            Framing::Chunked(_)
        ));
        assert!(matches!(
            final_framing(&format!("HTTP/1.1 200 OK\r\n{sse}Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n\r\n")),
            Framing::Chunked(_)
        ));
        assert!(matches!(
            final_framing(&format!("HTTP/1.1 200 OK\r\n{sse}Content-Length: 42\r\n\r\n")),
            Framing::Length(42)
        ));
        assert!(matches!(
            final_framing(&format!("HTTP/1.1 200 OK\r\n{sse}Content-Length: 7, 7\r\nContent-Length: 7\r\n\r\n")),
            Framing::Length(7)
        ));
        assert!(matches!(final_framing(&format!("HTTP/1.0 200 OK\r\n{sse}\r\n")), Framing::Close));
        for content_type in [
            "text/event-stream",
            "TEXT/Event-Stream",
            "text/event-stream; charset=utf-8",
            " text/event-stream ;charset=UTF-8",
        ] {
            assert!(is_event_stream(content_type), "{content_type}");
        }
        for content_type in ["", "text/plain", "text/event-streams", "text/event", "application/json"] {
            assert!(!is_event_stream(content_type), "{content_type}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_event_stream() {
        let sse = "Content-Type: text/event-stream\r\n";
        let cases: Vec<(String, &str)> = vec![
            ("HTTP/1.1 204 No Content\r\n\r\n".into(), "NoContent"),
            ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(), "Http { status: 404 }"),
            (format!("HTTP/1.1 500 Oops\r\n{sse}\r\n"), "Http { status: 500 }"),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n".into(), "Http { status: 101 }"),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".into(), "ContentType(\"text/plain\")"),
            ("HTTP/1.1 200 OK\r\n\r\n".into(), "ContentType(\"\")"),
            (format!("HTTP/1.1 200 OK\r\n{sse}Transfer-Encoding: gzip, chunked\r\n\r\n"), "Transfer-Encoding"),
            (format!("HTTP/1.1 200 OK\r\n{sse}Transfer-Encoding: gzip\r\n\r\n"), "Transfer-Encoding"),
            (format!("HTTP/1.1 200 OK\r\n{sse}Content-Encoding: gzip\r\n\r\n"), "Content-Encoding"),
            (format!("HTTP/1.1 200 OK\r\n{sse}Content-Length: -1\r\n\r\n"), "invalid Content-Length"),
            (format!("HTTP/1.1 200 OK\r\n{sse}Content-Length: 99999999999999999999\r\n\r\n"), "invalid Content-Length"),
            (format!("HTTP/1.1 200 OK\r\n{sse}Content-Length: 1\r\nContent-Length: 2\r\n\r\n"), "conflicting"),
            ("HTTP/1.1 2000 OK\r\n\r\n".into(), "invalid response head"),
            ("SSH-2.0-OpenSSH\r\n\r\n".into(), "invalid response head"),
        ];
        for (head, expected) in cases {
            match parse(&head) {
                Err(e) => assert!(format!("{e:?}").contains(expected), "{head:?}: {e:?}"),
                Ok(_) => panic!("accepted {head:?}"),
            }
        }
    }

    #[test]
    fn skips_interim_responses_and_waits_for_more() {
        assert!(matches!(parse("HTTP/1.1 200 OK\r\nContent-Type: text/event-st"), Ok(None)));
        assert!(matches!(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), Ok(Some((Parsed::Interim, 25)))));
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n"),
            Ok(Some((Parsed::Final(_), 52)))
        ));
    }

    fn request(method: Method, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> RequestSpec {
        RequestSpec {
            method,
            url: Url::parse(url).unwrap(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), check_header(n, v).unwrap())).collect(),
            body: body.map(<[u8]>::to_vec),
        }
    }

    fn written(spec: &RequestSpec, last_event_id: &str) -> String {
        let mut out = Vec::new();
        spec.write(last_event_id, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_requests() {
        let get = request(Method::Get, "http://h:8080/s?x=1", &[], None);
        assert_eq!(
            written(&get, ""),
            "GET /s?x=1 HTTP/1.1\r\nHost: h:8080\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        assert_eq!(
            written(&get, "42"),
            "GET /s?x=1 HTTP/1.1\r\nHost: h:8080\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\
             Last-Event-ID: 42\r\n\r\n"
        );
        // An id a server would refuse is left out rather than breaking the request.
        assert!(!written(&get, "a\u{1}b").contains("Last-Event-ID"));

        let post = request(
            Method::Post,
            "http://[::1]/p",
            &[("Authorization", " Bearer x "), ("content-type", "application/json"), ("accept", "*/*")],
            Some(b"{\"a\":1}"),
        );
        assert_eq!(
            written(&post, "é"),
            "POST /p HTTP/1.1\r\nHost: [::1]\r\nCache-Control: no-cache\r\nLast-Event-ID: é\r\n\
             Authorization: Bearer x\r\ncontent-type: application/json\r\naccept: */*\r\n\
             Content-Length: 7\r\n\r\n{\"a\":1}"
        );
        let empty_post = request(Method::Post, "http://h/", &[], Some(b""));
        assert!(written(&empty_post, "").ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn checks_headers() {
        assert_eq!(check_header("X-Trace", "\tabc ").unwrap(), "abc");
        for (name, value, message) in [
            ("Bad Name", "v", "invalid header name"),
            ("", "v", "invalid header name"),
            ("X-A", "a\r\nX-Injected: 1", "invalid header value"),
            ("X-A", "a\0", "invalid header value"),
            ("Content-Length", "5", "set by the client"),
            ("transfer-encoding", "chunked", "set by the client"),
            ("Last-Event-ID", "5", "last_event_id()"),
        ] {
            let err = check_header(name, value).unwrap_err();
            assert!(err.contains(message), "{name}: {value:?}: {err}");
        }
    }
}
