use super::*;
use crate::test_rng::XorShift;

// The server-like driver of `parse_head_first` that the property tests and the fuzz target use too.
#[path = "../../tests/support/head_first.rs"]
mod support;
use support::{Outcome, head_first};

/// Grows the buffer through the prefix lengths in `cuts` (ascending, the
/// last one `input.len()`) and returns the first outcome that is not
/// `Partial`, with the prefix length at which it came.
fn feed(parser: &mut RequestParser, input: &[u8], cuts: &[usize]) -> (Outcome, usize) {
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

fn parse_whole(limits: &Limits, input: &[u8]) -> Outcome {
    RequestParser::new(limits.clone()).parse(input)
}

fn random_cuts(rng: &mut XorShift, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.below(6) + 1).map(|_| rng.below(len + 1)).collect();
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Parses `input` whole, byte by byte and in random splits, with [`RequestParser::parse`] and with
/// [`RequestParser::parse_head_first`] (accepting every body), asserting that all agree, and returns the common
/// outcome.
fn parse_every_way(limits: &Limits, input: &[u8]) -> Outcome {
    let whole = parse_whole(limits, input);
    let shown = String::from_utf8_lossy(input);

    let bytewise: Vec<usize> = (1..=input.len()).collect();
    let (outcome, at) = feed(&mut RequestParser::new(limits.clone()), input, &bytewise);
    assert_eq!(outcome, whole, "byte by byte: {shown:?}");
    if let Ok(Status::Complete(_, used)) = &outcome {
        assert_eq!(at, *used, "complete as soon as the last byte arrives");
    }
    assert_eq!(head_first(limits, input, &[input.len()], usize::MAX), whole, "head first, whole: {shown:?}");
    assert_eq!(head_first(limits, input, &bytewise, usize::MAX), whole, "head first, byte by byte: {shown:?}");

    for seed in [1, 0x9e37_79b9, 0xdead_beef, 42] {
        let mut rng = XorShift::new(seed);
        for _ in 0..200 {
            let cuts = random_cuts(&mut rng, input.len());
            let (outcome, _) = feed(&mut RequestParser::new(limits.clone()), input, &cuts);
            assert_eq!(outcome, whole, "cuts {cuts:?}: {shown:?}");
            assert_eq!(head_first(limits, input, &cuts, usize::MAX), whole, "head first, cuts {cuts:?}: {shown:?}");
        }
    }
    whole
}

struct Case {
    input: &'static [u8],
    want: Result<(&'static str, &'static str, &'static [u8]), ParseError>,
}

const fn ok(input: &'static [u8], method: &'static str, path: &'static str, body: &'static [u8]) -> Case {
    Case { input, want: Ok((method, path, body)) }
}

const fn err(input: &'static [u8], error: ParseError) -> Case {
    Case { input, want: Err(error) }
}

const TE_CHUNKED: &[u8] = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

fn cases() -> Vec<Case> {
    use ParseError::*;
    vec![
        ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", b""),
        ok(
            b"GET /count?n=5&x=a+b HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
            "GET",
            "/count",
            b"",
        ),
        ok(b"GET /x HTTP/1.0\r\n\r\n", "GET", "/x", b""),
        ok(
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            "POST",
            "/p",
            b"hello",
        ),
        ok(
            b"PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length:   7  \r\n\r\nabc\r\nde",
            "PUT",
            "/p",
            b"abc\r\nde",
        ),
        ok(
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            "POST",
            "/p",
            b"",
        ),
        ok(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            "POST",
            "/c",
            b"hello world",
        ),
        ok(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val\r\nhello\r\nA ; x ;y=\"z\"\r\n0123456789\r\n0;last\r\nX-Trailer: 1\r\nY: two words\r\n\r\n",
            "POST",
            "/c",
            b"hello0123456789",
        ),
        ok(
            b"POST /c HTTP/1.1\r\nHost: h\r\ntransfer-encoding:  Chunked \r\n\r\n0005\r\nabcde\r\n0\r\n\r\n",
            "POST",
            "/c",
            b"abcde",
        ),
        ok(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST",
            "/c",
            b"",
        ),
        ok(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\r\n\r\r\n0\r\n\r\n",
            "POST",
            "/c",
            b"\r\n\r",
        ),
        ok(b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/lead", b""),
        ok(b"\nGET /lf HTTP/1.1\nHost: a\n\n", "GET", "/lf", b""),
        ok(b"GET /mixed HTTP/1.1\r\nHost: a\n\r\n", "GET", "/mixed", b""),
        ok(
            b"GET http://example.com/a%20b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "GET",
            "/a b",
            b"",
        ),
        ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", b""),
        ok(b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n", "BREW", "/pot", b""),
        ok(
            b"GET /caf%C3%A9/%E2%9C%93 HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET",
            "/caf\u{e9}/\u{2713}",
            b"",
        ),
        ok(
            b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
            "POST",
            "/e",
            b"abc",
        ),
        ok(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Bin: \xff\xfe\r\n\r\n",
            "GET",
            "/",
            b"",
        ),
        // Versions and request-line syntax.
        err(b"GET / HTTP/2.0\r\n\r\n", UnsupportedVersion),
        err(b"GET / HTTP/1.2\r\n\r\n", UnsupportedVersion),
        err(b"GET / FOO/1.1\r\n\r\n", Malformed("invalid HTTP version")),
        err(b"GET /\r\n\r\n", Malformed("invalid request line")),
        err(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid request line")),
        err(b"G(ET / HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid request line")),
        err(b"\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", Malformed("invalid line ending")),
        err(
            b"GET / HTTP/1.1\r\nHost: h\r\nA: b\n\rX\r\n\r\n",
            Malformed("invalid line ending"),
        ),
        // Header syntax.
        err(
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
            Malformed("whitespace at start of header line (obsolete line folding)"),
        ),
        err(
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tfolded\r\n\r\n",
            Malformed("whitespace at start of header line (obsolete line folding)"),
        ),
        err(
            b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n",
            Malformed("invalid header name"),
        ),
        err(b"GET / HTTP/1.1\r\nHost: h\r\nX : x\r\n\r\n", Malformed("invalid header name")),
        err(
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
            Malformed("invalid header value"),
        ),
        // Content-Length.
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 0\r\n\r\n",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            InvalidContentLength,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
            BodyTooLarge,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n",
            BodyTooLarge,
        ),
        // Transfer-Encoding.
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ConflictingFraming,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            ConflictingFraming,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        err(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Malformed("Transfer-Encoding in an HTTP/1.0 request"),
        ),
        // Chunk syntax.
        err(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", InvalidChunk),
        err(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", InvalidChunk),
        err(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", InvalidChunk),
        err(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\n", InvalidChunk),
        err(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\n", InvalidChunk),
        err(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n", InvalidChunk),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01b\r\n",
            InvalidChunk,
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
            InvalidChunk,
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX",
            InvalidChunk,
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
            InvalidChunk,
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
            InvalidChunk,
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n",
            BodyTooLarge,
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
            Malformed("invalid trailer field"),
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded: x\r\n\r\n",
            Malformed("invalid trailer field"),
        ),
        err(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
            InvalidChunk,
        ),
        // Targets.
        err(
            b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",
            InvalidTarget("fragment in request target"),
        ),
        err(b"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", InvalidTarget("bad percent-encoding")),
        err(b"GET /%4 HTTP/1.1\r\nHost: h\r\n\r\n", InvalidTarget("bad percent-encoding")),
        err(
            b"GET /?q=%E2%9C HTTP/1.1\r\nHost: h\r\n\r\n",
            InvalidTarget("decoded target is not UTF-8"),
        ),
        err(
            b"GET /%FF HTTP/1.1\r\nHost: h\r\n\r\n",
            InvalidTarget("decoded target is not UTF-8"),
        ),
        err(
            b"GET index.html HTTP/1.1\r\nHost: h\r\n\r\n",
            InvalidTarget("request target must be origin-form"),
        ),
        err(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            InvalidTarget("request target must be origin-form"),
        ),
    ]
}

#[test]
fn table_whole_bytewise_and_random_splits_agree() {
    let limits = Limits::default();
    for case in cases() {
        let shown = String::from_utf8_lossy(case.input);
        let outcome = parse_every_way(&limits, case.input);
        match (&case.want, outcome) {
            (Ok((method, path, body)), Ok(Status::Complete(req, used))) => {
                assert_eq!(used, case.input.len(), "{shown}");
                assert_eq!(req.method().as_str(), *method, "{shown}");
                assert_eq!(req.path(), *path, "{shown}");
                assert_eq!(req.body(), *body, "{shown}");
            }
            (Err(want), Err(got)) => assert_eq!(&got, want, "{shown}"),
            (want, got) => panic!("{shown}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn incomplete_input_stays_partial() {
    let limits = Limits::default();
    for input in [
        &b""[..],
        b"\r\n",
        b"GET",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r",
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n",
    ] {
        assert_eq!(parse_every_way(&limits, input), Ok(Status::Partial));
    }
}

#[test]
fn parsed_request_details() {
    let input = b"GET /a%20b/c+d?x=1+2&y=%C3%A9&x=3&flag&&=v HTTP/1.0\r\nHost: example\r\nCONNECTION: Keep-Alive\r\nX-Multi: a\r\nx-multi: b\r\n\r\n";
    let Ok(Status::Complete(req, used)) = parse_whole(&Limits::default(), input) else {
        panic!("should parse");
    };
    assert_eq!(used, input.len());
    assert_eq!(req.version(), Version::Http10);
    assert_eq!(req.target(), "/a%20b/c+d?x=1+2&y=%C3%A9&x=3&flag&&=v");
    assert_eq!(req.path(), "/a b/c+d");
    assert_eq!(req.query("x"), Some("1 2"));
    assert_eq!(req.query("y"), Some("\u{e9}"));
    assert_eq!(req.query("flag"), Some(""));
    assert_eq!(req.query(""), Some("v"));
    assert_eq!(req.query_pairs().len(), 5);
    assert_eq!(req.header("host"), Some("example"));
    assert_eq!(req.headers().get_all("X-MULTI").count(), 2);
    let names: Vec<&str> = req.headers().iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["Host", "CONNECTION", "X-Multi", "x-multi"]);
    assert!(req.keep_alive());

    let expected = Request::new(Method::Get, "/a%20b/c+d?x=1+2&y=%C3%A9&x=3&flag&&=v")
        .unwrap()
        .with_version(Version::Http10)
        .with_header("Host", "example")
        .with_header("CONNECTION", "Keep-Alive")
        .with_header("X-Multi", "a")
        .with_header("x-multi", "b");
    assert_eq!(req, expected);
}

#[test]
fn keep_alive_from_the_wire() {
    let table: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
    ];
    for (input, want) in table {
        let Ok(Status::Complete(req, _)) = parse_whole(&Limits::default(), input) else {
            panic!("should parse");
        };
        assert_eq!(req.keep_alive(), *want, "{}", String::from_utf8_lossy(input));
    }
}

/// Simulates a connection: bytes arrive in `pieces`, the caller appends them
/// to its buffer and drains every complete request.
fn drive_connection(limits: &Limits, pieces: &[&[u8]]) -> Vec<Request> {
    let mut parser = RequestParser::new(limits.clone());
    let mut inbox = Vec::new();
    let mut done = Vec::new();
    for piece in pieces {
        inbox.extend_from_slice(piece);
        while let Status::Complete(req, used) = parser.parse(&inbox).expect("valid stream") {
            inbox.drain(..used);
            done.push(req);
        }
    }
    assert!(inbox.is_empty(), "leftover {:?}", String::from_utf8_lossy(&inbox));
    done
}

#[test]
fn pipelined_requests() {
    let stream: &[u8] = b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n\
POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world\
POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n\
\r\nGET /last?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    let check = |requests: &[Request]| {
        let summary: Vec<(&str, &str, &[u8])> =
            requests.iter().map(|r| (r.method().as_str(), r.path(), r.body())).collect();
        assert_eq!(
            summary,
            [
                ("GET", "/events", &b""[..]),
                ("POST", "/publish", b"hello world"),
                ("POST", "/chunked", b"abc"),
                ("GET", "/last", b""),
            ]
        );
    };
    let limits = Limits::default();

    // All in one buffer: each parse call returns one request.
    let mut parser = RequestParser::new(limits.clone());
    let mut rest = stream;
    let mut requests = Vec::new();
    while let Ok(Status::Complete(req, used)) = parser.parse(rest) {
        rest = &rest[used..];
        requests.push(req);
    }
    assert!(rest.is_empty());
    check(&requests);

    // One byte at a time, and in random pieces.
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    check(&drive_connection(&limits, &bytes));
    let mut rng = XorShift::new(7);
    for _ in 0..200 {
        let cuts = random_cuts(&mut rng, stream.len());
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts {
            pieces.push(&stream[from..cut]);
            from = cut;
        }
        check(&drive_connection(&limits, &pieces));
    }
}

fn head_of_len(len: usize) -> Vec<u8> {
    // "GET / HTTP/1.1\r\nHost: h\r\n" + "X: " + value + "\r\n" + "\r\n"
    let fixed = 16 + 9 + 3 + 2 + 2;
    let mut head = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    head.resize(head.len() + (len - fixed), b'v');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), len);
    head
}

#[test]
fn head_limit_exact_and_one_past() {
    for max in [64, 1000, 16 * 1024] {
        let limits = Limits { max_head_bytes: max, ..Limits::default() };
        assert!(parse_every_way(&limits, &head_of_len(max)).is_ok_and(|s| s.is_complete()));
        assert_eq!(parse_every_way(&limits, &head_of_len(max + 1)), Err(ParseError::HeadTooLarge));
    }
    // Leading empty lines count too, or they could be sent forever.
    let limits = Limits { max_head_bytes: 100, ..Limits::default() };
    assert_eq!(parse_every_way(&limits, &[b'\n'; 100]), Err(ParseError::HeadTooLarge));
    assert_eq!(parse_every_way(&limits, &[b'\n'; 99]), Ok(Status::Partial));
    // The body does not count against the head.
    let mut req = head_of_len(100 - "Content-Length: 300\r\n".len());
    req.truncate(req.len() - 2);
    req.extend_from_slice(b"Content-Length: 300\r\n\r\n");
    assert_eq!(req.len(), 100);
    req.resize(400, b'b');
    let Ok(Status::Complete(parsed, used)) = parse_every_way(&limits, &req) else {
        panic!("head at the limit with a body should parse");
    };
    assert_eq!((parsed.body().len(), used), (300, 400));
}

/// A request with `count` header fields: `Host` and `count - 1` others (HTTP/1.0, which may omit `Host`, for 0).
fn request_with_headers(count: usize) -> Vec<u8> {
    if count == 0 {
        return b"GET / HTTP/1.0\r\n\r\n".to_vec();
    }
    let mut req = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 1..count {
        req.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

#[test]
fn header_count_limit() {
    for max in [0, 3, 64] {
        let limits = Limits { max_headers: max, ..Limits::default() };
        let Ok(Status::Complete(req, _)) = parse_every_way(&limits, &request_with_headers(max)) else {
            panic!("{max} headers should parse");
        };
        assert_eq!(req.headers().len(), max);
        assert_eq!(parse_every_way(&limits, &request_with_headers(max + 1)), Err(ParseError::TooManyHeaders));
    }
    assert_eq!(
        parse_whole(&Limits::default(), &request_with_headers(65)).unwrap_err().status(),
        crate::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

fn request_with_target_len(len: usize) -> Vec<u8> {
    let mut req = b"GET /".to_vec();
    req.resize(4 + len, b'a');
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    req
}

#[test]
fn uri_limit_exact_and_one_past() {
    for max in [10, 100, 8 * 1024] {
        let limits = Limits { max_uri_bytes: max, ..Limits::default() };
        let Ok(Status::Complete(req, _)) = parse_every_way(&limits, &request_with_target_len(max)) else {
            panic!("target of {max} should parse");
        };
        assert_eq!(req.target().len(), max);
        assert_eq!(parse_every_way(&limits, &request_with_target_len(max + 1)), Err(ParseError::UriTooLong));
    }
}

#[test]
fn uri_limit_applies_before_the_line_ends() {
    let max = 100;
    let limits = Limits { max_uri_bytes: max, ..Limits::default() };
    // After the method's space: target plus " HTTP/1.1\r" may still come.
    let mut line = b"GET ".to_vec();
    line.resize(4 + max + 10, b'a');
    assert_eq!(parse_whole(&limits, &line), Ok(Status::Partial));
    line.push(b'a');
    assert_eq!(parse_whole(&limits, &line), Err(ParseError::UriTooLong));

    // No space yet: these bytes are the method, not a target; only the head limit bounds them.
    let line = vec![b'A'; max * 3];
    assert_eq!(parse_whole(&limits, &line), Ok(Status::Partial));
    let line = vec![b'A'; limits.max_head_bytes];
    assert_eq!(parse_whole(&limits, &line), Err(ParseError::HeadTooLarge));

    // A complete request line is measured exactly, before the headers end.
    let mut req = request_with_target_len(max + 1);
    req.truncate(req.len() - 2);
    assert_eq!(parse_whole(&limits, &req), Err(ParseError::UriTooLong));
}

/// Found by fuzzing: a method longer than the URI limit used to be refused as 414 when it arrived before its
/// space, but accepted when the whole request came at once.
#[test]
fn a_long_method_gives_the_same_result_however_it_is_split() {
    let limits = Limits { max_uri_bytes: 32, ..Limits::default() };
    let mut req = vec![b'E'; 67];
    req.extend_from_slice(b" / HTTP/1.1\r\nHost: h\r\n\r\n");
    match parse_every_way(&limits, &req) {
        Ok(Status::Complete(r, used)) => {
            assert_eq!(used, req.len());
            assert_eq!(r.method().as_str().len(), 67);
        }
        other => panic!("expected a complete request, got {other:?}"),
    }
}

fn post_with_body(len: usize) -> Vec<u8> {
    let mut req = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n").into_bytes();
    req.resize(req.len() + len, b'b');
    req
}

fn chunked_with_body(len: usize, chunk: usize) -> Vec<u8> {
    let mut req = TE_CHUNKED.to_vec();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk);
        crate::write_chunk(&mut req, &vec![b'c'; n]);
        left -= n;
    }
    req.extend_from_slice(crate::LAST_CHUNK);
    req
}

#[test]
fn body_limit_exact_and_one_past() {
    for max in [0, 1, 10, 1000] {
        let limits = Limits { max_body_bytes: max, ..Limits::default() };
        let Ok(Status::Complete(req, _)) = parse_every_way(&limits, &post_with_body(max)) else {
            panic!("body of {max} should parse");
        };
        assert_eq!(req.body().len(), max);
        assert_eq!(parse_every_way(&limits, &post_with_body(max + 1)), Err(ParseError::BodyTooLarge));

        for chunk in [1, 7, 4096] {
            let Ok(Status::Complete(req, _)) = parse_every_way(&limits, &chunked_with_body(max, chunk)) else {
                panic!("chunked body of {max} should parse");
            };
            assert_eq!(req.body().len(), max);
            assert_eq!(parse_every_way(&limits, &chunked_with_body(max + 1, chunk)), Err(ParseError::BodyTooLarge));
        }
    }
}

#[test]
fn body_limit_is_enforced_before_the_body_arrives() {
    let limits = Limits { max_body_bytes: 100, ..Limits::default() };
    let head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n";
    assert_eq!(parse_whole(&limits, head), Err(ParseError::BodyTooLarge));

    let mut req = TE_CHUNKED.to_vec();
    req.extend_from_slice(b"60\r\n");
    req.extend_from_slice(&[b'x'; 0x60]);
    req.extend_from_slice(b"\r\n5\r\n");
    assert_eq!(parse_whole(&limits, &req), Err(ParseError::BodyTooLarge));

    let mut default_limits = RequestParser::new(Limits::default());
    let huge = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n";
    assert_eq!(default_limits.parse(huge), Err(ParseError::BodyTooLarge));
}

#[test]
fn chunk_size_line_is_bounded() {
    let limits = Limits::default();
    let with_line = |line_len: usize| {
        // "5;" + extension + "\r\n" is `line_len` bytes in all.
        let mut req = TE_CHUNKED.to_vec();
        req.extend_from_slice(b"5;");
        req.resize(req.len() + line_len - 4, b'e');
        req.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        req
    };
    assert!(parse_every_way(&limits, &with_line(MAX_CHUNK_LINE)).is_ok_and(|s| s.is_complete()));
    assert_eq!(parse_every_way(&limits, &with_line(MAX_CHUNK_LINE + 1)), Err(ParseError::InvalidChunk));
}

#[test]
fn trailer_is_bounded_by_the_head_limit() {
    let limits = Limits { max_head_bytes: 200, ..Limits::default() };
    let with_trailer = |trailer_len: usize| {
        // "T: " + value + "\r\n" + final "\r\n" is `trailer_len` bytes.
        let mut req = TE_CHUNKED.to_vec();
        req.extend_from_slice(b"0\r\nT: ");
        req.resize(req.len() + trailer_len - 7, b't');
        req.extend_from_slice(b"\r\n\r\n");
        req
    };
    assert!(parse_every_way(&limits, &with_trailer(200)).is_ok_and(|s| s.is_complete()));
    assert_eq!(parse_every_way(&limits, &with_trailer(201)), Err(ParseError::HeadTooLarge));
}

#[test]
fn every_error_variant_through_parse() {
    use crate::StatusCode as S;
    let small = Limits { max_head_bytes: 80, max_headers: 3, max_uri_bytes: 8, max_body_bytes: 4 };
    let table: &[(&[u8], ParseError, S)] = &[
        (&head_of_len(81), ParseError::HeadTooLarge, S::REQUEST_HEADER_FIELDS_TOO_LARGE),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            ParseError::TooManyHeaders,
            S::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (b"GET /123456789 HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::UriTooLong, S::URI_TOO_LONG),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", ParseError::BodyTooLarge, S::PAYLOAD_TOO_LARGE),
        (b"GET / HTTP/1.1\r\nHost: h\r\nA\r\n\r\n", ParseError::Malformed("invalid header name"), S::BAD_REQUEST),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", ParseError::InvalidContentLength, S::BAD_REQUEST),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length:1\r\nTransfer-Encoding:chunked\r\n\r\n",
            ParseError::ConflictingFraming,
            S::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br\r\n\r\n",
            ParseError::UnsupportedTransferEncoding,
            S::NOT_IMPLEMENTED,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\ng\r\n",
            ParseError::InvalidChunk,
            S::BAD_REQUEST,
        ),
        (b"GET /%g HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::InvalidTarget("bad percent-encoding"), S::BAD_REQUEST),
        (b"GET / HTTP/3.0\r\n\r\n", ParseError::UnsupportedVersion, S::HTTP_VERSION_NOT_SUPPORTED),
        (b"GET / HTTP/1.1\r\n\r\n", ParseError::InvalidHost("missing Host header field"), S::BAD_REQUEST),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nOrigin: a\r\nOrigin: a\r\n\r\n",
            ParseError::DuplicateField("Origin"),
            S::BAD_REQUEST,
        ),
    ];
    for (input, want, status) in table {
        let got = parse_every_way(&small, input).unwrap_err();
        assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
        assert_eq!(got.status(), *status);
    }
}

#[test]
fn parser_resets_after_complete_and_error() {
    let mut parser = RequestParser::new(Limits::default());
    assert_eq!(parser.limits(), &Limits::default());
    assert_eq!(parser.parse(b"GET / HTTP/2.0\r\n\r\n"), Err(ParseError::UnsupportedVersion));
    assert!(parser.parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap().is_complete());
    assert!(parser.parse(b"GET /").unwrap().is_partial());
    parser.reset();
    assert!(parser.parse(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap().is_complete());
}

#[test]
fn shrinking_buffer_restarts_instead_of_panicking() {
    let mut parser = RequestParser::new(Limits::default());
    assert!(parser.parse(b"GET /first HTTP/1.1\r\nHost").unwrap().is_partial());
    let Status::Complete(req, _) = parser.parse(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n").unwrap() else {
        panic!("should parse");
    };
    assert_eq!(req.path(), "/b");

    let body_head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab";
    assert!(parser.parse(body_head).unwrap().is_partial());
    assert!(parser.in_body());
    assert!(parser.parse(b"GET").unwrap().is_partial());
    assert!(!parser.in_body());

    let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
    assert!(parser.parse(chunked).unwrap().is_partial());
    assert!(parser.parse(&chunked[..10]).unwrap().is_partial());
    assert!(!parser.in_body());
}

#[test]
fn expect_continue_and_in_body() {
    let mut parser = RequestParser::new(Limits::default());
    let head = b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
    assert!(!parser.expects_continue());
    assert!(!parser.in_body());
    assert!(parser.parse(&head[..10]).unwrap().is_partial());
    assert!(!parser.expects_continue());
    assert!(!parser.in_body());

    assert!(parser.parse(head).unwrap().is_partial());
    assert!(parser.expects_continue());
    assert!(parser.in_body());
    assert!(parser.take_continue());
    assert!(!parser.take_continue());
    assert!(parser.expects_continue());

    let mut full = head.to_vec();
    full.extend_from_slice(b"ab");
    assert!(parser.parse(&full).unwrap().is_partial());
    full.push(b'c');
    let Status::Complete(req, used) = parser.parse(&full).unwrap() else {
        panic!("should complete");
    };
    assert_eq!((req.body(), used), (&b"abc"[..], full.len()));
    assert!(!parser.expects_continue());
    assert!(!parser.in_body());

    // Not for HTTP/1.0, nor without a body to wait for.
    for head in [
        &b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
    ] {
        let mut parser = RequestParser::new(Limits::default());
        assert!(parser.parse(head).unwrap().is_partial());
        assert!(parser.in_body());
        assert!(!parser.expects_continue());
        assert!(!parser.take_continue());
    }
    let mut parser = RequestParser::new(Limits::default());
    let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(parser.parse(chunked).unwrap().is_partial());
    assert!(parser.expects_continue());
    let no_body = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n";
    let mut parser = RequestParser::new(Limits::default());
    assert!(parser.parse(no_body).unwrap().is_complete());
    assert!(!parser.expects_continue());
}

#[test]
fn head_search_is_linear() {
    // A head of exactly 16 KiB with the maximum number of headers.
    let mut head = b"GET /stream HTTP/1.1\r\nHost: h\r\n".to_vec();
    let target = 16 * 1024;
    for i in 0..62 {
        head.extend_from_slice(format!("X-Field-{i:02}: ").as_bytes());
        head.resize(head.len() + 240, b'v');
        head.extend_from_slice(b"\r\n");
    }
    let last = target - head.len() - 2;
    let filler = last - "X-Last: \r\n".len();
    head.extend_from_slice(b"X-Last: ");
    head.resize(head.len() + filler, b'w');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), target);

    let n = head.len();
    let mut parser = RequestParser::new(Limits::default());
    for end in 1..n {
        assert!(parser.parse(&head[..end]).unwrap().is_partial());
    }
    let Status::Complete(req, used) = parser.parse(&head).unwrap() else {
        panic!("should complete");
    };
    assert_eq!((used, req.headers().len()), (n, 64));
    let examined = parser.examined();
    assert!(examined < 4 * n, "examined {examined} bytes for a {n}-byte head");
    assert!(examined >= n);
}

#[test]
fn chunked_decoding_is_linear() {
    let mut req = TE_CHUNKED.to_vec();
    for _ in 0..50 {
        req.extend_from_slice(b"10;");
        req.resize(req.len() + 1000, b'e');
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(&[b'd'; 16]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nT: ");
    req.resize(req.len() + 10_000, b't');
    req.extend_from_slice(b"\r\n\r\n");

    let n = req.len();
    let mut parser = RequestParser::new(Limits::default());
    for end in 1..n {
        assert!(parser.parse(&req[..end]).unwrap().is_partial());
    }
    let Status::Complete(parsed, used) = parser.parse(&req).unwrap() else {
        panic!("should complete");
    };
    assert_eq!((used, parsed.body().len()), (n, 50 * 16));
    let examined = parser.examined();
    assert!(examined < 4 * n, "examined {examined} bytes for {n} bytes");
}

#[test]
fn no_input_panics() {
    let seeds: Vec<&[u8]> = cases().iter().map(|case| case.input).collect();
    let alphabet =
        b"GETPOST /?%&=+#:;,HTP1.0\r\n\r\n\t chunked Content-Length Transfer-Encoding 0123456789abcdefXYZ\x00\xff";
    let limit_sets = [
        Limits::default(),
        Limits { max_head_bytes: 40, max_headers: 2, max_uri_bytes: 6, max_body_bytes: 5 },
        Limits { max_head_bytes: 0, max_headers: 0, max_uri_bytes: 0, max_body_bytes: 0 },
    ];
    let mut rng = XorShift::new(0x5eed);
    for round in 0..4000 {
        let input: Vec<u8> = if round % 2 == 0 {
            let len = rng.below(120);
            (0..len)
                .map(|_| if rng.below(8) == 0 { rng.next() as u8 } else { alphabet[rng.below(alphabet.len())] })
                .collect()
        } else {
            let mut input = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..rng.below(4) + 1 {
                let at = rng.below(input.len() + 1);
                match rng.below(3) {
                    0 if at < input.len() => input[at] = rng.next() as u8,
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.insert(at, alphabet[rng.below(alphabet.len())]),
                }
            }
            input
        };
        let limits = &limit_sets[rng.below(limit_sets.len())];
        let _ = parse_whole(limits, &input);
        let cuts = random_cuts(&mut rng, input.len());
        let mut parser = RequestParser::new(limits.clone());
        let (_, _) = feed(&mut parser, &input, &cuts);
        let mut rest = &input[..];
        while let Ok(Status::Complete(_, used)) = parser.parse(rest) {
            assert!(used > 0 && used <= rest.len());
            rest = &rest[used..];
        }
    }
}

// ---------------------------------------------------------------------------
// Host and fields that must not repeat
// ---------------------------------------------------------------------------

#[test]
fn host_is_required_once_and_valid() {
    use ParseError::InvalidHost;
    /// The request, and the host and port it names or the error.
    type HostCase = (&'static [u8], Result<(Option<&'static str>, Option<u16>), ParseError>);
    let table: &[HostCase] = &[
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", Ok((Some("example.com"), None))),
        (b"GET / HTTP/1.1\r\nhost:  Example.COM:8000 \r\n\r\n", Ok((Some("Example.COM"), Some(8000)))),
        (b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", Ok((Some("[::1]"), Some(8000)))),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:\r\n\r\n", Ok((Some("127.0.0.1"), None))),
        (b"GET / HTTP/1.0\r\n\r\n", Ok((None, None))),
        (b"GET / HTTP/1.0\r\nHost: old.test\r\n\r\n", Ok((Some("old.test"), None))),
        // Absolute-form: the target's authority wins over Host (RFC 9112 §3.2.2), but Host is still required.
        (b"GET http://target.test:81/ HTTP/1.1\r\nHost: other.test\r\n\r\n", Ok((Some("target.test"), Some(81)))),
        (b"GET http://target.test/ HTTP/1.1\r\n\r\n", Err(InvalidHost("missing Host header field"))),
        (b"GET / HTTP/1.1\r\n\r\n", Err(InvalidHost("missing Host header field"))),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Err(InvalidHost("more than one Host header field"))),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nhost: b\r\n\r\n", Err(InvalidHost("more than one Host header field"))),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", Err(InvalidHost("more than one Host header field"))),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Err(InvalidHost("empty host"))),
        (b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", Err(InvalidHost("empty host"))),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(InvalidHost("invalid host"))),
        (b"GET / HTTP/1.1\r\nHost: a,b c\r\n\r\n", Err(InvalidHost("invalid host"))),
        (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", Err(InvalidHost("invalid host"))),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Err(InvalidHost("invalid host"))),
        (b"GET / HTTP/1.1\r\nHost: \xffa\r\n\r\n", Err(InvalidHost("invalid host"))),
        (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", Err(InvalidHost("invalid port"))),
        (b"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", Err(InvalidHost("invalid port"))),
        (b"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", Err(InvalidHost("invalid port"))),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", Err(InvalidHost("unclosed IP literal"))),
        (b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", Err(InvalidHost("invalid IP literal"))),
        (b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n", Err(InvalidHost("invalid host"))),
        (
            b"GET http://user@target.test/ HTTP/1.1\r\nHost: target.test\r\n\r\n",
            Err(ParseError::InvalidTarget("invalid authority in absolute-form target")),
        ),
    ];
    for (input, want) in table {
        let shown = String::from_utf8_lossy(input);
        let got = parse_every_way(&Limits::default(), input).map(|status| match status {
            Status::Complete(req, _) => (req.host().map(str::to_owned), req.port()),
            Status::Partial => panic!("{shown}: partial"),
        });
        let want = want.clone().map(|(host, port)| (host.map(str::to_owned), port));
        assert_eq!(got, want, "{shown}");
        if let Err(err) = &got {
            assert_eq!(err.status(), crate::StatusCode::BAD_REQUEST);
        }
    }
}

#[test]
fn singleton_fields_must_not_repeat() {
    for name in SINGLETON_FIELDS {
        let once = format!("POST / HTTP/1.1\r\nHost: h\r\n{name}: a\r\n\r\n");
        assert!(parse_every_way(&Limits::default(), once.as_bytes()).is_ok_and(|s| s.is_complete()), "{once}");
        // Repeated, in any case, apart or together, with equal or different values.
        for (first, second) in [("a", "a"), ("a", "b"), ("", "a")] {
            let lower = name.to_ascii_lowercase();
            let twice = format!("POST / HTTP/1.1\r\n{name}: {first}\r\nHost: h\r\n{lower}: {second}\r\n\r\n");
            assert_eq!(
                parse_every_way(&Limits::default(), twice.as_bytes()),
                Err(ParseError::DuplicateField(name)),
                "{twice}"
            );
        }
    }
    assert!(SINGLETON_FIELDS.contains(&"Authorization"));
    // List fields, and fields the server does not read, may repeat.
    let lists = b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\nX-Any: 1\r\nX-Any: 2\r\n\r\n";
    assert!(parse_every_way(&Limits::default(), lists).is_ok_and(|s| s.is_complete()));
    assert_eq!(ParseError::DuplicateField("Authorization").to_string(), "more than one Authorization header field");
}

#[test]
fn chunk_extensions_are_checked_in_requests() {
    let with_line = |line: &str| {
        format!("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nhello\r\n0\r\n\r\n")
    };
    for good in ["5;a", "5 ; a = b ; c=\"d \\\" e\"", "5;a=\"\""] {
        let req = with_line(good);
        assert!(parse_every_way(&Limits::default(), req.as_bytes()).is_ok_and(|s| s.is_complete()), "{good}");
    }
    for bad in ["5;a=\"x", "5;;; a b", "5;", "5;a b", "5;a=b c", "5;a ", "5;=x"] {
        let req = with_line(bad);
        assert_eq!(parse_every_way(&Limits::default(), req.as_bytes()), Err(ParseError::InvalidChunk), "{bad}");
    }
}

// ---------------------------------------------------------------------------
// Head first
// ---------------------------------------------------------------------------

const LENGTH_HEAD: &[u8] = b"POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
const CHUNKED_HEAD: &[u8] =
    b"POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn the_head_comes_before_any_body_byte_is_read() {
    let table: &[(&[u8], AnnouncedBody)] = &[
        (LENGTH_HEAD, AnnouncedBody::Length(10)),
        (CHUNKED_HEAD, AnnouncedBody::Chunked),
        (b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", AnnouncedBody::None),
        (b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n", AnnouncedBody::None),
    ];
    for &(head, announced) in table {
        let mut parser = RequestParser::new(Limits::default());
        let mut inbox = head.to_vec();
        inbox.extend_from_slice(b"0123456789");
        let (parsed, used) = parser.parse_head_first(&inbox).unwrap();
        let Parsed::Head(request, got) = parsed else { panic!("{parsed:?}") };
        assert_eq!((request.path(), got, used), ("/p", announced, head.len()));
        assert!(request.body().is_empty());
        inbox.drain(..used);
        if announced == AnnouncedBody::None {
            assert!(!parser.in_body());
            continue;
        }
        // Undecided: nothing is read, however often it is asked, and no 100 Continue is due.
        for _ in 0..3 {
            assert_eq!(parser.parse_head_first(&inbox), Ok((Parsed::Partial, 0)));
            assert!(parser.in_body());
            assert!(!parser.expects_continue());
            assert!(!parser.take_continue());
            assert_eq!(parser.body_capacity(), 0);
        }
    }
}

#[test]
fn continue_is_due_only_once_the_body_is_accepted() {
    for head in [LENGTH_HEAD, CHUNKED_HEAD] {
        let mut parser = RequestParser::new(Limits::default());
        assert!(matches!(parser.parse_head_first(head), Ok((Parsed::Head(..), _))));
        assert!(!parser.take_continue());
        parser.accept_body(100).unwrap();
        assert!(parser.expects_continue());
        assert!(parser.take_continue());
        assert!(!parser.take_continue(), "once");
        // Refused instead: never due.
        let mut parser = RequestParser::new(Limits::default());
        assert!(matches!(parser.parse_head_first(head), Ok((Parsed::Head(..), _))));
        parser.refuse_body();
        assert!(!parser.take_continue() && !parser.expects_continue());
    }
    // HTTP/1.0 clients do not wait for it.
    let mut parser = RequestParser::new(Limits::default());
    let head = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    assert!(matches!(parser.parse_head_first(head), Ok((Parsed::Head(..), _))));
    parser.accept_body(100).unwrap();
    assert!(!parser.take_continue());
}

#[test]
fn accept_body_takes_a_limit_of_its_own() {
    // A Content-Length over the route's limit is refused at once, before any body byte.
    let mut parser = RequestParser::new(Limits::default());
    let (parsed, _) = parser.parse_head_first(LENGTH_HEAD).unwrap();
    assert!(matches!(parsed, Parsed::Head(_, AnnouncedBody::Length(10))));
    assert_eq!(parser.accept_body(9), Err(ParseError::BodyTooLarge));
    assert!(!parser.in_body() && parser.body_capacity() == 0);
    // The parser reset itself: the same buffer parses as a fresh request.
    assert!(matches!(parser.parse_head_first(LENGTH_HEAD), Ok((Parsed::Head(..), _))));
    assert_eq!(parser.accept_body(10), Ok(()));

    // Chunked: refused as soon as a size line shows the body will not fit.
    let mut parser = RequestParser::new(Limits::default());
    let (_, used) = parser.parse_head_first(CHUNKED_HEAD).unwrap();
    assert_eq!(used, CHUNKED_HEAD.len());
    parser.accept_body(8).unwrap();
    assert_eq!(parser.parse_head_first(b"5\r\nhello\r\n"), Ok((Parsed::Partial, 10)));
    assert_eq!(parser.parse_head_first(b"4\r\n"), Err(ParseError::BodyTooLarge));
    assert_eq!(parser.body_capacity(), 0);

    // The limit never goes past Limits::max_body_bytes.
    let limits = Limits { max_body_bytes: 9, ..Limits::default() };
    let mut parser = RequestParser::new(limits);
    assert!(matches!(parser.parse_head_first(CHUNKED_HEAD), Ok((Parsed::Head(..), _))));
    parser.accept_body(usize::MAX).unwrap();
    assert_eq!(parser.parse_head_first(b"a\r\n"), Err(ParseError::BodyTooLarge));

    // Without a head waiting, accepting and refusing do nothing.
    let mut parser = RequestParser::new(Limits::default());
    assert_eq!(parser.accept_body(1), Ok(()));
    parser.refuse_body();
    assert!(matches!(parser.parse_head_first(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"), Ok((Parsed::Head(..), 27))));
}

#[test]
fn a_refused_body_is_never_read_as_a_request() {
    // The "body" holds a whole request: after a refusal it must not come out as one.
    let smuggled = b"GET /admin HTTP/1.1\r\nHost: h\r\n\r\n";
    let head = format!("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", smuggled.len());
    for accept_first in [false, true] {
        let mut parser = RequestParser::new(Limits::default());
        let mut inbox = head.as_bytes().to_vec();
        let (_, used) = parser.parse_head_first(&inbox).unwrap();
        inbox.drain(..used);
        if accept_first {
            parser.accept_body(1000).unwrap();
            inbox.extend_from_slice(&smuggled[..5]);
            let (_, used) = parser.parse_head_first(&inbox).unwrap();
            inbox.drain(..used);
            assert!(parser.body_capacity() > 0);
        }
        parser.refuse_body();
        assert_eq!(parser.body_capacity(), 0, "what was buffered is freed");
        inbox.extend_from_slice(smuggled);
        inbox.extend_from_slice(smuggled);
        for _ in 0..3 {
            assert_eq!(parser.parse_head_first(&inbox), Ok((Parsed::Partial, 0)));
            assert_eq!(parser.parse(&inbox), Ok(Status::Partial));
        }
        // Only an explicit reset starts over.
        parser.reset();
        assert!(matches!(parser.parse_head_first(smuggled), Ok((Parsed::Head(..), _))));
    }
}

#[test]
fn body_memory_is_bounded_by_the_announced_length_and_released() {
    let body = vec![b'b'; 1000];
    let mut rng = XorShift::new(9);
    for _ in 0..50 {
        // Content-Length: the buffer never holds more than the announced 1000 bytes.
        let mut parser = RequestParser::new(Limits::default());
        let head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n";
        assert!(matches!(parser.parse_head_first(head), Ok((Parsed::Head(..), _))));
        parser.accept_body(1 << 20).unwrap();
        let mut rest = &body[..];
        loop {
            let piece = rest.len().min(rng.below(300) + 1);
            let (parsed, used) = parser.parse_head_first(&rest[..piece]).unwrap();
            assert_eq!(used, piece, "body bytes are taken as they come");
            rest = &rest[used..];
            if let Parsed::Body(got) = parsed {
                assert_eq!(got, body);
                assert!(got.capacity() <= 1000, "capacity {}", got.capacity());
                break;
            }
            assert!(parser.body_capacity() <= 1000, "capacity {}", parser.body_capacity());
        }
        assert_eq!(parser.body_capacity(), 0);

        // Chunked: never more than the accepted limit.
        let mut parser = RequestParser::new(Limits::default());
        assert!(matches!(parser.parse_head_first(&TE_CHUNKED_WITH_HOST), Ok((Parsed::Head(..), _))));
        parser.accept_body(1000).unwrap();
        let mut wire = Vec::new();
        for piece in body.chunks(rng.below(200) + 1) {
            crate::write_chunk(&mut wire, piece);
        }
        wire.extend_from_slice(crate::LAST_CHUNK);
        let mut rest = &wire[..];
        loop {
            let piece = rest.len().min(rng.below(300) + 1);
            let (parsed, used) = parser.parse_head_first(&rest[..piece]).unwrap();
            rest = &rest[used..];
            if let Parsed::Body(got) = parsed {
                assert_eq!((got.len(), rest.len()), (1000, 0));
                break;
            }
            assert!(parser.body_capacity() <= 1000, "capacity {}", parser.body_capacity());
        }
        assert_eq!(parser.body_capacity(), 0);
    }
}

const TE_CHUNKED_WITH_HOST: [u8; 57] = *b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn parse_releases_the_body_buffer_too() {
    let mut parser = RequestParser::new(Limits::default());
    let mut req = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 60]);
    assert!(parser.parse(&req).unwrap().is_partial());
    assert!(parser.body_capacity() >= 60);
    req.extend_from_slice(&[b'x'; 40]);
    assert!(parser.parse(&req).unwrap().is_complete());
    assert_eq!(parser.body_capacity(), 0);
    // And after an error part-way through a body.
    let mut chunked = TE_CHUNKED_WITH_HOST.to_vec();
    chunked.extend_from_slice(b"5\r\nhello\r\n");
    assert!(parser.parse(&chunked).unwrap().is_partial());
    assert!(parser.body_capacity() >= 5);
    chunked.extend_from_slice(b"zz\r\n");
    assert_eq!(parser.parse(&chunked), Err(ParseError::InvalidChunk));
    assert_eq!(parser.body_capacity(), 0);
}

#[test]
fn switching_between_the_two_ways_starts_over() {
    let req = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    // parse mid-body, then parse_head_first: the half-read request is forgotten, not finished wrongly.
    let mut parser = RequestParser::new(Limits::default());
    assert!(parser.parse(&req[..req.len() - 1]).unwrap().is_partial());
    let (parsed, used) = parser.parse_head_first(req).unwrap();
    assert!(matches!(parsed, Parsed::Head(_, AnnouncedBody::Length(3))), "{parsed:?}");
    assert_eq!(used, req.len() - 3);
    // parse_head_first mid-body, then parse: the same.
    parser.accept_body(3).unwrap();
    assert_eq!(parser.parse_head_first(b"ab"), Ok((Parsed::Partial, 2)));
    let Ok(Status::Complete(request, used)) = parser.parse(req) else { panic!("a fresh parse of the whole") };
    assert_eq!((request.body(), used), (&b"abc"[..], req.len()));
}

#[test]
fn pipelined_requests_head_first() {
    let stream: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
GET /d HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut rng = XorShift::new(3);
    for _ in 0..200 {
        let cuts = random_cuts(&mut rng, stream.len());
        let mut parser = RequestParser::new(Limits::default());
        let (mut inbox, mut from, mut seen) = (Vec::new(), 0, Vec::new());
        let mut waiting = None;
        for cut in cuts {
            inbox.extend_from_slice(&stream[from..cut]);
            from = cut;
            loop {
                let (parsed, used) = parser.parse_head_first(&inbox).unwrap();
                inbox.drain(..used);
                match parsed {
                    Parsed::Partial => break,
                    Parsed::Head(request, AnnouncedBody::None) => seen.push((request.path().to_owned(), Vec::new())),
                    Parsed::Head(request, _) => {
                        parser.accept_body(10).unwrap();
                        waiting = Some(request);
                    }
                    Parsed::Body(body) => seen.push((waiting.take().unwrap().path().to_owned(), body)),
                }
            }
        }
        assert!(inbox.is_empty());
        let paths: Vec<(&str, &[u8])> = seen.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        assert_eq!(paths, [("/a", &b""[..]), ("/b", b"abc"), ("/c", b"de"), ("/d", b"")]);
    }
}
