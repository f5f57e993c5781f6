//! Incremental decoding of the chunked transfer coding (RFC 9112 §7.1), in whatever pieces the socket yields.

use std::fmt;

/// The longest chunk-size line accepted, extensions included.
pub(crate) const MAX_SIZE_LINE: usize = 1024;
/// Most trailer bytes accepted after the last chunk.
pub(crate) const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// Hex digits in a chunk size: 16 fill a `u64`.
const MAX_SIZE_DIGITS: u8 = 16;

/// Where the decoder is in the chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size { size: u64, digits: u8 },
    /// After the digits: optional whitespace and `;extensions`, skipped up to the line end.
    Extension { size: u64 },
    /// A CR ended the size line; LF must follow.
    SizeLf { size: u64 },
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// After a chunk's data: CRLF must follow.
    DataCr,
    /// The CR after a chunk's data was seen; LF must follow.
    DataLf,
    /// After the last chunk: trailer lines, ended by an empty one. `empty` while the current line has no byte.
    Trailer { empty: bool },
    /// A CR ended a trailer line; LF must follow.
    TrailerLf { empty: bool },
    /// The body is complete; nothing more is read.
    Done,
}

/// Malformed chunked framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkedError(&'static str);

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad chunked encoding: {}", self.0)
    }
}

/// Decodes a chunked body fed in arbitrary pieces, handing out the data without copying it.
///
/// Line ends may be CRLF or a bare LF (RFC 9112 §2.2 lets recipients accept the latter). Chunk extensions and
/// trailers are skipped. Size lines, sizes and trailers are bounded, so a hostile peer cannot make it buffer or
/// loop without limit; it never buffers anything itself.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size line, or of all trailers so far.
    line_len: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub(crate) fn new() -> Self {
        ChunkedDecoder { state: State::Size { size: 0, digits: 0 }, line_len: 0 }
    }

    /// True once the last chunk and the trailers have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing from the front of `input` and returns the next run of body data, advancing `input`
    /// past everything used. `None` means `input` is used up or the body is complete ([`is_done`]); bytes after
    /// the end of the body are left in `input`.
    ///
    /// [`is_done`]: ChunkedDecoder::is_done
    pub(crate) fn decode<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, ChunkedError> {
        loop {
            if let State::Data { remaining } = self.state {
                if input.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                let (data, rest) = input.split_at(take);
                *input = rest;
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 { State::DataCr } else { State::Data { remaining } };
                return Ok(Some(data));
            }
            if self.state == State::Done {
                return Ok(None);
            }
            let Some((&b, rest)) = input.split_first() else {
                return Ok(None);
            };
            *input = rest;
            self.state = self.step(b)?;
        }
    }

    /// One framing byte (never called in `Data` or `Done`).
    fn step(&mut self, b: u8) -> Result<State, ChunkedError> {
        let state = match self.state {
            State::Size { size, digits } => {
                self.count_line_byte()?;
                if let Some(d) = hex_value(b) {
                    if digits == MAX_SIZE_DIGITS {
                        return Err(ChunkedError("chunk size too large"));
                    }
                    return Ok(State::Size { size: size << 4 | u64::from(d), digits: digits + 1 });
                }
                if digits == 0 {
                    return Err(ChunkedError("missing chunk size"));
                }
                match b {
                    b';' | b' ' | b'\t' => State::Extension { size },
                    b'\r' => State::SizeLf { size },
                    b'\n' => self.size_line_done(size),
                    _ => return Err(ChunkedError("invalid chunk size")),
                }
            }
            State::Extension { size } => {
                self.count_line_byte()?;
                match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' => self.size_line_done(size),
                    _ => State::Extension { size },
                }
            }
            State::SizeLf { size } => match b {
                b'\n' => self.size_line_done(size),
                _ => return Err(ChunkedError("CR without LF in a chunk-size line")),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(ChunkedError("chunk data longer than its size")),
            },
            State::DataLf => match b {
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(ChunkedError("CR without LF after chunk data")),
            },
            State::Trailer { empty } => {
                self.line_len += 1;
                if self.line_len > MAX_TRAILER_BYTES {
                    return Err(ChunkedError("trailers too large"));
                }
                match b {
                    b'\r' => State::TrailerLf { empty },
                    b'\n' if empty => State::Done,
                    b'\n' => State::Trailer { empty: true },
                    _ => State::Trailer { empty: false },
                }
            }
            State::TrailerLf { empty } => match b {
                b'\n' if empty => State::Done,
                b'\n' => State::Trailer { empty: true },
                _ => return Err(ChunkedError("CR without LF in the trailers")),
            },
            State::Data { .. } | State::Done => self.state,
        };
        Ok(state)
    }

    fn count_line_byte(&mut self) -> Result<(), ChunkedError> {
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return Err(ChunkedError("chunk-size line too long"));
        }
        Ok(())
    }

    fn size_line_done(&mut self, size: u64) -> State {
        self.line_len = 0;
        if size == 0 { State::Trailer { empty: true } } else { State::Data { remaining: size } }
    }
}

