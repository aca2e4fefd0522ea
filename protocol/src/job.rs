//! The job schema: what a client asks the guest to compute, and what comes back.
//!
//! Tensors are dense little-endian arrays of the job's [`DType`]:
//! - `Matmul { m, n, k }`: `C[m×n] = A[m×k] · B[k×n]`, tensors `[A, B]`. `a_layout`/`b_layout`
//!   say how A and B are stored (`RowMajor`: A as m rows of k; `ColMajor`: A as k rows of m,
//!   i.e. Aᵀ row-major; likewise B). C is row-major.
//! - `Attention { seq_q, seq_k, heads, kv_heads, dim, causal }`: tensors `[Q, K, V]` in
//!   FlashAttention's layout: Q as `[seq_q][heads][dim]`, K and V as `[seq_k][kv_heads][dim]`;
//!   query head `h` uses KV head `h / (heads / kv_heads)` (GQA). `O = softmax(Q·Kᵀ/√dim)·V`,
//!   O as `[seq_q][heads][dim]`.
//!   Causal masking is aligned bottom-right: query `i` sees keys `j ≤ i + seq_k − seq_q`
//!   (the usual convention for decoding with a KV cache), and needs `seq_q ≤ seq_k`.
//!
//! The output is always f32 (kernels accumulate in f32). [`Job::validate`] checks every shape
//! product with overflow-checked arithmetic against the byte lengths and the caps below, and
//! returns a specific [`JobError`].

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::seal::Aead;

/// Most input tensor bytes in one job.
pub const MAX_INPUT_BYTES: u64 = 60 << 20;
/// Most output bytes in one job (the sealed result must fit `MAX_JOB_FRAME`).
pub const MAX_OUTPUT_BYTES: u64 = 48 << 20;
/// Most floating-point operations in one job (≈ a minute on one core at 20 GFLOP/s).
pub const MAX_FLOPS: u64 = 1 << 40;
/// Most bytes of a voucher.
pub const MAX_VOUCHER_BYTES: usize = 4096;

/// Element type of the input tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }
}

/// Storage order of a matrix operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Rows contiguous.
    RowMajor,
    /// Columns contiguous (the transpose, stored row-major).
    ColMajor,
}

/// The operation of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `C = A · B`.
    Matmul {
        /// Rows of A and C.
        m: u32,
        /// Columns of B and C.
        n: u32,
        /// Columns of A, rows of B.
        k: u32,
        /// Storage of A.
        a_layout: Layout,
        /// Storage of B.
        b_layout: Layout,
    },
    /// Scaled dot-product attention forward.
    Attention {
        /// Query positions.
        seq_q: u32,
        /// Key/value positions.
        seq_k: u32,
        /// Query heads.
        heads: u32,
        /// Key/value heads (divides `heads`).
        kv_heads: u32,
        /// Head dimension.
        dim: u32,
        /// Causal mask (bottom-right aligned).
        causal: bool,
    },
}

/// A job as the client seals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Client-chosen id, echoed in the result and errors.
    pub job_id: [u8; 16],
    /// What to compute.
    pub op: Op,
    /// Element type of the inputs.
    pub dtype: DType,
    /// Input tensors, little-endian (see the module docs for order and layout).
    pub tensors: Vec<serde_bytes::ByteBuf>,
    /// The client's X25519 public key: the result is sealed to it, receipts name it.
    pub reply_key: [u8; 32],
    /// AEAD to seal the result with.
    pub reply_aead: Aead,
    /// The client's job counter for `reply_key`: it must be strictly greater than that of
    /// every job this guest key pair has accepted from `reply_key` (gaps are fine). This is
    /// the replay protection: a sealed job the host replays carries a counter already used.
    /// Clients without durable state use their clock (nanoseconds since the Unix epoch).
    pub client_seq: u64,
    /// The client's payment voucher: empty, or the BOC of a TON `Signed PupaVoucher` cell
    /// ([`crate::ton::SignedVoucher`]) naming this guest's receipt key.
    pub voucher: serde_bytes::ByteBuf,
}

/// The shape facts of a validated job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobShape {
    /// Output dimensions (row-major): `[m, n]` or `[seq_q, heads, dim]`.
    pub out_dims: [u32; 3],
    /// Number of meaningful entries of `out_dims` (2 or 3).
    pub out_rank: usize,
    /// Output elements.
    pub out_elems: u64,
    /// Floating-point operations (2 per multiply-add; attention counts both GEMMs, full
    /// even when causal).
    pub flops: u64,
}

