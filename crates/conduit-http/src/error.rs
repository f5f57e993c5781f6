//! Why a request was refused.

use std::error::Error;
use std::fmt;

use crate::StatusCode;

/// Why a request was refused; [`ParseError::status`] says which response to
/// send.
///
/// After any of these the connection's framing can no longer be trusted, so
/// the server should answer and then close.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The head (leading empty lines, request line, header fields and the
    /// blank line) or a chunked trailer exceeded
    /// [`Limits::max_head_bytes`](crate::Limits::max_head_bytes). 431.
    HeadTooLarge,
    /// More header fields than
    /// [`Limits::max_headers`](crate::Limits::max_headers). 431.
    TooManyHeaders,
    /// The request-target exceeded
    /// [`Limits::max_uri_bytes`](crate::Limits::max_uri_bytes). 414.
    UriTooLong,
    /// The declared or decoded body exceeded
    /// [`Limits::max_body_bytes`](crate::Limits::max_body_bytes). 413.
    BodyTooLarge,
    /// The head is not valid HTTP/1.x syntax; the text names the problem. 400.
    Malformed(&'static str),
    /// `Content-Length` is not a plain decimal number, overflows, or appears
    /// more than once (even with equal values, to leave no room for request
    /// smuggling). 400.
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` were sent. 400.
    ConflictingFraming,
    /// A `Transfer-Encoding` other than exactly `chunked`. 501.
    UnsupportedTransferEncoding,
    /// A bad chunk-size line, or chunk data not followed by CRLF. 400.
    InvalidChunk,
    /// The request-target is not origin-form (or absolute-form, or `*`), has
    /// a fragment or bad percent-encoding, or decodes to invalid UTF-8. 400.
    InvalidTarget(&'static str),
    /// An HTTP version other than 1.0 or 1.1. 505.
    UnsupportedVersion,
    /// An HTTP/1.1 request without `Host`, any request with more than one,
    /// or a `Host` that is not `uri-host [":" port]` (RFC 9112 §3.2); the
    /// text says which. 400.
    InvalidHost(&'static str),
    /// More than one field of a name the server reads one value of, named
    /// here as in [`SINGLETON_FIELDS`](crate::SINGLETON_FIELDS): taking the
    /// first (or the last) would be a guess another hop may not share. 400.
    DuplicateField(&'static str),
}

impl ParseError {
    /// The status code of the response that should answer this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ParseError::UriTooLong => StatusCode::URI_TOO_LONG,
            ParseError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ParseError::Malformed(_)
            | ParseError::InvalidContentLength
            | ParseError::ConflictingFraming
            | ParseError::InvalidChunk
            | ParseError::InvalidTarget(_)
            | ParseError::InvalidHost(_)
            | ParseError::DuplicateField(_) => StatusCode::BAD_REQUEST,
            ParseError::UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            ParseError::UnsupportedVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::HeadTooLarge => f.write_str("request head too large"),
            ParseError::TooManyHeaders => f.write_str("too many header fields"),
            ParseError::UriTooLong => f.write_str("request target too long"),
            ParseError::BodyTooLarge => f.write_str("request body too large"),
            ParseError::Malformed(why) => write!(f, "malformed request: {why}"),
            ParseError::InvalidContentLength => f.write_str("invalid Content-Length"),
            ParseError::ConflictingFraming => f.write_str("both Content-Length and Transfer-Encoding present"),
            ParseError::UnsupportedTransferEncoding => {
                f.write_str("unsupported Transfer-Encoding (only chunked is accepted)")
            }
            ParseError::InvalidChunk => f.write_str("invalid chunked body"),
            ParseError::InvalidTarget(why) => write!(f, "invalid request target: {why}"),
            ParseError::UnsupportedVersion => f.write_str("unsupported HTTP version"),
            ParseError::InvalidHost(why) => write!(f, "invalid Host: {why}"),
            ParseError::DuplicateField(name) => write!(f, "more than one {name} header field"),
        }
    }
}

impl Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_status() {
        let table = [
            (ParseError::HeadTooLarge, 431),
            (ParseError::TooManyHeaders, 431),
            (ParseError::UriTooLong, 414),
            (ParseError::BodyTooLarge, 413),
            (ParseError::Malformed("x"), 400),
            (ParseError::InvalidContentLength, 400),
            (ParseError::ConflictingFraming, 400),
            (ParseError::UnsupportedTransferEncoding, 501),
            (ParseError::InvalidChunk, 400),
            (ParseError::InvalidTarget("x"), 400),
            (ParseError::UnsupportedVersion, 505),
            (ParseError::InvalidHost("x"), 400),
            (ParseError::DuplicateField("Origin"), 400),
        ];
        for (err, code) in table {
            assert_eq!(err.status().as_u16(), code, "{err:?}");
            let text = err.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
    }

    #[test]
    fn display_carries_the_reason() {
        assert_eq!(ParseError::Malformed("invalid header name").to_string(), "malformed request: invalid header name");
        assert_eq!(ParseError::InvalidTarget("fragment").to_string(), "invalid request target: fragment");
        assert_eq!(
            ParseError::InvalidHost("missing Host header field").to_string(),
            "invalid Host: missing Host header field"
        );
        assert_eq!(ParseError::DuplicateField("Authorization").to_string(), "more than one Authorization header field");
    }
}
