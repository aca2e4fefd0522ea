//! Cell builder and slice reader: bits, unsigned/signed integers, `Coins`
//! (`VarUInteger 16`), `MsgAddressInt` (`addr_std` without anycast) and references,
//! following the TL-B encodings of block.tlb.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::address::MsgAddressInt;
use super::cell::{Cell, MAX_BITS, MAX_REFS};
use super::TonError;

/// Largest value `Coins` can hold: `VarUInteger 16` stores up to 15 bytes.
pub const MAX_COINS: u128 = (1u128 << 120) - 1;

/// Builds one cell bit by bit.
#[derive(Clone, Debug, Default)]
pub struct CellBuilder {
    data: Vec<u8>,
    bits: usize,
    refs: Vec<Arc<Cell>>,
}

impl CellBuilder {
    /// A new, empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bits stored so far.
    pub fn bit_len(&self) -> usize {
        self.bits
    }

    /// Appends one bit.
    pub fn store_bit(&mut self, bit: bool) -> Result<&mut Self, TonError> {
        if self.bits >= MAX_BITS {
            return Err(TonError::CellOverflow);
        }
        if self.bits.is_multiple_of(8) {
            self.data.push(0);
        }
        if bit {
            let last = self.data.len() - 1;
            self.data[last] |= 0x80 >> (self.bits % 8);
        }
        self.bits += 1;
        Ok(self)
    }

    /// Appends the low `bits` bits of `value`, most significant first. `value` must fit.
    pub fn store_uint(&mut self, value: u128, bits: usize) -> Result<&mut Self, TonError> {
        if bits > 128 || (bits < 128 && value >> bits != 0) {
            return Err(TonError::IntegerOverflow);
        }
        if self.bits + bits > MAX_BITS {
            return Err(TonError::CellOverflow);
        }
        for i in (0..bits).rev() {
            self.store_bit((value >> i) & 1 == 1)?;
        }
        Ok(self)
    }

    /// Appends a two's-complement signed integer of `bits` bits (1..=128).
    pub fn store_int(&mut self, value: i128, bits: usize) -> Result<&mut Self, TonError> {
        if bits == 0 || bits > 128 {
            return Err(TonError::IntegerOverflow);
        }
        if bits < 128 {
            let min = -(1i128 << (bits - 1));
            let max = (1i128 << (bits - 1)) - 1;
            if value < min || value > max {
                return Err(TonError::IntegerOverflow);
            }
        }
        let mask = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        self.store_uint((value as u128) & mask, bits)
    }

    /// Appends whole bytes.
    pub fn store_bytes(&mut self, bytes: &[u8]) -> Result<&mut Self, TonError> {
        if self.bits + 8 * bytes.len() > MAX_BITS {
            return Err(TonError::CellOverflow);
        }
        for b in bytes {
            self.store_uint(u128::from(*b), 8)?;
        }
        Ok(self)
    }

    /// `Coins` = `VarUInteger 16`: a 4-bit byte length, then that many bytes (block.tlb).
    pub fn store_coins(&mut self, nanotons: u128) -> Result<&mut Self, TonError> {
        if nanotons > MAX_COINS {
            return Err(TonError::IntegerOverflow);
        }
        let len = (128 - nanotons.leading_zeros() as usize).div_ceil(8);
        self.store_uint(len as u128, 4)?;
        self.store_uint(nanotons, 8 * len)
    }

    /// `addr_std$10 anycast:(Maybe Anycast) workchain_id:int8 address:bits256` with no
    /// anycast: 267 bits (block.tlb, MsgAddressInt).
    pub fn store_address(&mut self, addr: &MsgAddressInt) -> Result<&mut Self, TonError> {
        if self.bits + 267 > MAX_BITS {
            return Err(TonError::CellOverflow);
        }
        self.store_uint(0b10, 2)?;
        self.store_bit(false)?;
        self.store_int(i128::from(addr.workchain), 8)?;
        self.store_bytes(&addr.hash)
    }

    /// Appends a reference.
    pub fn store_ref(&mut self, cell: Cell) -> Result<&mut Self, TonError> {
        self.store_ref_arc(Arc::new(cell))
    }

    /// Appends a shared reference.
    pub fn store_ref_arc(&mut self, cell: Arc<Cell>) -> Result<&mut Self, TonError> {
        if self.refs.len() >= MAX_REFS {
            return Err(TonError::TooManyRefs);
        }
        self.refs.push(cell);
        Ok(self)
    }

