//! Incremental decoding of the chunked transfer coding (RFC 9112 §7.1),
//! without I/O and without copying: the server's request parser and the
//! client's response reader share it.

use std::error::Error;
use std::fmt;

use crate::response::is_tchar;
use crate::target::hex_value;

/// How a [`ChunkedDecoder`] reads line ends, and the bounds it enforces.
///
/// [`ChunkedConfig::strict`] is for input a server must not misread (request
/// bodies); [`ChunkedConfig::lenient`] for what a client receives (response
/// bodies). They differ in line ends and in chunk extensions, which strict
/// mode holds to their grammar; both enforce the same kinds of bounds.
///
/// ```
/// use conduit_http::{ChunkedConfig, ChunkedDecoder};
///
/// let config = ChunkedConfig::strict().with_max_trailer_bytes(4096).with_max_body_bytes(1 << 20);
/// let decoder = ChunkedDecoder::new(config);
/// assert_eq!(decoder.config().max_trailer_bytes(), 4096);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedConfig {
    lenient: bool,
    max_size_line: usize,
    max_trailer_bytes: usize,
    max_body_bytes: Option<u64>,
}

impl ChunkedConfig {
    /// The default bound on a chunk-size line, line end included: 1 KiB.
    pub const DEFAULT_MAX_SIZE_LINE: usize = 1024;
    /// The default bound on the trailer section, line ends included: 16 KiB.
    pub const DEFAULT_MAX_TRAILER_BYTES: usize = 16 * 1024;

    /// Every line must end in CRLF; a bare LF is an error
    /// ([`ChunkedErrorKind::BareLf`]). Chunk extensions must follow RFC 9112
    /// §7.1.1, `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`
    /// ([`ChunkedErrorKind::InvalidExtension`]). Lenient line ends, and
    /// extensions two parsers may end in different places, are where request
    /// smuggling starts, so a server should read request bodies this way.
    ///
    /// Default bounds, no bound on the decoded size.
    pub const fn strict() -> Self {
        ChunkedConfig {
            lenient: false,
            max_size_line: Self::DEFAULT_MAX_SIZE_LINE,
            max_trailer_bytes: Self::DEFAULT_MAX_TRAILER_BYTES,
            max_body_bytes: None,
        }
    }

    /// Lines may end in CRLF or in a bare LF, which RFC 9112 §2.2 allows a
    /// recipient to accept, and anything but control characters may follow a
    /// chunk size's `;`; meant for clients reading responses. A CR that is
    /// not followed by LF is still an error.
    ///
    /// Default bounds, no bound on the decoded size.
    pub const fn lenient() -> Self {
        ChunkedConfig { lenient: true, ..Self::strict() }
    }

    /// Bounds each chunk-size line (digits, extensions and line end) to
    /// `bytes`; past it: [`ChunkedErrorKind::SizeLineTooLong`]. Without the
    /// bound, extensions could make the decoder read without end.
    #[must_use]
    pub const fn with_max_size_line(self, bytes: usize) -> Self {
        ChunkedConfig { max_size_line: bytes, ..self }
    }

    /// Bounds the trailer section (every trailer line and the final empty
    /// line, line ends included) to `bytes`; past it:
    /// [`ChunkedErrorKind::TrailersTooLarge`].
    #[must_use]
    pub const fn with_max_trailer_bytes(self, bytes: usize) -> Self {
        ChunkedConfig { max_trailer_bytes: bytes, ..self }
    }

    /// Bounds the decoded body to `bytes`; past it:
    /// [`ChunkedErrorKind::BodyTooLarge`], reported as soon as a chunk's
    /// size line shows the body would not fit, before its data arrives.
    #[must_use]
    pub const fn with_max_body_bytes(self, bytes: u64) -> Self {
        ChunkedConfig { max_body_bytes: Some(bytes), ..self }
    }

    /// True for [`ChunkedConfig::lenient`]: a bare LF ends a line and chunk
    /// extensions are not held to their grammar.
    pub const fn is_lenient(&self) -> bool {
        self.lenient
    }

    /// The bound on a chunk-size line, in bytes.
    pub const fn max_size_line(&self) -> usize {
        self.max_size_line
    }

