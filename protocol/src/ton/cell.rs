//! Ordinary TON cells: up to 1023 data bits and 4 references, with their
//! representation hash and depth (TON Blockchain whitepaper / tvm.pdf §3.1.4–3.1.5,
//! "standard cell representation").
//!
//! Written by hand: the guest is `no_std` and the Rust TON crates (`tonlib-core`,
//! `tycho-types`) need `std`. Only ordinary (non-exotic, level 0) cells are supported;
//! exotic cells are rejected by the BOC parser.

use alloc::sync::Arc;
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

use super::TonError;

/// Largest number of data bits in a cell.
pub const MAX_BITS: usize = 1023;
/// Largest number of references in a cell.
pub const MAX_REFS: usize = 4;
/// Largest depth accepted (TVM's limit on cell depth is 1024 in the block format).
pub const MAX_DEPTH: u16 = 1024;

/// An immutable ordinary cell with its hash and depth computed once at construction.
///
/// References are shared (`Arc`), so a BOC whose cells share children costs memory
/// proportional to its size, not to the unfolded tree.
#[derive(Clone, PartialEq, Eq)]
pub struct Cell {
    data: Vec<u8>,
    bits: usize,
    refs: Vec<Arc<Cell>>,
    hash: [u8; 32],
    depth: u16,
}

impl core::fmt::Debug for Cell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Cell{{bits: {}, refs: {}, hash: ",
            self.bits,
            self.refs.len()
        )?;
        for b in self.hash {
            write!(f, "{b:02x}")?;
        }
        f.write_str("}")
    }
}

impl Cell {
    /// Builds a cell from `bits` bits of `data` (big-endian bit order, bits past `bits`
    /// ignored and cleared) and its references. Checks the cell limits.
    pub fn new(mut data: Vec<u8>, bits: usize, refs: Vec<Arc<Cell>>) -> Result<Cell, TonError> {
        if bits > MAX_BITS {
            return Err(TonError::CellOverflow);
        }
        if refs.len() > MAX_REFS {
            return Err(TonError::TooManyRefs);
        }
        let nbytes = bits.div_ceil(8);
        if data.len() < nbytes {
            return Err(TonError::CellUnderflow);
        }
        data.truncate(nbytes);
        if !bits.is_multiple_of(8) {
            // Clear the unused low bits of the last byte so equal cells compare equal.
            let keep = 0xFFu8 << (8 - bits % 8);
            data[nbytes - 1] &= keep;
        }
        let mut depth = 0u16;
        for r in &refs {
            depth = depth.max(r.depth + 1);
        }
        if depth > MAX_DEPTH {
            return Err(TonError::TooDeep);
        }
        let mut cell = Cell {
            data,
            bits,
            refs,
            hash: [0; 32],
            depth,
        };
        cell.hash = cell.compute_hash();
        Ok(cell)
    }

    /// The empty cell (0 bits, no references).
    pub fn empty() -> Cell {
        // Cannot fail: 0 bits, no refs.
        Cell::new(Vec::new(), 0, Vec::new()).unwrap_or_else(|_| unreachable!())
    }

    /// Number of data bits.
    pub fn bit_len(&self) -> usize {
        self.bits
    }

    /// The data bytes (`ceil(bits/8)` bytes; unused trailing bits are zero).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The references.
    pub fn refs(&self) -> &[Arc<Cell>] {
        &self.refs
    }

    /// Representation hash (SHA-256 of the standard representation).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Depth: 0 for a cell without references, else 1 + the largest depth of its references.
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// Descriptor byte d1 = refs + 8·exotic + 32·level (ordinary level-0 cells: refs).
    pub(crate) fn d1(&self) -> u8 {
        self.refs.len() as u8
    }

    /// Descriptor byte d2 = ⌊bits/8⌋ + ⌈bits/8⌉.
    pub(crate) fn d2(&self) -> u8 {
        (self.bits / 8 + self.bits.div_ceil(8)) as u8
    }

    /// Data bytes with the completion tag: when `bits` is not a multiple of 8 a single `1`
    /// bit follows the data, then zeros (tvm.pdf §3.1.4).
    pub(crate) fn padded_data(&self) -> Vec<u8> {
        let mut d = self.data.clone();
        if !self.bits.is_multiple_of(8) {
            let last = d.len() - 1;
            d[last] |= 0x80 >> (self.bits % 8);
        }
        d
    }

    /// tvm.pdf §3.1.5: hash = SHA-256(d1 ‖ d2 ‖ padded data ‖ depth(ref_i) as u16 BE… ‖
    /// hash(ref_i)…).
    fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([self.d1(), self.d2()]);
        h.update(self.padded_data());
        for r in &self.refs {
            h.update(r.depth.to_be_bytes());
        }
        for r in &self.refs {
            h.update(r.hash);
        }
        h.finalize().into()
    }
}
