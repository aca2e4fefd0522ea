//! Packing of GEMM operands into the panel layouts the micro-kernels stream.
//!
//! A block (`m × k`) becomes `ceil(m / MR)` panels; panel `p` holds, for each k step, the `MR`
//! values of rows `p·MR ..` (zero-padded). B (`k × n`) becomes `ceil(n / NR)` panels holding,
//! for each k step, `NR` consecutive columns. The bf16 variants pack k in pairs, as
//! `vdpbf16ps` consumes them: one u32 = `lo: k even | hi: k odd`.
//!
//! Written by hand: the layouts are specific to these micro-kernels.

use crate::mat::{DType, Element, MatRef};

/// Transposing copy of 32-bit items for the A panels: `dst[q·mr + i] = src(i, q)` for rows
/// `i < rows` and `q < kq`, where item `(i, q)` starts at byte `i·rs_bytes + 4q` (any
/// alignment). Groups of 4 rows × 4 items go through an SSE2 4×4 transpose.
///
/// # Safety
/// Every item read lies inside the source allocation; `dst` holds `kq·mr` items; `rows ≤ mr`.
unsafe fn transpose_u32(
    src: *const u8,
    rs_bytes: usize,
    rows: usize,
    kq: usize,
    mr: usize,
    dst: *mut u32,
) {
    let full_groups = rows / 4;
    let mut q = 0;
    // q outer, row groups inner: all rows of the panel stream at once (more memory-level
    // parallelism than one 4-row group after another).
    #[cfg(target_arch = "x86_64")]
    while q + 4 <= kq {
        use core::arch::x86_64::*;
        for g in 0..full_groups {
            let i0 = 4 * g;
            // SAFETY: 16 bytes from each of 4 rows at items q..q+4 (caller contract); 16
            // bytes to each of dst[(q+j)·mr + i0 ..][..4].
            unsafe {
                let r = |i: usize| _mm_loadu_si128(src.add((i0 + i) * rs_bytes + 4 * q).cast());
                let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                let t0 = _mm_unpacklo_epi32(r0, r1);
                let t1 = _mm_unpackhi_epi32(r0, r1);
                let t2 = _mm_unpacklo_epi32(r2, r3);
                let t3 = _mm_unpackhi_epi32(r2, r3);
                let w =
                    |j: usize, v: __m128i| _mm_storeu_si128(dst.add((q + j) * mr + i0).cast(), v);
                w(0, _mm_unpacklo_epi64(t0, t2));
                w(1, _mm_unpackhi_epi64(t0, t2));
                w(2, _mm_unpacklo_epi64(t1, t3));
                w(3, _mm_unpackhi_epi64(t1, t3));
            }
        }
        for i in 4 * full_groups..rows {
            for qq in q..q + 4 {
                // SAFETY: as above, one item.
                unsafe {
                    *dst.add(qq * mr + i) = src
                        .add(i * rs_bytes + 4 * qq)
                        .cast::<u32>()
                        .read_unaligned()
                };
            }
        }
        q += 4;
    }
    for qq in q..kq {
        for i in 0..rows {
            // SAFETY: as above, one item.
            unsafe {
                *dst.add(qq * mr + i) = src
                    .add(i * rs_bytes + 4 * qq)
                    .cast::<u32>()
                    .read_unaligned()
            };
        }
    }
}

/// The panel of `rows` rows of a row-major (cs = 1) view starting at row `i0`, as 32-bit items.
fn row_block_ptr<T>(a: &MatRef<'_, T>, i0: usize, rows: usize, k: usize) -> *const u8 {
    // Bounds: the last element read is (i0+rows-1)·rs + k-1, inside the view (checked on
    // construction); slicing here re-checks it so an inconsistent view cannot read out.
    let last = (i0 + rows - 1) * a.rs + k - 1;
    let _ = &a.data[..=last];
    a.data[i0 * a.rs..].as_ptr().cast()
}

