//! Line-break search and splitting, shared by `data` and comment encoding.
//!
//! LF, CR and CRLF are all line breaks in `text/event-stream`, and CRLF counts as
//! one. Every line is re-emitted with its own field prefix and a bare LF, so no
//! CR from user text ever reaches the wire.

/// Every byte set to 0x01, so multiplying by a byte broadcasts it to all lanes.
const LANES: u64 = 0x0101_0101_0101_0101;
/// The low seven bits of every lane.
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const CR_LANES: u64 = LANES * b'\r' as u64;
const LF_LANES: u64 = LANES * b'\n' as u64;

/// Sets the top bit of every lane of `word` that is zero, and nothing else.
///
/// This is the carry-free variant of the classic "has zero byte" trick: the usual
/// `(x - 0x01..) & !x & 0x80..` form can flag lanes next to a real zero through
/// borrows, which would be fine for "is there one" but we also need "where".
#[inline]
fn zero_lanes(word: u64) -> u64 {
    !(((word & LOW7).wrapping_add(LOW7)) | word | LOW7)
}

/// Position of the first CR or LF in `haystack`.
///
/// Eight bytes are tested per step (SWAR) because event payloads are mostly long
/// runs without breaks and this runs once per `data`/`comment` set; a plain
/// byte loop with an early exit does not vectorize.
#[inline]
pub(crate) fn find_break(haystack: &[u8]) -> Option<usize> {
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        // Little-endian load so the lowest lane is the earliest byte on every target.
        let word = u64::from_le_bytes(bytes);
        let hits = zero_lanes(word ^ CR_LANES) | zero_lanes(word ^ LF_LANES);
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&b| b == b'\r' || b == b'\n').map(|i| offset + i)
}

/// Iterator over the lines of a text, each without its line break.
///
/// A text always has at least one line (the empty text is one empty line), and a
/// trailing break yields a final empty line, because the encoder must preserve it:
/// `"a\n"` is two `data:` lines, which a client joins back into `"a\n"`.
#[derive(Clone, Debug)]
pub(crate) struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

pub(crate) fn lines(text: &[u8]) -> Lines<'_> {
    Lines { rest: Some(text) }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find_break(rest) {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(at) => {
                let (line, tail) = rest.split_at(at);
                let skip = if tail.starts_with(b"\r\n") { 2 } else { 1 };
                self.rest = Some(tail.get(skip..).unwrap_or_default());
                Some(line)
            }
        }
    }
}

/// What the encoder needs to know about a text's line breaks, computed once when
/// the field is set so that `encoded_len` is O(1) and single-line values (the
/// common case) skip the search entirely at encode time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Breaks {
    /// Number of line breaks (a CRLF counts once).
    count: usize,
    /// Bytes taken by those breaks (2 for each CRLF, 1 otherwise).
    bytes: usize,
}

impl Breaks {
    #[inline]
    pub(crate) fn scan(text: &[u8]) -> Self {
        // Most values are one line: one search says so, without the line iterator.
        if find_break(text).is_none() {
            return Breaks::default();
        }
        Self::count_lines(text)
    }

    fn count_lines(text: &[u8]) -> Self {
        let mut line_count = 0usize;
        let mut line_bytes = 0usize;
        for line in lines(text) {
            line_count += 1;
            line_bytes += line.len();
        }
        Breaks { count: line_count.saturating_sub(1), bytes: text.len() - line_bytes }
    }

    /// Bytes written by [`write_lines`] for `text` (of which `self` describes the breaks).
    #[inline]
    pub(crate) fn encoded_len(self, prefix_len: usize, text_len: usize) -> usize {
        (self.count + 1) * (prefix_len + 1) + (text_len - self.bytes)
    }
}

/// Writes `prefix line LF` for every line of `text`.
#[inline]
pub(crate) fn write_lines(buf: &mut Vec<u8>, prefix: &[u8], text: &[u8], breaks: Breaks) {
    if breaks.count == 0 {
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(text);
        buf.push(b'\n');
        return;
    }
    for line in lines(text) {
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{XorShift, random_text};

    fn naive_find(h: &[u8]) -> Option<usize> {
        h.iter().position(|&b| b == b'\r' || b == b'\n')
    }

    fn naive_lines(text: &str) -> Vec<String> {
        text.replace("\r\n", "\n").replace('\r', "\n").split('\n').map(str::to_owned).collect()
    }

    #[test]
    fn find_break_every_position_and_byte() {
        // Neighbouring values (0x0b, 0x0c, 0x8a, 0x8d, 0xff, 0x00) catch lane-trick mistakes.
        for needle in [b'\r', b'\n'] {
            for len in 0..40 {
                for at in 0..len {
                    for fill in [b'a', 0x00, 0x0b, 0x0c, 0x0e, 0x8a, 0x8d, 0xff, 0x80] {
                        let mut h = vec![fill; len];
                        h[at] = needle;
                        assert_eq!(find_break(&h), Some(at), "len {len} at {at} fill {fill}");
                    }
                }
                assert_eq!(find_break(&vec![b'x'; len]), None);
            }
        }
    }

    #[test]
    fn find_break_matches_naive_on_random_bytes() {
        let mut rng = XorShift::new(7);
        for _ in 0..5000 {
            let len = rng.below(70) as usize;
            let h: Vec<u8> = (0..len)
                .map(|_| match rng.below(20) {
                    0 => b'\r',
                    1 => b'\n',
                    _ => rng.next_u64() as u8,
                })
                .collect();
            assert_eq!(find_break(&h), naive_find(&h), "{h:?}");
        }
    }

    #[test]
    fn lines_table() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[""]),
            ("a", &["a"]),
            ("a\nb", &["a", "b"]),
            ("a\rb", &["a", "b"]),
            ("a\r\nb", &["a", "b"]),
            ("a\n", &["a", ""]),
            ("\na", &["", "a"]),
            ("\r\n", &["", ""]),
            ("\n\r", &["", "", ""]),
            ("\r\r\n\n", &["", "", "", ""]),
            ("a\r\n\r\nb", &["a", "", "b"]),
        ];
        for (text, expected) in cases {
            let got: Vec<&[u8]> = lines(text.as_bytes()).collect();
            let expected: Vec<&[u8]> = expected.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn lines_and_breaks_match_naive_on_random_text() {
        let mut rng = XorShift::new(99);
        for _ in 0..3000 {
            let text = random_text(&mut rng, 40);
            let got: Vec<String> = lines(text.as_bytes()).map(|l| String::from_utf8(l.to_vec()).unwrap()).collect();
            let expected = naive_lines(&text);
            assert_eq!(got, expected, "{text:?}");
            let breaks = Breaks::scan(text.as_bytes());
            assert_eq!(breaks.count, expected.len() - 1);
            let mut buf = Vec::new();
            write_lines(&mut buf, b"p: ", text.as_bytes(), breaks);
            assert_eq!(buf.len(), breaks.encoded_len(3, text.len()));
        }
    }
}
