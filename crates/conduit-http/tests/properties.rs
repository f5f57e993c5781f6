//! Property tests for `RequestParser`.
//!
//! Requests are generated as a model (method, decoded path and query, headers,
//! body) together with one of the many ways of writing them on the wire, then
//! parsed back under arbitrary segmentation. Arbitrary and mutated inputs check
//! that the parser never panics and that segmentation never changes the outcome,
//! nor does parsing head first (`parse_head_first`) rather than whole.

#[path = "support/head_first.rs"]
mod support;

use conduit_http::{Limits, Method, ParseError, Request, RequestParser, SINGLETON_FIELDS, Status};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use support::{Outcome, head_first};

const TCHARS: &[u8] = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const STANDARD_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

// ---------------------------------------------------------------------------
// The model and its rendering
// ---------------------------------------------------------------------------

/// A generated request: what the parser must report, and the bytes that say it.
#[derive(Clone, Debug)]
struct Generated {
    method: String,
    target: String,
    path: String,
    query: Vec<(String, String)>,
    http10: bool,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// Offset just past the blank line that ends the head.
    head_len: usize,
    /// Length of a chunked body's trailer section, final CRLF included (0 without one); `max_head_bytes` bounds
    /// it too.
    trailer_len: usize,
    wire: Vec<u8>,
}

/// One character of a path segment or query component, and how to write it.
#[derive(Clone, Debug)]
struct Char {
    ch: char,
    /// Percent-encode it even where it could be sent as is.
    force_escape: bool,
    lower_hex: bool,
}

