//! Lowercase hex, as chunk ids and key slots are written.

/// The lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0xf));
    }
    s
}

/// The bytes of lowercase hex `text`; `None` when it is not that.
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?))
        .collect()
}

fn digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n)])
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_lowercase_hex() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "00017f80abff");
        assert_eq!(from_hex("00017f80abff").as_deref(), Some(&bytes[..]));
        for bad in ["0", "0g", "AB", "é1"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
        assert_eq!(from_hex("").as_deref(), Some(&[][..]));
    }
}
