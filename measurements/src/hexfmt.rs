//! Lowercase hex encoding and strict decoding (a few lines; not worth a dependency).

/// Error returned by [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string has an odd number of digits.
    #[error("hex string has an odd number of digits ({0})")]
    OddLength(usize),
    /// A character is not a hex digit.
    #[error("invalid hex digit {0:?} at position {1}")]
    BadDigit(char, usize),
    /// The decoded value has the wrong length.
    #[error("expected {expected} bytes of hex, got {got}")]
    WrongLength {
        /// Bytes wanted.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
}

/// Encodes bytes as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes hex (either case, optional `0x` prefix) into bytes.
pub fn decode(s: &str) -> Result<Vec<u8>, HexError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return Err(HexError::OddLength(s.len()));
    }
    let digit = |i: usize, c: u8| -> Result<u8, HexError> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(HexError::BadDigit(c as char, i))
    };
    let b = s.as_bytes();
    (0..b.len() / 2)
        .map(|i| Ok(digit(2 * i, b[2 * i])? << 4 | digit(2 * i + 1, b[2 * i + 1])?))
        .collect()
}

/// Decodes exactly `N` bytes of hex.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let v = decode(s)?;
    v.as_slice().try_into().map_err(|_| HexError::WrongLength {
        expected: N,
        got: v.len(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip_and_errors() {
        assert_eq!(super::encode(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(super::decode("00AB10").unwrap(), vec![0, 0xab, 0x10]);
        assert_eq!(super::decode("0x0a").unwrap(), vec![10]);
        assert!(super::decode("abc").is_err());
        assert!(super::decode("zz").is_err());
        assert!(super::decode("é1").is_err());
        assert!(super::decode_array::<2>("00").is_err());
    }
}