/// Packs all of `a` (f32 panels of `mr` rows) into `dst`.
pub(crate) fn pack_a_f32<T: Element>(a: &MatRef<'_, T>, mr: usize, dst: &mut [f32]) {
    let (m, k) = (a.rows, a.cols);
    let panels = m.div_ceil(mr);
    for (p, panel) in dst.chunks_exact_mut(mr * k).take(panels).enumerate() {
        let i0 = p * mr;
        let rows = mr.min(m - i0);
        if a.cs == 1 && T::DTYPE == DType::F32 && k > 0 {
            let src = row_block_ptr(a, i0, rows, k);
            // SAFETY: T is f32 (4-byte items); rows × k items from src are inside the view;
            // panel holds k·mr items.
            unsafe { transpose_u32(src, a.rs * 4, rows, k, mr, panel.as_mut_ptr().cast()) };
        } else if a.cs == 1 {
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
    if b.cs == 1 && nr.is_multiple_of(16) && n > 0 {
        // Row-major B: read each row of the block once, front to back (prefetch-friendly),
        // and scatter its NR-wide pieces to the panels.
        for kk in 0..k {
            let row = &b.data[kk * b.rs..][..n];
            for (p, piece) in row.chunks(nr).enumerate() {
                let out = &mut dst[p * nr * k + kk * nr..][..nr];
                let mut oc = out.chunks_exact_mut(16);
                let mut rc = piece.chunks_exact(16);
                for (o, x) in (&mut oc).zip(&mut rc) {
                    let o: &mut [f32; 16] = o.try_into().expect("16");
                    let x: &[T; 16] = x.try_into().expect("16");
                    for j in 0..16 {
                        o[j] = x[j].to_f32();
                    }
                }
                let rem = rc.remainder();
                let tail = oc.into_remainder();
                debug_assert!(tail.is_empty());
                let used = piece.len() - rem.len();
                for (j, o) in out[used..].iter_mut().enumerate() {
                    *o = rem.get(j).map_or(0.0, |x| x.to_f32());
                }
            }
        }
        return;
    }
    for (p, panel) in dst.chunks_exact_mut(nr * k).take(panels).enumerate() {
        let j0 = p * nr;
        let cols = nr.min(n - j0);
        if b.cs == 1 {
            for kk in 0..k {
                let row = &b.data[kk * b.rs + j0..][..cols];
                let out = &mut panel[kk * nr..][..cols];
                // Fixed 16-wide chunks compile to inline vector moves (no memcpy call per row).
                let mut oc = out.chunks_exact_mut(16);
                let mut rc = row.chunks_exact(16);
                for (o, x) in (&mut oc).zip(&mut rc) {
                    let o: &mut [f32; 16] = o.try_into().expect("16");
                    let x: &[T; 16] = x.try_into().expect("16");
                    for j in 0..16 {
                        o[j] = x[j].to_f32();
                    }
                }
                for (o, x) in oc.into_remainder().iter_mut().zip(rc.remainder()) {
                    *o = x.to_f32();
                }
            }
        } else if b.rs == 1 && T::DTYPE == DType::F32 && k > 0 {
            let src = row_block_ptr(&b.t(), j0, cols, k);
            // SAFETY: T is f32; column j of b is row j of bᵀ: cols × k items from src lie
            // inside the view; panel holds k·nr items.
            unsafe { transpose_u32(src, b.cs * 4, cols, k, nr, panel.as_mut_ptr().cast()) };
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
        if a.cs == 1 && T::DTYPE == DType::Bf16 && k >= 2 {
            // bf16 pairs (k even, k odd) of a row are one unaligned 32-bit item.
            let full = k / 2;
            let src = row_block_ptr(a, i0, rows, 2 * full);
            // SAFETY: T is bf16 (2 bytes): pair q of row i is bytes i·rs·2 + 4q .. + 4, inside
            // the view; panel holds kp·mr ≥ full·mr items.
            unsafe { transpose_u32(src, a.rs * 2, rows, full, mr, panel.as_mut_ptr()) };
            if k % 2 == 1 {
                for ii in 0..rows {
                    panel[full * mr + ii] = pair(a.at(i0 + ii, k - 1), None);
                }
            }
        } else {
            for ii in 0..rows {
                for q in 0..kp {
                    let hi = if 2 * q + 1 < k {
                        Some(a.at(i0 + ii, 2 * q + 1))
                    } else {
                        None
                    };
                    panel[q * mr + ii] = pair(a.at(i0 + ii, 2 * q), hi);
                }
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
                    let hi = if 2 * q + 1 < k {
                        Some(b.at(2 * q + 1, j0 + jj))
                    } else {
                        None
                    };
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
