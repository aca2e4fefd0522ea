//! `wgmma.mma_async` executed on the CPU over per-thread registers (PTX ISA
//! "wgmma.mma_async"): D = A x B (+ D), m64nNk16, bf16 inputs, f32 accumulation.

use super::fragments::{wgmma_a, wgmma_d, WARPGROUP};
use super::smem::{decode_desc, kmajor_addr, mnmajor_addr, Smem};
use super::{bf16_bits_to_f32, f32_to_bf16_bits};

/// Accumulator registers of a warpgroup: `acc[thread][i]`, N/2 per thread.
pub type Accum = Vec<Vec<f32>>;

/// A zeroed accumulator for an m64nN tile.
pub fn new_accum(n: usize) -> Accum {
    vec![vec![0.0; n / 2]; WARPGROUP]
}

/// Reads the B operand (16 x n) through its descriptor.
fn load_b(smem: &Smem, n: usize, desc_b: u64, trans_b: bool) -> Vec<f32> {
    let db = decode_desc(desc_b);
    let mut b = vec![0.0f32; 16 * n];
    for k in 0..16 {
        for j in 0..n {
            let addr = if trans_b {
                mnmajor_addr(&db, k, j)
            } else {
                kmajor_addr(&db, j, k)
            };
            b[k * n + j] = bf16_bits_to_f32(smem.read_bf16(addr));
        }
    }
    b
}

/// D (64 x n) = A (64 x 16, row-major dense) x B (16 x n) + (scale_d ? D : 0), scattered to the
/// thread registers by the accumulator fragment layout. Products are summed in f32 in k order.
fn mma_into(acc: &mut Accum, a: &[f32], b: &[f32], n: usize, scale_d: bool) {
    for (t, regs) in acc.iter_mut().enumerate() {
        for (i, d) in regs.iter_mut().enumerate() {
            let (row, col) = wgmma_d(t, i);
            let mut s = if scale_d { *d } else { 0.0 };
            for k in 0..16 {
                s += a[row * 16 + k] * b[k * n + col];
            }
            *d = s;
        }
    }
}

/// `wgmma.mma_async.m64nNk16.f32.bf16.bf16` with A and B in shared memory (A K-major).
pub fn wgmma_ss(
    smem: &Smem,
    acc: &mut Accum,
    n: usize,
    desc_a: u64,
    desc_b: u64,
    trans_b: bool,
    scale_d: bool,
) {
    let da = decode_desc(desc_a);
    let mut a = vec![0.0f32; 64 * 16];
    for m in 0..64 {
        for k in 0..16 {
            a[m * 16 + k] = bf16_bits_to_f32(smem.read_bf16(kmajor_addr(&da, m, k)));
        }
    }
    let b = load_b(smem, n, desc_b, trans_b);
    mma_into(acc, &a, &b, n, scale_d);
}

/// `wgmma.mma_async.m64nNk16.f32.bf16.bf16` with A from registers: `a_regs[thread]` are the four
/// bf16x2 registers of [`wgmma_a`].
pub fn wgmma_rs(
    smem: &Smem,
    acc: &mut Accum,
    n: usize,
    a_regs: &[[u32; 4]],
    desc_b: u64,
    trans_b: bool,
    scale_d: bool,
) {
    let mut a = vec![f32::NAN; 64 * 16];
    for (t, regs) in a_regs.iter().enumerate() {
        for e in 0..8 {
            let (row, col) = wgmma_a(t, e);
            let half = (regs[e / 2] >> (16 * (e % 2))) as u16;
            a[row * 16 + col] = bf16_bits_to_f32(half);
        }
    }
    let b = load_b(smem, n, desc_b, trans_b);
    mma_into(acc, &a, &b, n, scale_d);
}

/// Rounds every accumulator element to bf16 and back (helper for tests of the A-from-D reuse).
pub fn round_accum_bf16(acc: &Accum) -> Accum {
    acc.iter()
        .map(|r| {
            r.iter()
                .map(|&x| bf16_bits_to_f32(f32_to_bf16_bits(x)))
                .collect()
        })
        .collect()
}
