//! The access log: one line per request through the `log` crate, target [`TARGET`], at the level
//! `ServerConfig::access_log` sets (`info` by default; health checks one level lower, so that probes every few
//! seconds do not drown the rest). A response is logged when it is queued; a stream when it ends, with its
//! duration, the events it sent and why it ended.
//!
//! ```text
//! 127.0.0.1:47916 "GET /count" 200 bytes=74 duration_ms=0.215
//! 127.0.0.1:47918 "GET /stream" 200 stream events=12 bytes=1032 duration_ms=5021.337 end=client_gone last_event_id=41
//! ```
//!
//! Only the method and the path are logged: never the query string, which may carry a token, nor any header
//! but `Last-Event-ID` (an event id, needed to follow a resume). Characters that could forge a log line or
//! split a field (control characters, spaces, quotes, backslashes) are percent-encoded.

use crate::metrics::Disconnect;
use conduit_http::Request;
use std::fmt::{self, Display, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The `log` target of access-log lines.
pub const TARGET: &str = "conduit::access";

/// The longest `Last-Event-ID` logged whole; a longer one is cut, marked with `...`.
const MAX_LOGGED_ID: usize = 64;

/// A peer address as `127.0.0.1:47916`, or `-` when it is unknown.
pub(crate) fn peer(addr: Option<SocketAddr>) -> impl Display {
    struct Peer(Option<SocketAddr>);
    impl Display for Peer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(addr) => addr.fmt(f),
                None => f.write_str("-"),
            }
        }
    }
    Peer(addr)
}

/// `text` with every character that could forge a line or split a field percent-encoded.
fn escaped(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() || c.is_whitespace() || c == '"' || c == '\\' {
            let mut utf8 = [0; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The request being answered on a connection, as the access log needs it.
#[derive(Debug)]
pub(crate) struct RequestLog {
    method: String,
    path: String,
    last_event_id: Option<String>,
    started: Instant,
    level: log::Level,
}

impl RequestLog {
    /// Notes `req`, arriving now, for a line at `level`; `None` when that level is not logged.
    pub(crate) fn begin(req: &Request, level: log::Level) -> Option<Box<RequestLog>> {
        log::log_enabled!(target: TARGET, level).then(|| RequestLog::new(req, Instant::now(), level))
    }

    fn new(req: &Request, started: Instant, level: log::Level) -> Box<RequestLog> {
        let last_event_id = req.header("last-event-id").or_else(|| req.query("last_event_id"));
        Box::new(RequestLog {
            method: req.method().as_str().to_owned(),
            path: escaped(req.path(), usize::MAX),
            last_event_id: last_event_id.map(|id| escaped(id, MAX_LOGGED_ID)),
            started,
            level,
        })
    }

    /// Logs a health check one level below the others.
    pub(crate) fn quieter(&mut self) {
        self.level = match self.level {
            log::Level::Error => log::Level::Warn,
            log::Level::Warn => log::Level::Info,
            log::Level::Info => log::Level::Debug,
            log::Level::Debug | log::Level::Trace => log::Level::Trace,
        };
    }

    /// The line of a response with `status` and a body of `bytes`, queued at `now`.
    pub(crate) fn response_line(
        &self,
        peer_addr: Option<SocketAddr>,
        status: u16,
        bytes: usize,
        now: Instant,
    ) -> String {
        format!(
            "{} \"{} {}\" {status} bytes={bytes} duration_ms={}",
            peer(peer_addr),
            self.method,
            self.path,
            millis(now.saturating_duration_since(self.started))
        )
    }

    /// The line of a stream that ended at `now` for `end`, after `events` events of `bytes` bytes.
    pub(crate) fn stream_line(
        &self,
        peer_addr: Option<SocketAddr>,
        (events, bytes): (u64, u64),
        end: Disconnect,
        now: Instant,
    ) -> String {
        let mut line = format!(
            "{} \"{} {}\" 200 stream events={events} bytes={bytes} duration_ms={} end={}",
            peer(peer_addr),
            self.method,
            self.path,
            millis(now.saturating_duration_since(self.started)),
            end.as_str()
        );
        if let Some(id) = &self.last_event_id {
            let _ = write!(line, " last_event_id={id}");
        }
        line
    }

    /// Writes `line` at this request's level.
    pub(crate) fn log(&self, line: &str) {
        log::log!(target: TARGET, self.level, "{line}");
    }
}

/// The line of a request that could not be parsed, answered with `status`.
pub(crate) fn unparsed_line(peer_addr: Option<SocketAddr>, status: u16, bytes: usize) -> String {
    format!("{} \"-\" {status} bytes={bytes}", peer(peer_addr))
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_http::Method;

    #[test]
    fn peers_print_as_addresses() {
        assert_eq!(peer(Some("127.0.0.1:47916".parse().unwrap())).to_string(), "127.0.0.1:47916");
        assert_eq!(peer(Some("[::1]:8000".parse().unwrap())).to_string(), "[::1]:8000");
        assert_eq!(peer(None).to_string(), "-");
    }

    #[test]
    fn what_could_forge_a_line_is_escaped() {
        let cases = [
            ("/count", "/count"),
            ("/a b", "/a%20b"),
            ("/x\n127.0.0.1 \"GET /admin\" 200", "/x%0A127.0.0.1%20%22GET%20/admin%22%20200"),
            ("/back\\slash\t", "/back%5Cslash%09"),
            ("/caf\u{e9}", "/caf\u{e9}"),
            ("/\u{2028}", "/%E2%80%A8"),
        ];
        for (raw, want) in cases {
            assert_eq!(escaped(raw, usize::MAX), want, "{raw:?}");
        }
        assert_eq!(escaped("123456", 4), "1234...");
    }

    /// A request's line holds its method and path, never its query string or any header but Last-Event-ID.
    #[test]
    fn lines_leave_secrets_out() {
        let started = Instant::now();
        let req = Request::new(Method::Get, "/stream?topic=news&token=s3cret&last_event_id=41")
            .unwrap()
            .with_header("Authorization", "Bearer s3cret");
        let log = RequestLog::new(&req, started, log::Level::Info);
        let peer_addr = Some("127.0.0.1:47916".parse().unwrap());
        let done = started + Duration::from_micros(1500);
        assert_eq!(
            log.response_line(peer_addr, 200, 12, done),
            "127.0.0.1:47916 \"GET /stream\" 200 bytes=12 duration_ms=1.500"
        );
        assert_eq!(
            log.stream_line(peer_addr, (3, 90), Disconnect::ClientGone, done),
            "127.0.0.1:47916 \"GET /stream\" 200 stream events=3 bytes=90 duration_ms=1.500 end=client_gone last_event_id=41"
        );
        assert_eq!(unparsed_line(None, 400, 20), "- \"-\" 400 bytes=20");
    }
}