    /// Finishes the cell.
    pub fn build(&self) -> Result<Cell, TonError> {
        Cell::new(self.data.clone(), self.bits, self.refs.clone())
    }
}

/// Reads a cell's bits and references in order.
#[derive(Clone, Debug)]
pub struct CellSlice<'a> {
    cell: &'a Cell,
    pos: usize,
    ref_pos: usize,
}

impl<'a> CellSlice<'a> {
    /// Starts reading `cell` from its first bit and first reference.
    pub fn new(cell: &'a Cell) -> Self {
        CellSlice {
            cell,
            pos: 0,
            ref_pos: 0,
        }
    }

    /// Bits not read yet.
    pub fn remaining_bits(&self) -> usize {
        self.cell.bit_len() - self.pos
    }

    /// References not read yet.
    pub fn remaining_refs(&self) -> usize {
        self.cell.refs().len() - self.ref_pos
    }

    /// Reads one bit.
    pub fn load_bit(&mut self) -> Result<bool, TonError> {
        if self.pos >= self.cell.bit_len() {
            return Err(TonError::CellUnderflow);
        }
        let b = self.cell.data()[self.pos / 8] & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Ok(b)
    }

    /// Reads an unsigned integer of `bits` bits (0..=128).
    pub fn load_uint(&mut self, bits: usize) -> Result<u128, TonError> {
        if bits > 128 {
            return Err(TonError::IntegerOverflow);
        }
        if bits > self.remaining_bits() {
            return Err(TonError::CellUnderflow);
        }
        let mut v = 0u128;
        for _ in 0..bits {
            v = (v << 1) | u128::from(self.load_bit()?);
        }
        Ok(v)
    }

    /// Reads a two's-complement signed integer of `bits` bits (1..=128).
    pub fn load_int(&mut self, bits: usize) -> Result<i128, TonError> {
        if bits == 0 || bits > 128 {
            return Err(TonError::IntegerOverflow);
        }
        let u = self.load_uint(bits)?;
        if bits == 128 {
            return Ok(u as i128);
        }
        let sign = 1u128 << (bits - 1);
        Ok(if u & sign != 0 {
            (u as i128) - (1i128 << bits)
        } else {
            u as i128
        })
    }

    /// Reads `N` whole bytes.
    pub fn load_bytes<const N: usize>(&mut self) -> Result<[u8; N], TonError> {
        if 8 * N > self.remaining_bits() {
            return Err(TonError::CellUnderflow);
        }
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = self.load_uint(8)? as u8;
        }
        Ok(out)
    }

    /// Reads `Coins` (`VarUInteger 16`) in its canonical (shortest) form only: a value
    /// with a leading zero byte would re-encode to a different cell, so a signature over
    /// the original could never be checked against the parsed value.
    pub fn load_coins(&mut self) -> Result<u128, TonError> {
        let len = self.load_uint(4)? as usize;
        let v = self.load_uint(8 * len)?;
        if len > 0 && v >> (8 * (len - 1)) == 0 {
            return Err(TonError::NonCanonical);
        }
        Ok(v)
    }

    /// Reads an `addr_std` without anycast; any other `MsgAddress` form is an error.
    pub fn load_address(&mut self) -> Result<MsgAddressInt, TonError> {
        if self.load_uint(2)? != 0b10 {
            return Err(TonError::UnsupportedAddress);
        }
        if self.load_bit()? {
            return Err(TonError::UnsupportedAddress);
        }
        let workchain = self.load_int(8)? as i8;
        let hash = self.load_bytes::<32>()?;
        Ok(MsgAddressInt { workchain, hash })
    }

    /// Reads the next reference.
    pub fn load_ref(&mut self) -> Result<&'a Cell, TonError> {
        let r = self
            .cell
            .refs()
            .get(self.ref_pos)
            .ok_or(TonError::CellUnderflow)?;
        self.ref_pos += 1;
        Ok(&**r)
    }

    /// Errors unless every bit and reference has been read (strict schema parsing).
    pub fn end(&self) -> Result<(), TonError> {
        if self.remaining_bits() != 0 || self.remaining_refs() != 0 {
            return Err(TonError::TrailingData);
        }
        Ok(())
    }
}
