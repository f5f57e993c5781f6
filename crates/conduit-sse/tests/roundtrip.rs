//! Whatever the encoder writes, the decoder reads back: `decode(encode(events))`
//! equals what a browser would dispatch, however the bytes are split.

use std::time::Duration;

use conduit_sse::{Decoder, Event, MessageEvent};
use proptest::prelude::*;

/// Pieces of values that matter to the framing: separators, spaces, field-like
/// text, multi-byte characters, U+FEFF (a BOM inside a value must survive).
fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(pieces), 0..max).prop_map(|parts| parts.concat())
}

const LINE_PIECES: &[&str] =
    &["a", "b", " ", "  ", ":", ": ", "\u{e9}", "\u{1f980}", "\u{2028}", "\u{feff}", "id: 1", "data:", "\t"];
const EVENT_PIECES: &[&str] = &["a", " ", ":", "\u{e9}", "\u{feff}", "\0", "message", "event"];
const DATA_PIECES: &[&str] = &[
    "a",
    "b",
    " ",
    "  ",
    ":",
    ": x",
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "\u{e9}",
    "\u{1f980}",
    "\u{2028}",
    "\u{feff}",
    "data: x",
    "id: 9",
    "\0",
];

/// One event the encoder accepts; `None` fields are left unset.
#[derive(Clone, Debug)]
struct Spec {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    retry: Option<Duration>,
    comment: Option<String>,
}

fn retry() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..100_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_millis),
        // Anything up to Duration::MAX, whose milliseconds overflow u64: ignored by clients.
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::of(text(EVENT_PIECES, 6)),
        prop::option::of(text(LINE_PIECES, 6)),
        prop::option::of(text(DATA_PIECES, 12)),
        prop::option::weighted(0.2, retry()),
        prop::option::weighted(0.2, text(DATA_PIECES, 6)),
    )
        .prop_map(|(event, id, data, retry, comment)| Spec { event, id, data, retry, comment })
}

fn build(spec: &Spec) -> Event {
    let mut event = Event::new();
    if let Some(name) = &spec.event {
        event = event.event(name.clone()).expect("names have no line breaks");
    }
    if let Some(id) = &spec.id {
        event = event.id(id.clone()).expect("ids have no line breaks or NUL");
    }
    if let Some(data) = &spec.data {
        event = event.data(data.clone());
    }
    if let Some(retry) = spec.retry {
        event = event.retry(retry);
    }
    if let Some(comment) = &spec.comment {
        event = event.comment(comment.clone());
    }
    event
}

/// What a client sees: events, then its last event id and reconnection time.
fn model(specs: &[Spec]) -> (Vec<MessageEvent>, String, Option<Duration>) {
    let mut events = Vec::new();
    let mut last_id = String::new();
    let mut reconnect = None;
    for spec in specs {
        if let Some(retry) = spec.retry {
            // Written in whole milliseconds; a value past u64 milliseconds is ignored.
            if let Ok(ms) = u64::try_from(retry.as_millis()) {
                reconnect = Some(Duration::from_millis(ms));
            }
        }
        if let Some(id) = &spec.id {
            last_id.clone_from(id);
        }
        // A block with no data field (comment-only, id-only, ...) dispatches nothing.
        if let Some(data) = &spec.data {
            let event_type = match spec.event.as_deref() {
                None | Some("") => "message",
                Some(name) => name,
            };
            events.push(MessageEvent {
                event_type: event_type.to_owned(),
                // Every line break became its own data line, rejoined with LF.
                data: data.replace("\r\n", "\n").replace('\r', "\n"),
                last_event_id: last_id.clone(),
            });
        }
    }
    (events, last_id, reconnect)
}

fn decode(bytes: &[u8], sizes: &[usize]) -> (Vec<MessageEvent>, String, Option<Duration>) {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut rest = bytes;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        decoder.feed(chunk).expect("events are far below the size limit");
        events.extend(std::iter::from_fn(|| decoder.next_event()));
    }
    decoder.finish();
    events.extend(std::iter::from_fn(|| decoder.next_event()));
    (events, decoder.last_event_id().to_owned(), decoder.retry())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_inverts_encode(
        specs in prop::collection::vec(spec(), 0..12),
        bom in any::<bool>(),
        sizes in prop::collection::vec(1usize..48, 1..8),
    ) {
        let mut bytes = Vec::new();
        if bom {
            bytes.extend_from_slice("\u{feff}".as_bytes());
        }
        for spec in &specs {
            build(spec).encode(&mut bytes);
        }
        let expected = model(&specs);
        prop_assert_eq!(&decode(&bytes, &[usize::MAX]), &expected);
        prop_assert_eq!(&decode(&bytes, &[1]), &expected);
        prop_assert_eq!(&decode(&bytes, &sizes), &expected);
    }
}

#[test]
fn empty_data_dispatches_empty_data() {
    let mut bytes = Vec::new();
    Event::new().data("").encode(&mut bytes);
    assert_eq!(bytes, b"data: \n\n");
    let (events, _, _) = decode(&bytes, &[1]);
    assert_eq!(
        events,
        [MessageEvent { event_type: "message".into(), data: String::new(), last_event_id: String::new() }]
    );
}