fn escape_into(out: &mut String, ch: char, lower_hex: bool) {
    let mut buf = [0; 4];
    for byte in ch.encode_utf8(&mut buf).bytes() {
        if lower_hex {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// Characters that can never appear raw in a target: whitespace, controls, and the ones with a meaning in
/// every part of it.
fn must_escape(ch: char) -> bool {
    ch <= ' ' || ch == '\u{7f}' || matches!(ch, '%' | '#' | '?')
}

fn encode_segment(chars: &[Char]) -> (String, String) {
    let mut wire = String::new();
    let mut decoded = String::new();
    for c in chars {
        decoded.push(c.ch);
        if c.force_escape || must_escape(c.ch) || c.ch == '/' {
            escape_into(&mut wire, c.ch, c.lower_hex);
        } else {
            wire.push(c.ch);
        }
    }
    (wire, decoded)
}

/// Encodes a query key or value; `+` means space there, `&` ends a pair and, in a key, `=` ends the key.
fn encode_query_part(chars: &[Char], is_key: bool) -> (String, String) {
    let mut wire = String::new();
    let mut decoded = String::new();
    for c in chars {
        decoded.push(c.ch);
        match c.ch {
            // `force_escape` picks between the two spellings of a space.
            ' ' if !c.force_escape => wire.push('+'),
            '?' if !c.force_escape => wire.push('?'),
            '&' | '+' => escape_into(&mut wire, c.ch, c.lower_hex),
            '=' if is_key => escape_into(&mut wire, c.ch, c.lower_hex),
            ch if c.force_escape || must_escape(ch) => escape_into(&mut wire, ch, c.lower_hex),
            ch => wire.push(ch),
        }
    }
    (wire, decoded)
}

#[derive(Clone, Debug)]
struct QueryPair {
    key: Vec<Char>,
    value: Vec<Char>,
    /// Write `key=` rather than `key` for an empty value (always done for an empty key).
    explicit_eq: bool,
}

#[derive(Clone, Debug)]
struct Target {
    segments: Vec<Vec<Char>>,
    query: Vec<QueryPair>,
    /// A `?` with no pairs, or empty `&` pieces among the pairs.
    empty_query_marks: bool,
}

impl Target {
    /// The wire form, the decoded path and the decoded query pairs.
    fn render(&self) -> (String, String, Vec<(String, String)>) {
        let mut wire = String::new();
        let mut path = String::new();
        if self.segments.is_empty() {
            wire.push('/');
            path.push('/');
        }
        for segment in &self.segments {
            let (w, d) = encode_segment(segment);
            wire.push('/');
            wire.push_str(&w);
            path.push('/');
            path.push_str(&d);
        }
        let mut pairs = Vec::new();
        if !self.query.is_empty() || self.empty_query_marks {
            wire.push('?');
        }
        for (i, pair) in self.query.iter().enumerate() {
            if i > 0 {
                wire.push_str(if self.empty_query_marks { "&&" } else { "&" });
            }
            let (key_wire, key) = encode_query_part(&pair.key, true);
            let (value_wire, value) = encode_query_part(&pair.value, false);
            wire.push_str(&key_wire);
            if pair.explicit_eq || key.is_empty() || !value.is_empty() {
                wire.push('=');
                wire.push_str(&value_wire);
            }
            pairs.push((key, value));
        }
        (wire, path, pairs)
    }
}

#[derive(Clone, Debug)]
struct Header {
    name: String,
    value: String,
    /// Whitespace written before and after the value (not part of it).
    before: &'static str,
    after: &'static str,
}

/// How to write one chunk-size line (the size itself comes from the body).
#[derive(Clone, Debug)]
struct Chunk {
    /// Leading zeros before the hex size.
    zero_pad: usize,
    upper_hex: bool,
    extension: Option<String>,
}

impl Chunk {
    fn size_line(&self, size: usize) -> String {
        let hex = if self.upper_hex { format!("{size:X}") } else { format!("{size:x}") };
        let mut line = "0".repeat(self.zero_pad) + &hex;
        if let Some(ext) = &self.extension {
            line.push_str(ext);
        }
        line.push_str("\r\n");
        line
    }
}

#[derive(Clone, Debug)]
enum Framing {
    None,
    Length {
        body: Vec<u8>,
        name: &'static str,
        zero_pad: usize,
    },
    Chunked {
        body: Vec<u8>,
        cuts: Vec<Index>,
        chunks: Vec<Chunk>,
        last: Chunk,
        trailers: Vec<Header>,
        coding: &'static str,
    },
}

#[derive(Clone, Debug)]
struct Spec {
    leading: Vec<&'static str>,
    method: String,
    target: Target,
    http10: bool,
    headers: Vec<Header>,
    framing: Framing,
    /// Where among the headers the framing header goes.
    framing_at: Index,
    /// The `Host` field, always sent with HTTP/1.1 and with HTTP/1.0 if `host_in_http10`, and where among the
    /// headers it goes.
    host: Header,
    host_in_http10: bool,
    host_at: Index,
    line_ends: Vec<&'static str>,
}

impl Spec {
    fn render(&self) -> Generated {
        let mut ends = self.line_ends.iter().cycle();
        let mut end = || *ends.next().unwrap_or(&"\r\n");
        let (target, path, query) = self.target.render();
        let http10 = self.http10 && !matches!(self.framing, Framing::Chunked { .. });
        let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };

        let mut headers = self.headers.clone();
        let framing_header = match &self.framing {
            Framing::None => None,
            Framing::Length { body, name, zero_pad } => Some(Header {
                name: (*name).to_owned(),
                value: "0".repeat(*zero_pad) + &body.len().to_string(),
                before: " ",
                after: "",
            }),
            Framing::Chunked { coding, .. } => Some(Header {
                name: "Transfer-Encoding".to_owned(),
                value: (*coding).to_owned(),
                before: "",
                after: " ",
            }),
        };
        if let Some(header) = framing_header {
            let at = self.framing_at.index(headers.len() + 1);
            headers.insert(at, header);
        }
        if !http10 || self.host_in_http10 {
            let at = self.host_at.index(headers.len() + 1);
            headers.insert(at, self.host.clone());
        }

        let mut wire = String::new();
        for line in &self.leading {
            wire.push_str(line);
        }
        wire.push_str(&format!("{} {target} {version}{}", self.method, end()));
        for h in &headers {
            wire.push_str(&format!("{}:{}{}{}{}", h.name, h.before, h.value, h.after, end()));
        }
        wire.push_str(end());
        let head_len = wire.len();
        let mut wire = wire.into_bytes();
        let mut trailer_len = 0;

        let body = match &self.framing {
            Framing::None => Vec::new(),
            Framing::Length { body, .. } => {
                wire.extend_from_slice(body);
                body.clone()
            }
            Framing::Chunked { body, cuts, chunks, last, trailers, .. } => {
                let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
                points.push(0);
                points.push(body.len());
                points.sort_unstable();
                points.dedup();
                for (i, pair) in points.windows(2).enumerate() {
                    let data = &body[pair[0]..pair[1]];
                    let chunk = &chunks[i % chunks.len()];
                    wire.extend_from_slice(chunk.size_line(data.len()).as_bytes());
                    wire.extend_from_slice(data);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(last.size_line(0).as_bytes());
                let trailer_start = wire.len();
                for t in trailers {
                    wire.extend_from_slice(format!("{}:{}{}{}\r\n", t.name, t.before, t.value, t.after).as_bytes());
                }
                wire.extend_from_slice(b"\r\n");
                trailer_len = wire.len() - trailer_start;
                body.clone()
            }
        };

        Generated {
            method: self.method.clone(),
            target,
            path,
            query,
            http10,
            headers: headers.into_iter().map(|h| (h.name, h.value.into_bytes())).collect(),
            body,
            head_len,
            trailer_len,
            wire,
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn token(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(select(TCHARS), len).prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

/// A standard method or an extension token, sometimes a long one (longer than the small URI limits).
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&STANDARD_METHODS[..]).prop_map(str::to_owned),
        4 => token(1..12),
        1 => token(12..120),
    ]
}

fn target_char() -> impl Strategy<Value = Char> {
    let ch = prop_oneof![
        4 => select("abcXYZ019-._~!$&'()*+,;=:@/?#% []{}|\\^\"<>`".chars().collect::<Vec<_>>()),
        1 => (0x20u8..0x7f).prop_map(char::from),
        1 => any::<char>(),
    ];
    (ch, prop::bool::weighted(0.1), any::<bool>()).prop_map(|(ch, force_escape, lower_hex)| Char {
        ch,
        force_escape,
        lower_hex,
    })
}

fn target() -> impl Strategy<Value = Target> {
    let pair = (vec(target_char(), 0..6), vec(target_char(), 0..8), any::<bool>())
        .prop_map(|(key, value, explicit_eq)| QueryPair { key, value, explicit_eq });
    let short = vec(vec(target_char(), 0..4), 0..2).prop_map(|segments| Target {
        segments,
        query: Vec::new(),
        empty_query_marks: false,
    });
    let full = (vec(vec(target_char(), 0..8), 0..6), vec(pair, 0..5), prop::bool::weighted(0.2))
        .prop_map(|(segments, query, empty_query_marks)| Target { segments, query, empty_query_marks });
    prop_oneof![1 => short, 3 => full]
}

fn ows() -> impl Strategy<Value = &'static str> {
    select(&["", "", " ", "  ", "\t", " \t"][..])
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![1 => Just(String::new()), 8 => "[!-~]([!-~ \t]{0,30}[!-~])?"]
}

fn header() -> impl Strategy<Value = Header> {
    (token(1..16), header_value(), ows(), ows()).prop_map(|(name, value, before, after)| {
        // The framing headers are only generated together with a body, Host once per request, and the fields that
        // must not repeat never.
        let special = ["content-length", "transfer-encoding", "host"].iter().chain(SINGLETON_FIELDS);
        let name =
            if special.clone().any(|special| name.eq_ignore_ascii_case(special)) { format!("X-{name}") } else { name };
        Header { name, value, before, after }
    })
}

/// A valid `uri-host [":" port]`.
fn host() -> impl Strategy<Value = Header> {
    let value = prop_oneof![
        select(
            &[
                "h",
                "example.com",
                "EXAMPLE.com:8080",
                "127.0.0.1:8000",
                "[::1]",
                "[::1]:80",
                "a-b_c~d.e:",
                "x%41!$&'()*+,;="
            ][..]
        )
        .prop_map(str::to_owned),
        ("[a-z0-9.-]{1,20}", prop::option::of(0u16..)).prop_map(|(name, port)| match port {
            Some(port) => format!("{name}:{port}"),
            None => name,
        }),
    ];
    (value, ows(), ows()).prop_map(|(value, before, after)| Header { name: "Host".to_owned(), value, before, after })
}

/// One chunk extension in the RFC 9112 §7.1.1 grammar, whitespace included.
fn extension() -> impl Strategy<Value = String> {
    let qdtext = "[\t !#-\\[\\]-~]";
    let quoted_pair = "[\t -~]".prop_map(|ch| format!("\\{ch}"));
    let quoted = vec(prop_oneof![4 => qdtext.boxed(), 1 => quoted_pair.boxed()], 0..12)
        .prop_map(|pieces| format!("\"{}\"", pieces.concat()));
    let value = prop_oneof![token(1..8), quoted];
    (ows(), ows(), token(1..8), prop::option::of((ows(), ows(), value))).prop_map(|(before, after, name, value)| {
        match value {
            Some((ws1, ws2, value)) => format!("{before};{after}{name}{ws1}={ws2}{value}"),
            None => format!("{before};{after}{name}"),
        }
    })
}

fn chunk() -> impl Strategy<Value = Chunk> {
    let extension = prop_oneof![
        2 => Just(None),
        2 => vec(extension(), 1..3).prop_map(|exts| Some(exts.concat())),
    ];
    (0usize..3, any::<bool>(), extension).prop_map(|(zero_pad, upper_hex, extension)| Chunk {
        zero_pad,
        upper_hex,
        extension,
    })
}

fn body_bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), len)
}

