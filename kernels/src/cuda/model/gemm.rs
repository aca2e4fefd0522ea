//! CPU execution of `pupa_gemm_bf16_sm90a` (kernels/cuda/gemm_bf16_sm90a.cu), CTA by CTA,
//! stage by stage, warpgroup by warpgroup, through the fragment and shared-memory models.

use super::fragments::wgmma_d;
use super::smem::{make_desc_sw128, tma_load_box_sw128, Smem};
use super::warpgroup::{new_accum, wgmma_ss};

/// Rows of C per CTA (two consumer warpgroups of 64 rows).
pub const BM: usize = 128;
/// Columns of C per CTA (one m64n256k16 per consumer warpgroup).
pub const BN: usize = 256;
/// K elements per pipeline stage (one 128-byte swizzle row of bf16).
pub const BK: usize = 64;
/// Pipeline depth of the TMA ring.
pub const STAGES: usize = 4;
/// Bytes of the A tile of one stage.
pub const A_BYTES: u32 = (BM * BK * 2) as u32;
/// Bytes of the B tile of one stage.
pub const B_BYTES: u32 = (BN * BK * 2) as u32;
/// Dynamic shared memory the launcher requests (alignment slack, ring, 2 x STAGES mbarriers).
pub const SMEM_BYTES: u32 = 1024 + STAGES as u32 * (A_BYTES + B_BYTES) + 2 * STAGES as u32 * 8;

/// C (m x n, f32, row-major) = A (m x k, bf16 bits, row-major) x B^T with B given n x k, computed
/// the way the CUDA kernel does. Elements the kernel would not write stay NaN.
pub fn gemm_tiled(a: &[u16], b: &[u16], m: usize, n: usize, k: usize) -> Vec<f32> {
    assert!(
        a.len() == m * k && b.len() == n * k,
        "model called with inconsistent shapes"
    );
    let mut c = vec![f32::NAN; m * n];
    let ktiles = k.div_ceil(BK);
    for by in 0..m.div_ceil(BM) {
        for bx in 0..n.div_ceil(BN) {
            let (m0, n0) = (by * BM, bx * BN);
            let mut smem = Smem::new(STAGES * (A_BYTES + B_BYTES) as usize);
            let mut accs = [new_accum(BN), new_accum(BN)];
            for kt in 0..ktiles {
                // Producer: two TMA boxes into stage kt % STAGES (zero fill out of bounds).
                let s = (kt % STAGES) as u32;
                let (sa, sb) = (s * A_BYTES, STAGES as u32 * A_BYTES + s * B_BYTES);
                let k0 = kt * BK;
                tma_load_box_sw128(&mut smem, sa, BM, |r, col| {
                    let (gr, gc) = (m0 + r, k0 + col);
                    if gr < m && gc < k {
                        a[gr * k + gc]
                    } else {
                        0
                    }
                });
                tma_load_box_sw128(&mut smem, sb, BN, |r, col| {
                    let (gr, gc) = (n0 + r, k0 + col);
                    if gr < n && gc < k {
                        b[gr * k + gc]
                    } else {
                        0
                    }
                });
                // Consumers: four k16 steps, 32 bytes apart inside the swizzle row.
                for (cw, acc) in accs.iter_mut().enumerate() {
                    let a_base = sa + (cw * 64 * 128) as u32;
                    for kk in 0..BK / 16 {
                        let da = make_desc_sw128(a_base + 32 * kk as u32, 16, 1024);
                        let db = make_desc_sw128(sb + 32 * kk as u32, 16, 1024);
                        wgmma_ss(&smem, acc, BN, da, db, false, true);
                    }
                }
            }
            // Epilogue: bounds-checked stores from the accumulator fragments.
            for (cw, acc) in accs.iter().enumerate() {
                for (t, regs) in acc.iter().enumerate() {
                    for (i, &v) in regs.iter().enumerate() {
                        let (r, col) = wgmma_d(t, i);
                        let (gr, gc) = (m0 + cw * 64 + r, n0 + col);
                        if gr < m && gc < n {
                            c[gr * n + gc] = v;
                        }
                    }
                }
            }
        }
    }
    c
}
