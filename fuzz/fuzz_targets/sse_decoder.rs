//! The SSE decoder on arbitrary bytes: it must never panic, and how the bytes
//! are split into feeds must not change what it dispatches.
//!
//! Input layout: byte 0 picks the split position, byte 1 the size limit (a small
//! one half of the time, so the too-large path is explored), the rest is the stream.
#![no_main]

use conduit_sse::{Decoder, MessageEvent};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<MessageEvent>,
    last_event_id: String,
    retry: Option<Duration>,
    any_error: bool,
}

fn decode<'a>(limit: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = Decoder::with_max_event_size(limit);
    let mut events = Vec::new();
    let mut any_error = false;
    for chunk in chunks {
        any_error |= decoder.feed(chunk).is_err();
        events.extend(std::iter::from_fn(|| decoder.next_event()));
    }
    decoder.finish();
    events.extend(std::iter::from_fn(|| decoder.next_event()));
    for event in &events {
        assert!(!event.event_type.is_empty());
        assert!(!event.event_type.contains(['\r', '\n']));
        assert!(!event.data.contains('\r'));
        assert!(!event.last_event_id.contains(['\r', '\n', '\0']));
        assert!(event.data.len() <= limit, "{} > {limit}", event.data.len());
    }
    Outcome { events, last_event_id: decoder.last_event_id().to_owned(), retry: decoder.retry(), any_error }
}

fuzz_target!(|input: &[u8]| {
    let [split, limit, stream @ ..] = input else {
        return;
    };
    let limit = if limit & 0x80 == 0 { usize::from(*limit) } else { Decoder::DEFAULT_MAX_EVENT_SIZE };
    let at = usize::from(*split) % (stream.len() + 1);
    let (head, tail) = stream.split_at(at);

    let whole = decode(limit, [stream]);
    let split = decode(limit, [head, tail]);
    assert_eq!(whole, split, "split at {at}");
    let bytewise = decode(limit, stream.chunks(1));
    assert_eq!(whole, bytewise, "byte by byte");
});