fn framing(body_len: std::ops::Range<usize>) -> impl Strategy<Value = Framing> {
    let length =
        (body_bytes(body_len.clone()), select(&["Content-Length", "content-length", "CONTENT-LENGTH"][..]), 0usize..3)
            .prop_map(|(body, name, zero_pad)| Framing::Length { body, name, zero_pad });
    let chunked = (
        body_bytes(body_len),
        vec(any::<Index>(), 0..8),
        vec(chunk(), 1..4),
        chunk(),
        vec(header(), 0..3),
        select(&["chunked", "Chunked", "CHUNKED"][..]),
    )
        .prop_map(|(body, cuts, chunks, last, trailers, coding)| Framing::Chunked {
            body,
            cuts,
            chunks,
            last,
            trailers,
            coding,
        });
    prop_oneof![length, chunked]
}

fn spec_with(framing: impl Strategy<Value = Framing>) -> impl Strategy<Value = Spec> {
    (
        vec(select(&["\r\n", "\n"][..]), 0..2),
        method(),
        target(),
        any::<bool>(),
        vec(header(), 0..20),
        framing,
        any::<Index>(),
        (host(), any::<bool>(), any::<Index>()),
        vec(prop_oneof![4 => Just("\r\n"), 1 => Just("\n")], 1..6),
    )
        .prop_map(
            |(
                leading,
                method,
                target,
                http10,
                headers,
                framing,
                framing_at,
                (host, host_in_http10, host_at),
                line_ends,
            )| Spec {
                leading,
                method,
                target,
                http10,
                headers,
                framing,
                framing_at,
                host,
                host_in_http10,
                host_at,
                line_ends,
            },
        )
}

