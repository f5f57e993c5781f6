//! The request headers the transport reads: `Accept` (which reply forms the client takes), `Content-Type`,
//! `MCP-Protocol-Version` and `Last-Event-ID`.

/// `Mcp-Session-Id`: names the session on every request after `initialize`.
pub const SESSION_ID_HEADER: &str = "Mcp-Session-Id";
/// `MCP-Protocol-Version`: the revision the client speaks.
pub const PROTOCOL_VERSION_HEADER: &str = "MCP-Protocol-Version";

/// The revision this crate implements, offered when a client asks for one it does not know.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// Revisions `initialize` agrees to, newest first. Both forbid JSON-RPC batches.
pub const NEGOTIABLE_VERSIONS: [&str; 2] = ["2025-11-25", "2025-06-18"];

/// Values accepted in `MCP-Protocol-Version`: the negotiable revisions, and `2025-03-26`, which the specification
/// tells servers to assume when the header is missing, so a client naming it says nothing the server does not
/// already assume.
pub const HEADER_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The revision to answer `initialize` with: the client's if supported, otherwise the latest.
pub fn negotiate_version(requested: Option<&str>) -> &'static str {
    NEGOTIABLE_VERSIONS.iter().find(|v| Some(**v) == requested).copied().unwrap_or(LATEST_PROTOCOL_VERSION)
}

/// Checks `MCP-Protocol-Version`; a missing header is accepted.
///
/// # Errors
/// The unsupported value, for a `400 Bad Request`.
pub fn check_protocol_version(value: Option<&str>) -> Result<(), String> {
    match value {
        None => Ok(()),
        Some(v) if HEADER_VERSIONS.contains(&v.trim()) => Ok(()),
        Some(v) => Err(v.to_owned()),
    }
}

/// Which reply forms an `Accept` header allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepts {
    /// `application/json`.
    pub json: bool,
    /// `text/event-stream`.
    pub event_stream: bool,
}

impl Accepts {
    /// Reads an `Accept` header; none at all accepts anything (RFC 9110). Wildcards count, and a media range
    /// with `q=0` is refused rather than accepted.
    pub fn parse(header: Option<&str>) -> Accepts {
        let Some(header) = header else {
            return Accepts { json: true, event_stream: true };
        };
        let mut accepts = Accepts { json: false, event_stream: false };
        for range in header.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            if refused {
                continue;
            }
            match media.as_str() {
                "*/*" => accepts = Accepts { json: true, event_stream: true },
                "application/json" | "application/*" => accepts.json = true,
                "text/event-stream" | "text/*" => accepts.event_stream = true,
                _ => {}
            }
        }
        accepts
    }
}

/// True when `Content-Type` names JSON (parameters such as `charset=utf-8` allowed).
pub fn is_json_content_type(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_accept() {
        let both = Accepts { json: true, event_stream: true };
        let json = Accepts { json: true, event_stream: false };
        let sse = Accepts { json: false, event_stream: true };
        let none = Accepts { json: false, event_stream: false };
        let cases: &[(Option<&str>, Accepts)] = &[
            (None, both),
            (Some("application/json, text/event-stream"), both),
            (Some("text/event-stream,application/json"), both),
            (Some("*/*"), both),
            (Some("application/json"), json),
            (Some("Application/JSON; charset=utf-8"), json),
            (Some("application/*"), json),
            (Some("text/event-stream"), sse),
            (Some("text/*;q=0.5"), sse),
            (Some("text/event-stream, application/json;q=0"), sse),
            (Some("text/html"), none),
            (Some(""), none),
            (Some("*/*;q=0"), none),
        ];
        for (header, want) in cases {
            assert_eq!(Accepts::parse(*header), *want, "{header:?}");
        }
    }

    #[test]
    fn checks_protocol_versions() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, true),
            (Some("2025-11-25"), true),
            (Some("2025-06-18"), true),
            (Some("2025-03-26"), true),
            (Some("2024-11-05"), false),
            (Some("2099-01-01"), false),
            (Some(""), false),
            (Some("latest"), false),
        ];
        for (value, ok) in cases {
            assert_eq!(check_protocol_version(*value).is_ok(), *ok, "{value:?}");
        }
    }

    #[test]
    fn negotiates() {
        assert_eq!(negotiate_version(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate_version(Some("2025-11-25")), "2025-11-25");
        assert_eq!(negotiate_version(Some("2025-03-26")), LATEST_PROTOCOL_VERSION);
        assert_eq!(negotiate_version(Some("1.0")), LATEST_PROTOCOL_VERSION);
        assert_eq!(negotiate_version(None), LATEST_PROTOCOL_VERSION);
    }

    #[test]
    fn reads_content_type() {
        let cases: &[(Option<&str>, bool)] = &[
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("APPLICATION/JSON"), true),
            (Some("text/plain"), false),
            (Some("application/jsonx"), false),
            (None, false),
        ];
        for (value, want) in cases {
            assert_eq!(is_json_content_type(*value), *want, "{value:?}");
        }
    }
}