    /// The bound on the trailer section, in bytes.
    pub const fn max_trailer_bytes(&self) -> usize {
        self.max_trailer_bytes
    }

    /// The bound on the decoded body, if any.
    pub const fn max_body_bytes(&self) -> Option<u64> {
        self.max_body_bytes
    }
}

impl Default for ChunkedConfig {
    /// [`ChunkedConfig::strict`].
    fn default() -> Self {
        Self::strict()
    }
}

/// What was wrong with a chunked body; see [`ChunkedError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChunkedErrorKind {
    /// A chunk-size line that does not start with a hex digit.
    MissingSize,
    /// A chunk size that does not fit in 64 bits.
    SizeOverflow,
    /// Something other than `[ BWS ";" extensions ]` after a chunk size:
    /// trailing whitespace, a stray byte or CR; with
    /// [`ChunkedConfig::lenient`], a control character in an extension.
    InvalidSizeLine,
    /// A chunk-size line longer than [`ChunkedConfig::max_size_line`].
    SizeLineTooLong,
    /// Chunk data not followed by a line end: the chunk is longer than its
    /// size, or a CR after it is not followed by LF.
    DataNotTerminated,
    /// A line ended by LF without CR, with [`ChunkedConfig::strict`].
    BareLf,
    /// A trailer line that is not a `name: value` field (token name, no
    /// control characters, no stray CR).
    InvalidTrailer,
    /// A trailer section longer than
    /// [`ChunkedConfig::max_trailer_bytes`].
    TrailersTooLarge,
    /// A body longer than [`ChunkedConfig::max_body_bytes`].
    BodyTooLarge,
    /// With [`ChunkedConfig::strict`], chunk extensions that do not follow
    /// their grammar: an empty name, a stray byte, an unclosed quoted string,
    /// whitespace at the end of the line.
    InvalidExtension,
}

impl ChunkedErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ChunkedErrorKind::MissingSize => "missing chunk size",
            ChunkedErrorKind::SizeOverflow => "chunk size too large",
            ChunkedErrorKind::InvalidSizeLine => "invalid chunk-size line",
            ChunkedErrorKind::SizeLineTooLong => "chunk-size line too long",
            ChunkedErrorKind::DataNotTerminated => "chunk data not followed by a line end",
            ChunkedErrorKind::BareLf => "line ended by LF without CR",
            ChunkedErrorKind::InvalidTrailer => "invalid trailer field",
            ChunkedErrorKind::TrailersTooLarge => "trailers too large",
            ChunkedErrorKind::BodyTooLarge => "body too large",
            ChunkedErrorKind::InvalidExtension => "invalid chunk extension",
        }
    }
}

impl fmt::Display for ChunkedErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Malformed or oversized chunked framing. After it the body's framing, and
/// so the connection's, can no longer be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedError {
    kind: ChunkedErrorKind,
}

impl ChunkedError {
    /// What was wrong.
    pub fn kind(&self) -> ChunkedErrorKind {
        self.kind
    }
}

impl From<ChunkedErrorKind> for ChunkedError {
    fn from(kind: ChunkedErrorKind) -> Self {
        ChunkedError { kind }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad chunked encoding: {}", self.kind)
    }
}

impl Error for ChunkedError {}

/// Where the decoder is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Inside a chunk-size line; `cr` if the last byte was a CR, which ends
    /// the line if an LF follows and is a stray byte otherwise.
    SizeLine { scan: SizeScan, size: u64, cr: bool },
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// After a chunk's data: a line end must follow.
    DataEnd,
    /// The CR after a chunk's data was read; LF must follow.
    DataLf,
    /// Inside a trailer line (or the empty line that ends the body).
    Trailer { field: FieldScan, cr: bool },
    /// The body is complete; nothing more is read.
    Done,
    /// An error was reported; it is reported again on every call.
    Failed(ChunkedErrorKind),
}

