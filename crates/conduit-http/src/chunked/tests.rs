use super::*;
use crate::test_rng::XorShift;

use ChunkedErrorKind::*;

/// What feeding a whole input gave: the data handed out, and whether the
/// body completed (with the bytes it used), is still incomplete, or failed.
type Outcome = (Vec<u8>, Result<Option<usize>, ChunkedErrorKind>);

/// Feeds `wire` to a fresh decoder in the pieces ending at `cuts` (ascending,
/// the last one `wire.len()`).
fn feed(config: ChunkedConfig, wire: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = ChunkedDecoder::new(config);
    let mut data = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        let mut input = &wire[from..cut];
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(run)) => {
                    assert!(!run.is_empty(), "empty run");
                    data.extend_from_slice(run);
                }
                Ok(None) => break,
                Err(err) => return (data, Err(err.kind())),
            }
        }
        if decoder.is_done() {
            return (data, Ok(Some(cut - input.len())));
        }
        assert!(input.is_empty(), "input left before the end of the body");
        from = cut;
    }
    (data, Ok(None))
}

/// Decodes `wire` whole, byte by byte, split in two at every point and in
/// pieces of every size, asserting that all agree; returns the common outcome.
/// (Inputs of more than 300 bytes: at every 97th point and piece size.)
fn decode_every_way(config: ChunkedConfig, wire: &[u8]) -> Outcome {
    let whole = feed(config, wire, &[wire.len()]);
    let shown = String::from_utf8_lossy(wire);
    let bytewise: Vec<usize> = (1..=wire.len()).chain(wire.is_empty().then_some(0)).collect();
    assert_eq!(feed(config, wire, &bytewise), whole, "byte by byte: {shown:?}");
    let step = if wire.len() > 300 { 97 } else { 1 };
    for at in (0..wire.len()).step_by(step) {
        assert_eq!(feed(config, wire, &[at, wire.len()]), whole, "split at {at}: {shown:?}");
    }
    for piece in (2..wire.len()).step_by(step) {
        let mut cuts: Vec<usize> = (piece..wire.len()).step_by(piece).collect();
        cuts.push(wire.len());
        assert_eq!(feed(config, wire, &cuts), whole, "pieces of {piece}: {shown:?}");
    }
    whole
}

fn strict() -> ChunkedConfig {
    ChunkedConfig::strict()
}

fn lenient() -> ChunkedConfig {
    ChunkedConfig::lenient()
}

