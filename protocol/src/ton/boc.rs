//! Bag of Cells (BOC) serialisation, `serialized_boc#b5ee9c72` (crypto/tl/boc.tlb):
//!
//! ```text
//! serialized_boc#b5ee9c72 has_idx:(## 1) has_crc32c:(## 1) has_cache_bits:(## 1)
//!   flags:(## 2) { flags = 0 } size:(## 3) { size <= 4 } off_bytes:(## 8) { off_bytes <= 8 }
//!   cells:(##(size * 8)) roots:(##(size * 8)) { roots >= 1 } absent:(##(size * 8))
//!   { roots + absent <= cells } tot_cells_size:(##(off_bytes * 8))
//!   root_list:(roots * ##(size * 8)) index:has_idx?(cells * ##(off_bytes * 8))
//!   cell_data:(tot_cells_size * [ uint8 ]) crc32c:has_crc32c?uint32
//! ```
//!
//! Cells are written parents first (every reference points to a later index); CRC32C
//! (Castagnoli) over all preceding bytes, little-endian. The parser accepts only ordinary
//! cells, no absent cells, and enforces [`BocLimits`]; it never panics on any input.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use crc::{Crc, CRC_32_ISCSI};

use super::cell::{Cell, MAX_REFS};
use super::TonError;

const MAGIC: [u8; 4] = [0xb5, 0xee, 0x9c, 0x72];
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Limits the parser enforces on untrusted input.
#[derive(Clone, Copy, Debug)]
pub struct BocLimits {
    /// Most cells accepted.
    pub max_cells: usize,
    /// Most roots accepted.
    pub max_roots: usize,
}

impl Default for BocLimits {
    fn default() -> Self {
        BocLimits {
            max_cells: 4096,
            max_roots: 4,
        }
    }
}

fn bytes_for(n: usize) -> usize {
    let mut b = 1;
    while b < 8 && (n >> (8 * b)) != 0 {
        b += 1;
    }
    b
}

fn push_be(out: &mut Vec<u8>, v: usize, n: usize) {
    for i in (0..n).rev() {
        out.push((v >> (8 * i)) as u8);
    }
}

/// Collects the distinct cells under `root` parents first (reverse post-order of a DFS
/// that visits references right to left, so a tree comes out in pre-order).
fn topo_order(root: &Cell) -> Vec<&Cell> {
    fn visit<'a>(c: &'a Cell, seen: &mut BTreeMap<[u8; 32], ()>, post: &mut Vec<&'a Cell>) {
        if seen.insert(c.hash(), ()).is_some() {
            return;
        }
        for r in c.refs().iter().rev() {
            visit(r, seen, post);
        }
        post.push(c);
    }
    let mut seen = BTreeMap::new();
    let mut post = Vec::new();
    visit(root, &mut seen, &mut post);
    post.reverse();
    post
}

