//! Session ids: 128 bits from the operating system's cryptographic random source, written in lowercase hex, so
//! every character is visible ASCII (0x21 to 0x7E) as the transport requires.

/// Random bytes in a session id.
const RANDOM_BYTES: usize = 16;

/// The longest session id a client may present; longer values cannot be ours and are refused unread.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// A new session id.
///
/// ```
/// let id = conduit_mcp::new_session_id()?;
/// assert_eq!(id.len(), 32);
/// assert!(conduit_mcp::is_valid_session_id(&id));
/// # Ok::<(), getrandom::Error>(())
/// ```
///
/// # Errors
/// The random source's error, if it has none to give (the server then refuses to open a session).
pub fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xF)] as char);
    }
    out
}

/// True for a value that may be a session id: 1 to [`MAX_SESSION_ID_LEN`] visible ASCII characters.
pub fn is_valid_session_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_SESSION_ID_LEN && value.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_visible_ascii_and_distinct() {
        let ids: HashSet<String> = (0..1000).map(|_| new_session_id().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 2 * RANDOM_BYTES);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
            assert!(is_valid_session_id(id));
        }
    }

    #[test]
    fn validates_presented_ids() {
        let long = "a".repeat(MAX_SESSION_ID_LEN);
        let too_long = "a".repeat(MAX_SESSION_ID_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("abc", true),
            ("!~", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("a b", false),
            ("a\tb", false),
            ("a\u{7F}", false),
            ("caf\u{E9}", false),
        ];
        for (value, want) in cases {
            assert_eq!(is_valid_session_id(value), *want, "{value:?}");
        }
    }

    #[test]
    fn hex_is_exact() {
        assert_eq!(hex(&[0x00, 0x0F, 0xA5, 0xFF]), "000fa5ff");
    }
}