#[test]
fn decodes_in_both_modes() {
    // (wire, data, the bytes left after the body if it completes)
    type Case = (&'static [u8], &'static [u8], Option<&'static [u8]>);
    let cases: &[Case] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello", Some(b"")),
        (b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", b"abc0123456789abcdef", Some(b"")),
        (b"A\r\n0123456789\r\n0\r\n\r\nHTTP/1.1", b"0123456789", Some(b"HTTP/1.1")),
        (b"a;name=value;x=\"q\"\r\n0123456789\r\n0\r\n\r\n", b"0123456789", Some(b"")),
        (b"2 \t;ext\r\nhi\r\n0\r\n\r\n", b"hi", Some(b"")),
        (b"2 ; a = b ;c= \"x\\\"y;\" \t; d\r\nhi\r\n0;last\r\n\r\n", b"hi", Some(b"")),
        (b"1;e=\"\"\r\nx\r\n0;q=\"\t\x80\xff\\\x80\"\r\n\r\n", b"x", Some(b"")),
        (b"000002\r\nhi\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\n", b"hi", Some(b"")),
        (b"0\r\nX:\r\nY: a\tb \xff\r\n\r\n", b"", Some(b"")),
        (b"00000000000000000000002\r\nhi\r\n0\r\n\r\n", b"hi", Some(b"")),
        (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r", Some(b"")),
        (b"0\r\n\r\n", b"", Some(b"")),
        (b"0\r\n\r\n0\r\n\r\n", b"", Some(b"0\r\n\r\n")),
        (b"4\r\ndata", b"data", None),
        (b"4\r\ndata\r", b"data", None),
        (b"4\r\ndata\r\n", b"data", None),
        (b"4;ext", b"", None),
        (b"0\r\nX: 1\r\n", b"", None),
        (b"0\r\nX: 1\r\n\r", b"", None),
        (b"c\r\ndata: \xc3\xa9\r\n\r\n\r\n", b"data: \xc3\xa9\r\n\r\n", None),
        (b"", b"", None),
    ];
    for &(wire, data, left) in cases {
        for config in [strict(), lenient()] {
            let got = decode_every_way(config, wire);
            let used = left.map(|left| wire.len() - left.len());
            assert_eq!(got, (data.to_vec(), Ok(used)), "{:?} {config:?}", String::from_utf8_lossy(wire));
        }
    }
}

#[test]
fn bare_lf_only_when_lenient() {
    type Case = (&'static [u8], &'static [u8], usize);
    let cases: &[Case] = &[
        (b"2\nhi\n0\n\n", b"hi", 0),
        (b"2\r\nhi\n0\r\n\r\n", b"hi", 2),
        (b"2\r\nhi\r\n0\n\r\n", b"hi", 2),
        (b"2\r\nhi\r\n0\r\nX: 1\n\r\n", b"hi", 2),
        (b"2\r\nhi\r\n0\r\nX: 1\r\n\n", b"hi", 2),
        (b"2;ext\nhi\r\n0\r\n\r\n", b"hi", 0),
    ];
    for &(wire, data, strict_data) in cases {
        let shown = String::from_utf8_lossy(wire);
        assert_eq!(decode_every_way(lenient(), wire), (data.to_vec(), Ok(Some(wire.len()))), "{shown:?}");
        assert_eq!(decode_every_way(strict(), wire), (data[..strict_data].to_vec(), Err(BareLf)), "{shown:?}");
    }
}

#[test]
fn rejects_bad_framing_in_both_modes() {
    let cases: &[(&[u8], ChunkedErrorKind)] = &[
        (b"\r\n", MissingSize),
        (b";ext\r\n", MissingSize),
        (b"g\r\n", MissingSize),
        (b"-1\r\n", MissingSize),
        (b" 5\r\n", MissingSize),
        (b"\r5\r\n", MissingSize),
        (b"12345678901234567\r\n", SizeOverflow),
        (b"1ffffffffffffffff;x\r\n", SizeOverflow),
        (b"5x\r\nhello\r\n", InvalidSizeLine),
        (b"5 \r\n", InvalidSizeLine),
        (b"5\t\r\n", InvalidSizeLine),
        (b"5 x\r\n", InvalidSizeLine),
        (b"5 5\r\n", InvalidSizeLine),
        (b"5\r\r\n", InvalidSizeLine),
        (b"5\rhello\r\n", InvalidSizeLine),
        (b"5\r\nhello!\r\n", DataNotTerminated),
        (b"5\r\nhello\rx", DataNotTerminated),
        (b"5\r\nhello\r\r\n", DataNotTerminated),
        (b"0\r\nno colon\r\n\r\n", InvalidTrailer),
        (b"0\r\n: empty name\r\n\r\n", InvalidTrailer),
        (b"0\r\n folded: x\r\n\r\n", InvalidTrailer),
        (b"0\r\nBad Name: x\r\n\r\n", InvalidTrailer),
        (b"0\r\nX: a\x00b\r\n\r\n", InvalidTrailer),
        (b"0\r\nX: y\rz\r\n\r\n", InvalidTrailer),
        (b"0\r\nX\r: y\r\n\r\n", InvalidTrailer),
        (b"0\r\n\r\r\n", InvalidTrailer),
    ];
    for &(wire, kind) in cases {
        for config in [strict(), lenient()] {
            let (_, outcome) = decode_every_way(config, wire);
            assert_eq!(outcome, Err(kind), "{:?} {config:?}", String::from_utf8_lossy(wire));
        }
    }
}

/// RFC 9112 §7.1.1: `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`, held to in strict mode;
/// lenient mode only refuses control characters after the `;`.
#[test]
fn extensions_follow_their_grammar_when_strict() {
    // (size line without its CRLF, strict verdict)
    let cases: &[(&[u8], Result<(), ChunkedErrorKind>)] = &[
        (b"1;a", Ok(())),
        (b"1 \t; a", Ok(())),
        (b"1;a=b", Ok(())),
        (b"1;a = b", Ok(())),
        (b"1;a=\"\"", Ok(())),
        (b"1;a=\"b c;d=e\"", Ok(())),
        (b"1;a=\"\\\"\\\\\"", Ok(())),
        (b"1;a=\"\x80\xff\"", Ok(())),
        (b"1;a=\"x\" ;b", Ok(())),
        (b"1;a;b=c;d", Ok(())),
        (b"1;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~", Ok(())),
        (b"1;a=\"x", Err(InvalidExtension)),
        (b"1;;; a b", Err(InvalidExtension)),
        (b"1;", Err(InvalidExtension)),
        (b"1;;a", Err(InvalidExtension)),
        (b"1; ", Err(InvalidExtension)),
        (b"1;a ", Err(InvalidExtension)),
        (b"1;a b", Err(InvalidExtension)),
        (b"1;a=", Err(InvalidExtension)),
        (b"1;a= ", Err(InvalidExtension)),
        (b"1;=b", Err(InvalidExtension)),
        (b"1;a==b", Err(InvalidExtension)),
        (b"1;a=b c", Err(InvalidExtension)),
        (b"1;a=b ", Err(InvalidExtension)),
        (b"1;a=b\"", Err(InvalidExtension)),
        (b"1;a=\"x\"y", Err(InvalidExtension)),
        (b"1;a=\"x\" ", Err(InvalidExtension)),
        (b"1;a=\"x\\\"", Err(InvalidExtension)),
        (b"1;a=(b)", Err(InvalidExtension)),
        (b"1;a/b", Err(InvalidExtension)),
        (b"1;a,b", Err(InvalidExtension)),
        (b"1;\xff", Err(InvalidExtension)),
        (b"1;a=\xff", Err(InvalidExtension)),
        (b"1;a=\"\x00\"", Err(InvalidExtension)),
        (b"1;a=\"\\\x01\"", Err(InvalidExtension)),
        (b"1;a\rb", Err(InvalidExtension)),
        (b"1;a\x7f", Err(InvalidExtension)),
    ];
    for &(line, strict_verdict) in cases {
        let wire = [line, b"\r\nx\r\n0\r\n\r\n"].concat();
        let shown = String::from_utf8_lossy(&wire);
        let want = match strict_verdict {
            Ok(()) => (b"x".to_vec(), Ok(Some(wire.len()))),
            Err(kind) => (Vec::new(), Err(kind)),
        };
        assert_eq!(decode_every_way(strict(), &wire), want, "strict {shown:?}");
        // Lenient mode takes everything after the `;` but control characters.
        let has_ctl = line.iter().any(|&b| is_ctl(b));
        let want = if has_ctl { (Vec::new(), Err(InvalidSizeLine)) } else { (b"x".to_vec(), Ok(Some(wire.len()))) };
        assert_eq!(decode_every_way(lenient(), &wire), want, "lenient {shown:?}");
    }
}

/// A line's syntax is judged when its line end arrives, so that the outcome
/// does not depend on the split; the bytes before it are no error yet.
#[test]
fn line_errors_wait_for_the_line_end() {
    for wire in [&b"zz"[..], b"5 ", b"5;\x01", b"5\rx", b"0\r\nno colon", b"0\r\nX: \x00"] {
        for config in [strict(), lenient()] {
            assert_eq!(decode_every_way(config, wire), (Vec::new(), Ok(None)), "{:?}", String::from_utf8_lossy(wire));
        }
    }
    // After the data, the first wrong byte is enough.
    assert_eq!(decode_every_way(strict(), b"1\r\nab"), (b"a".to_vec(), Err(DataNotTerminated)));
    assert_eq!(decode_every_way(strict(), b"1\r\na\n"), (b"a".to_vec(), Err(BareLf)));
}

#[test]
fn size_line_bound_exact_and_one_past() {
    // "5;" + extension + "\r\n" is `len` bytes in all.
    let with_line = |len: usize| [b"5;".as_slice(), &vec![b'e'; len - 4], b"\r\nhello\r\n0\r\n\r\n"].concat();
    for max in [5, 10, ChunkedConfig::DEFAULT_MAX_SIZE_LINE] {
        for config in [strict(), lenient()] {
            let config = config.with_max_size_line(max);
            let wire = with_line(max);
            assert_eq!(decode_every_way(config, &wire), (b"hello".to_vec(), Ok(Some(wire.len()))));
            let wire = with_line(max + 1);
            assert_eq!(decode_every_way(config, &wire), (Vec::new(), Err(SizeLineTooLong)));
            // Refused as soon as the bound is reached without a line end, not on the next byte.
            assert_eq!(feed(config, &wire[..max], &[max]), (Vec::new(), Err(SizeLineTooLong)));
            assert_eq!(feed(config, &wire[..max - 1], &[max - 1]), (Vec::new(), Ok(None)));
        }
    }
    // The bound applies to every line, not to the body.
    let config = strict().with_max_size_line(3);
    assert_eq!(decode_every_way(config, b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n").1, Ok(Some(25)));
    assert_eq!(decode_every_way(config, b"5\r\nhello\r\n05\r\n").1, Err(SizeLineTooLong));
    // A bound of zero refuses every line before its first byte.
    assert_eq!(feed(strict().with_max_size_line(0), b"", &[0]), (Vec::new(), Err(SizeLineTooLong)));
}

#[test]
fn trailer_bound_exact_and_one_past() {
    // "T: " + value + "\r\n" + final "\r\n" is `len` bytes.
    let with_trailer = |len: usize| [b"1\r\nx\r\n0\r\nT: ".as_slice(), &vec![b't'; len - 7], b"\r\n\r\n"].concat();
    for max in [7, 200, ChunkedConfig::DEFAULT_MAX_TRAILER_BYTES] {
        for config in [strict(), lenient()] {
            let config = config.with_max_trailer_bytes(max);
            let wire = with_trailer(max);
            assert_eq!(decode_every_way(config, &wire), (b"x".to_vec(), Ok(Some(wire.len()))));
            assert_eq!(decode_every_way(config, &with_trailer(max + 1)), (b"x".to_vec(), Err(TrailersTooLarge)));
        }
    }
    // A field line that uses the whole budget leaves none for the empty line: refused at once.
    let config = strict().with_max_trailer_bytes(6);
    assert_eq!(feed(config, b"0\r\nT: 1\r\n", &[9]), (Vec::new(), Err(TrailersTooLarge)));
    assert_eq!(feed(config, b"0\r\nT: 1\r\n", &[8]), (Vec::new(), Ok(None)));
    // The empty line alone needs two bytes; zero refuses the section before it starts.
    assert_eq!(decode_every_way(strict().with_max_trailer_bytes(2), b"0\r\n\r\n").1, Ok(Some(5)));
    assert_eq!(decode_every_way(lenient().with_max_trailer_bytes(1), b"0\n\n").1, Ok(Some(3)));
    assert_eq!(feed(strict().with_max_trailer_bytes(0), b"0\r\n", &[3]), (Vec::new(), Err(TrailersTooLarge)));
    // A malformed line is reported as such, even when it also uses the whole budget.
    assert_eq!(decode_every_way(config, b"0\r\nT  1\r\n\r\n").1, Err(InvalidTrailer));
}

#[test]
fn body_bound_exact_and_one_past_before_the_data() {
    for config in [strict(), lenient()] {
        let config = config.with_max_body_bytes(10);
        let wire = b"4\r\nabcd\r\n6;x\r\nefghij\r\n0\r\n\r\n";
        assert_eq!(decode_every_way(config, wire), (b"abcdefghij".to_vec(), Ok(Some(wire.len()))));
        // The size line alone shows the body will not fit.
        assert_eq!(decode_every_way(config, b"4\r\nabcd\r\n7\r\n"), (b"abcd".to_vec(), Err(BodyTooLarge)));
        assert_eq!(decode_every_way(config, b"ffffffffffffffff\r\n"), (Vec::new(), Err(BodyTooLarge)));
        // Zero-size chunks never exceed it.
        assert_eq!(decode_every_way(config.with_max_body_bytes(0), b"0\r\n\r\n").1, Ok(Some(5)));
    }
    let config = strict().with_max_body_bytes(u64::MAX);
    assert_eq!(decode_every_way(config, b"1\r\na\r\nffffffffffffffff\r\n").1, Err(BodyTooLarge));
    assert_eq!(decode_every_way(strict(), b"1\r\na\r\nffffffffffffffff\r\nb").1, Ok(None));
}

#[test]
fn max_size_is_accepted_and_data_is_not_copied() {
    let mut decoder = ChunkedDecoder::new(lenient());
    let wire: &[u8] = b"ffffffffffffffff\r\nabc";
    let mut input = wire;
    let data = decoder.decode(&mut input).unwrap().unwrap();
    assert_eq!(data, b"abc");
    assert!(std::ptr::eq(data, &wire[18..]), "the data is a slice of the input");
    assert!(input.is_empty());
    assert_eq!(decoder.state, State::Data { remaining: u64::MAX - 3 });
    assert_eq!(decoder.decode(&mut input), Ok(None));
}

#[test]
fn done_reads_nothing_more_and_errors_stick() {
    let mut decoder = ChunkedDecoder::new(strict());
    let mut input: &[u8] = b"0\r\n\r\n5\r\nhello\r\n";
    assert_eq!(decoder.decode(&mut input), Ok(None));
    assert!(decoder.is_done());
    assert_eq!(input, b"5\r\nhello\r\n");
    assert_eq!(decoder.decode(&mut input), Ok(None));
    assert_eq!(input, b"5\r\nhello\r\n");

    let mut decoder = ChunkedDecoder::new(strict());
    let mut input: &[u8] = b"5\r\nhello\nmore";
    assert_eq!(decoder.decode(&mut input), Ok(Some(&b"hello"[..])));
    let err = decoder.decode(&mut input).unwrap_err();
    assert_eq!((err.kind(), input), (BareLf, &b"more"[..]));
    assert_eq!(decoder.decode(&mut input), Err(err));
    assert_eq!(input, b"more");
    assert!(!decoder.is_done());
}

#[test]
fn config_and_display() {
    let config = ChunkedConfig::default();
    assert_eq!(config, ChunkedConfig::strict());
    assert!(!config.is_lenient() && ChunkedConfig::lenient().is_lenient());
    assert_eq!(config.max_size_line(), 1024);
    assert_eq!(config.max_trailer_bytes(), 16 * 1024);
    assert_eq!(config.max_body_bytes(), None);
    let config = ChunkedConfig::lenient().with_max_size_line(7).with_max_trailer_bytes(8).with_max_body_bytes(9);
    assert_eq!((config.max_size_line(), config.max_trailer_bytes(), config.max_body_bytes()), (7, 8, Some(9)));
    assert!(config.is_lenient());
    assert_eq!(ChunkedDecoder::new(config).config(), &config);

    let err = ChunkedError::from(MissingSize);
    assert_eq!(err.to_string(), "bad chunked encoding: missing chunk size");
    for kind in [
        MissingSize,
        SizeOverflow,
        InvalidSizeLine,
        SizeLineTooLong,
        DataNotTerminated,
        BareLf,
        InvalidTrailer,
        TrailersTooLarge,
        BodyTooLarge,
    ] {
        let text = ChunkedError::from(kind).to_string();
        assert!(text.starts_with("bad chunked encoding: ") && text.len() > 24, "{text:?}");
    }
}

// ---------------------------------------------------------------------------
// Against a reference: a line-at-a-time decoder over the whole input, written
// as plainly as possible, compared on random inputs under random splits.
// ---------------------------------------------------------------------------

/// The next line from `start`: its content (one final CR removed), whether
/// that CR was there, and the offset after its LF. `Ok(None)` if its LF has
/// not arrived; an error if `budget` bytes have arrived without one.
type Line<'a> = (&'a [u8], bool, usize);

fn reference_line(wire: &[u8], start: usize, budget: usize) -> Result<Option<Line<'_>>, ()> {
    let window = &wire[start..wire.len().min(start.saturating_add(budget))];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let line = &window[..lf];
            let content = line.strip_suffix(b"\r");
            Ok(Some((content.unwrap_or(line), content.is_some(), start + lf + 1)))
        }
        None if window.len() >= budget => Err(()),
        None => Ok(None),
    }
}

