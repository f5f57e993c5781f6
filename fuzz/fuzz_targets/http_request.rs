//! The HTTP request parser on arbitrary bytes: it must never panic, must not
//! claim more bytes than it was given, and must reach the same outcome whether
//! the bytes arrive at once or in two reads, and whether they are parsed whole
//! (`parse`) or head first (`parse_head_first`, accepting every body).
//! Head first with a body limit of its own, the parser must never hold more
//! body memory than that limit or the announced length.
//!
//! Input layout: byte 0 picks the split position, byte 1 picks default or
//! small limits (so every limit is exercised) in its low bit and, in the
//! others, a body limit for `accept_body`; the rest is what the client sent.
#![no_main]

// The server-like driver the property tests use too.
#[path = "../../crates/conduit-http/tests/support/head_first.rs"]
mod support;

use conduit_http::{Limits, ParseError, RequestParser, Status};
use libfuzzer_sys::fuzz_target;
use support::{Outcome, head_first};

fn limits(selector: u8) -> Limits {
    if selector & 1 == 0 {
        Limits::default()
    } else {
        Limits { max_head_bytes: 256, max_headers: 4, max_uri_bytes: 32, max_body_bytes: 64 }
    }
}

fn check(outcome: &Outcome, len: usize) {
    if let Ok(Status::Complete(_, consumed)) = outcome {
        assert!(*consumed <= len, "consumed {consumed} of {len}");
    }
}

fuzz_target!(|input: &[u8]| {
    let [split, selector, buf @ ..] = input else {
        return;
    };
    let at = usize::from(*split) % (buf.len() + 1);

    let mut parser = RequestParser::new(limits(*selector));
    let whole = parser.parse(buf);
    check(&whole, buf.len());

    // The same bytes in two reads: the caller passes everything received so far.
    let mut parser = RequestParser::new(limits(*selector));
    let first = parser.parse(&buf[..at]);
    check(&first, at);
    let first_outcome = first.clone();
    let split = match first {
        Ok(Status::Partial) => parser.parse(buf),
        done => done,
    };
    check(&split, buf.len());
    // One known, accepted difference: a request line still without its line end
    // is refused as UriTooLong as soon as more bytes follow its first space than
    // a target within the limit plus " HTTP/1.1\r" could take. Had the line
    // ended, it would have been refused anyway (malformed, or the same error),
    // only perhaps with another error or after more bytes. So an early
    // UriTooLong on the prefix must never stand for a request the whole input
    // makes complete.
    let early_uri_too_long =
        matches!(first_outcome, Err(ParseError::UriTooLong)) && !matches!(whole, Ok(Status::Complete(..)));
    if !early_uri_too_long {
        assert_eq!(whole, split, "split at {at}");
    }

    // Head first, accepting every body: exactly what `parse` gave for the same two reads.
    let limits = limits(*selector);
    assert_eq!(head_first(&limits, buf, &[at, buf.len()], usize::MAX), split, "head first, split at {at}");
    // With a body limit of its own: no panic, and the memory bounds checked inside.
    let _ = head_first(&limits, buf, &[at, buf.len()], usize::from(*selector >> 1));

    // A parser resets itself after an outcome, so it can take the next request.
    if let Ok(Status::Complete(_, consumed)) = &whole {
        let _ = parser.parse(&buf[*consumed..]);
    }
});
