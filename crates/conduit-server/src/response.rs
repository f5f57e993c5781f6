//! Ordinary (non-streaming) responses.

use conduit_http::{HeaderError, ResponseHead, StatusCode};

/// A complete response with a body of known length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// `200` with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Response::new(StatusCode::OK).with_body("text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// `200` with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<String>) -> Self {
        Response::new(StatusCode::OK).with_body("text/html; charset=utf-8", body.into().into_bytes())
    }

    /// `200` with a JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Response::new(StatusCode::OK).with_body("application/json", value.to_string().into_bytes())
    }

    /// An error response: `status` with a short plain-text explanation ending in a line break. It carries
    /// `X-Content-Type-Options: nosniff`, because the explanation may quote what the client sent and must never
    /// be taken for HTML.
    pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Response::new(status)
            .with_body("text/plain; charset=utf-8", format!("{message}\n").into_bytes())
            .header("X-Content-Type-Options", "nosniff")
    }

    /// Sets the body and its `Content-Type`, for bodies the other constructors do not cover (an image, say).
    #[must_use]
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers.push(("Content-Type".into(), content_type.into()));
        self.body = body.into();
        self
    }

    /// Replaces the status.
    #[must_use]
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    ///
    /// # Errors
    /// [`HeaderError`] if the name is not a valid token or the value holds CR, LF or other control characters.
    pub fn try_header(mut self, name: &str, value: &str) -> Result<Self, HeaderError> {
        ResponseHead::new(self.status).header(name, value)?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Adds a header; an invalid name or value turns the response into a `500` (and is logged), because
    /// sending it could split the response. Use [`try_header`](Self::try_header) to handle the error yourself.
    #[must_use]
    pub fn header(self, name: &str, value: &str) -> Self {
        match self.clone().try_header(name, value) {
            Ok(r) => r,
            Err(e) => {
                log::error!("handler set an invalid response header {name:?}: {e}");
                Response::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error: invalid response header")
            }
        }
    }

    /// The status.
    pub fn status_code(&self) -> StatusCode {
        self.status
    }

    /// The headers set so far.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}
