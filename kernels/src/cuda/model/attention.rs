//! CPU execution of `pupa_attention_fwd_d{64,128}_sm90a` (kernels/cuda/attention_fwd_sm90a.cu):
//! CTA by CTA, KV tile by KV tile, warpgroup by warpgroup, with the kernel's masking, online
//! softmax (per-thread state, quad reductions as `__shfl_xor_sync` does them) and the reuse of the
//! S accumulator registers as the A operand of P V.

use super::fragments::{accumulator_to_a, wgmma_d, WARPGROUP};
use super::smem::{make_desc_sw128, tma_load_box_sw128, Smem};
use super::warpgroup::{new_accum, wgmma_rs, wgmma_ss, Accum};

/// Query rows per CTA (two consumer warpgroups of 64 rows).
pub const BM: usize = 128;
/// Keys per KV tile (S is m64n128 per warpgroup).
pub const BKV: usize = 128;
/// Depth of the K/V ring.
pub const STAGES: usize = 2;

/// Dynamic shared memory the launcher requests for head dimension `d`: alignment slack, Q tile,
/// the K/V ring and 1 + 3 x STAGES mbarriers (mirrors `Cfg<D>::SMEM_BYTES`).
pub const fn smem_bytes(d: usize) -> u32 {
    (1024 + BM * d * 2 + STAGES * 2 * BKV * d * 2 + (1 + 3 * STAGES) * 8) as u32
}

/// Shape of one attention call, with the layouts of `pupa_kernels::attention` (and of
/// FlashAttention): Q and O are `[seq_q][heads][dim]`, K and V `[seq_k][kv_heads][dim]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`; equal for MHA).
    pub kv_heads: usize,
    /// Query length.
    pub seq_q: usize,
    /// Key/value length.
    pub seq_k: usize,
    /// Head dimension (64 or 128).
    pub dim: usize,
    /// Causal mask, bottom-right aligned: query i sees keys j <= i + seq_k - seq_q.
    pub causal: bool,
}

impl AttnShape {
    /// Number of KV tiles a CTA whose first query row is `m0` visits (as the kernel computes it).
    pub fn kv_tiles(&self, m0: usize) -> usize {
        let all = self.seq_k.div_ceil(BKV);
        if !self.causal {
            return all;
        }
        let last_key =
            (m0 + BM - 1).min(self.seq_q - 1) as i64 + self.seq_k as i64 - self.seq_q as i64;
        if last_key < 0 {
            0
        } else {
            all.min(last_key as usize / BKV + 1)
        }
    }
}

/// Per-consumer-warpgroup softmax state, one entry per thread.
struct RowState {
    o: Accum,
    m: Vec<[f32; 2]>,
    l: Vec<[f32; 2]>,
}

/// `v` combined with lane `t ^ mask` of the same warp, as `__shfl_xor_sync` pairs them.
fn xor_combine(v: &[f32], mask: usize, f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    (0..v.len()).map(|t| f(v[t], v[t ^ mask])).collect()
}

/// O (f32) = softmax(scale * Q K^T, masked) V computed the way the CUDA kernel does; inputs are
/// bf16 bits. Elements the kernel would not write stay NaN.
pub fn attention_tiled(q: &[u16], k: &[u16], v: &[u16], sh: &AttnShape, scale: f32) -> Vec<f32> {
    let d = sh.dim;
    assert!(d == 64 || d == 128, "model supports head dims 64 and 128");
    let q_bytes = (BM * d * 2) as u32;
    let kv_bytes = (BKV * d * 2) as u32;
    let scale_log2 = scale * core::f32::consts::LOG2_E;
    let diag = sh.seq_k as i64 - sh.seq_q as i64;
    let mut out = vec![f32::NAN; sh.heads * sh.seq_q * d];
    for h in 0..sh.heads {
        let h_kv = h / (sh.heads / sh.kv_heads);
        for m0 in (0..sh.seq_q).step_by(BM) {
            let mut smem = Smem::new((q_bytes + 2 * STAGES as u32 * kv_bytes) as usize);
            for c in 0..d / 64 {
                tma_load_box_sw128(&mut smem, (c * BM * 128) as u32, BM, |r, col| {
                    if m0 + r < sh.seq_q {
                        q[((m0 + r) * sh.heads + h) * d + 64 * c + col]
                    } else {
                        0
                    }
                });
            }
            let mut st: Vec<RowState> = (0..2)
                .map(|_| RowState {
                    o: new_accum(d),
                    m: vec![[f32::NEG_INFINITY; 2]; WARPGROUP],
                    l: vec![[0.0; 2]; WARPGROUP],
                })
                .collect();
            for j in 0..sh.kv_tiles(m0) {
                let s = (j % STAGES) as u32;
                let k_base = q_bytes + s * kv_bytes;
                let v_base = q_bytes + STAGES as u32 * kv_bytes + s * kv_bytes;
                for (base, src) in [(k_base, k), (v_base, v)] {
                    for c in 0..d / 64 {
                        tma_load_box_sw128(
                            &mut smem,
                            base + (c * BKV * 128) as u32,
                            BKV,
                            |r, col| {
                                let key = j * BKV + r;
                                if key < sh.seq_k {
                                    src[(key * sh.kv_heads + h_kv) * d + 64 * c + col]
                                } else {
                                    0
                                }
                            },
                        );
                    }
                }
                for (cw, state) in st.iter_mut().enumerate() {
                    consumer_tile(
                        &smem, state, sh, cw, m0, j, k_base, v_base, scale_log2, diag,
                    );
                }
            }
            for (cw, state) in st.iter().enumerate() {
                store(&mut out, state, sh, h, m0 + cw * 64);
            }
        }
    }
    out
}

