//! AVX-512 micro-kernels: an 8×48 register block (24 zmm accumulators, 3 B vectors, one
//! broadcast), f32 FMA and bf16 `vdpbf16ps` (pairs of k per instruction, f32 accumulation).
//!
//! Hand-written: register blocking for this exact tile shape is what no crate exposes for a
//! `no_std` guest.

use core::arch::x86_64::*;

/// Rows of the register block.
pub(crate) const MR: usize = 8;
/// Columns of the register block (three 16-lane vectors).
pub(crate) const NR: usize = 48;

/// Stores a tile: full tiles straight from registers (no masks), edge tiles through [`store`].
#[inline(always)]
unsafe fn store_tile<const R: usize, const NV: usize>(
    acc: &[[__m512; NV]; R],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    if rows == R && cols == NV * 16 {
        for (i, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                // SAFETY: a full tile lies inside C (caller contract). The intrinsics need
                // AVX-512F, which every caller (a target_feature function) has enabled.
                unsafe {
                    let p = c.add(i * ldc + v * 16);
                    let y = if accumulate {
                        _mm512_add_ps(*x, _mm512_loadu_ps(p))
                    } else {
                        *x
                    };
                    _mm512_storeu_ps(p, y);
                }
            }
        }
    } else {
        // SAFETY: as above.
        unsafe { store::<R, NV>(acc, c, ldc, rows, cols, accumulate) }
    }
}

/// How many k steps ahead the B panel is prefetched (0: off).
const PF_B: usize = 8;

/// Brings the C tile towards L1 while the k loop runs (its rows are a page apart).
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_c<const NV: usize>(c: *mut f32, ldc: usize, rows: usize) {
    for i in 0..rows {
        for v in 0..NV {
            // SAFETY: prefetch never faults.
            _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * ldc + v * 16).cast());
        }
    }
}

#[inline(always)]
fn tail_mask(cols: usize, nv: usize) -> __mmask16 {
    let last = cols - (nv - 1) * 16;
    if last >= 16 {
        0xFFFF
    } else {
        ((1u32 << last) - 1) as __mmask16
    }
}

/// Writes (or adds) the accumulators to `c`, only rows `< rows` and columns `< cols`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store<const R: usize, const NV: usize>(
    acc: &[[__m512; NV]; R],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    let mask = tail_mask(cols, NV);
    for (i, row) in acc.iter().enumerate() {
        if i < rows {
            for (v, x) in row.iter().enumerate() {
                let m = if v == NV - 1 { mask } else { 0xFFFF };
                // SAFETY: the driver guarantees rows < rows, columns < cols lie inside C; the
                // mask excludes the rest.
                unsafe {
                    let p = c.add(i * ldc + v * 16);
                    let y = if accumulate {
                        _mm512_add_ps(*x, _mm512_maskz_loadu_ps(m, p))
                    } else {
                        *x
                    };
                    _mm512_mask_storeu_ps(p, m, y);
                }
            }
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,fma")]
unsafe fn f32_block<const R: usize, const NRP: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    prefetch_c::<NV>(c, ldc, rows);
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..kc {
        if PF_B > 0 {
            for v in 0..NV {
                // SAFETY: prefetch never faults; the address may lie past the panel.
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF_B * NRP + v * 16).cast());
            }
        }
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: the packed B panel holds NR floats per k step, 64-byte aligned.
            *x = unsafe { _mm512_load_ps(bp.add(v * 16)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: the packed A panel holds MR floats per k step.
            let ai = _mm512_set1_ps(unsafe { *ap.add(i) });
            for (x, bvv) in row.iter_mut().zip(bv.iter()) {
                *x = _mm512_fmadd_ps(ai, *bvv, *x);
            }
        }
        // SAFETY: stays inside the panels (kc steps).
        unsafe {
            ap = ap.add(R);
            bp = bp.add(NRP);
        }
    }
    // SAFETY: forwarded caller contract.
    unsafe { store_tile::<R, NV>(&acc, c, ldc, rows, cols, accumulate) }
}