/// The grammar of a chunk-size line before its line end:
/// `1*HEXDIG [ BWS ";" chunk-ext ]`; with [`ChunkedConfig::strict`], each
/// extension is `BWS name [ BWS "=" BWS ( token / quoted-string ) ]`, and
/// further ones follow after `BWS ";"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SizeScan {
    /// No byte yet.
    Start,
    /// Hex digits.
    Digits,
    /// Whitespace after the digits; only a `;` may end it.
    Space,
    /// Lenient: after the `;`, anything but control characters.
    Extension,
    /// Strict: after a `;`, before the extension's name.
    ExtStart,
    ExtName,
    /// Whitespace after a name: `=` or `;` must follow.
    ExtNameSpace,
    /// After the `=`, before the value.
    ExtValueStart,
    ExtToken,
    /// Inside a quoted-string; `escape` just after a backslash.
    ExtQuoted {
        escape: bool,
    },
    /// Just after a quoted-string's closing quote.
    ExtQuoteEnd,
    /// Whitespace after a value: only a `;` may end it.
    ExtValueSpace,
    /// Broken; the error is reported when the line ends.
    Bad(ChunkedErrorKind),
}

impl SizeScan {
    fn next(self, b: u8, size: &mut u64, lenient: bool) -> SizeScan {
        match self {
            SizeScan::Start | SizeScan::Digits => match hex_value(b) {
                Some(digit) => match size.checked_mul(16).and_then(|s| s.checked_add(u64::from(digit))) {
                    Some(s) => {
                        *size = s;
                        SizeScan::Digits
                    }
                    None => SizeScan::Bad(ChunkedErrorKind::SizeOverflow),
                },
                None if self == SizeScan::Start => SizeScan::Bad(ChunkedErrorKind::MissingSize),
                None => SizeScan::after_size(b, lenient),
            },
            SizeScan::Space => SizeScan::after_size(b, lenient),
            SizeScan::Extension if is_ctl(b) => SizeScan::Bad(ChunkedErrorKind::InvalidSizeLine),
            SizeScan::Extension => SizeScan::Extension,
            SizeScan::Bad(kind) => SizeScan::Bad(kind),
            strict => strict.next_strict(b),
        }
    }

    fn after_size(b: u8, lenient: bool) -> SizeScan {
        match b {
            b' ' | b'\t' => SizeScan::Space,
            b';' if lenient => SizeScan::Extension,
            b';' => SizeScan::ExtStart,
            _ => SizeScan::Bad(ChunkedErrorKind::InvalidSizeLine),
        }
    }

    /// One byte of the strict extension grammar.
    fn next_strict(self, b: u8) -> SizeScan {
        let space = b == b' ' || b == b'\t';
        match (self, b) {
            (SizeScan::ExtStart, _) if space => SizeScan::ExtStart,
            (SizeScan::ExtStart | SizeScan::ExtName, _) if is_tchar(b) => SizeScan::ExtName,
            (SizeScan::ExtName | SizeScan::ExtNameSpace, _) if space => SizeScan::ExtNameSpace,
            (SizeScan::ExtName | SizeScan::ExtNameSpace, b'=') => SizeScan::ExtValueStart,
            (SizeScan::ExtValueStart, _) if space => SizeScan::ExtValueStart,
            (SizeScan::ExtValueStart, b'"') => SizeScan::ExtQuoted { escape: false },
            (SizeScan::ExtValueStart | SizeScan::ExtToken, _) if is_tchar(b) => SizeScan::ExtToken,
            (SizeScan::ExtQuoted { escape: false }, b'"') => SizeScan::ExtQuoteEnd,
            (SizeScan::ExtQuoted { escape: false }, b'\\') => SizeScan::ExtQuoted { escape: true },
            // qdtext, and after a backslash also `"` and `\`: any of HTAB, SP, VCHAR and obs-text.
            (SizeScan::ExtQuoted { .. }, _) if !is_ctl(b) => SizeScan::ExtQuoted { escape: false },
            (SizeScan::ExtToken | SizeScan::ExtQuoteEnd | SizeScan::ExtValueSpace, _) if space => {
                SizeScan::ExtValueSpace
            }
            (SizeScan::ExtName | SizeScan::ExtNameSpace | SizeScan::ExtToken, b';') => SizeScan::ExtStart,
            (SizeScan::ExtQuoteEnd | SizeScan::ExtValueSpace, b';') => SizeScan::ExtStart,
            _ => SizeScan::Bad(ChunkedErrorKind::InvalidExtension),
        }
    }