/// Serialises one root cell as a BOC with CRC32C and no index (the form wallets and
/// toncenter use).
pub fn to_boc(root: &Cell) -> Vec<u8> {
    let cells = topo_order(root);
    let mut index = BTreeMap::new();
    for (i, c) in cells.iter().enumerate() {
        index.insert(c.hash(), i);
    }
    let size = bytes_for(cells.len());
    let mut body = Vec::new();
    for c in &cells {
        body.push(c.d1());
        body.push(c.d2());
        body.extend_from_slice(&c.padded_data());
        for r in c.refs() {
            // Every reference was visited, so it has an index.
            push_be(&mut body, index.get(&r.hash()).copied().unwrap_or(0), size);
        }
    }
    let off_bytes = bytes_for(body.len());
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(&MAGIC);
    out.push(0x40 | size as u8); // has_crc32c
    out.push(off_bytes as u8);
    push_be(&mut out, cells.len(), size);
    push_be(&mut out, 1, size);
    push_be(&mut out, 0, size);
    push_be(&mut out, body.len(), off_bytes);
    push_be(&mut out, 0, size); // root index
    out.extend_from_slice(&body);
    let crc = CRC32C.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TonError> {
        let end = self.pos.checked_add(n).ok_or(TonError::BocTruncated)?;
        let s = self.buf.get(self.pos..end).ok_or(TonError::BocTruncated)?;
        self.pos = end;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> Result<usize, TonError> {
        let mut v = 0usize;
        for b in self.take(n)? {
            v = (v << 8) | usize::from(*b);
        }
        Ok(v)
    }
}

/// Parses a BOC and returns its root cells, with default limits.
pub fn from_boc(bytes: &[u8]) -> Result<Vec<Arc<Cell>>, TonError> {
    from_boc_with_limits(bytes, BocLimits::default())
}

/// Parses a BOC that must have exactly one root.
pub fn from_boc_single(bytes: &[u8]) -> Result<Arc<Cell>, TonError> {
    let mut roots = from_boc(bytes)?;
    if roots.len() != 1 {
        return Err(TonError::BocRootCount);
    }
    roots.pop().ok_or(TonError::BocRootCount)
}

/// Parses a BOC under explicit limits.
pub fn from_boc_with_limits(bytes: &[u8], limits: BocLimits) -> Result<Vec<Arc<Cell>>, TonError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(4)? != MAGIC {
        return Err(TonError::BocBadMagic);
    }
    let flags = r.take(1)?[0];
    let has_idx = flags & 0x80 != 0;
    let has_crc = flags & 0x40 != 0;
    // has_cache_bits (0x20) only matters together with an index, which we skip anyway.
    if flags & 0x18 != 0 {
        return Err(TonError::BocBadHeader);
    }
    let size = usize::from(flags & 0x07);
    if size == 0 || size > 4 {
        return Err(TonError::BocBadHeader);
    }
    let off_bytes = usize::from(r.take(1)?[0]);
    if off_bytes == 0 || off_bytes > 8 {
        return Err(TonError::BocBadHeader);
    }
    let cells = r.uint(size)?;
    let roots = r.uint(size)?;
    let absent = r.uint(size)?;
    let tot_size = r.uint(off_bytes)?;
    if cells > limits.max_cells || roots > limits.max_roots {
        return Err(TonError::BocTooLarge);
    }
    if roots == 0 || roots > cells || absent != 0 {
        return Err(TonError::BocBadHeader);
    }
    let mut root_idx = Vec::with_capacity(roots);
    for _ in 0..roots {
        let i = r.uint(size)?;
        if i >= cells {
            return Err(TonError::BocBadRef);
        }
        root_idx.push(i);
    }
    if has_idx {
        r.take(cells.checked_mul(off_bytes).ok_or(TonError::BocTruncated)?)?;
    }
    let data = r.take(tot_size)?;
    if has_crc {
        let covered = &bytes[..r.pos];
        let want = r.take(4)?;
        if CRC32C.checksum(covered).to_le_bytes() != want {
            return Err(TonError::BocBadCrc);
        }
    }
    if r.pos != bytes.len() {
        return Err(TonError::TrailingData);
    }

    // Raw cells, in file order.
    struct Raw<'a> {
        data: &'a [u8],
        bits: usize,
        refs: [usize; MAX_REFS],
        nrefs: usize,
    }
    let mut raws: Vec<Raw<'_>> = Vec::with_capacity(cells);
    let mut d = Reader { buf: data, pos: 0 };
    for i in 0..cells {
        let hdr = d.take(2)?;
        let (d1, d2) = (hdr[0], hdr[1]);
        // d1 = refs + 8·exotic + 16·with_hashes + 32·level (tvm.pdf §3.1.4).
        if d1 & 0xF8 != 0 {
            return Err(TonError::BocUnsupportedCell);
        }
        let nrefs = usize::from(d1 & 7);
        if nrefs > MAX_REFS {
            return Err(TonError::BocUnsupportedCell);
        }
        let len = usize::from(d2).div_ceil(2);
        let bytes = d.take(len)?;
        let bits = if d2 % 2 == 0 {
            8 * len
        } else {
            // The last byte carries the completion tag: the lowest set bit.
            let last = bytes[len - 1];
            if last == 0 {
                return Err(TonError::BocBadPadding);
            }
            let bits = 8 * len - 1 - last.trailing_zeros() as usize;
            if bits.is_multiple_of(8) {
                // A whole byte of padding: d2 should have been even (non-canonical).
                return Err(TonError::BocBadPadding);
            }
            bits
        };
        let mut refs = [0usize; MAX_REFS];
        for slot in refs.iter_mut().take(nrefs) {
            let j = d.uint(size)?;
            if j <= i || j >= cells {
                return Err(TonError::BocBadRef);
            }
            *slot = j;
        }
        raws.push(Raw {
            data: bytes,
            bits,
            refs,
            nrefs,
        });
    }
    if d.pos != data.len() {
        return Err(TonError::TrailingData);
    }

    // Build from the last cell backwards: every reference points forward.
    let mut built: Vec<Option<Arc<Cell>>> = (0..cells).map(|_| None).collect();
    for i in (0..cells).rev() {
        let raw = &raws[i];
        let mut refs = Vec::with_capacity(raw.nrefs);
        for &j in &raw.refs[..raw.nrefs] {
            refs.push(built[j].clone().ok_or(TonError::BocBadRef)?);
        }
        let mut bytes = raw.data.to_vec();
        if !raw.bits.is_multiple_of(8) {
            // Drop the completion tag before handing the bits to the cell.
            let last = bytes.len() - 1;
            bytes[last] &= 0xFFu8 << (8 - raw.bits % 8);
        }
        let cell = Cell::new(bytes, raw.bits, refs)?;
        built[i] = Some(Arc::new(cell));
    }
    root_idx
        .into_iter()
        .map(|i| built[i].clone().ok_or(TonError::BocBadRef))
        .collect()
}