#[inline]
#[target_feature(enable = "avx512f,fma")]
unsafe fn f32_block_strided<const NV: usize>(
    kc: usize,
    a: *const f32,
    rs: usize,
    cs: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    prefetch_c::<NV>(c, ldc, rows);
    // Rows past `rows` repeat the last valid row: never read out of bounds, never stored.
    let mut rp = [a; MR];
    for (i, p) in rp.iter_mut().enumerate() {
        *p = a.wrapping_add(i.min(rows - 1) * rs);
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let mut bp = b;
    let mut off = 0;
    for _ in 0..kc {
        if PF_B > 0 {
            for v in 0..NV {
                // SAFETY: prefetch never faults; the address may lie past the panel.
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF_B * NR + v * 16).cast());
            }
        }
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: the packed B panel holds NR floats per k step, 64-byte aligned.
            *x = unsafe { _mm512_load_ps(bp.add(v * 16)) };
        }
        for (row, p) in acc.iter_mut().zip(rp.iter()) {
            // SAFETY: element (i, k) of the strided A lies inside the caller's operand.
            let ai = _mm512_set1_ps(unsafe { *p.add(off) });
            for (x, bvv) in row.iter_mut().zip(bv.iter()) {
                *x = _mm512_fmadd_ps(ai, *bvv, *x);
            }
        }
        off += cs;
        // SAFETY: stays inside the B panel (kc steps).
        bp = unsafe { bp.add(NR) };
    }
    // SAFETY: forwarded caller contract.
    unsafe { store_tile::<MR, NV>(&acc, c, ldc, rows, cols, accumulate) }
}

/// f32 micro-kernel reading A unpacked: element `(i, k)` at `a[i·rs + k·cs]` (used by
/// attention to read K and V in place instead of copying them).
///
/// # Safety
/// As [`kernel_f32`], except that A is any strided operand with `1 ≤ rows ≤ MR` valid rows
/// and `kc` valid columns.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn kernel_f32_strided_a(
    kc: usize,
    a: *const f32,
    rs: usize,
    cs: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded caller contract.
    unsafe {
        match cols.div_ceil(16) {
            1 => f32_block_strided::<1>(kc, a, rs, cs, b, c, ldc, rows, cols, accumulate),
            2 => f32_block_strided::<2>(kc, a, rs, cs, b, c, ldc, rows, cols, accumulate),
            _ => f32_block_strided::<3>(kc, a, rs, cs, b, c, ldc, rows, cols, accumulate),
        }
    }
}

/// Rows of the bf16 GEMM register block (12×32: 24 accumulators, 2 B vectors).
pub(crate) const MR12: usize = 12;
/// Columns of the 12-row block.
pub(crate) const NR32: usize = 32;

/// f32 micro-kernel: `C[rows × cols] (+)= Apanel · Bpanel` over `kc` k steps.
///
/// # Safety
/// CPU supports AVX-512F and FMA; `a`/`b` point at packed panels of `kc` steps (B 64-byte
/// aligned); `c` is valid for `rows ≤ MR` rows of stride `ldc` and `cols ≤ NR` columns.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn kernel_f32(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded caller contract.
    unsafe {
        match cols.div_ceil(16) {
            1 => f32_block::<MR, NR, 1>(kc, a, b, c, ldc, rows, cols, accumulate),
            2 => f32_block::<MR, NR, 2>(kc, a, b, c, ldc, rows, cols, accumulate),
            _ => f32_block::<MR, NR, 3>(kc, a, b, c, ldc, rows, cols, accumulate),
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_block<const R: usize, const NRP: usize, const NV: usize>(
    kp: usize,
    a: *const u32,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    prefetch_c::<NV>(c, ldc, rows);
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..kp {
        for v in 0..NV {
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PF_B * NRP + v * 16).cast());
        }
        let mut bv = [_mm512_setzero_si512(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: the packed B panel holds NRP pairs per k-pair step, 64-byte aligned.
            *x = unsafe { _mm512_load_si512(bp.add(v * 16).cast()) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: the packed A panel holds R pairs per k-pair step.
            let ai: __m512bh =
                unsafe { core::mem::transmute(_mm512_set1_epi32(*ap.add(i) as i32)) };
            for (x, bvv) in row.iter_mut().zip(bv.iter()) {
                // SAFETY: __m512i and __m512bh are both 64-byte plain vectors.
                let bb: __m512bh = unsafe { core::mem::transmute(*bvv) };
                // Intel SDM Vol. 2 VDPBF16PS: x[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1].
                *x = _mm512_dpbf16_ps(*x, ai, bb);
            }
        }
        // SAFETY: stays inside the panels (kp steps).
        unsafe {
            ap = ap.add(R);
            bp = bp.add(NRP);
        }
    }
    // SAFETY: forwarded caller contract.
    unsafe { store_tile::<R, NV>(&acc, c, ldc, rows, cols, accumulate) }
}

/// bf16 micro-kernel with the 12×32 block, over `kp` packed k-pairs (f32 accumulation).
///
/// # Safety
/// As [`kernel_f32`] (with MR12/NR32), plus the CPU supports AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn kernel_bf16_12x32(
    kp: usize,
    a: *const u32,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded caller contract.
    unsafe {
        if cols <= 16 {
            bf16_block::<MR12, NR32, 1>(kp, a, b, c, ldc, rows, cols, accumulate)
        } else {
            bf16_block::<MR12, NR32, 2>(kp, a, b, c, ldc, rows, cols, accumulate)
        }
    }
}