/// Any valid request, with or without a body.
fn request() -> impl Strategy<Value = Generated> {
    spec_with(prop_oneof![1 => Just(Framing::None), 2 => framing(0..300)]).prop_map(|spec| spec.render())
}

/// A valid request with a body of at least one byte.
fn request_with_body() -> impl Strategy<Value = Generated> {
    spec_with(framing(1..300)).prop_map(|spec| spec.render())
}

/// Split points for an input of any length, as indexes to be scaled to it.
fn splits() -> impl Strategy<Value = Vec<Index>> {
    vec(any::<Index>(), 0..8)
}

/// The prefix lengths at which the bytes arrive: ascending, unique, ending with `len`.
fn cuts(splits: &[Index], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = splits.iter().map(|s| s.index(len + 1)).collect();
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        1 => Just(Limits::default()),
        3 => (0usize..300, 0usize..8, 0usize..64, 0usize..128).prop_map(
            |(max_head_bytes, max_headers, max_uri_bytes, max_body_bytes)| Limits {
                max_head_bytes,
                max_headers,
                max_uri_bytes,
                max_body_bytes,
            }
        ),
    ]
}

/// Limits `req` fits in: each one either the default or what `req` needs plus at most two.
fn limits_fitting(req: &Generated) -> impl Strategy<Value = Limits> + use<> {
    let fit = |actual: usize, default: usize| prop_oneof![Just(default), (0usize..3).prop_map(move |d| actual + d)];
    let default = Limits::default();
    (
        fit(req.head_len.max(req.trailer_len), default.max_head_bytes),
        fit(req.headers.len(), default.max_headers),
        fit(req.target.len(), default.max_uri_bytes),
        fit(req.body.len(), default.max_body_bytes),
    )
        .prop_map(|(max_head_bytes, max_headers, max_uri_bytes, max_body_bytes)| Limits {
            max_head_bytes,
            max_headers,
            max_uri_bytes,
            max_body_bytes,
        })
}

