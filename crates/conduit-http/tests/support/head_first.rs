//! Drives `RequestParser::parse_head_first` the way a server does. Shared by the property tests and the fuzz
//! target (`fuzz/fuzz_targets/http_request.rs` includes this file), so both hold the parser to the same promises.

use conduit_http::{AnnouncedBody, Limits, ParseError, Parsed, Request, RequestParser, Status};

/// What parsing reached, in the form `RequestParser::parse` gives it.
pub type Outcome = Result<Status<Request>, ParseError>;

/// Feeds `input` in the reads ending at `cuts` (ascending, the last one `input.len()`), drains the bytes the parser
/// used after every call, and accepts every body up to `limit`. Returns the first outcome that is not `Partial`,
/// with the bytes used counted from the start of `input`.
///
/// Panics if the parser breaks a promise on the way: using more bytes than it was given, `100 Continue` due before
/// the body is accepted, a body buffer larger than the announced length or the accepted limit, or a buffer kept
/// once the body is handed over.
pub fn head_first(limits: &Limits, input: &[u8], cuts: &[usize], limit: usize) -> Outcome {
    let mut parser = RequestParser::new(limits.clone());
    let (mut inbox, mut from, mut waiting) = (Vec::new(), 0, None);
    for &cut in cuts {
        inbox.extend_from_slice(&input[from..cut]);
        from = cut;
        loop {
            let (parsed, used) = parser.parse_head_first(&inbox)?;
            assert!(used <= inbox.len(), "used {used} of {}", inbox.len());
            inbox.drain(..used);
            if let Some((_, most)) = &waiting {
                assert!(parser.body_capacity() <= *most, "body capacity {} > {most}", parser.body_capacity());
            }
            match parsed {
                Parsed::Partial => break,
                Parsed::Head(request, AnnouncedBody::None) => return Ok(Status::Complete(request, cut - inbox.len())),
                Parsed::Head(request, announced) => {
                    assert!(!parser.take_continue(), "100 Continue before the body is accepted");
                    parser.accept_body(limit)?;
                    let most = match announced {
                        AnnouncedBody::Length(len) => usize::try_from(len).unwrap_or(usize::MAX),
                        _ => limit.min(limits.max_body_bytes),
                    };
                    waiting = Some((request, most));
                }
                Parsed::Body(body) => {
                    assert_eq!(parser.body_capacity(), 0, "the body buffer is handed over, not kept");
                    let (request, most) = waiting.take().expect("a head before its body");
                    assert!(body.capacity() <= most, "body capacity {} > {most}", body.capacity());
                    return Ok(Status::Complete(request.with_body(body), cut - inbox.len()));
                }
            }
        }
    }
    Ok(Status::Partial)
}
