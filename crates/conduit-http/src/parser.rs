//! The incremental request parser.
//!
//! Work is split in two phases. While the head is arriving, a byte-at-a-time
//! state machine looks for the blank line that ends it, remembering where it
//! stopped, so a head delivered one byte per call still costs linear time;
//! httparse runs once, on the complete head. Then the body is collected,
//! again resuming where the previous call stopped.

use std::mem;

use crate::ParseError;
use crate::chunked::{ChunkedConfig, ChunkedDecoder, ChunkedError, ChunkedErrorKind};
use crate::request::{Headers, Method, Request, Version, trim_ows};
use crate::response::is_tchar;

/// Bounds on one request; every one yields a specific error status when
/// exceeded.
///
/// A value exactly at a limit is accepted; one past it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line + header fields + blank line (and any leading empty
    /// lines), in bytes. Also bounds a chunked body's trailer section.
    /// Default 16 KiB; past it: 431.
    pub max_head_bytes: usize,
    /// Number of header fields. Default 64; past it: 431.
    pub max_headers: usize,
    /// Length of the request-target. Default 8 KiB; past it: 414.
    ///
    /// Also enforced while the request line is still incomplete, so a client
    /// cannot make the server buffer an endless target.
    pub max_uri_bytes: usize,
    /// `Content-Length`, or the decoded size of a chunked body. Default
    /// 1 MiB; past it: 413, as soon as that is known and without waiting for
    /// the body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_bytes: 16 * 1024, max_headers: 64, max_uri_bytes: 8 * 1024, max_body_bytes: 1024 * 1024 }
    }
}

/// The outcome of feeding bytes to the parser, in the style of httparse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole request, and how many bytes of the buffer it used (head, body
    /// and any chunked trailer); bytes after that belong to the next request.
    Complete(T, usize),
    /// More bytes are needed.
    Partial,
}

impl<T> Status<T> {
    /// True for [`Status::Complete`].
    pub fn is_complete(&self) -> bool {
        matches!(self, Status::Complete(..))
    }

    /// True for [`Status::Partial`].
    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }
}

/// The longest chunk-size line accepted, CRLF included. Real clients send a
/// few hex digits; the bound stops extensions from being used to make the
/// server buffer without limit.
const MAX_CHUNK_LINE: usize = 1024;

/// Most bytes that can follow the target on an unfinished request line:
/// `" HTTP/1.1\r"`.
const VERSION_TAIL: usize = 10;

/// Incremental request parser; keep one per connection.
///
/// Append received bytes to your own buffer and call [`RequestParser::parse`]
/// with *all* unconsumed bytes each time. On `Complete(request, n)` drop the
/// first `n` bytes (pipelined requests may follow) and call again if bytes
/// remain. Between calls the parser remembers how far it has looked, so the
/// buffer must only grow until then; if it shrinks, parsing starts over from
/// its first byte.
///
/// After `Complete` or an error the parser resets itself for the next
/// request. After an error the connection's framing is unknown: answer with
/// [`ParseError::status`] and close.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    probe: Probe,
}

#[derive(Debug)]
enum State {
    Head(HeadScan),
    Body(Box<BodyState>),
}

impl State {
    fn fresh() -> Self {
        State::Head(HeadScan::default())
    }
}

/// Where the search for the end of the head is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Scan {
    /// Skipping empty lines before the request line (RFC 9112 §2.2).
    #[default]
    Leading,
    LeadingCr,
    /// Inside a line.
    Line,
    /// Just after a line's LF; another line end here means the head is over.
    Lf,
    LfCr,
}

#[derive(Clone, Copy, Debug, Default)]
struct HeadScan {
    /// Bytes of the buffer examined so far.
    pos: usize,
    scan: Scan,
    request_line_start: usize,
    request_line_done: bool,
    first_space: Option<usize>,
}

#[derive(Debug)]
struct BodyState {
    request: Request,
    expect_continue: bool,
    continue_taken: bool,
    body: BodyKind,
}

