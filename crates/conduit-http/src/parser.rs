//! The incremental request parser.
//!
//! Work is split in two phases. While the head is arriving, a byte-at-a-time
//! state machine looks for the blank line that ends it, remembering where it
//! stopped, so a head delivered one byte per call still costs linear time;
//! httparse runs once, on the complete head. Then, once the caller has
//! accepted it, the body is collected as it arrives.
//!
//! Both ways of calling the parser share that machinery:
//! [`RequestParser::parse_head_first`] hands out the head before any body
//! byte is read and takes body bytes off the caller's buffer as they come;
//! [`RequestParser::parse`] accepts every body within the limits on its own
//! and reports whole requests.

use std::mem;

use crate::ParseError;
use crate::chunked::{ChunkedConfig, ChunkedDecoder, ChunkedError, ChunkedErrorKind};
use crate::host::split_authority;
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
    /// the body. [`RequestParser::accept_body`] can set a lower one for a
    /// single request.
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

/// What [`RequestParser::parse_head_first`] found; it comes with the number
/// of bytes the caller must drop from the front of its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed. Body bytes that arrived were taken into the
    /// parser's body buffer (and are counted as used); head bytes are not
    /// used until the head is complete.
    Partial,
    /// A complete head. With [`AnnouncedBody::None`] the request is complete
    /// and the parser is ready for the next one. Otherwise the parser reads
    /// nothing more until the caller decides, from the head alone, with
    /// [`RequestParser::accept_body`] or [`RequestParser::refuse_body`].
    Head(Request, AnnouncedBody),
    /// The whole body accepted after the last [`Parsed::Head`], de-chunked;
    /// the request is complete ([`Request::with_body`] joins the two) and the
    /// parser is ready for the next one.
    Body(Vec<u8>),
}

/// The body a request head announces (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnouncedBody {
    /// No body: neither `Content-Length` nor `Transfer-Encoding`, or
    /// `Content-Length: 0`.
    None,
    /// `Content-Length`: exactly this many bytes, at most
    /// [`Limits::max_body_bytes`] (a larger one is refused with the head).
    Length(u64),
    /// `Transfer-Encoding: chunked`: a length known only at its end.
    Chunked,
}

/// Where the parser is in the current request.
#[derive(Debug)]
enum State {
    /// Looking for the end of the head.
    Head(HeadScan),
    /// A head announcing a body was handed out; nothing is read until the
    /// caller accepts or refuses it.
    Deciding {
        body: AnnouncedBody,
        expect_continue: bool,
    },
    Body(Box<BodyState>),
    /// The caller refused the body: its bytes would be misread as the next
    /// request, so nothing more is read until [`RequestParser::reset`].
    Refused,
}

impl State {
    fn fresh() -> Self {
        State::Head(HeadScan::default())
    }
}

/// The request whose body [`RequestParser::parse`] is collecting, and how
/// much of the caller's buffer (which `parse` never asks to drain early) is
/// used up.
#[derive(Debug, Default)]
struct Whole {
    request: Option<Request>,
    used: usize,
}

/// Incremental request parser; keep one per connection.
///
/// It can be driven in two ways, one per parser between resets:
///
/// - [`RequestParser::parse`] with *all* unconsumed bytes each time; on
///   `Complete(request, n)` drop the first `n` bytes (pipelined requests may
///   follow). Every body within [`Limits::max_body_bytes`] is read. Between
///   calls the buffer must only grow; if it shrinks, parsing starts over from
///   its first byte.
/// - [`RequestParser::parse_head_first`], which stops after each head so the
///   caller can refuse a request before any of its body is read, or accept
///   the body with a limit of its own; body bytes are moved into the parser
///   as they arrive, so the caller's buffer stays small. See that method.
///
/// After a complete request or an error the parser resets itself for the
/// next request, keeping no buffer. After an error the connection's framing
/// is unknown: answer with [`ParseError::status`] and close.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    whole: Whole,
    probe: Probe,
}