/// Limits for mutating `req`: each one either the default or within a few bytes of what `req` needs, so the
/// mutated request often still completes and the limit checks run right at their edges.
fn limits_near(req: &Generated) -> impl Strategy<Value = Limits> + use<> {
    let header_count = req.headers.len();
    let near = |actual: usize, default: usize| {
        prop_oneof![Just(default), (0usize..7).prop_map(move |d| (actual + d).saturating_sub(3))]
    };
    let default = Limits::default();
    (
        near(req.head_len.max(req.trailer_len), default.max_head_bytes),
        near(header_count, default.max_headers),
        near(req.target.len(), default.max_uri_bytes),
        near(req.body.len(), default.max_body_bytes),
    )
        .prop_map(|(max_head_bytes, max_headers, max_uri_bytes, max_body_bytes)| Limits {
            max_head_bytes,
            max_headers,
            max_uri_bytes,
            max_body_bytes,
        })
}

/// Bytes that look like HTTP often enough to get past the request line.
fn http_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => select(
            &[
                "GET ", "POST ", "X ", "/", "/a?b=c&d", "%", "%2", "%C3%A9", "#", " ", "  ", "\t", " HTTP/1.1",
                " HTTP/1.0", " HTTP/2.0", "\r\n", "\n", "\r", "\r\n\r\n", "Host: h", "Content-Length: ",
                "Content-Length: 3", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked",
                "Expect: 100-continue", ": ", ":", "0", "5", "ff", "FFFFFFFFFFFFFFFFF", ";ext=1", "abc",
                "\r\n0\r\n\r\n",
            ][..]
        )
        .prop_map(|s: &str| s.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 1..4),
    ];
    // Often a plausible request line first, so the soup reaches the headers and the body.
    let start = prop_oneof![
        1 => Just(String::new()),
        2 => (method(), "/[a-z%?=&]{0,40}", select(&[" HTTP/1.1\r\n", " HTTP/1.0\n", " HTTP/1.1 "][..]))
            .prop_map(|(m, t, v)| format!("{m} {t}{v}")),
    ];
    (start, vec(piece, 0..40)).prop_map(|(start, pieces)| [start.into_bytes(), pieces.concat()].concat())
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        2 => select(&b" \t\r\n:;%?#/0aF\x00\x7f\xff"[..]),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<Index>(), byte.clone()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        (any::<Index>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match *m {
            Mutation::Replace(at, b) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes[at] = b;
            }
            Mutation::Insert(at, b) => {
                let at = at.index(bytes.len() + 1);
                bytes.insert(at, b);
            }
            Mutation::Delete(at) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes.remove(at);
            }
            _ => {}
        }
    }
    bytes
}