#[derive(Debug)]
enum BodyKind {
    Length { start: usize, len: usize },
    Chunked(ChunkedBody),
}

/// How the request body is delimited, as read from the head.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// Counts bytes examined while searching, so tests can prove the search is
/// linear without timing anything. Zero-sized outside tests.
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

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser { limits, state: State::fresh(), probe: Probe::default() }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Feeds the parser every unconsumed byte received so far.
    ///
    /// Returns `Complete(request, n)` once a whole request (head and body)
    /// is in `buf`, `n` being the bytes it occupies, or `Partial` if more are
    /// needed.
    ///
    /// # Errors
    ///
    /// - [`ParseError::HeadTooLarge`] / [`ParseError::TooManyHeaders`] (431)
    ///   past [`Limits::max_head_bytes`] / [`Limits::max_headers`];
    /// - [`ParseError::UriTooLong`] (414) past [`Limits::max_uri_bytes`];
    /// - [`ParseError::BodyTooLarge`] (413) past [`Limits::max_body_bytes`];
    /// - [`ParseError::Malformed`], [`ParseError::InvalidTarget`],
    ///   [`ParseError::InvalidContentLength`],
    ///   [`ParseError::ConflictingFraming`], [`ParseError::InvalidChunk`] (400)
    ///   for bad syntax or framing; a `Transfer-Encoding` in an HTTP/1.0
    ///   request is `Malformed`, as RFC 9112 §6.1 calls that framing faulty;
    /// - [`ParseError::UnsupportedTransferEncoding`] (501) for any
    ///   `Transfer-Encoding` but exactly `chunked`;
    /// - [`ParseError::UnsupportedVersion`] (505) for versions other than
    ///   HTTP/1.0 and HTTP/1.1.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Status<Request>, ParseError> {
        let outcome = self.advance(buf);
        if !matches!(outcome, Ok(Status::Partial)) {
            self.reset();
        }
        outcome
    }

    /// True once a head with `Expect: 100-continue` has been parsed and its
    /// body is still incomplete; the server should then send
    /// `100 Continue` once (see [`RequestParser::take_continue`]).
    ///
    /// Never true for HTTP/1.0, whose clients do not wait (RFC 9110
    /// §10.1.1).
    pub fn expects_continue(&self) -> bool {
        matches!(&self.state, State::Body(body) if body.expect_continue)
    }

    /// Like [`RequestParser::expects_continue`], but true only the first time
    /// it is asked for a given request, so the caller can send
    /// `100 Continue` exactly once without its own flag.
    pub fn take_continue(&mut self) -> bool {
        match &mut self.state {
            State::Body(body) if body.expect_continue && !body.continue_taken => {
                body.continue_taken = true;
                true
            }
            _ => false,
        }
    }

    /// True while the head is complete and the body is still arriving (used
    /// for the body deadline).
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body(_))
    }

    /// Forgets any partially parsed request.
    pub fn reset(&mut self) {
        self.state = State::fresh();
    }

    #[cfg(test)]
    pub(crate) fn examined(&self) -> usize {
        self.probe.examined
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Status<Request>, ParseError> {
        let mut body = match mem::replace(&mut self.state, State::fresh()) {
            State::Head(mut scan) if scan.pos <= buf.len() => {
                let Some(head_end) = scan_head(&mut scan, buf, &self.limits, &mut self.probe)? else {
                    self.state = State::Head(scan);
                    return Ok(Status::Partial);
                };
                let head = buf.get(..head_end).unwrap_or_default();
                let (request, framing, expect_continue) = parse_head(head, &self.limits)?;
                let body = match framing {
                    Framing::Empty => return Ok(Status::Complete(request, head_end)),
                    Framing::Length(len) => BodyKind::Length { start: head_end, len },
                    Framing::Chunked => BodyKind::Chunked(ChunkedBody::new(head_end, &self.limits)),
                };
                Box::new(BodyState { request, expect_continue, continue_taken: false, body })
            }
            State::Body(body) if body.resume_at() <= buf.len() => body,
            // The buffer shrank, so what was parsed is gone; the only
            // consistent reading is a fresh start on what is there now.
            _ => return self.advance(buf),
        };
        let finished = match &mut body.body {
            BodyKind::Length { start, len } => {
                let end = start.checked_add(*len).ok_or(ParseError::BodyTooLarge)?;
                buf.get(*start..end).map(|bytes| (bytes.to_vec(), end))
            }
            BodyKind::Chunked(chunked) => {
                chunked.decode(buf, &mut self.probe)?.map(|end| (mem::take(&mut chunked.body), end))
            }
        };
        match finished {
            Some((bytes, end)) => {
                let mut request = body.request;
                request.set_body(bytes);
                Ok(Status::Complete(request, end))
            }
            None => {
                self.state = State::Body(body);
                Ok(Status::Partial)
            }
        }
    }
}