/// One KV tile for one consumer warpgroup: S = Q K^T, mask, online softmax, O = alpha O + P V.
#[allow(clippy::too_many_arguments)]
fn consumer_tile(
    smem: &Smem,
    st: &mut RowState,
    sh: &AttnShape,
    cw: usize,
    m0: usize,
    j: usize,
    k_base: u32,
    v_base: u32,
    scale_log2: f32,
    diag: i64,
) {
    let d = sh.dim;
    let mut sc = new_accum(BKV);
    let q_base = (cw * 64 * 128) as u32;
    for kk in 0..d / 16 {
        let (c, off) = (kk / 4, 32 * (kk % 4) as u32);
        let dq = make_desc_sw128(q_base + (c * BM * 128) as u32 + off, 16, 1024);
        let dk = make_desc_sw128(k_base + (c * BKV * 128) as u32 + off, 16, 1024);
        wgmma_ss(smem, &mut sc, BKV, dq, dk, false, kk > 0);
    }
    let first_row = (m0 + cw * 64) as i64;
    let edge =
        (j + 1) * BKV > sh.seq_k || (sh.causal && ((j + 1) * BKV) as i64 - 1 > first_row + diag);
    if edge {
        for (t, regs) in sc.iter_mut().enumerate() {
            for (i, x) in regs.iter_mut().enumerate() {
                let (r, col) = wgmma_d(t, i);
                let (row, key) = (first_row + r as i64, (j * BKV + col) as i64);
                if key >= sh.seq_k as i64 || (sh.causal && key > row + diag) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
    for r in 0..2 {
        let own: Vec<f32> = sc
            .iter()
            .map(|regs| {
                regs.iter()
                    .enumerate()
                    .filter(|(i, _)| (i / 2) % 2 == r)
                    .fold(f32::NEG_INFINITY, |m, (_, &x)| m.max(x))
            })
            .collect();
        let mx = xor_combine(&xor_combine(&own, 1, f32::max), 2, f32::max);
        for t in 0..WARPGROUP {
            let m_new = st.m[t][r].max(mx[t] * scale_log2);
            let m_use = if m_new == f32::NEG_INFINITY {
                0.0
            } else {
                m_new
            };
            let alpha = (st.m[t][r] - m_use).exp2();
            st.m[t][r] = m_new;
            let mut sum = 0.0f32;
            for (i, x) in sc[t].iter_mut().enumerate() {
                if (i / 2) % 2 == r {
                    *x = (*x * scale_log2 - m_use).exp2();
                    sum += *x;
                }
            }
            st.l[t][r] = st.l[t][r] * alpha + sum;
            for (i, o) in st.o[t].iter_mut().enumerate() {
                if (i / 2) % 2 == r {
                    *o *= alpha;
                }
            }
        }
    }
    for ks in 0..BKV / 16 {
        let a: Vec<[u32; 4]> = sc.iter().map(|regs| accumulator_to_a(regs, ks)).collect();
        let dv = make_desc_sw128(v_base + (ks * 16 * 128) as u32, (BKV * 128) as u32, 1024);
        wgmma_rs(smem, &mut st.o, d, &a, dv, true, true);
    }
}

/// Final quad reduction of l, normalisation and the bounds-checked store of one warpgroup's rows.
fn store(out: &mut [f32], st: &RowState, sh: &AttnShape, h: usize, first_row: usize) {
    let d = sh.dim;
    let mut inv = vec![[0.0f32; 2]; WARPGROUP];
    for r in 0..2 {
        let l: Vec<f32> = st.l.iter().map(|x| x[r]).collect();
        let l = xor_combine(&xor_combine(&l, 1, |a, b| a + b), 2, |a, b| a + b);
        for t in 0..WARPGROUP {
            inv[t][r] = if l[t] > 0.0 { 1.0 / l[t] } else { 0.0 };
        }
    }
    for (t, (regs, inv)) in st.o.iter().zip(&inv).enumerate() {
        for (i, &o) in regs.iter().enumerate() {
            let (r, col) = wgmma_d(t, i);
            let row = first_row + r;
            if row < sh.seq_q {
                out[(row * sh.heads + h) * d + col] = o * inv[(i / 2) % 2];
            }
        }
    }
}