fn reference_size(line: &[u8], lenient: bool) -> Result<u64, ChunkedErrorKind> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(MissingSize);
    }
    let size = line[..digits]
        .iter()
        .try_fold(0u64, |acc, &b| acc.checked_mul(16)?.checked_add(u64::from(hex_value(b)?)))
        .ok_or(SizeOverflow)?;
    let rest = &line[digits..];
    let after_space = rest.iter().position(|&b| b != b' ' && b != b'\t');
    match after_space {
        None if rest.is_empty() => Ok(size),
        Some(at) if rest[at] == b';' && lenient && !rest[at + 1..].iter().any(|&b| is_ctl(b)) => Ok(size),
        Some(at) if rest[at] == b';' && lenient => Err(InvalidSizeLine),
        Some(at) if rest[at] == b';' && reference_extensions(&rest[at..]) => Ok(size),
        Some(at) if rest[at] == b';' => Err(InvalidExtension),
        _ => Err(InvalidSizeLine),
    }
}

/// Whether `ext` (from its first `;`) is `*( BWS ";" BWS name [ BWS "=" BWS value ] )`, read off a slice at a
/// time.
fn reference_extensions(mut ext: &[u8]) -> bool {
    fn skip_space(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        &s[n..]
    }
    fn skip_token(s: &[u8]) -> Option<&[u8]> {
        let n = s.iter().take_while(|&&b| is_tchar(b)).count();
        (n > 0).then(|| &s[n..])
    }
    fn skip_quoted(s: &[u8]) -> Option<&[u8]> {
        let mut i = 1;
        loop {
            match *s.get(i)? {
                b'"' => return Some(&s[i + 1..]),
                b'\\' if !is_ctl(*s.get(i + 1)?) => i += 2,
                b if b != b'\\' && !is_ctl(b) => i += 1,
                _ => return None,
            }
        }
    }
    while !ext.is_empty() {
        let Some(rest) = skip_space(ext).strip_prefix(b";") else {
            return false;
        };
        let Some(rest) = skip_token(skip_space(rest)) else {
            return false;
        };
        ext = match skip_space(rest).strip_prefix(b"=") {
            Some(value) => {
                let value = skip_space(value);
                let after = if value.first() == Some(&b'"') { skip_quoted(value) } else { skip_token(value) };
                let Some(after) = after else {
                    return false;
                };
                after
            }
            None => rest,
        };
    }
    true
}