impl BodyState {
    /// The buffer length below which earlier progress would be lost.
    fn resume_at(&self) -> usize {
        match &self.body {
            BodyKind::Length { start, .. } => *start,
            BodyKind::Chunked(chunked) => chunked.pos,
        }
    }
}

/// Advances the search for the end of the head; `Some(end)` once the blank
/// line is in `buf`, `end` being the offset just past it.
fn scan_head(scan: &mut HeadScan, buf: &[u8], limits: &Limits, probe: &mut Probe) -> Result<Option<usize>, ParseError> {
    // Nothing past the head limit can be part of an acceptable head, so
    // there is no reason to look at it.
    let limit = buf.len().min(limits.max_head_bytes);
    let window = buf.get(scan.pos..limit).unwrap_or_default();
    for (idx, &byte) in (scan.pos..).zip(window) {
        probe.add(1);
        match (scan.scan, byte) {
            (Scan::Leading | Scan::LeadingCr, b'\n') => scan.scan = Scan::Leading,
            (Scan::Leading, b'\r') => scan.scan = Scan::LeadingCr,
            (Scan::Leading, _) => {
                scan.scan = Scan::Line;
                scan.request_line_start = idx;
                if !is_tchar(byte) {
                    return Err(ParseError::Malformed("invalid request line"));
                }
            }
            (Scan::Line, b'\n') => {
                scan.scan = Scan::Lf;
                if !scan.request_line_done {
                    scan.request_line_done = true;
                    check_target_len(scan, buf, idx, limits, probe)?;
                }
            }
            (Scan::Line, b' ') if !scan.request_line_done && scan.first_space.is_none() => {
                scan.first_space = Some(idx);
            }
            // The method is a token. httparse refuses anything else too, but only once a blank line has
            // arrived, which binary garbage may never send: without this it would hold the connection until
            // the request timeout instead of getting its 400 at once.
            (Scan::Line, _) if !scan.request_line_done && scan.first_space.is_none() && !is_tchar(byte) => {
                return Err(ParseError::Malformed("invalid request line"));
            }
            (Scan::Line, _) => {}
            (Scan::Lf | Scan::LfCr, b'\n') => {
                let end = idx + 1;
                scan.pos = end;
                return Ok(Some(end));
            }
            // A CR that does not start a CRLF: httparse would refuse it too.
            (Scan::LeadingCr | Scan::LfCr, _) => {
                return Err(ParseError::Malformed("invalid line ending"));
            }
            (Scan::Lf, b'\r') => scan.scan = Scan::LfCr,
            // httparse would refuse this too, but only once the whole head
            // had arrived; saying so now is cheaper and more precise.
            (Scan::Lf, b' ' | b'\t') => {
                return Err(ParseError::Malformed("whitespace at start of header line (obsolete line folding)"));
            }
            (Scan::Lf, _) => scan.scan = Scan::Line,
        }
    }
    scan.pos += window.len();

    // Only bytes after the method's space are the target; before that space arrives there is no target to
    // judge, and the head limit bounds an over-long method. (Counting the method here made the outcome depend
    // on how the bytes were split; found by fuzzing.)
    if scan.scan == Scan::Line && !scan.request_line_done {
        if let Some(space) = scan.first_space {
            if scan.pos.saturating_sub(space + 1) > limits.max_uri_bytes.saturating_add(VERSION_TAIL) {
                return Err(ParseError::UriTooLong);
            }
        }
    }
    if scan.pos >= limits.max_head_bytes && !buf.is_empty() {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(None)
}

/// Checks the request-target's length as soon as the request line is
/// complete, so an over-long target is reported as 414 rather than being
/// overtaken by the head limit while the headers arrive.
fn check_target_len(
    scan: &HeadScan,
    buf: &[u8],
    line_feed: usize,
    limits: &Limits,
    probe: &mut Probe,
) -> Result<(), ParseError> {
    let Some(space) = scan.first_space else {
        return Ok(());
    };
    let after_method = buf.get(space + 1..line_feed).unwrap_or_default();
    // The target runs to the line's last space; what follows is the version.
    let target_len = after_method.iter().rposition(|&b| b == b' ').unwrap_or(after_method.len());
    probe.add(after_method.len() - target_len);
    if target_len > limits.max_uri_bytes {
        return Err(ParseError::UriTooLong);
    }
    Ok(())
}

/// Runs httparse over a complete head and works out the body framing.
fn parse_head(head: &[u8], limits: &Limits) -> Result<(Request, Framing, bool), ParseError> {
    // Every header line takes at least three bytes ("a:\n"), so more slots
    // than that could never be filled; this keeps a generous `max_headers`
    // from costing an allocation per request.
    let slots = limits.max_headers.min(head.len() / 3 + 1);
    let mut fields = vec![httparse::EMPTY_HEADER; slots];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(_) => return Err(ParseError::Malformed("request head ends unexpectedly")),
        Err(err) => return Err(map_httparse_error(err, head)),
    }
    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(ParseError::UnsupportedVersion),
    };
    let target = parsed.path.unwrap_or_default();
    if target.len() > limits.max_uri_bytes {
        return Err(ParseError::UriTooLong);
    }
    let method = Method::from(parsed.method.unwrap_or_default());
    let mut headers = Headers::new();
    for field in parsed.headers.iter() {
        headers.insert(field.name, field.value);
    }
    let framing = body_framing(&headers, version, limits)?;
    // HTTP/1.0 clients do not wait for 100 Continue, and RFC 9110 §10.1.1
    // tells servers to ignore the expectation from them.
    let expect_continue =
        version == Version::Http11 && framing != Framing::Empty && headers.has_token("expect", "100-continue");
    let request = Request::from_parts(method, version, target.to_owned(), headers)?;
    Ok((request, framing, expect_continue))
}

