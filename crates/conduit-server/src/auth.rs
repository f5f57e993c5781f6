//! Bearer-token checks that do not leak the token through timing or logs.

use crate::response::Response;
use conduit_http::{Request, StatusCode};
use subtle::ConstantTimeEq;

/// Compares two secrets in time that depends only on their lengths, so an attacker timing responses learns
/// nothing about how many leading bytes of a guess were right.
///
/// The comparison is `subtle`'s, which keeps the optimiser from turning it back into an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched case-insensitively).
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.header("authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Checks the request's bearer token against `expected`.
///
/// # Errors
/// A `401 Unauthorized` JSON response (`{"error": "..."}`, with `WWW-Authenticate: Bearer`) when the header is
/// missing or the token is wrong. Neither the expected nor the offered token is ever logged.
pub fn require_bearer(req: &Request, expected: &str) -> Result<(), Response> {
    match bearer_token(req) {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        offered => {
            let error = if offered.is_some() { "invalid bearer token" } else { "missing bearer token" };
            log::debug!("refused {} {}: {error}", req.method(), req.path());
            Err(Response::json(&serde_json::json!({ "error": error }))
                .status(StatusCode::UNAUTHORIZED)
                .header("WWW-Authenticate", "Bearer"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_http::Method;

    #[test]
    fn compares_whole_secrets() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"abc", b"abc", true),
            (b"abc", b"abd", false),
            (b"abc", b"ab", false),
            (b"", b"", true),
            (b"x", b"", false),
            (b"", b"x", false),
            (b"abc", b"abcd", false),
            (b"xbc", b"abc", false),
            (b"\x80bc", b"\x00bc", false),
            (b"ab\x01", b"ab\x00", false),
            (b"\xff\xff", b"\xff\xff", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(constant_time_eq(a, b), *want, "{a:?} {b:?}");
            assert_eq!(constant_time_eq(b, a), *want, "{b:?} {a:?}");
        }
        // A long secret that differs in any one bit of any one byte.
        let secret: Vec<u8> = (0..=255).collect();
        assert!(constant_time_eq(&secret, &secret.clone()));
        for at in 0..secret.len() {
            for bit in 0..8 {
                let mut guess = secret.clone();
                guess[at] ^= 1 << bit;
                assert!(!constant_time_eq(&secret, &guess), "byte {at} bit {bit}");
            }
        }
    }

    #[test]
    fn checks_bearer_headers() {
        let req = |value: Option<&str>| {
            let r = Request::new(Method::Post, "/x").unwrap();
            match value {
                Some(v) => r.with_header("Authorization", v),
                None => r,
            }
        };
        let cases = [
            (Some("Bearer s3cret"), true),
            (Some("bearer s3cret"), true),
            (Some("Bearer  s3cret "), true),
            (Some("Bearer wrong"), false),
            (Some("Basic s3cret"), false),
            (Some("Bearer"), false),
            (Some("s3cret"), false),
            (None, false),
        ];
        for (header, ok) in cases {
            let result = require_bearer(&req(header), "s3cret");
            assert_eq!(result.is_ok(), ok, "{header:?}");
            if let Err(r) = result {
                assert_eq!(r.status_code(), StatusCode::UNAUTHORIZED);
                assert!(r.headers().iter().any(|(n, v)| n == "WWW-Authenticate" && v == "Bearer"));
                let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
                assert!(body["error"].as_str().unwrap().contains("bearer token"));
            }
        }
    }
}