// ---------------------------------------------------------------------------
// Driving the parser
// ---------------------------------------------------------------------------

/// Feeds growing prefixes of `input` (at `cuts`) and returns the first outcome that is not `Partial`, with the
/// prefix length it came at.
fn feed(limits: &Limits, input: &[u8], cuts: &[usize]) -> (Outcome, usize) {
    let mut parser = RequestParser::new(limits.clone());
    let mut last = (Ok(Status::Partial), 0);
    for &cut in cuts {
        let outcome = parser.parse(&input[..cut]);
        if !matches!(outcome, Ok(Status::Partial)) {
            return (outcome, cut);
        }
        last = (outcome, cut);
    }
    last
}

/// Like a connection: bytes arrive in pieces, complete requests are drained from the front of the buffer.
fn drive(limits: &Limits, input: &[u8], cuts: &[usize]) -> Result<(Vec<Request>, usize), ParseError> {
    let mut parser = RequestParser::new(limits.clone());
    let mut buffer = Vec::new();
    let mut requests = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        buffer.extend_from_slice(&input[from..cut]);
        from = cut;
        while let Status::Complete(request, used) = parser.parse(&buffer)? {
            assert!(used > 0 && used <= buffer.len(), "used {used} of {}", buffer.len());
            buffer.drain(..used);
            requests.push(request);
        }
    }
    Ok((requests, buffer.len()))
}

fn check_request(got: &Request, want: &Generated) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.method(), &Method::from(want.method.as_str()));
    prop_assert_eq!(got.method().as_str(), want.method.as_str());
    prop_assert_eq!(got.version().as_str(), if want.http10 { "HTTP/1.0" } else { "HTTP/1.1" });
    prop_assert_eq!(got.target(), want.target.as_str());
    prop_assert_eq!(got.path(), want.path.as_str());
    prop_assert_eq!(got.query_pairs(), want.query.as_slice());
    let headers: Vec<(String, Vec<u8>)> =
        got.headers().iter().map(|(name, value)| (name.to_owned(), value.to_vec())).collect();
    prop_assert_eq!(&headers, &want.headers);
    prop_assert_eq!(got.body(), want.body.as_slice());
    let host = want.headers.iter().find(|(name, _)| name == "Host").map(|(_, value)| String::from_utf8_lossy(value));
    let (host, port) = match host.as_deref() {
        None => (None, None),
        Some(value) => {
            let split = if value.starts_with('[') { value.find(']').map(|i| i + 1) } else { value.find(':') };
            let (host, port) = value.split_at(split.unwrap_or(value.len()));
            (Some(host.to_owned()), port.strip_prefix(':').and_then(|port| port.parse::<u16>().ok()))
        }
    };
    prop_assert_eq!(got.host().map(str::to_owned), host);
    prop_assert_eq!(got.port(), port);
    Ok(())
}