/// The longest chunk-size line accepted, CRLF included. Real clients send a
/// few hex digits; the bound stops extensions from being used to make the
/// server buffer without limit.
const MAX_CHUNK_LINE: usize = 1024;

/// Most bytes that can follow the target on an unfinished request line:
/// `" HTTP/1.1\r"`.
const VERSION_TAIL: usize = 10;

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

/// An accepted body on its way in.
#[derive(Debug)]
struct BodyState {
    expect_continue: bool,
    continue_taken: bool,
    /// The body so far.
    data: Vec<u8>,
    /// The most the body can come to: its `Content-Length`, or the accepted
    /// limit for a chunked one. `data` never holds more capacity than this.
    most: usize,
    framing: BodyReader,
}

#[derive(Debug)]
enum BodyReader {
    Length {
        remaining: usize,
    },
    /// The strict decoder, bounded to `most`.
    Chunked(ChunkedDecoder),
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
        RequestParser { limits, state: State::fresh(), whole: Whole::default(), probe: Probe::default() }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Feeds the parser every unconsumed byte received so far.
    ///
    /// Returns `Complete(request, n)` once a whole request (head and body)
    /// is in `buf`, `n` being the bytes it occupies, or `Partial` if more are
    /// needed. Every body the head announces within
    /// [`Limits::max_body_bytes`] is read; to decide from the head first, use
    /// [`RequestParser::parse_head_first`] instead.
    ///
    /// # Errors
    ///
    /// - [`ParseError::HeadTooLarge`] / [`ParseError::TooManyHeaders`] (431)
    ///   past [`Limits::max_head_bytes`] / [`Limits::max_headers`];
    /// - [`ParseError::UriTooLong`] (414) past [`Limits::max_uri_bytes`];
    /// - [`ParseError::BodyTooLarge`] (413) past [`Limits::max_body_bytes`];
    /// - [`ParseError::Malformed`], [`ParseError::InvalidTarget`],
    ///   [`ParseError::InvalidHost`], [`ParseError::DuplicateField`],
    ///   [`ParseError::InvalidContentLength`],
    ///   [`ParseError::ConflictingFraming`], [`ParseError::InvalidChunk`] (400)
    ///   for bad syntax or framing; a `Transfer-Encoding` in an HTTP/1.0
    ///   request is `Malformed`, as RFC 9112 §6.1 calls that framing faulty;
    /// - [`ParseError::UnsupportedTransferEncoding`] (501) for any
    ///   `Transfer-Encoding` but exactly `chunked`;
    /// - [`ParseError::UnsupportedVersion`] (505) for versions other than
    ///   HTTP/1.0 and HTTP/1.1.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Status<Request>, ParseError> {
        // A request begun with `parse_head_first` is not this method's to finish; a refusal stands, though.
        if self.whole.request.is_none() && matches!(self.state, State::Deciding { .. } | State::Body(_)) {
            self.reset();
        }
        let outcome = self.parse_whole(buf);
        if !matches!(outcome, Ok(Status::Partial)) {
            self.reset();
        }
        outcome
    }

    fn parse_whole(&mut self, buf: &[u8]) -> Result<Status<Request>, ParseError> {
        if self.whole.used > buf.len() {
            // The buffer shrank, so what was parsed is gone; the only
            // consistent reading is a fresh start on what is there now.
            self.reset();
        }
        loop {
            let (parsed, used) = self.step(buf.get(self.whole.used..).unwrap_or_default())?;
            self.whole.used += used;
            match parsed {
                Parsed::Partial => return Ok(Status::Partial),
                Parsed::Head(request, AnnouncedBody::None) => return Ok(Status::Complete(request, self.whole.used)),
                Parsed::Head(request, _) => {
                    self.whole.request = Some(request);
                    self.accept_body(usize::MAX)?;
                }
                Parsed::Body(body) => {
                    let request = self.whole.request.take().ok_or(ParseError::Malformed("body without a head"))?;
                    return Ok(Status::Complete(request.with_body(body), self.whole.used));
                }
            }
        }
    }

    /// Feeds the parser the unconsumed bytes received so far, stopping after
    /// each head so the caller can decide about the body before any of it is
    /// read.
    ///
    /// Returns what was found and how many bytes of `buf` were used: drop
    /// that many from the front of the buffer every time, whatever was found.
    /// While a head is arriving nothing is used (the head is parsed in one
    /// piece once its blank line is in `buf`; until then the buffer must only
    /// grow). Body bytes are used as they arrive, moved into the parser's own
    /// buffer, which holds no more capacity than the body can come to.
    ///
    /// After [`Parsed::Head`] with a body announced the caller decides from
    /// the head alone:
    ///
    /// - [`RequestParser::accept_body`] with the most it will take for this
    ///   request (a route's limit, lower than [`Limits::max_body_bytes`] if it
    ///   likes); then `100 Continue` becomes due if the client asked for it
    ///   ([`RequestParser::take_continue`]) and later calls collect the body
    ///   until [`Parsed::Body`];
    /// - or [`RequestParser::refuse_body`], answer at once (401, 404, 405,
    ///   413...) and close the connection, as the unread body stands between
    ///   this request and the next.
    ///
    /// Until it decides, calls return `Partial` and use nothing.
    ///
    /// ```
    /// use conduit_http::{AnnouncedBody, Limits, Parsed, Request, RequestParser, StatusCode};
    ///
    /// /// The server's verdict from a head alone: the body limit of the route, or the answer.
    /// fn admit(request: &Request) -> Result<usize, StatusCode> {
    ///     match (request.method().as_str(), request.path()) {
    ///         ("POST", "/publish") if request.header("authorization") == Some("Bearer s3cret") => Ok(64 * 1024),
    ///         ("POST", "/publish") => Err(StatusCode::UNAUTHORIZED),
    ///         _ => Err(StatusCode::NOT_FOUND),
    ///     }
    /// }
    ///
    /// let mut parser = RequestParser::new(Limits::default());
    /// let mut inbox: Vec<u8> = Vec::new(); // the connection's input buffer
    /// let mut waiting: Option<Request> = None; // a head whose body is arriving
    /// let mut sent: Vec<String> = Vec::new(); // what the server wrote
    ///
    /// let reads: [&[u8]; 3] = [
    ///     b"POST /publish HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\n\
    ///       Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    ///     b"hello",
    ///     b"POST /publish HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n",
    /// ];
    /// 'connection: for read in reads {
    ///     inbox.extend_from_slice(read);
    ///     loop {
    ///         let (parsed, used) = match parser.parse_head_first(&inbox) {
    ///             Ok(found) => found,
    ///             Err(error) => {
    ///                 sent.push(format!("{}", error.status())); // and close
    ///                 break 'connection;
    ///             }
    ///         };
    ///         inbox.drain(..used);
    ///         match parsed {
    ///             Parsed::Partial => break,
    ///             Parsed::Head(request, AnnouncedBody::None) => sent.push(format!("200 for {}", request.path())),
    ///             Parsed::Head(request, announced) => match admit(&request) {
    ///                 Ok(limit) => {
    ///                     // Reserve the announced length (or, chunked, `limit`) from a server-wide budget here.
    ///                     let _ = announced;
    ///                     if let Err(error) = parser.accept_body(limit) {
    ///                         sent.push(format!("{}", error.status())); // 413 at once, and close
    ///                         break 'connection;
    ///                     }
    ///                     if parser.take_continue() {
    ///                         sent.push("100 Continue".to_owned());
    ///                     }
    ///                     waiting = Some(request);
    ///                 }
    ///                 Err(status) => {
    ///                     parser.refuse_body();
    ///                     sent.push(format!("{status}")); // and close: the body was never read
    ///                     break 'connection;
    ///                 }
    ///             },
    ///             Parsed::Body(body) => {
    ///                 if let Some(request) = waiting.take() {
    ///                     let request = request.with_body(body);
    ///                     sent.push(format!("202 for {} bytes", request.body().len()));
    ///                 }
    ///             }
    ///         }
    ///     }
    /// }
    /// assert_eq!(sent, ["100 Continue", "202 for 5 bytes", "401 Unauthorized"]);
    /// assert!(inbox.is_empty());
    /// assert_eq!(parser.body_capacity(), 0, "no body memory kept between requests");
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`RequestParser::parse`]; after one the parser has reset
    /// itself, and the connection should be answered and closed.
    pub fn parse_head_first(&mut self, buf: &[u8]) -> Result<(Parsed, usize), ParseError> {
        // A request begun with `parse` is not this method's to finish.
        if self.whole.request.is_some() {
            self.reset();
        }
        let outcome = self.step(buf);
        if outcome.is_err() {
            self.reset();
        }
        outcome
    }

    /// Accepts the body announced by the head just handed out by
    /// [`RequestParser::parse_head_first`], up to `limit` bytes (and never
    /// more than [`Limits::max_body_bytes`]). Does nothing unless such a head
    /// is waiting for a decision.
    ///
    /// From now on [`RequestParser::take_continue`] says whether to send
    /// `100 Continue`. The parser's body buffer will never hold more than the
    /// announced `Content-Length`, or, for a chunked body, `limit` (capped by
    /// [`Limits::max_body_bytes`]), so that is what a server-wide budget must
    /// reserve; [`RequestParser::body_capacity`] says what it holds now.
    ///
    /// # Errors
    ///
    /// [`ParseError::BodyTooLarge`] (413) at once if the `Content-Length` is
    /// over the limit, so the client can be answered before it sends the
    /// body; the parser resets itself. A chunked body gets the same error
    /// later, from `parse_head_first`, as soon as a chunk-size line shows it
    /// will not fit.
    pub fn accept_body(&mut self, limit: usize) -> Result<(), ParseError> {
        let State::Deciding { body, expect_continue } = self.state else {
            return Ok(());
        };
        let limit = limit.min(self.limits.max_body_bytes);
        let (framing, most) = match body {
            AnnouncedBody::Length(len) => match usize::try_from(len) {
                Ok(len) if len <= limit => (BodyReader::Length { remaining: len }, len),
                _ => {
                    self.reset();
                    return Err(ParseError::BodyTooLarge);
                }
            },
            AnnouncedBody::Chunked => (BodyReader::Chunked(strict_chunked(limit, &self.limits)), limit),
            AnnouncedBody::None => (BodyReader::Length { remaining: 0 }, 0),
        };
        let state = BodyState { expect_continue, continue_taken: false, data: Vec::new(), most, framing };
        self.state = State::Body(Box::new(state));
        Ok(())
    }

    /// Refuses the body of the request whose head was handed out by
    /// [`RequestParser::parse_head_first`], before or after accepting it, and
    /// frees whatever of it was buffered.
    ///
    /// The unread body is still on the connection, in front of anything the
    /// client sends next, so answer and close the connection; until
    /// [`RequestParser::reset`] the parser reads nothing more, rather than
    /// misread the body as a request. Does nothing unless such a request is
    /// in progress.
    pub fn refuse_body(&mut self) {
        if matches!(self.state, State::Deciding { .. } | State::Body(_)) {
            self.state = State::Refused;
            self.whole = Whole::default();
        }
    }

    /// True once a head with `Expect: 100-continue` has been parsed and its
    /// body accepted ([`RequestParser::parse`] accepts it with the head),
    /// while the body is still incomplete; the server should then send
    /// `100 Continue` once (see [`RequestParser::take_continue`]).
    ///
    /// Never true for HTTP/1.0, whose clients do not wait (RFC 9110
    /// §10.1.1).
    pub fn expects_continue(&self) -> bool {
        matches!(&self.state, State::Body(body) if body.expect_continue)
    }

    /// Like [`RequestParser::expects_continue`], but true only the first time
    /// it is asked for a given request, so the caller can send
    /// `100 Continue` exactly once without its own flag. Never true before
    /// the body is accepted: a request to be refused from its head gets its
    /// final answer instead.
    pub fn take_continue(&mut self) -> bool {
        match &mut self.state {
            State::Body(body) if body.expect_continue && !body.continue_taken => {
                body.continue_taken = true;
                true
            }
            _ => false,
        }
    }

    /// True while the head is complete and the body is still to be decided
    /// on or arriving (used for the body deadline).
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Deciding { .. } | State::Body(_))
    }

    /// The bytes of memory the parser holds for a request body right now
    /// (its buffer's capacity): at most what [`RequestParser::accept_body`]
    /// says, and zero between requests, after an error and after
    /// [`RequestParser::refuse_body`].
    pub fn body_capacity(&self) -> usize {
        match &self.state {
            State::Body(body) => body.data.capacity(),
            _ => 0,
        }
    }

    /// Forgets any partially parsed request, and any refusal.
    pub fn reset(&mut self) {
        self.state = State::fresh();
        self.whole = Whole::default();
    }

    #[cfg(test)]
    pub(crate) fn examined(&self) -> usize {
        self.probe.examined
    }

    /// One step of [`RequestParser::parse_head_first`], without the reset on
    /// errors.
    fn step(&mut self, buf: &[u8]) -> Result<(Parsed, usize), ParseError> {
        match &mut self.state {
            State::Head(scan) => {
                if scan.pos > buf.len() {
                    // The buffer shrank: start over on what is there now.
                    *scan = HeadScan::default();
                }
                let Some(head_end) = scan_head(scan, buf, &self.limits, &mut self.probe)? else {
                    return Ok((Parsed::Partial, 0));
                };
                let head = buf.get(..head_end).unwrap_or_default();
                let (request, body, expect_continue) = parse_head(head, &self.limits)?;
                self.state = match body {
                    AnnouncedBody::None => State::fresh(),
                    body => State::Deciding { body, expect_continue },
                };
                Ok((Parsed::Head(request, body), head_end))
            }
            State::Deciding { .. } | State::Refused => Ok((Parsed::Partial, 0)),
            State::Body(body) => {
                let used = body.read(buf, &mut self.probe)?;
                if !body.is_complete() {
                    return Ok((Parsed::Partial, used));
                }
                let data = mem::take(&mut body.data);
                self.state = State::fresh();
                Ok((Parsed::Body(data), used))
            }
        }
    }
}

