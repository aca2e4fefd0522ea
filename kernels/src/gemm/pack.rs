//! Packing of GEMM operands into the panel layouts the micro-kernels stream.
//!
//! A block (`m × k`) becomes `ceil(m / MR)` panels; panel `p` holds, for each k step, the `MR`
//! values of rows `p·MR ..` (zero-padded). B (`k × n`) becomes `ceil(n / NR)` panels holding,
//! for each k step, `NR` consecutive columns. The bf16 variants pack k in pairs, as
//! `vdpbf16ps` consumes them: one u32 = `lo: k even | hi: k odd`.
//!
//! Written by hand: the layouts are specific to these micro-kernels.

use crate::mat::{Element, MatRef};

/// Packs all of `a` (f32 panels of `mr` rows) into `dst`.
pub(crate) fn pack_a_f32<T: Element>(a: &MatRef<'_, T>, mr: usize, dst: &mut [f32]) {
    let (m, k) = (a.rows, a.cols);
    let panels = m.div_ceil(mr);
    for (p, panel) in dst.chunks_exact_mut(mr * k).take(panels).enumerate() {
        let i0 = p * mr;
        let rows = mr.min(m - i0);
        if a.cs == 1 {
            for ii in 0..rows {
                let row = &a.data[(i0 + ii) * a.rs..][..k];
                for (kk, x) in row.iter().enumerate() {
                    panel[kk * mr + ii] = x.to_f32();
                }
            }
        } else if a.rs == 1 {
            for kk in 0..k {
                let col = &a.data[kk * a.cs + i0..][..rows];
                let out = &mut panel[kk * mr..][..rows];
                for (o, x) in out.iter_mut().zip(col) {
                    *o = x.to_f32();
                }
            }
        } else {
            for kk in 0..k {
                for ii in 0..rows {
                    panel[kk * mr + ii] = a.at(i0 + ii, kk).to_f32();
                }
            }
        }
        if rows < mr {
            for kk in 0..k {
                panel[kk * mr + rows..(kk + 1) * mr].fill(0.0);
            }
        }
    }
}

/// Packs all of `b` (f32 panels of `nr` columns) into `dst`.
pub(crate) fn pack_b_f32<T: Element>(b: &MatRef<'_, T>, nr: usize, dst: &mut [f32]) {
    let (k, n) = (b.rows, b.cols);
    let panels = n.div_ceil(nr);
    for (p, panel) in dst.chunks_exact_mut(nr * k).take(panels).enumerate() {
        let j0 = p * nr;
        let cols = nr.min(n - j0);
        if b.cs == 1 {
            for kk in 0..k {
                let row = &b.data[kk * b.rs + j0..][..cols];
                let out = &mut panel[kk * nr..][..cols];
                for (o, x) in out.iter_mut().zip(row) {
                    *o = x.to_f32();
                }
            }
        } else if b.rs == 1 {
            for jj in 0..cols {
                let col = &b.data[(j0 + jj) * b.cs..][..k];
                for (kk, x) in col.iter().enumerate() {
                    panel[kk * nr + jj] = x.to_f32();
                }
            }
        } else {
            for kk in 0..k {
                for jj in 0..cols {
                    panel[kk * nr + jj] = b.at(kk, j0 + jj).to_f32();
                }
            }
        }
        if cols < nr {
            for kk in 0..k {
                panel[kk * nr + cols..(kk + 1) * nr].fill(0.0);
            }
        }
    }
}

#[inline(always)]
fn pair<T: Element>(lo: T, hi: Option<T>) -> u32 {
    lo.to_bf16_bits() as u32 | (hi.map_or(0, |h| h.to_bf16_bits() as u32) << 16)
}

/// Packs all of `a` as bf16 k-pairs in panels of `mr` rows.
pub(crate) fn pack_a_bf16<T: Element>(a: &MatRef<'_, T>, mr: usize, dst: &mut [u32]) {
    let (m, k) = (a.rows, a.cols);
    let kp = k.div_ceil(2);
    let panels = m.div_ceil(mr);
    for (p, panel) in dst.chunks_exact_mut(mr * kp).take(panels).enumerate() {
        let i0 = p * mr;
        let rows = mr.min(m - i0);
        for ii in 0..rows {
            for q in 0..kp {
                let hi = if 2 * q + 1 < k { Some(a.at(i0 + ii, 2 * q + 1)) } else { None };
                panel[q * mr + ii] = pair(a.at(i0 + ii, 2 * q), hi);
            }
        }
        if rows < mr {
            for q in 0..kp {
                panel[q * mr + rows..(q + 1) * mr].fill(0);
            }
        }
    }
}

/// Packs all of `b` as bf16 k-pairs in panels of `nr` columns.
pub(crate) fn pack_b_bf16<T: Element>(b: &MatRef<'_, T>, nr: usize, dst: &mut [u32]) {
    let (k, n) = (b.rows, b.cols);
    let kp = k.div_ceil(2);
    let panels = n.div_ceil(nr);
    for (p, panel) in dst.chunks_exact_mut(nr * kp).take(panels).enumerate() {
        let j0 = p * nr;
        let cols = nr.min(n - j0);
        if b.cs == 1 {
            for q in 0..kp {
                let r0 = &b.data[2 * q * b.rs + j0..][..cols];
                let out = &mut panel[q * nr..][..cols];
                if 2 * q + 1 < k {
                    let r1 = &b.data[(2 * q + 1) * b.rs + j0..][..cols];
                    for ((o, x), y) in out.iter_mut().zip(r0).zip(r1) {
                        *o = pair(*x, Some(*y));
                    }
                } else {
                    for (o, x) in out.iter_mut().zip(r0) {
                        *o = pair(*x, None);
                    }
                }
            }
        } else {
            for q in 0..kp {
                for jj in 0..cols {
                    let hi = if 2 * q + 1 < k { Some(b.at(2 * q + 1, j0 + jj)) } else { None };
                    panel[q * nr + jj] = pair(b.at(2 * q, j0 + jj), hi);
                }
            }
        }
        if cols < nr {
            for q in 0..kp {
                panel[q * nr + cols..(q + 1) * nr].fill(0);
            }
        }
    }
}