/// Whole and segmented parses must agree, except for the one difference the fuzz target accepts too: an early
/// `UriTooLong` while the request line has no line end yet, for input the whole of which is not a complete
/// request either (see fuzz/fuzz_targets/http_request.rs).
fn check_split_consistency(limits: &Limits, input: &[u8], splits: &[Index]) -> Result<(), TestCaseError> {
    let whole = RequestParser::new(limits.clone()).parse(input);
    if let Ok(Status::Complete(_, used)) = &whole {
        prop_assert!(*used <= input.len());
    }
    let cuts = cuts(splits, input.len());
    let (split, at) = feed(limits, input, &cuts);
    let early_uri_too_long =
        at < input.len() && split == Err(ParseError::UriTooLong) && !matches!(whole, Ok(Status::Complete(..)));
    if !early_uri_too_long {
        prop_assert_eq!(&split, &whole, "cuts {:?}", cuts);
    }
    // Deciding from the head changes nothing when every body is accepted: the head is scanned the same way.
    prop_assert_eq!(&head_first(limits, input, &cuts, usize::MAX), &split, "head first, cuts {:?}", cuts);
    // Whatever follows a complete request is the next one; parsing on must not panic either.
    let _ = drive(limits, input, &cuts);
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// A valid request parses back to what was generated however it is split, completing exactly when its last
    /// byte arrives; under the default limits and under limits it just fits in.
    #[test]
    fn a_valid_request_round_trips_under_any_split(
        (req, limits) in request().prop_flat_map(|req| { let limits = limits_fitting(&req); (Just(req), limits) }),
        splits in splits(),
    ) {
        let len = req.wire.len();
        match RequestParser::new(limits.clone()).parse(&req.wire) {
            Ok(Status::Complete(got, used)) => {
                prop_assert_eq!(used, len);
                check_request(&got, &req)?;
            }
            other => prop_assert!(false, "whole: {:?}", other),
        }

        let mut parser = RequestParser::new(limits);
        for cut in cuts(&splits, len) {
            let outcome = parser.parse(&req.wire[..cut]);
            if cut < len {
                prop_assert_eq!(outcome, Ok(Status::Partial), "prefix of {} bytes", cut);
                continue;
            }
            match outcome {
                Ok(Status::Complete(got, used)) => {
                    prop_assert_eq!(used, len);
                    check_request(&got, &req)?;
                }
                other => prop_assert!(false, "split: {:?}", other),
            }
        }
    }

    /// Head first, a valid request comes out the same (head, then body) under any split; with a body limit below
    /// its body's length it is refused with 413, and at exactly that length accepted.
    #[test]
    fn a_valid_request_round_trips_head_first(req in request(), splits in splits(), cut in any::<Index>()) {
        let cuts = cuts(&splits, req.wire.len());
        match head_first(&Limits::default(), &req.wire, &cuts, usize::MAX) {
            Ok(Status::Complete(got, used)) => {
                prop_assert_eq!(used, req.wire.len());
                check_request(&got, &req)?;
            }
            other => prop_assert!(false, "{:?}", other),
        }
        if !req.body.is_empty() {
            let below = cut.index(req.body.len());
            prop_assert_eq!(head_first(&Limits::default(), &req.wire, &cuts, below), Err(ParseError::BodyTooLarge));
            let exact = head_first(&Limits::default(), &req.wire, &cuts, req.body.len());
            prop_assert!(matches!(exact, Ok(Status::Complete(..))), "{:?}", exact);
        }
    }

    /// Pipelined requests come out one by one, in order, however the stream is segmented.
    #[test]
    fn pipelined_requests_parse_in_order(reqs in vec(request(), 1..6), splits in vec(any::<Index>(), 0..16)) {
        let stream: Vec<u8> = reqs.iter().flat_map(|r| r.wire.iter().copied()).collect();
        let (got, left) = drive(&Limits::default(), &stream, &cuts(&splits, stream.len()))
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(left, 0);
        prop_assert_eq!(got.len(), reqs.len());
        for (got, want) in got.iter().zip(&reqs) {
            check_request(got, want)?;
        }
    }

    /// Arbitrary bytes: no panic, and the outcome does not depend on segmentation.
    #[test]
    fn arbitrary_bytes_never_panic_and_split_consistently(
        input in vec(any::<u8>(), 0..600),
        limits in limits(),
        splits in splits(),
    ) {
        check_split_consistency(&limits, &input, &splits)?;
    }

    /// The same for byte soup made of HTTP fragments, which gets much further into the parser.
    #[test]
    fn http_ish_bytes_never_panic_and_split_consistently(
        input in http_ish_bytes(),
        limits in limits(),
        splits in splits(),
    ) {
        check_split_consistency(&limits, &input, &splits)?;
    }

    /// A valid request with a few bytes replaced, inserted or deleted.
    #[test]
    fn mutated_requests_never_panic_and_split_consistently(
        (req, limits) in request().prop_flat_map(|req| { let limits = limits_near(&req); (Just(req), limits) }),
        mutations in vec(mutation(), 1..5),
        splits in splits(),
    ) {
        let input = mutate(req.wire, &mutations);
        check_split_consistency(&limits, &input, &splits)?;
    }

    /// A head longer than `max_head_bytes` is refused with 431, or with 414 when the target alone is too long;
    /// never accepted. At exactly the limits the request completes.
    #[test]
    fn a_head_over_the_limit_is_refused(
        req in request(),
        head_cut in any::<Index>(),
        uri_cut in prop::option::of(any::<Index>()),
        splits in splits(),
    ) {
        let target_len = req.target.len();
        let max_uri_bytes = match uri_cut {
            Some(cut) => cut.index(target_len * 2 + 1),
            None => Limits::default().max_uri_bytes,
        };
        let limits = Limits { max_head_bytes: head_cut.index(req.head_len), max_uri_bytes, ..Limits::default() };
        for (outcome, _) in [feed(&limits, &req.wire, &[req.wire.len()]), feed(&limits, &req.wire, &cuts(&splits, req.wire.len()))] {
            match outcome {
                Err(ParseError::HeadTooLarge) => {}
                Err(ParseError::UriTooLong) if target_len > max_uri_bytes => {}
                other => prop_assert!(false, "head {} > {:?}, target {}: {:?}", req.head_len, limits, target_len, other),
            }
        }

        let exact = Limits { max_head_bytes: req.head_len.max(req.trailer_len), max_uri_bytes: target_len, ..Limits::default() };
        let cuts = cuts(&splits, req.wire.len());
        let (outcome, at) = feed(&exact, &req.wire, &cuts);
        prop_assert!(
            matches!(outcome, Ok(Status::Complete(_, used)) if used == req.wire.len()),
            "{:?} at {} of cuts {:?}, {:?}: {:?}", outcome, at, cuts, exact, String::from_utf8_lossy(&req.wire[..req.head_len])
        );
    }

    /// A target longer than `max_uri_bytes` (in a head within its limit) is refused with 414.
    #[test]
    fn a_target_over_the_limit_is_refused(req in request(), uri_cut in any::<Index>(), splits in splits()) {
        let limits = Limits { max_uri_bytes: uri_cut.index(req.target.len()), ..Limits::default() };
        for cuts in [vec![req.wire.len()], cuts(&splits, req.wire.len())] {
            let (outcome, _) = feed(&limits, &req.wire, &cuts);
            prop_assert_eq!(outcome, Err(ParseError::UriTooLong), "{:?}", limits);
        }
    }

    /// A body longer than `max_body_bytes` is refused with 413, by Content-Length or chunked; at exactly the limit
    /// it is accepted.
    #[test]
    fn a_body_over_the_limit_is_refused(req in request_with_body(), body_cut in any::<Index>(), splits in splits()) {
        let limits = Limits { max_body_bytes: body_cut.index(req.body.len()), ..Limits::default() };
        for cuts in [vec![req.wire.len()], cuts(&splits, req.wire.len())] {
            let (outcome, _) = feed(&limits, &req.wire, &cuts);
            prop_assert_eq!(outcome, Err(ParseError::BodyTooLarge), "{:?}", limits);
        }

        let exact = Limits { max_body_bytes: req.body.len(), ..Limits::default() };
        let (outcome, _) = feed(&exact, &req.wire, &cuts(&splits, req.wire.len()));
        match outcome {
            Ok(Status::Complete(got, used)) => {
                prop_assert_eq!(used, req.wire.len());
                check_request(&got, &req)?;
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