fn map_httparse_error(err: httparse::Error, head: &[u8]) -> ParseError {
    match err {
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Version if looks_like_http_version(head) => ParseError::UnsupportedVersion,
        httparse::Error::Version => ParseError::Malformed("invalid HTTP version"),
        httparse::Error::HeaderName => ParseError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => ParseError::Malformed("invalid header value"),
        httparse::Error::NewLine => ParseError::Malformed("invalid line ending"),
        httparse::Error::Token | httparse::Error::Status => ParseError::Malformed("invalid request line"),
    }
}

/// Whether the request line ends in `HTTP/<digit>.<digit>`: then the version
/// is well-formed but unsupported (505) rather than garbage (400).
fn looks_like_http_version(head: &[u8]) -> bool {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(head.len());
    let line = head.get(start..).unwrap_or_default();
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// Reads the body framing from the head (RFC 9112 §6), refusing anything a
/// front-end proxy might read differently.
fn body_framing(headers: &Headers, version: Version, limits: &Limits) -> Result<Framing, ParseError> {
    let has_transfer_encoding = headers.get_all("transfer-encoding").next().is_some();
    let mut lengths = headers.get_all("content-length");
    let first_length = lengths.next();
    let more_lengths = lengths.next().is_some();

    if has_transfer_encoding {
        if first_length.is_some() {
            return Err(ParseError::ConflictingFraming);
        }
        if version == Version::Http10 {
            return Err(ParseError::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        let mut codings =
            headers.get_all("transfer-encoding").flat_map(|value| value.split(|&b| b == b',')).map(trim_ows);
        let only_chunked =
            codings.next().is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked")) && codings.next().is_none();
        return if only_chunked { Ok(Framing::Chunked) } else { Err(ParseError::UnsupportedTransferEncoding) };
    }
    let Some(value) = first_length else {
        return Ok(Framing::Empty);
    };
    if more_lengths {
        return Err(ParseError::InvalidContentLength);
    }
    let len = parse_content_length(trim_ows(value))?;
    match usize::try_from(len) {
        Ok(0) => Ok(Framing::Empty),
        Ok(len) if len <= limits.max_body_bytes => Ok(Framing::Length(len)),
        _ => Err(ParseError::BodyTooLarge),
    }
}

fn parse_content_length(digits: &[u8]) -> Result<u64, ParseError> {
    if digits.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(ParseError::InvalidContentLength);
        }
        acc.checked_mul(10).and_then(|acc| acc.checked_add(u64::from(b - b'0'))).ok_or(ParseError::InvalidContentLength)
    })
}

