//! The Conduit demo server: an HTML client page and a few event streams.
//!
//! ```text
//! cargo run --example sse_simple_server                 # http://127.0.0.1:8000
//! cargo run --example sse_simple_server -- --addr 127.0.0.1:9000
//! CONDUIT_ADDR=0.0.0.0:8000 RUST_LOG=debug cargo run --example sse_simple_server
//! ```
//!
//! | route             | what it streams                                                          |
//! |-------------------|--------------------------------------------------------------------------|
//! | `/`               | the HTML client page                                                     |
//! | `/time`           | `time` every second: `{"time": <unix seconds>, "iso": "<RFC 3339>"}`     |
//! | `/count`          | `counter` `{"count": i}` with ids 1..=n, then `done` (`n`, `interval_ms`) |
//! | `/stream/ai`      | a simulated model reply: `token` every 100 ms, then `done`               |
//! | `/stream/updates` | ten `update` events one second apart, then `done`                        |

use conduit::server::{Request, Response, Router, Server, ServerConfig, Sse, StatusCode, Ticker};
use conduit::sse::Event;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INDEX_HTML: &str = include_str!("assets/index.html");
pub const AI_REPLY: &str = "Hello! I am an assistant streaming this answer to you one word at a time over \
    Server-Sent Events. Each word is its own event, sent by Conduit from a timer on its event loop, so \
    thousands of replies like this one can stream at once from a single thread.";
const MAX_COUNT: u64 = 1_000_000;
const MAX_INTERVAL_MS: u64 = 3_600_000;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = match listen_addr() {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let server = match Server::bind(ServerConfig::new(addr), router()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    log::info!("Conduit demo on http://{}/", server.local_addr());
    if let Err(e) = server.run() {
        eprintln!("server failed: {e}");
        std::process::exit(1);
    }
}

/// `--addr HOST:PORT`, else `CONDUIT_ADDR`, else 127.0.0.1:8000.
fn listen_addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = std::env::var("CONDUIT_ADDR").ok();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = Some(args.next().ok_or("--addr needs a value, e.g. 127.0.0.1:8000")?),
            other => match other.strip_prefix("--addr=") {
                Some(value) => addr = Some(value.to_owned()),
                None => {
                    return Err(format!("unknown argument {other:?}; usage: sse_simple_server [--addr HOST:PORT]"));
                }
            },
        }
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    addr.parse().map_err(|e| format!("invalid address {addr:?}: {e}"))
}

pub fn router() -> Router {
    Router::new()
        .get("/", |_: &Request| Response::html(INDEX_HTML))
        .get("/time", |_: &Request| time_stream())
        .get("/count", count_stream)
        .get("/stream/ai", |_: &Request| ai_stream())
        .get("/stream/updates", |_: &Request| updates_stream())
}

fn event(name: &str, data: &serde_json::Value) -> Event {
    // Names here are literals without line breaks and JSON values always serialize, so neither step can fail.
    Event::new()
        .event(name)
        .and_then(|e| e.json(data))
        .unwrap_or_else(|e| Event::new().comment(format!("bad event: {e}")))
}

fn done() -> Event {
    event("done", &json!({ "status": "complete" }))
}

fn time_stream() -> Sse {
    Sse::interval(Duration::from_secs(1), |t: &mut Ticker| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        t.send(event("time", &json!({ "time": now.as_secs_f64(), "iso": rfc3339(now) })));
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

fn count_stream(req: &Request) -> Result<Sse, Response> {
    let n = query_u64(req, "n", 10, 1..=MAX_COUNT)?;
    let interval_ms = query_u64(req, "interval_ms", 1000, 0..=MAX_INTERVAL_MS)?;
    let counter = |i: u64| event("counter", &json!({ "count": i })).id(i.to_string()).unwrap_or_else(|_| Event::new());
    if interval_ms == 0 {
        // No pacing: let the loop pull events as fast as the client reads them.
        return Ok(Sse::from_iter((1..=n).map(counter).chain(std::iter::once(done()))));
    }
    Ok(Sse::interval(Duration::from_millis(interval_ms), move |t: &mut Ticker| {
        let i = t.tick() + 1;
        t.send(counter(i));
        if i == n {
            t.send(done());
            t.end();
        }
    }))
}

fn ai_stream() -> Sse {
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

fn updates_stream() -> Sse {
    Sse::interval(Duration::from_secs(1), |t: &mut Ticker| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        t.send(event("update", &json!({ "count": t.tick(), "time": now.as_secs_f64() })));
        if t.tick() == 9 {
            t.send(done());
            t.end();
        }
    })
}

/// Formats time since the Unix epoch as RFC 3339 UTC with milliseconds, e.g. `2025-11-21T18:33:20.123Z`.
fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), counting in 400-year eras
/// that start on March 1st so leap days fall at the end of each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
            assert_eq!(rfc3339(Duration::from_millis(ms)), want);
        }
    }
}