fn reference_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0 && line[..colon].iter().all(|&b| is_tchar(b)) && !line[colon..].iter().any(|&b| is_ctl(b))
}

fn reference(config: ChunkedConfig, wire: &[u8]) -> Outcome {
    let mut data = Vec::new();
    let mut pos = 0;
    let mut total = 0u64;
    let line_end_ok = |cr: bool| cr || config.is_lenient();
    loop {
        let Ok(line) = reference_line(wire, pos, config.max_size_line()) else {
            return (data, Err(SizeLineTooLong));
        };
        let Some((line, cr, next)) = line else {
            return (data, Ok(None));
        };
        if !line_end_ok(cr) {
            return (data, Err(BareLf));
        }
        let size = match reference_size(line, config.is_lenient()) {
            Ok(size) => size,
            Err(kind) => return (data, Err(kind)),
        };
        pos = next;
        if size == 0 {
            break;
        }
        if let Some(max) = config.max_body_bytes()
            && total.checked_add(size).is_none_or(|total| total > max)
        {
            return (data, Err(BodyTooLarge));
        }
        total = total.saturating_add(size);
        let available = wire.len() - pos;
        let take = usize::try_from(size).map_or(available, |size| size.min(available));
        data.extend_from_slice(&wire[pos..pos + take]);
        pos += take;
        if (take as u64) < size {
            return (data, Ok(None));
        }
        match &wire[pos..] {
            [] | [b'\r'] => return (data, Ok(None)),
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] if config.is_lenient() => pos += 1,
            [b'\n', ..] => return (data, Err(BareLf)),
            _ => return (data, Err(DataNotTerminated)),
        }
    }
    let mut used = 0;
    loop {
        let Ok(line) = reference_line(wire, pos, config.max_trailer_bytes().saturating_sub(used)) else {
            return (data, Err(TrailersTooLarge));
        };
        let Some((line, cr, next)) = line else {
            return (data, Ok(None));
        };
        if !line_end_ok(cr) {
            return (data, Err(BareLf));
        }
        used += next - pos;
        pos = next;
        if line.is_empty() {
            return (data, Ok(Some(pos)));
        }
        if !reference_field(line) {
            return (data, Err(InvalidTrailer));
        }
    }
}