/// A chunked request body on its way in: the strict decoder, and the data
/// it has handed out so far.
#[derive(Debug)]
struct ChunkedBody {
    decoder: ChunkedDecoder,
    /// Offset of the first byte not yet fed to the decoder; every byte before
    /// it has been consumed, data or framing.
    pos: usize,
    body: Vec<u8>,
}

impl ChunkedBody {
    fn new(start: usize, limits: &Limits) -> Self {
        // CRLF only: chunk framing is exactly where lenient parsing enables
        // smuggling (bare LF is tolerated in the head, for old clients, but
        // not here). The trailer section is bounded like a head.
        let config = ChunkedConfig::strict()
            .with_max_size_line(MAX_CHUNK_LINE)
            .with_max_trailer_bytes(limits.max_head_bytes)
            .with_max_body_bytes(u64::try_from(limits.max_body_bytes).unwrap_or(u64::MAX));
        ChunkedBody { decoder: ChunkedDecoder::new(config), pos: start, body: Vec::new() }
    }

    /// Feeds the decoder what `buf` holds past `pos`; `Some(end)` once the
    /// final CRLF has been read, `end` being the offset just past it.
    fn decode(&mut self, buf: &[u8], probe: &mut Probe) -> Result<Option<usize>, ParseError> {
        let mut input = buf.get(self.pos..).unwrap_or_default();
        let available = input.len();
        let outcome = loop {
            match self.decoder.decode(&mut input) {
                Ok(Some(data)) => self.body.extend_from_slice(data),
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        let used = available - input.len();
        probe.add(used);
        self.pos += used;
        outcome.map_err(chunk_error)?;
        Ok(self.decoder.is_done().then_some(self.pos))
    }
}

/// The request error for a chunked-framing error.
fn chunk_error(err: ChunkedError) -> ParseError {
    match err.kind() {
        ChunkedErrorKind::BodyTooLarge => ParseError::BodyTooLarge,
        ChunkedErrorKind::TrailersTooLarge => ParseError::HeadTooLarge,
        ChunkedErrorKind::InvalidTrailer => ParseError::Malformed("invalid trailer field"),
        ChunkedErrorKind::MissingSize
        | ChunkedErrorKind::SizeOverflow
        | ChunkedErrorKind::InvalidSizeLine
        | ChunkedErrorKind::SizeLineTooLong
        | ChunkedErrorKind::DataNotTerminated
        | ChunkedErrorKind::BareLf => ParseError::InvalidChunk,
    }
}

#[cfg(test)]
mod tests;