fn hex_value(b: u8) -> Option<u8> {
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

    /// Feeds `wire` in pieces of `piece` bytes; returns the data, whether the body completed, and the bytes left
    /// over after it.
    fn decode_in_pieces(wire: &[u8], piece: usize) -> Result<(Vec<u8>, bool, Vec<u8>), ChunkedError> {
        let mut decoder = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut left = Vec::new();
        for chunk in wire.chunks(piece) {
            let mut input = chunk;
            while let Some(d) = decoder.decode(&mut input)? {
                assert!(!d.is_empty());
                data.extend_from_slice(d);
            }
            if decoder.is_done() {
                left.extend_from_slice(input);
            } else {
                assert!(input.is_empty(), "input left before the end");
            }
        }
        Ok((data, decoder.is_done(), left))
    }

    fn all_piece_sizes(wire: &[u8]) -> Result<(Vec<u8>, bool, Vec<u8>), ChunkedError> {
        let whole = decode_in_pieces(wire, wire.len().max(1));
        for piece in 1..wire.len() {
            assert_eq!(decode_in_pieces(wire, piece), whole, "piece size {piece}");
        }
        whole
    }

    #[test]
    fn decodes_byte_by_byte_and_whole() {
        // (wire, data, complete, bytes left after the body)
        type Case = (&'static [u8], &'static [u8], bool, &'static [u8]);
        let cases: &[Case] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", true, b""),
            (b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", b"abc0123456789abcdef", true, b""),
            (b"A\r\n0123456789\r\n0\r\n\r\nHTTP/1.1", b"0123456789", true, b"HTTP/1.1"),
            (b"a;name=value;x=\"q\"\r\n0123456789\r\n0\r\n\r\n", b"0123456789", true, b""),
            (b"2 \t;ext\r\nhi\r\n0\r\n\r\n", b"hi", true, b""),
            (b"2\nhi\n0\n\n", b"hi", true, b""),
            (b"000002\r\nhi\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\n", b"hi", true, b""),
            (b"0\r\n\r\n", b"", true, b""),
            (b"4\r\ndata", b"data", false, b""),
            (b"4\r\ndata\r\n", b"data", false, b""),
            (b"c\r\ndata: \xc3\xa9\r\n\r\n\r\n", b"data: \xc3\xa9\r\n\r\n", false, b""),
            (b"", b"", false, b""),
        ];
        for &(wire, data, done, left) in cases {
            let got = all_piece_sizes(wire).unwrap_or_else(|e| panic!("{wire:?}: {e}"));
            assert_eq!(got, (data.to_vec(), done, left.to_vec()), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn rejects_bad_framing() {
        let too_long_line = [b"1;".as_slice(), &[b'x'; MAX_SIZE_LINE], b"\r\nx\r\n"].concat();
        let huge_trailer = [b"0\r\nX: ".as_slice(), &[b'y'; MAX_TRAILER_BYTES], b"\r\n\r\n"].concat();
        let cases: Vec<(&[u8], &str)> = vec![
            (b"\r\n", "missing chunk size"),
            (b";ext\r\n", "missing chunk size"),
            (b"g\r\n", "missing chunk size"),
            (b"5x\r\nhello\r\n", "invalid chunk size"),
            (b"-1\r\n", "missing chunk size"),
            (b"12345678901234567\r\n", "chunk size too large"),
            (b"5\rhello", "CR without LF in a chunk-size line"),
            (b"5\r\nhello!\r\n", "chunk data longer than its size"),
            (b"5\r\nhello\rx", "CR without LF after chunk data"),
            (b"0\r\nX: y\rz", "CR without LF in the trailers"),
            (&too_long_line, "chunk-size line too long"),
            (&huge_trailer, "trailers too large"),
        ];
        for (wire, message) in cases {
            for piece in [1, 2, 7, wire.len()] {
                let err = decode_in_pieces(wire, piece).unwrap_err();
                assert_eq!(err.0, message, "{:?} in pieces of {piece}", String::from_utf8_lossy(wire));
            }
        }
    }

    #[test]
    fn max_size_is_accepted_and_data_is_not_copied() {
        let mut decoder = ChunkedDecoder::new();
        let mut input: &[u8] = b"ffffffffffffffff\r\nabc";
        let data = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(data, b"abc");
        assert!(input.is_empty());
        assert_eq!(decoder.state, State::Data { remaining: u64::MAX - 3 });
    }

    #[test]
    fn done_reads_nothing_more() {
        let mut decoder = ChunkedDecoder::new();
        let mut input: &[u8] = b"0\r\n\r\n5\r\nhello\r\n";
        assert_eq!(decoder.decode(&mut input).unwrap(), None);
        assert!(decoder.is_done());
        assert_eq!(input, b"5\r\nhello\r\n");
        assert_eq!(decoder.decode(&mut input).unwrap(), None);
        assert_eq!(input, b"5\r\nhello\r\n");
        assert_eq!(ChunkedError("x").to_string(), "bad chunked encoding: x");
    }
}