impl BodyState {
    /// Takes what `buf` holds of the body into `data`; returns the bytes used.
    fn read(&mut self, buf: &[u8], probe: &mut Probe) -> Result<usize, ParseError> {
        let used = match &mut self.framing {
            BodyReader::Length { remaining } => {
                let take = (*remaining).min(buf.len());
                append_within(&mut self.data, buf.get(..take).unwrap_or_default(), self.most);
                *remaining -= take;
                take
            }
            BodyReader::Chunked(decoder) => {
                let mut input = buf;
                let outcome = loop {
                    match decoder.decode(&mut input) {
                        Ok(Some(data)) => append_within(&mut self.data, data, self.most),
                        Ok(None) => break Ok(()),
                        Err(err) => break Err(chunk_error(err)),
                    }
                };
                probe.add(buf.len() - input.len());
                outcome?;
                buf.len() - input.len()
            }
        };
        Ok(used)
    }

    fn is_complete(&self) -> bool {
        match &self.framing {
            BodyReader::Length { remaining } => *remaining == 0,
            BodyReader::Chunked(decoder) => decoder.is_done(),
        }
    }
}

/// Appends `data` to a body that will come to at most `most` bytes, growing
/// the buffer geometrically as usual but never past `most`, so a body buffer
/// never holds more memory than its request was allowed.
fn append_within(body: &mut Vec<u8>, data: &[u8], most: usize) {
    let needed = body.len() + data.len();
    if needed > body.capacity() {
        let target = body.capacity().saturating_mul(2).max(needed).min(most).max(needed);
        body.reserve_exact(target - body.len());
    }
    body.extend_from_slice(data);
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
    if scan.scan == Scan::Line
        && !scan.request_line_done
        && let Some(space) = scan.first_space
        && scan.pos.saturating_sub(space + 1) > limits.max_uri_bytes.saturating_add(VERSION_TAIL)
    {
        return Err(ParseError::UriTooLong);
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
fn parse_head(head: &[u8], limits: &Limits) -> Result<(Request, AnnouncedBody, bool), ParseError> {
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
    check_fields(&headers, version)?;
    let framing = body_framing(&headers, version, limits)?;
    // HTTP/1.0 clients do not wait for 100 Continue, and RFC 9110 §10.1.1
    // tells servers to ignore the expectation from them.
    let expect_continue =
        version == Version::Http11 && framing != AnnouncedBody::None && headers.has_token("expect", "100-continue");
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

/// Header fields this server reads one value of, so that more than one is
/// refused ([`ParseError::DuplicateField`], 400) rather than resolved by a
/// guess that a proxy in front may not share:
///
/// - `Authorization`: which credentials were checked;
/// - `Origin`: which origin CORS judged;
/// - `Last-Event-ID`: where a stream resumes;
/// - `Content-Type`: how a body is read;
/// - `Access-Control-Request-Method`: what a preflight asks for.
///
/// `Host` ([`ParseError::InvalidHost`]) and `Content-Length`
/// ([`ParseError::InvalidContentLength`]) are refused when repeated too,
/// each with its own error. Fields that are lists (`Accept`, `Connection`,
/// `Expect`...) may repeat.
pub const SINGLETON_FIELDS: &[&str] =
    &["Authorization", "Origin", "Last-Event-ID", "Content-Type", "Access-Control-Request-Method"];

/// Checks `Host` (RFC 9112 §3.2: exactly one in HTTP/1.1, never more than
/// one, and a valid `uri-host [":" port]`) and [`SINGLETON_FIELDS`].
fn check_fields(headers: &Headers, version: Version) -> Result<(), ParseError> {
    let mut hosts = headers.get_all("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::Http11 => return Err(ParseError::InvalidHost("missing Host header field")),
        (None, _) => {}
        (Some(_), Some(_)) => return Err(ParseError::InvalidHost("more than one Host header field")),
        (Some(host), None) => {
            split_authority(trim_ows(host)).map_err(ParseError::InvalidHost)?;
        }
    }
    match SINGLETON_FIELDS.iter().find(|name| headers.get_all(name).nth(1).is_some()) {
        Some(name) => Err(ParseError::DuplicateField(name)),
        None => Ok(()),
    }
}

/// Reads the body framing from the head (RFC 9112 §6), refusing anything a
/// front-end proxy might read differently.
fn body_framing(headers: &Headers, version: Version, limits: &Limits) -> Result<AnnouncedBody, ParseError> {
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
        return if only_chunked { Ok(AnnouncedBody::Chunked) } else { Err(ParseError::UnsupportedTransferEncoding) };
    }
    let Some(value) = first_length else {
        return Ok(AnnouncedBody::None);
    };
    if more_lengths {
        return Err(ParseError::InvalidContentLength);
    }
    let len = parse_content_length(trim_ows(value))?;
    match usize::try_from(len) {
        Ok(0) => Ok(AnnouncedBody::None),
        Ok(len) if len <= limits.max_body_bytes => Ok(AnnouncedBody::Length(len as u64)),
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

/// The strict chunked decoder for a request body of at most `limit` bytes.
fn strict_chunked(limit: usize, limits: &Limits) -> ChunkedDecoder {
    // CRLF only, and extensions held to their grammar: chunk framing is exactly where lenient parsing enables
    // smuggling (bare LF is tolerated in the head, for old clients, but not here). The trailer section is
    // bounded like a head.
    let config = ChunkedConfig::strict()
        .with_max_size_line(MAX_CHUNK_LINE)
        .with_max_trailer_bytes(limits.max_head_bytes)
        .with_max_body_bytes(u64::try_from(limit).unwrap_or(u64::MAX));
    ChunkedDecoder::new(config)
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
        | ChunkedErrorKind::BareLf
        | ChunkedErrorKind::InvalidExtension => ParseError::InvalidChunk,
    }
}

#[cfg(test)]
mod tests;