    /// The verdict on a complete line.
    fn finish(self) -> Result<(), ChunkedErrorKind> {
        match self {
            SizeScan::Digits | SizeScan::Extension | SizeScan::ExtName | SizeScan::ExtToken | SizeScan::ExtQuoteEnd => {
                Ok(())
            }
            SizeScan::Start => Err(ChunkedErrorKind::MissingSize),
            SizeScan::Space => Err(ChunkedErrorKind::InvalidSizeLine),
            SizeScan::ExtStart
            | SizeScan::ExtNameSpace
            | SizeScan::ExtValueStart
            | SizeScan::ExtQuoted { .. }
            | SizeScan::ExtValueSpace => Err(ChunkedErrorKind::InvalidExtension),
            SizeScan::Bad(kind) => Err(kind),
        }
    }
}

/// The grammar of a trailer line before its line end: a token name, a colon,
/// and a value without control characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldScan {
    /// No byte yet: a line end here ends the body.
    Start,
    Name,
    /// From the colon on.
    Value,
    /// Broken; the error is reported when the line ends.
    Bad,
}

impl FieldScan {
    fn next(self, b: u8) -> FieldScan {
        match self {
            FieldScan::Name if b == b':' => FieldScan::Value,
            FieldScan::Start | FieldScan::Name if is_tchar(b) => FieldScan::Name,
            FieldScan::Value if !is_ctl(b) => FieldScan::Value,
            _ => FieldScan::Bad,
        }
    }
}

