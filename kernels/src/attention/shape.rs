//! The shape of an attention call: checks, causal limits, and the scratch it needs.

use super::{BC, BR};
use crate::KernelError;

/// Largest head dimension the CPU kernels take (the tuned sizes are 64, 128 and 256; the CUDA
/// kernels take 64 and 128). It bounds the per-tile scratch ([`attention_scratch_bytes`]).
pub const MAX_HEAD_DIM: usize = 256;

/// Elements of the five tile buffers (Qᵀ, K, Vᵀ, Sᵀ, Oᵀ) and of each per-query vector (m, l,
/// alpha) for register block `mr × nr` and head dim `dim`: the one formula for both the
/// allocation and [`attention_scratch_bytes`].
pub(crate) const fn tile_lens(mr: usize, nr: usize, dim: usize) -> ([usize; 5], usize) {
    let (br, bc) = blocks(mr, nr);
    let dp = dim.div_ceil(mr) * mr;
    ([br * dim, bc * dim, dp * bc, bc * br, dim * br], br)
}

/// Query block (BR rounded to a multiple of NR) and key block (BC rounded down to a multiple
/// of MR) of a kernel family.
pub(crate) const fn blocks(mr: usize, nr: usize) -> (usize, usize) {
    (max1(BR / nr) * nr, max1(BC / mr) * mr)
}

const fn max1(x: usize) -> usize {
    if x == 0 {
        1
    } else {
        x
    }
}

/// Upper bound, over every kernel family, of the scratch bytes one attention tile worker
/// allocates for head dim `dim` (the serial driver allocates one; the parallel one, one per
/// thread).
pub const fn attention_scratch_bytes(dim: usize) -> usize {
    // (MR, NR) of the portable, AVX2 and AVX-512 f32 families.
    const FAMILIES: [[usize; 2]; 3] = [[4, 16], [6, 16], [8, 48]];
    let mut max = 0;
    let mut i = 0;
    while i < FAMILIES.len() {
        let (bufs, br) = tile_lens(FAMILIES[i][0], FAMILIES[i][1], dim);
        let mut bytes = 3 * br * 4;
        let mut j = 0;
        while j < bufs.len() {
            bytes += crate::scratch::aligned_bytes(bufs[j]);
            j += 1;
        }
        if bytes > max {
            max = bytes;
        }
        i += 1;
    }
    max
}

/// Shape of an attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// Query positions.
    pub seq_q: usize,
    /// Key/value positions.
    pub seq_k: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`; `heads` for MHA, 1 for MQA).
    pub kv_heads: usize,
    /// Head dimension, 1 to [`MAX_HEAD_DIM`] (64/128/256 are the tuned ones).
    pub dim: usize,
    /// Causal (bottom-right aligned) mask.
    pub causal: bool,
}

impl AttnShape {
    /// Checks the shape and the lengths of the buffers (`lse_len` when an LSE output is given).
    pub fn validate(
        &self,
        q_len: usize,
        k_len: usize,
        v_len: usize,
        out_len: usize,
        lse_len: Option<usize>,
    ) -> Result<(), KernelError> {
        if self.heads == 0 || self.kv_heads == 0 || self.dim == 0 {
            return Err(KernelError::BadAttentionShape(
                "heads, kv_heads and dim must be non-zero",
            ));
        }
        if self.dim > MAX_HEAD_DIM {
            return Err(KernelError::BadAttentionShape("dim exceeds MAX_HEAD_DIM"));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(KernelError::BadAttentionShape(
                "heads must be a multiple of kv_heads",
            ));
        }
        let qn = mul3(self.seq_q, self.heads, self.dim)?;
        let kn = mul3(self.seq_k, self.kv_heads, self.dim)?;
        let ln = self
            .seq_q
            .checked_mul(self.heads)
            .ok_or(KernelError::BadAttentionShape("size overflows usize"))?;
        for (what, needed, len) in [
            ("q", qn, q_len),
            ("k", kn, k_len),
            ("v", kn, v_len),
            ("out", qn, out_len),
        ] {
            if len < needed {
                return Err(KernelError::BufferTooShort { what, needed, len });
            }
        }
        if let Some(len) = lse_len {
            if len < ln {
                return Err(KernelError::BufferTooShort {
                    what: "lse",
                    needed: ln,
                    len,
                });
            }
        }
        Ok(())
    }

    /// Number of keys query `i` may see (keys `0..key_limit(i)`).
    pub fn key_limit(&self, i: usize) -> usize {
        if self.causal {
            // bottom-right alignment: j ≤ i + seq_k − seq_q
            let lim = i as i128 + 1 + self.seq_k as i128 - self.seq_q as i128;
            lim.clamp(0, self.seq_k as i128) as usize
        } else {
            self.seq_k
        }
    }

    /// FLOPs of the forward pass as conventionally counted (4·seq_q·seq_k·dim per head; half
    /// that when causal with seq_q = seq_k, approximately).
    pub fn flops(&self) -> f64 {
        let full =
            4.0 * self.seq_q as f64 * self.seq_k as f64 * self.dim as f64 * self.heads as f64;
        if self.causal {
            full / 2.0
        } else {
            full
        }
    }
}

fn mul3(a: usize, b: usize, c: usize) -> Result<usize, KernelError> {
    a.checked_mul(b)
        .and_then(|x| x.checked_mul(c))
        .ok_or(KernelError::BadAttentionShape("size overflows usize"))
}
