//! AVX2 + FMA micro-kernel: a 6×16 register block (12 ymm accumulators, 2 B vectors, one
//! broadcast). Hand-written for the same reason as the AVX-512 one.

use core::arch::x86_64::*;

/// Rows of the register block.
pub(crate) const MR: usize = 6;
/// Columns of the register block (two 8-lane vectors).
pub(crate) const NR: usize = 16;

#[inline(always)]
fn lane_mask(valid: usize) -> __m256i {
    let idx = [0i32, 1, 2, 3, 4, 5, 6, 7];
    let mut m = [0i32; 8];
    for (o, i) in m.iter_mut().zip(idx) {
        *o = if (i as usize) < valid { -1 } else { 0 };
    }
    // SAFETY: reading 8 i32 from a local array.
    unsafe { _mm256_loadu_si256(m.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn block<const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm256_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: packed B panel holds NR floats per k step, 32-byte aligned.
            *x = unsafe { _mm256_load_ps(bp.add(v * 8)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: packed A panel holds MR floats per k step.
            let ai = _mm256_set1_ps(unsafe { *ap.add(i) });
            for (x, bvv) in row.iter_mut().zip(bv.iter()) {
                *x = _mm256_fmadd_ps(ai, *bvv, *x);
            }
        }
        // SAFETY: stays inside the panels.
        unsafe {
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
    }
    let last = cols - (NV - 1) * 8;
    let mask = lane_mask(last.min(8));
    for (i, row) in acc.iter().enumerate() {
        if i < rows {
            for (v, x) in row.iter().enumerate() {
                // SAFETY: masked lanes stay inside C (caller contract).
                unsafe {
                    let p = c.add(i * ldc + v * 8);
                    if v == NV - 1 && last < 8 {
                        let y = if accumulate {
                            _mm256_add_ps(*x, _mm256_maskload_ps(p, mask))
                        } else {
                            *x
                        };
                        _mm256_maskstore_ps(p, mask, y);
                    } else {
                        let y = if accumulate {
                            _mm256_add_ps(*x, _mm256_loadu_ps(p))
                        } else {
                            *x
                        };
                        _mm256_storeu_ps(p, y);
                    }
                }
            }
        }
    }
}

/// f32 micro-kernel; contract as the AVX-512 one with this MR/NR.
///
/// # Safety
/// CPU supports AVX2 and FMA; panels and `c` as for `avx512::kernel_f32`.
#[target_feature(enable = "avx2,fma")]
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
        if cols <= 8 {
            block::<1>(kc, a, b, c, ldc, rows, cols, accumulate)
        } else {
            block::<2>(kc, a, b, c, ldc, rows, cols, accumulate)
        }
    }
}