/// Decodes a chunked body fed in arbitrary pieces, handing out the data as
/// slices of the input, without copying or buffering anything itself.
///
/// Chunk extensions and trailer fields are checked and skipped. Syntax errors
/// in a line are reported when its line end arrives (or its bound is
/// reached), so the outcome never depends on how the input is split. Each
/// byte is examined once: linear time however the input arrives.
///
/// ```
/// use conduit_http::{ChunkedConfig, ChunkedDecoder};
///
/// let mut decoder = ChunkedDecoder::new(ChunkedConfig::strict());
/// let mut body = Vec::new();
/// for piece in [&b"5\r\nhel"[..], b"lo\r\n0\r\n", b"\r\nnext request"] {
///     let mut input = piece;
///     while let Some(data) = decoder.decode(&mut input)? {
///         body.extend_from_slice(data);
///     }
///     if decoder.is_done() {
///         assert_eq!(input, b"next request");
///     }
/// }
/// assert_eq!(body, b"hello");
/// # Ok::<(), conduit_http::ChunkedError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    config: ChunkedConfig,
    state: State,
    /// Bytes of the current chunk-size line, or of the trailer section so far.
    line_bytes: usize,
    /// The sum of the chunk sizes so far.
    decoded: u64,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new(config: ChunkedConfig) -> Self {
        ChunkedDecoder {
            config,
            state: State::SizeLine { scan: SizeScan::Start, size: 0, cr: false },
            line_bytes: 0,
            decoded: 0,
        }
    }

    /// The configuration this decoder was made with.
    pub fn config(&self) -> &ChunkedConfig {
        &self.config
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing from the front of `input` and returns the next run of
    /// body data, advancing `input` past everything used.
    ///
    /// `Ok(None)` means `input` is used up (feed more) or the body is complete
    /// ([`ChunkedDecoder::is_done`]); bytes after the end of the body are left
    /// in `input`. A returned run is never empty.
    ///
    /// # Errors
    ///
    /// A [`ChunkedError`] for malformed framing or a bound passed; its
    /// [`kind`](ChunkedError::kind) says which. `input` has then been
    /// advanced past the byte that showed it. The decoder is finished: every
    /// later call returns the same error and consumes nothing.
    pub fn decode<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, ChunkedError> {
        loop {
            let bound = match self.state {
                State::Data { remaining } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                    let (data, rest) = input.split_at(take);
                    *input = rest;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 { State::DataEnd } else { State::Data { remaining } };
                    return Ok(Some(data));
                }
                State::Done => return Ok(None),
                State::Failed(kind) => return Err(kind.into()),
                State::SizeLine { .. } => Some((self.config.max_size_line, ChunkedErrorKind::SizeLineTooLong)),
                State::Trailer { .. } => Some((self.config.max_trailer_bytes, ChunkedErrorKind::TrailersTooLarge)),
                State::DataEnd | State::DataLf => None,
            };
            // The bound is reached and the line (or section) is not over: no
            // later byte could make it acceptable, so say so now rather than
            // when the next byte arrives.
            if let Some((max, too_long)) = bound
                && self.line_bytes >= max
            {
                return Err(self.fail(too_long));
            }
            let Some((&b, rest)) = input.split_first() else {
                return Ok(None);
            };
            *input = rest;
            if let Err(kind) = self.step(b) {
                return Err(self.fail(kind));
            }
        }
    }

    fn fail(&mut self, kind: ChunkedErrorKind) -> ChunkedError {
        self.state = State::Failed(kind);
        kind.into()
    }

    /// One framing byte (never called in `Data`, `Done` or `Failed`).
    fn step(&mut self, b: u8) -> Result<(), ChunkedErrorKind> {
        self.state = match self.state {
            State::SizeLine { mut scan, mut size, cr } => {
                self.line_bytes += 1;
                if b == b'\n' {
                    return self.end_size_line(scan, size, cr);
                }
                let lenient = self.config.lenient;
                if cr {
                    scan = scan.next(b'\r', &mut size, lenient);
                }
                if b != b'\r' {
                    scan = scan.next(b, &mut size, lenient);
                }
                State::SizeLine { scan, size, cr: b == b'\r' }
            }
            State::DataEnd => match b {
                b'\r' => State::DataLf,
                b'\n' if self.config.lenient => self.start_size_line(),
                b'\n' => return Err(ChunkedErrorKind::BareLf),
                _ => return Err(ChunkedErrorKind::DataNotTerminated),
            },
            State::DataLf => match b {
                b'\n' => self.start_size_line(),
                _ => return Err(ChunkedErrorKind::DataNotTerminated),
            },
            State::Trailer { mut field, cr } => {
                self.line_bytes += 1;
                if b == b'\n' {
                    return self.end_trailer_line(field, cr);
                }
                if cr {
                    field = field.next(b'\r');
                }
                if b != b'\r' {
                    field = field.next(b);
                }
                State::Trailer { field, cr: b == b'\r' }
            }
            state @ (State::Data { .. } | State::Done | State::Failed(_)) => state,
        };
        Ok(())
    }

    fn start_size_line(&mut self) -> State {
        self.line_bytes = 0;
        State::SizeLine { scan: SizeScan::Start, size: 0, cr: false }
    }

    /// An LF ended a chunk-size line; `cr` if a CR came just before it.
    fn end_size_line(&mut self, scan: SizeScan, size: u64, cr: bool) -> Result<(), ChunkedErrorKind> {
        self.check_line_end(cr)?;
        scan.finish()?;
        self.line_bytes = 0;
        if size == 0 {
            self.state = State::Trailer { field: FieldScan::Start, cr: false };
            return Ok(());
        }
        // Refused before the data arrives: the size alone shows the body will
        // not fit.
        if let Some(max) = self.config.max_body_bytes
            && self.decoded.checked_add(size).is_none_or(|total| total > max)
        {
            return Err(ChunkedErrorKind::BodyTooLarge);
        }
        self.decoded = self.decoded.saturating_add(size);
        self.state = State::Data { remaining: size };
        Ok(())
    }

    /// An LF ended a trailer line; `cr` if a CR came just before it. The
    /// section's byte count goes on across lines.
    fn end_trailer_line(&mut self, field: FieldScan, cr: bool) -> Result<(), ChunkedErrorKind> {
        self.check_line_end(cr)?;
        self.state = match field {
            FieldScan::Start => State::Done,
            // Trailer fields are discarded, but a malformed one still means
            // the sender's framing is not to be trusted.
            FieldScan::Name | FieldScan::Bad => return Err(ChunkedErrorKind::InvalidTrailer),
            FieldScan::Value => State::Trailer { field: FieldScan::Start, cr: false },
        };
        Ok(())
    }

    fn check_line_end(&self, cr: bool) -> Result<(), ChunkedErrorKind> {
        if cr || self.config.lenient { Ok(()) } else { Err(ChunkedErrorKind::BareLf) }
    }
}

/// A control character other than HTAB.
fn is_ctl(b: u8) -> bool {
    (b < b' ' && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests;
