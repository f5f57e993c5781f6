//! Decodes a `text/event-stream` from standard input and prints every event as
//! one JSON line, as soon as it is complete:
//!
//! ```sh
//! curl -sN http://127.0.0.1:8000/time | cargo run --example sse_decode
//! {"type":"time","data":"{\"time\":1700000000,\"iso\":\"...\"}","lastEventId":""}
//! ```
//!
//! An event cut off by the end of input is dropped, as a browser drops it. An
//! event over the size limit is reported on standard error and skipped.

use std::io::{self, Read, Write};

use conduit::sse::{Decoder, MessageEvent};

/// One output line; fields in this order (`serde_json::json!` would sort the keys).
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a str,
    #[serde(rename = "lastEventId")]
    last_event_id: &'a str,
}

fn print_event(out: &mut impl Write, event: &MessageEvent) -> io::Result<()> {
    let line = serde_json::to_string(&Line {
        event_type: &event.event_type,
        data: &event.data,
        last_event_id: &event.last_event_id,
    })?;
    writeln!(out, "{line}")?;
    // Live in a pipe: each event leaves as soon as it is decoded.
    out.flush()
}

fn main() -> io::Result<()> {
    match run() {
        // The reader went away (`| head`): nothing left to do.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn run() -> io::Result<()> {
    let mut input = io::stdin().lock();
    let mut out = io::stdout().lock();
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if let Err(err) = decoder.feed(&buf[..n]) {
            eprintln!("sse_decode: {err}");
        }
        while let Some(event) = decoder.next_event() {
            print_event(&mut out, &event)?;
        }
    }
    decoder.finish();
    while let Some(event) = decoder.next_event() {
        print_event(&mut out, &event)?;
    }
    Ok(())
}
