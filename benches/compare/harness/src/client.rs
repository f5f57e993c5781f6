//! A minimal blocking HTTP/1.1 client for event streams: one request per connection, the response head parsed,
//! the body de-chunked (or read to EOF, or to its length) and kept, and nothing else. It does the same work
//! whichever server answers, so differences in the timings are the servers'.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How the response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`: the last chunk `0\r\n\r\n` ends it.
    Chunked,
    /// `Content-Length`.
    Length(u64),
    /// No length: the server closes the connection after the last byte.
    Close,
}

/// One finished stream.
#[derive(Debug)]
pub struct Fetched {
    /// From just before `connect` to the last byte of the body (terminator or EOF).
    pub elapsed: Duration,
    pub framing: Framing,
    /// The de-chunked body.
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn events(&self) -> u64 {
        count_events(&self.body)
    }
}

/// Events in an SSE body: each one ends with a blank line, so count `\n\n` (the third `\n` of `\n\n\n` is an
/// empty line that dispatches nothing, so it is not counted).
pub fn count_events(body: &[u8]) -> u64 {
    let mut count = 0;
    let mut prev_newline = false;
    for &b in body {
        if b == b'\n' {
            if prev_newline {
                count += 1;
                prev_newline = false;
            } else {
                prev_newline = true;
            }
        } else {
            prev_newline = false;
        }
    }
    count
}

pub fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// A `POST` with an empty body, on a connection the client closes after the response.
pub fn post_request(path: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A connection that has sent one request and reads its response.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unprocessed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    decoder: Option<Decoder>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Conn {
    /// Connects, sends `GET path` and reads the response head.
    pub fn open(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Conn> {
        Conn::send(addr, &request(path), timeout)
    }

    /// Connects, sends `request` (a whole request, head and body) and reads the response head.
    pub fn send(addr: SocketAddr, request: &[u8], timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut conn =
            Conn { stream, buf: vec![0; 64 * 1024], start: 0, end: 0, decoder: None, body: Vec::new(), status: 0 };
        conn.stream.write_all(request)?;
        conn.read_head()?;
        Ok(conn)
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                return Err(invalid("response head larger than 64 KiB"));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn read_head(&mut self) -> io::Result<()> {
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(at) = find(pending, b"\r\n\r\n") {
                let head = std::str::from_utf8(&pending[..at]).map_err(|_| invalid("response head is not UTF-8"))?;
                let (status, framing) = parse_head(head)?;
                self.status = status;
                self.decoder = Some(Decoder::new(framing));
                self.start += at + 4;
                return Ok(());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the response head"));
            }
        }
    }

    pub fn framing(&self) -> Framing {
        self.decoder.as_ref().map_or(Framing::Close, |d| d.framing)
    }

    fn decode_buffered(&mut self) -> io::Result<bool> {
        let decoder = self.decoder.as_mut().expect("head read");
        let used = decoder.feed(&self.buf[self.start..self.end], &mut self.body)?;
        self.start += used;
        Ok(decoder.done())
    }

    /// Reads until the body ends.
    pub fn read_to_end(&mut self) -> io::Result<()> {
        loop {
            if self.decode_buffered()? {
                return Ok(());
            }
            if self.fill()? == 0 {
                return match self.framing() {
                    Framing::Close => Ok(()),
                    _ => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the end of the body",
                    )),
                };
            }
        }
    }

    /// The socket, with the read buffer freed (for connections held open).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads until the body holds at least `events` events (or it ends).
    pub fn read_events(&mut self, events: u64) -> io::Result<u64> {
        loop {
            let done = self.decode_buffered()?;
            let seen = count_events(&self.body);
            if seen >= events || done {
                return Ok(seen);
            }
            if self.fill()? == 0 {
                return Ok(seen);
            }
        }
    }
}

