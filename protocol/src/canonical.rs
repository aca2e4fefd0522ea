//! Canonical encodings: every message has exactly one accepted byte form.
//!
//! postcard's decoder accepts non-canonical varints (e.g. `0x80 0x00` for 0: an overlong
//! LEB128, postcard wire spec "Varint encoded integers"), so one job could travel under many
//! encodings — different job hashes, different receipts for the same work. After decoding, the
//! value is encoded again and compared with the input byte for byte; any difference is a
//! non-canonical encoding and is refused. The comparison is a postcard serialisation flavor
//! that checks each byte as it would be written: no allocation, one pass over the input, and
//! it stops at the first difference. (postcard offers no strict mode; this check is the
//! smallest thing that makes the encoding unique, written here for that reason.)

use postcard::ser_flavors::Flavor;
use serde::Serialize;

/// A serialisation "output" that compares against `expect` instead of writing.
struct Compare<'a> {
    expect: &'a [u8],
    pos: usize,
}

impl Flavor for Compare<'_> {
    type Output = bool;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.pos.checked_add(data.len());
        match end.and_then(|e| self.expect.get(self.pos..e)) {
            Some(have) if have == data => {
                self.pos += data.len();
                Ok(())
            }
            // Any error stops the serialiser; the caller only needs "differs".
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.try_extend(&[b])
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.pos == self.expect.len())
    }
}

/// Whether `bytes` is exactly the postcard encoding of `value`.
pub fn is_canonical<T: Serialize + ?Sized>(value: &T, bytes: &[u8]) -> bool {
    postcard::serialize_with_flavor(
        value,
        Compare {
            expect: bytes,
            pos: 0,
        },
    )
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_varints_are_not_canonical() {
        let v: u32 = 5;
        assert!(is_canonical(&v, &[5]));
        assert!(!is_canonical(&v, &[0x85, 0x00]));
        assert!(!is_canonical(&v, &[5, 0]));
        assert!(!is_canonical(&v, &[]));
        let s: (u64, alloc::vec::Vec<u8>) = (300, alloc::vec![1, 2]);
        let enc = postcard::to_allocvec(&s).unwrap();
        assert!(is_canonical(&s, &enc));
        let mut long = enc.clone();
        long.pop();
        assert!(!is_canonical(&s, &long));
    }
}