/// Mostly well-formed chunked bodies with the odd wrong piece.
fn random_body(rng: &mut XorShift) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b";",
        b";a=b",
        b";a=\"q\\\"\"",
        b"\"",
        b"\\",
        b"=",
        b"a",
        b" ",
        b"\t",
        b"x",
        b":",
        b"T",
        b"0",
        b"00",
        b"f",
        b"A",
        b"\x01",
        b"\x7f",
        b"\xff",
        b"ffffffffffffffff",
        b"10000000000000000",
    ];
    let mut wire = Vec::new();
    for _ in 0..rng.below(4) {
        if rng.below(4) == 0 {
            wire.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        let size = rng.below(12);
        wire.extend_from_slice(format!("{size:x}").as_bytes());
        for _ in 0..rng.below(3) {
            wire.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        wire.extend_from_slice(if rng.below(6) == 0 { b"\n" } else { b"\r\n" });
        wire.extend((0..size).map(|_| PIECES[rng.below(PIECES.len())][0]));
        wire.extend_from_slice(if rng.below(6) == 0 { b"\n" } else { b"\r\n" });
    }
    wire.extend_from_slice(b"0");
    for _ in 0..rng.below(6) {
        wire.extend_from_slice(PIECES[rng.below(PIECES.len())]);
    }
    wire.extend_from_slice(b"\r\n");
    for _ in 0..rng.below(3) {
        wire.extend_from_slice(b"X-T: v");
        for _ in 0..rng.below(3) {
            wire.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        wire.extend_from_slice(if rng.below(6) == 0 { b"\n" } else { b"\r\n" });
    }
    wire.extend_from_slice(if rng.below(6) == 0 { b"\n" } else { b"\r\n" });
    wire.extend_from_slice(PIECES[rng.below(PIECES.len())]);
    // Now and then, damage or cut it.
    if rng.below(3) == 0 {
        let at = rng.below(wire.len());
        wire[at] = PIECES[rng.below(PIECES.len())][0];
    }
    if rng.below(4) == 0 {
        wire.truncate(rng.below(wire.len() + 1));
    }
    wire
}

#[test]
fn agrees_with_the_reference_however_split() {
    let mut rng = XorShift::new(0x00c0_ffee);
    for round in 0..20_000 {
        let wire = random_body(&mut rng);
        let base = if round % 2 == 0 { strict() } else { lenient() };
        let config = match rng.below(4) {
            0 => base,
            1 => base.with_max_size_line(rng.below(8)),
            2 => base.with_max_trailer_bytes(rng.below(24)),
            _ => base.with_max_body_bytes(rng.below(30) as u64),
        };
        let want = reference(config, &wire);
        let shown = String::from_utf8_lossy(&wire);
        assert_eq!(feed(config, &wire, &[wire.len()]), want, "whole: {shown:?} {config:?}");
        let bytewise: Vec<usize> = (1..=wire.len()).chain(wire.is_empty().then_some(0)).collect();
        assert_eq!(feed(config, &wire, &bytewise), want, "byte by byte: {shown:?} {config:?}");
        let mut cuts: Vec<usize> = (0..rng.below(5)).map(|_| rng.below(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        assert_eq!(feed(config, &wire, &cuts), want, "cuts {cuts:?}: {shown:?} {config:?}");
    }
}