/// Connects, asks for `path`, reads the whole body, and times it from connect to its last byte.
pub fn fetch(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Fetched> {
    let started = Instant::now();
    let mut conn = Conn::open(addr, path, timeout)?;
    conn.body.reserve(128 * 1024);
    conn.read_to_end()?;
    let elapsed = started.elapsed();
    if conn.status != 200 {
        return Err(invalid(&format!("status {}", conn.status)));
    }
    Ok(Fetched { elapsed, framing: conn.framing(), body: std::mem::take(&mut conn.body) })
}

/// Sends `POST path` with an empty body and returns the status and the whole response body.
pub fn post(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, Vec<u8>)> {
    let mut conn = Conn::send(addr, &post_request(path), timeout)?;
    conn.read_to_end()?;
    Ok((conn.status, std::mem::take(&mut conn.body)))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_head(head: &str) -> io::Result<(u16, Framing)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(&format!("not an HTTP/1 response: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(&format!("bad status line {status_line:?}")))?;
    let mut framing = Framing::Close;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().ends_with("chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let length = value.parse().map_err(|_| invalid(&format!("bad content-length {value:?}")))?;
            framing = Framing::Length(length);
        }
    }
    Ok((status, framing))
}

#[derive(Debug)]
enum State {
    /// Reading a chunk-size line (its bytes so far are in `line`).
    Size,
    /// Bytes of chunk data left.
    Data(u64),
    /// The CRLF after chunk data: how many of its bytes are left.
    DataEnd(u8),
    /// Trailer lines after the last chunk, until an empty one.
    Trailer,
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Everything until EOF.
    UntilClose,
    Done,
}

/// Turns the bytes after the head into body bytes and tells when the body is complete.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    state: State,
    line: Vec<u8>,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        let state = match framing {
            Framing::Chunked => State::Size,
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Close => State::UntilClose,
        };
        Decoder { framing, state, line: Vec::new() }
    }

    pub fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Consumes what it can of `input`, appending body bytes to `body`; returns the bytes consumed.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> io::Result<usize> {
        let mut at = 0;
        while at < input.len() {
            let rest = &input[at..];
            match &mut self.state {
                State::Done => break,
                State::UntilClose => {
                    body.extend_from_slice(rest);
                    at = input.len();
                }
                State::Length(left) => {
                    let take = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    body.extend_from_slice(&rest[..take]);
                    at += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                }
                State::Data(left) => {
                    let take = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    body.extend_from_slice(&rest[..take]);
                    at += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::DataEnd(2);
                    }
                }
                State::DataEnd(left) => {
                    let expected = if *left == 2 { b'\r' } else { b'\n' };
                    if rest[0] != expected {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    at += 1;
                    *left -= 1;
                    if *left == 0 {
                        self.state = State::Size;
                    }
                }
                State::Size | State::Trailer => {
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        self.push_line(rest)?;
                        at = input.len();
                        continue;
                    };
                    self.push_line(&rest[..nl])?;
                    at += nl + 1;
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if matches!(self.state, State::Trailer) {
                        if line.is_empty() {
                            self.state = State::Done;
                        }
                        continue;
                    }
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let digits = std::str::from_utf8(digits).map_err(|_| invalid("bad chunk size"))?.trim();
                    let size =
                        u64::from_str_radix(digits, 16).map_err(|_| invalid(&format!("bad chunk size {digits:?}")))?;
                    self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                }
            }
        }
        Ok(at)
    }

    fn push_line(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.line.len() + bytes.len() > 4096 {
            return Err(invalid("chunk size or trailer line longer than 4 KiB"));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(framing: Framing, input: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut decoder = Decoder::new(framing);
        let mut body = Vec::new();
        for piece in input.chunks(step) {
            let used = decoder.feed(piece, &mut body).unwrap();
            assert!(used == piece.len() || decoder.done());
        }
        (body, decoder.done())
    }

    #[test]
    fn dechunks_in_any_pieces() {
        let input = b"6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for step in 1..input.len() {
            assert_eq!(decode(Framing::Chunked, input, step), (b"hello world".to_vec(), true));
        }
        let (_, done) = decode(Framing::Chunked, b"6\r\nhello \r\n", 3);
        assert!(!done);
    }

    #[test]
    fn counts_events() {
        assert_eq!(count_events(b"data: a\n\ndata: b\n\n"), 2);
        assert_eq!(count_events(b"data: a\n\n\ndata: b\n"), 1);
        assert_eq!(count_events(b": keep-alive\n\n"), 1);
    }

    #[test]
    fn parses_heads() {
        let (status, framing) = parse_head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: x").unwrap();
        assert_eq!((status, framing), (200, Framing::Chunked));
        let (_, framing) = parse_head("HTTP/1.1 200 OK\r\nContent-Length: 12").unwrap();
        assert_eq!(framing, Framing::Length(12));
        let (_, framing) = parse_head("HTTP/1.1 200 OK\r\nConnection: close").unwrap();
        assert_eq!(framing, Framing::Close);
    }
}
