//! Splitting and percent-decoding a request-target.

use crate::ParseError;
use crate::host::split_authority;

/// A request-target split into its decoded path and query pairs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
}

/// Splits and decodes a request-target.
///
/// Accepts origin-form (`/path?query`), asterisk-form (`*`) and, because
/// RFC 9112 §3.2.2 obliges servers to, absolute-form with an `http` or
/// `https` scheme, whose authority is dropped.
pub(crate) fn parse_target(target: &str) -> Result<Target, ParseError> {
    if target.is_empty() {
        return Err(ParseError::InvalidTarget("empty request target"));
    }
    // httparse already refuses these on the wire, but Request::new takes
    // arbitrary strings and must not produce a request that could not exist.
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ParseError::InvalidTarget("whitespace or control character in request target"));
    }
    // Fragments are a client-side concept; one on the wire means a broken or
    // hostile client, and silently dropping it could change routing.
    if target.contains('#') {
        return Err(ParseError::InvalidTarget("fragment in request target"));
    }
    if target == "*" {
        return Ok(Target { path: "*".to_owned(), query: Vec::new() });
    }
    let (raw_path, raw_query) = split_target(target)?;
    Ok(Target { path: percent_decode(raw_path, false)?, query: parse_query(raw_query)? })
}

/// The still-encoded path and query of an origin-form or absolute-form target. Absolute-form
/// `http://host?x` has no path at all; its path is `/`.
pub(crate) fn split_target(target: &str) -> Result<(&str, &str), ParseError> {
    let origin = if target.starts_with('/') { target } else { strip_absolute_form(target)? };
    let (raw_path, raw_query) = origin.split_once('?').unwrap_or((origin, ""));
    Ok((if raw_path.is_empty() { "/" } else { raw_path }, raw_query))
}

/// Returns the part of an absolute-form target after its authority (may be
/// empty or start with `?`).
fn strip_absolute_form(target: &str) -> Result<&str, ParseError> {
    const NOT_ORIGIN: ParseError = ParseError::InvalidTarget("request target must be origin-form");
    let (scheme, rest) = target.split_once("://").ok_or(NOT_ORIGIN)?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(NOT_ORIGIN);
    }
    let (authority, tail) = split_at_path(rest);
    if authority.is_empty() {
        return Err(ParseError::InvalidTarget("absolute-form target without host"));
    }
    // The authority stands in for `Host` (RFC 9112 §3.2.2), so it is held to the same grammar; userinfo,
    // which RFC 9110 §4.2.4 forbids in http URIs, fails it.
    split_authority(authority.as_bytes())
        .map_err(|_| ParseError::InvalidTarget("invalid authority in absolute-form target"))?;
    Ok(tail)
}

/// Splits what follows `scheme://` into the authority and the rest.
fn split_at_path(after_scheme: &str) -> (&str, &str) {
    after_scheme.split_at(after_scheme.find(['/', '?']).unwrap_or(after_scheme.len()))
}

/// The authority of an absolute-form target (`http://host:port/...`), which
/// takes precedence over `Host` (RFC 9112 §3.2.2); `None` for other forms.
pub(crate) fn absolute_form_authority(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return None;
    }
    let (_, rest) = target.split_once("://")?;
    Some(split_at_path(rest).0)
}

fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut pairs = Vec::new();
    for piece in raw.split('&').filter(|piece| !piece.is_empty()) {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        pairs.push((percent_decode(key, true)?, percent_decode(value, true)?));
    }
    Ok(pairs)
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`), requiring
/// the result to be UTF-8.
pub(crate) fn percent_decode(input: &str, plus_is_space: bool) -> Result<String, ParseError> {
    let bytes = input.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        return Ok(input.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'%' => {
                let hi = rest.first().copied().and_then(hex_value);
                let lo = rest.get(1).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(ParseError::InvalidTarget("bad percent-encoding"));
                };
                out.push((hi << 4) | lo);
                rest = rest.get(2..).unwrap_or_default();
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| ParseError::InvalidTarget("decoded target is not UTF-8"))
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Raw target, decoded path, decoded query pairs.
    type TargetCase = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

    #[test]
    fn accepted_targets() {
        let table: &[TargetCase] = &[
            ("/", "/", &[]),
            ("*", "*", &[]),
            ("/count?n=5", "/count", &[("n", "5")]),
            ("/a%20b", "/a b", &[]),
            ("/a+b", "/a+b", &[]),
            ("/%2F", "//", &[]),
            ("/caf%C3%A9", "/café", &[]),
            ("/café", "/café", &[]),
            ("/?q=a+b%20c", "/", &[("q", "a b c")]),
            ("/?q=%E2%9C%93", "/", &[("q", "✓")]),
            ("/?a=1&b=2&a=3", "/", &[("a", "1"), ("b", "2"), ("a", "3")]),
            ("/?&&a=1&&", "/", &[("a", "1")]),
            ("/?flag&x=", "/", &[("flag", ""), ("x", "")]),
            ("/?k=v=w", "/", &[("k", "v=w")]),
            ("/?a%3Db=c", "/", &[("a=b", "c")]),
            ("/p?", "/p", &[]),
            ("/p?x=1?y=2", "/p", &[("x", "1?y=2")]),
            ("http://example.com/x?y=1", "/x", &[("y", "1")]),
            ("HTTPS://example.com:8443", "/", &[]),
            ("http://example.com?y=1", "/", &[("y", "1")]),
            ("http://[::1]:8000/x", "/x", &[]),
        ];
        for (raw, path, query) in table {
            let got = parse_target(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got.path, *path, "{raw}");
            assert_eq!(got.query, pairs(query), "{raw}");
        }
    }

    #[test]
    fn rejected_targets() {
        let table = [
            "",
            "index.html",
            "example.com:443",
            "ftp://example.com/",
            "http:///nohost",
            "http://user@example.com/",
            "http://a b/",
            "http://example.com:http/",
            "http://:80/",
            "/a#frag",
            "/%zz",
            "/%4",
            "/%",
            "/?q=%G1",
            "/?q=%",
            "/%FF",
            "/?q=%C3",
            "/a b",
            "/a\tb",
            "/\u{7f}",
        ];
        for raw in table {
            let err = parse_target(raw).expect_err(raw);
            assert!(matches!(err, ParseError::InvalidTarget(_)), "{raw}: {err:?}");
        }
    }

    #[test]
    fn decode_edge_cases() {
        assert_eq!(percent_decode("%41%62", false).unwrap(), "Ab");
        assert_eq!(percent_decode("%4a%4A", false).unwrap(), "JJ");
        assert_eq!(percent_decode("+", false).unwrap(), "+");
        assert_eq!(percent_decode("+", true).unwrap(), " ");
        assert_eq!(percent_decode("%2B", true).unwrap(), "+");
        assert!(percent_decode("%%41", false).is_err());
    }
}
