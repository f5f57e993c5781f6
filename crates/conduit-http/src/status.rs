//! Status codes and their reason phrases.

use std::fmt;

/// An HTTP status code with its reason phrase.
///
/// Any value in `100..=999` can be represented; [`StatusCode::reason`] knows
/// the phrases of the common ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 100 Continue.
    pub const CONTINUE: StatusCode = StatusCode(100);
    /// 101 Switching Protocols.
    pub const SWITCHING_PROTOCOLS: StatusCode = StatusCode(101);
    /// 200 OK.
    pub const OK: StatusCode = StatusCode(200);
    /// 201 Created.
    pub const CREATED: StatusCode = StatusCode(201);
    /// 202 Accepted.
    pub const ACCEPTED: StatusCode = StatusCode(202);
    /// 204 No Content.
    pub const NO_CONTENT: StatusCode = StatusCode(204);
    /// 301 Moved Permanently.
    pub const MOVED_PERMANENTLY: StatusCode = StatusCode(301);
    /// 302 Found.
    pub const FOUND: StatusCode = StatusCode(302);
    /// 304 Not Modified.
    pub const NOT_MODIFIED: StatusCode = StatusCode(304);
    /// 400 Bad Request.
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    /// 403 Forbidden.
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// 404 Not Found.
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    /// 406 Not Acceptable.
    pub const NOT_ACCEPTABLE: StatusCode = StatusCode(406);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    /// 409 Conflict.
    pub const CONFLICT: StatusCode = StatusCode(409);
    /// 410 Gone.
    pub const GONE: StatusCode = StatusCode(410);
    /// 411 Length Required.
    pub const LENGTH_REQUIRED: StatusCode = StatusCode(411);
    /// 413 Payload Too Large.
    pub const PAYLOAD_TOO_LARGE: StatusCode = StatusCode(413);
    /// 414 URI Too Long.
    pub const URI_TOO_LONG: StatusCode = StatusCode(414);
    /// 415 Unsupported Media Type.
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    /// 417 Expectation Failed.
    pub const EXPECTATION_FAILED: StatusCode = StatusCode(417);
    /// 421 Misdirected Request: the request names a host this server does not serve.
    pub const MISDIRECTED_REQUEST: StatusCode = StatusCode(421);
    /// 429 Too Many Requests.
    pub const TOO_MANY_REQUESTS: StatusCode = StatusCode(429);
    /// 431 Request Header Fields Too Large.
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: StatusCode = StatusCode(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: StatusCode = StatusCode(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    /// 502 Bad Gateway.
    pub const BAD_GATEWAY: StatusCode = StatusCode(502);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    /// 504 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: StatusCode = StatusCode(504);
    /// 505 HTTP Version Not Supported.
    pub const HTTP_VERSION_NOT_SUPPORTED: StatusCode = StatusCode(505);

    /// Wraps a numeric code.
    ///
    /// Returns `None` outside `100..=999`, the range a three-digit status
    /// line can carry.
    pub fn from_u16(code: u16) -> Option<StatusCode> {
        (100..=999).contains(&code).then_some(StatusCode(code))
    }

    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// The standard reason phrase, e.g. `"Not Found"`; `""` for codes this
    /// crate does not know.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            203 => "Non-Authoritative Information",
            204 => "No Content",
            205 => "Reset Content",
            206 => "Partial Content",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Payload Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            421 => "Misdirected Request",
            422 => "Unprocessable Entity",
            426 => "Upgrade Required",
            428 => "Precondition Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// Whether a response with this status may carry a body.
    ///
    /// 1xx, 204 and 304 never do (RFC 9110 §6.4.1), so a peer would misread
    /// anything sent after their head as the next response.
    pub fn allows_body(self) -> bool {
        !(self.is_informational() || self.0 == 204 || self.0 == 304)
    }

    /// True for 1xx codes.
    pub fn is_informational(self) -> bool {
        (100..200).contains(&self.0)
    }

    /// True for 2xx codes.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// True for 4xx codes.
    pub fn is_client_error(self) -> bool {
        (400..500).contains(&self.0)
    }

    /// True for 5xx codes.
    pub fn is_server_error(self) -> bool {
        (500..600).contains(&self.0)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason();
        if reason.is_empty() { write!(f, "{}", self.0) } else { write!(f, "{} {}", self.0, reason) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        for (code, ok) in
            [(0, false), (99, false), (100, true), (599, true), (999, true), (1000, false), (u16::MAX, false)]
        {
            assert_eq!(StatusCode::from_u16(code).is_some(), ok, "{code}");
        }
        assert_eq!(StatusCode::from_u16(404), Some(StatusCode::NOT_FOUND));
    }

    #[test]
    fn display_and_reason() {
        let table = [
            (StatusCode::CONTINUE, "100 Continue"),
            (StatusCode::OK, "200 OK"),
            (StatusCode::NO_CONTENT, "204 No Content"),
            (StatusCode::NOT_FOUND, "404 Not Found"),
            (StatusCode::PAYLOAD_TOO_LARGE, "413 Payload Too Large"),
            (StatusCode::URI_TOO_LONG, "414 URI Too Long"),
            (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "431 Request Header Fields Too Large"),
            (StatusCode::HTTP_VERSION_NOT_SUPPORTED, "505 HTTP Version Not Supported"),
        ];
        for (code, text) in table {
            assert_eq!(code.to_string(), text);
        }
        let odd = StatusCode::from_u16(799).unwrap();
        assert_eq!(odd.reason(), "");
        assert_eq!(odd.to_string(), "799");
    }

    #[test]
    fn body_rules() {
        for (code, allowed) in [
            (100, false),
            (101, false),
            (199, false),
            (200, true),
            (204, false),
            (205, true),
            (304, false),
            (404, true),
            (500, true),
        ] {
            assert_eq!(StatusCode::from_u16(code).unwrap().allows_body(), allowed, "{code}");
        }
    }

    #[test]
    fn classes() {
        assert!(StatusCode::CONTINUE.is_informational());
        assert!(StatusCode::CREATED.is_success());
        assert!(StatusCode::CONFLICT.is_client_error());
        assert!(StatusCode::SERVICE_UNAVAILABLE.is_server_error());
        assert!(!StatusCode::OK.is_client_error());
        assert!(StatusCode::OK < StatusCode::NOT_FOUND);
        assert_eq!(StatusCode::UNAUTHORIZED.as_u16(), 401);
    }
}