/// Why a job is refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// A dimension is zero.
    #[error("dimension {name} is zero")]
    ZeroDim {
        /// The dimension's name.
        name: &'static str,
    },
    /// `heads` is not a multiple of `kv_heads`.
    #[error("heads {heads} is not a multiple of kv_heads {kv_heads}")]
    BadGqa {
        /// Query heads.
        heads: u32,
        /// KV heads.
        kv_heads: u32,
    },
    /// A causal job has more queries than keys.
    #[error("causal attention needs seq_q ({seq_q}) <= seq_k ({seq_k})")]
    CausalShape {
        /// Query positions.
        seq_q: u32,
        /// Key positions.
        seq_k: u32,
    },
    /// Wrong number of tensors for the op.
    #[error("expected {expected} tensors, got {got}")]
    TensorCount {
        /// Tensors the op takes.
        expected: usize,
        /// Tensors sent.
        got: usize,
    },
    /// A tensor's byte length does not match its shape.
    #[error("tensor {index} has {got} bytes, its shape needs {expected}")]
    TensorBytes {
        /// Tensor index.
        index: usize,
        /// Bytes the shape needs.
        expected: u64,
        /// Bytes sent.
        got: u64,
    },
    /// A size exceeds a cap (or overflows u64).
    #[error("{what} too large: {got} > {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The size (u64::MAX on overflow).
        got: u64,
        /// The cap.
        max: u64,
    },
}

fn nz(v: u32, name: &'static str) -> Result<u64, JobError> {
    if v == 0 {
        Err(JobError::ZeroDim { name })
    } else {
        Ok(u64::from(v))
    }
}

fn mul(xs: &[u64]) -> u64 {
    xs.iter()
        .try_fold(1u64, |a, &b| a.checked_mul(b))
        .unwrap_or(u64::MAX)
}

fn cap(what: &'static str, got: u64, max: u64) -> Result<(), JobError> {
    if got > max {
        Err(JobError::TooLarge { what, got, max })
    } else {
        Ok(())
    }
}

impl Job {
    /// Checks shapes, byte lengths and caps; returns the output shape and work.
    pub fn validate(&self) -> Result<JobShape, JobError> {
        if self.voucher.len() > MAX_VOUCHER_BYTES {
            return Err(JobError::TooLarge {
                what: "voucher",
                got: self.voucher.len() as u64,
                max: MAX_VOUCHER_BYTES as u64,
            });
        }
        let es = self.dtype.size();
        let (elems, shape): (Vec<u64>, JobShape) = match self.op {
            Op::Matmul { m, n, k, .. } => {
                let (m, n, k) = (nz(m, "m")?, nz(n, "n")?, nz(k, "k")?);
                let out = mul(&[m, n]);
                let shape = JobShape {
                    out_dims: [m as u32, n as u32, 1],
                    out_rank: 2,
                    out_elems: out,
                    flops: mul(&[2, m, n, k]),
                };
                (alloc::vec![mul(&[m, k]), mul(&[k, n])], shape)
            }
            Op::Attention {
                seq_q,
                seq_k,
                heads,
                kv_heads,
                dim,
                causal,
            } => {
                let (sq, sk) = (nz(seq_q, "seq_q")?, nz(seq_k, "seq_k")?);
                let (h, g, d) = (
                    nz(heads, "heads")?,
                    nz(kv_heads, "kv_heads")?,
                    nz(dim, "dim")?,
                );
                if h % g != 0 {
                    return Err(JobError::BadGqa { heads, kv_heads });
                }
                if causal && sq > sk {
                    return Err(JobError::CausalShape { seq_q, seq_k });
                }
                let q = mul(&[sq, h, d]);
                let kv = mul(&[sk, g, d]);
                let shape = JobShape {
                    out_dims: [seq_q, heads, dim],
                    out_rank: 3,
                    out_elems: q,
                    flops: mul(&[4, h, sq, sk, d]),
                };
                (alloc::vec![q, kv, kv], shape)
            }
        };
        if self.tensors.len() != elems.len() {
            return Err(JobError::TensorCount {
                expected: elems.len(),
                got: self.tensors.len(),
            });
        }
        let mut total = 0u64;
        for (index, (t, &n)) in self.tensors.iter().zip(&elems).enumerate() {
            let expected = n.saturating_mul(es);
            cap("input tensor", expected, MAX_INPUT_BYTES)?;
            if t.len() as u64 != expected {
                return Err(JobError::TensorBytes {
                    index,
                    expected,
                    got: t.len() as u64,
                });
            }
            total += expected;
        }
        cap("input", total, MAX_INPUT_BYTES)?;
        cap(
            "output",
            shape.out_elems.saturating_mul(4),
            MAX_OUTPUT_BYTES,
        )?;
        cap("work (flops)", shape.flops, MAX_FLOPS)?;
        Ok(shape)
    }
}

/// The computed result, sealed to the client's reply key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job's id.
    pub job_id: [u8; 16],
    /// Output dimensions, row-major.
    pub dims: Vec<u32>,
    /// Output elements as f32 little-endian.
    pub data: serde_bytes::ByteBuf,
    /// Work units charged (the job's flops).
    pub units: u64,
}
