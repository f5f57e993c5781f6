//! The demo streams: the clock, a resumable counter, a simulated model reply and ten updates.

use super::event;
use conduit::server::{Request, Response, Sse, StatusCode, Ticker};
use conduit::sse::Event;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const AI_REPLY: &str = "Hello! I am an assistant streaming this answer to you one word at a time over \
    Server-Sent Events. Each word is its own event, sent by Conduit from a timer on its event loop, so \
    thousands of replies like this one can stream at once from a single thread.";
const MAX_COUNT: u64 = 1_000_000;
const MAX_INTERVAL_MS: u64 = 3_600_000;

fn done() -> Event {
    event("done", &json!({ "status": "complete" }))
}

pub fn time_stream() -> Sse {
    Sse::interval(Duration::from_secs(1), |t: &mut Ticker| {
        let now = SystemTime::now();
        let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        t.send(event("time", &json!({ "time": unix.as_secs_f64(), "iso": rfc3339(now) })));
    })
}

/// Reads an integer query parameter within `range`, or explains in one line why it is not acceptable.
fn query_u64(req: &Request, name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, Response> {
    let Some(raw) = req.query(name) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(Response::error(
            StatusCode::BAD_REQUEST,
            format_args!("{name} must be an integer from {} to {}, got {raw:?}", range.start(), range.end()),
        )),
    }
}

/// `/count?n=&interval_ms=&drop_after=`: counts resume after the `Last-Event-ID` a reconnecting client sends
/// (`204` once it has them all),
/// and `drop_after=k` ends each connection after k events (a flaky network in miniature), so browsers can be
/// watched reconnecting and losing nothing.
pub fn count_stream(req: &Request) -> Result<Sse, Response> {
    let n = query_u64(req, "n", 10, 1..=MAX_COUNT)?;
    let interval_ms = query_u64(req, "interval_ms", 1000, 0..=MAX_INTERVAL_MS)?;
    let drop_after = query_u64(req, "drop_after", 0, 0..=MAX_COUNT)?;
    let resume_from = match req.header("last-event-id").or_else(|| req.query("last_event_id")) {
        None => 0,
        Some(id) => id.parse::<u64>().map_err(|_| {
            Response::error(StatusCode::BAD_REQUEST, format_args!("Last-Event-ID must be a count from 0 to {n}"))
        })?,
    };
    if resume_from >= n {
        // The client has every count: 204 tells an EventSource to stop instead of reconnecting for ever.
        return Err(Response::new(StatusCode::NO_CONTENT));
    }
    let counter = |i: u64| event("counter", &json!({ "count": i })).id(i.to_string()).unwrap_or_else(|_| Event::new());
    // The counts this connection sends, and whether the stream is complete after them.
    let last = if drop_after == 0 { n } else { n.min(resume_from + drop_after) };
    let complete = last == n;
    let stream = if interval_ms == 0 {
        // No pacing: let the loop pull events as fast as the client reads them.
        let ending = complete.then(done);
        Sse::from_iter((resume_from + 1..=last).map(counter).chain(ending))
    } else {
        Sse::interval(Duration::from_millis(interval_ms), move |t: &mut Ticker| {
            let i = resume_from + 1 + t.tick();
            if i <= last {
                t.send(counter(i));
            }
            if i >= last {
                if complete {
                    t.send(done());
                }
                t.end();
            }
        })
    };
    // Reconnect quickly after a simulated drop; browsers otherwise wait about three seconds.
    Ok(if drop_after > 0 { stream.retry(Duration::from_millis(100)) } else { stream })
}

pub fn ai_stream() -> Sse {
    let tokens: Vec<&'static str> = AI_REPLY.split_whitespace().collect();
    Sse::interval(Duration::from_millis(100), move |t: &mut Ticker| {
        let index = t.tick() as usize;
        match tokens.get(index) {
            Some(token) => t.send(event("token", &json!({ "token": token, "index": index }))),
            None => {
                t.send(done());
                t.end();
            }
        }
    })
}

pub fn updates_stream() -> Sse {
    Sse::interval(Duration::from_secs(1), |t: &mut Ticker| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        t.send(event("update", &json!({ "count": t.tick(), "time": now.as_secs_f64() })));
        if t.tick() == 9 {
            t.send(done());
            t.end();
        }
    })
}

/// RFC 3339 UTC with milliseconds, e.g. `2025-11-21T18:33:20.123Z`.
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_250, "2000-02-29T00:00:00.250Z"),
            (1_763_750_000_123, "2025-11-21T18:33:20.123Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(ms)), want);
        }
    }
}
