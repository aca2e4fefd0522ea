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
//!
//! Limits: every dimension is bounded by what the kernels take ([`MAX_HEAD_DIM`], [`MAX_HEADS`],
//! [`MAX_SEQ`], [`MAX_MATMUL_DIM`]); the bytes in and out by [`MAX_INPUT_BYTES`] and
//! [`MAX_OUTPUT_BYTES`]; the work by [`MAX_UNITS`]. [`JobShape::exec_bytes`] is the memory the
//! guest needs to run the job, for the runtime to check against its budget.
//!
//! Cost model ([`JobShape::units`], what a job is billed and what bounds its time):
//! `units = padded_flops + UNITS_PER_SCORE · scores + UNITS_PER_BYTE · bytes`, where, with
//! `⌈x⌉ₚ` = x rounded up to a multiple of p (the kernels compute whole register blocks:
//! 8 rows × 16 columns for GEMM, 16 queries for attention, head dims in 8s) and `es` the input
//! element size:
//! - matmul: `padded_flops = 2·⌈m⌉₈·⌈n⌉₁₆·k`; `bytes = es·(m·k + k·n)` (inputs) `+ 4·⌈m⌉₈·k`
//!   (A packed) `+ 4·⌈n⌉₁₆·k·⌈m/3072⌉` (B packed once per 3072-row block) `+ 4·m·n·⌈k/384⌉`
//!   (C read and written once per 384-deep block) `+ 4·m·n` (the result); no scores.
//! - attention: `scores = heads·⌈seq_q⌉₁₆·seq_k` (each is an exp and a max/sum step);
//!   `padded_flops = 4·scores·⌈dim⌉₈`; `bytes = es·(seq_q·heads·dim + 2·seq_k·kv_heads·dim)`
//!   (inputs) `+ (es + 4)·2·heads·⌈seq_q/96⌉·seq_k·dim` (K and V streamed, and packed, once per
//!   96-query block of every head) `+ 4·seq_q·heads·dim` (the result). Causal jobs are billed
//!   as full ones.
//!
//! Measured with `execute` (decode + kernels, release build) on one Zen 3 core (AVX2), see
//! the ignored test `cost_model_ns_per_unit` in `runtime/tests/runtime_limits.rs`: a unit takes
//! 0.0104 ns in an f32 GEMM 1024³ (0.0106 bf16) and 0.0112 ns (f32) / 0.0159 ns (bf16) in the
//! memory-bound attention `seq_q = 1, seq_k = 500 000, dim = 1` (finding 5 of issue 11 at a
//! tenth); over 18 shapes (both dtypes; k = 1, GEMV and dot-product matmuls; decode, dim-1
//! and MQA attention) from 0.0084 to 0.027 ns. [`MAX_UNITS`] thus bounds a job's compute to
//! about 11–30 s there.

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::seal::Aead;

/// Most input tensor bytes in one job.
pub const MAX_INPUT_BYTES: u64 = 60 << 20;
/// Most output bytes in one job (the sealed result must fit `MAX_JOB_FRAME`).
pub const MAX_OUTPUT_BYTES: u64 = 48 << 20;
/// Most floating-point operations in one job (implied by [`MAX_UNITS`]: units ≥ flops).
pub const MAX_FLOPS: u64 = 1 << 40;
/// Most billed units in one job: what bounds a job's time (see the cost model above; at most
/// about 30 s of compute on one Zen 3 core).
pub const MAX_UNITS: u64 = 1 << 40;
/// Units per byte the kernels read or write (cost model).
pub const UNITS_PER_BYTE: u64 = 16;
/// Units per attention score (cost model): the softmax's exp, max and sum.
pub const UNITS_PER_SCORE: u64 = 200;
/// Largest attention head dimension: the CPU kernels' limit (`pupa_kernels::MAX_HEAD_DIM`).
pub const MAX_HEAD_DIM: u32 = pupa_kernels::MAX_HEAD_DIM as u32;
/// Most query heads (and KV heads) of an attention job.
pub const MAX_HEADS: u32 = 1024;
/// Longest query or key sequence of an attention job.
pub const MAX_SEQ: u32 = 1 << 20;
/// Largest matmul dimension (`m`, `n` or `k`).
pub const MAX_MATMUL_DIM: u32 = 1 << 24;
/// Copies of the result the guest holds besides the f32 output while it encodes and seals it:
/// the little-endian result bytes, their postcard encoding, the HPKE ciphertext and the frame.
pub const RESULT_COPIES: u64 = 4;
/// Fixed allowance in [`JobShape::exec_bytes`] for the small allocations of running a job.
pub const EXEC_OVERHEAD_BYTES: u64 = 64 << 10;
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

impl Op {
    /// Elements of each input tensor, in order (`[A, B]` or `[Q, K, V]`), saturating at
    /// `u64::MAX` (validation refuses such sizes).
    pub fn input_elems(&self) -> Vec<u64> {
        match *self {
            Op::Matmul { m, n, k, .. } => {
                let (m, n, k) = (u64::from(m), u64::from(n), u64::from(k));
                alloc::vec![mul(&[m, k]), mul(&[k, n])]
            }
            Op::Attention {
                seq_q,
                seq_k,
                heads,
                kv_heads,
                dim,
                ..
            } => {
                let d = u64::from(dim);
                let q = mul(&[u64::from(seq_q), u64::from(heads), d]);
                let kv = mul(&[u64::from(seq_k), u64::from(kv_heads), d]);
                alloc::vec![q, kv, kv]
            }
        }
    }
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
    /// Billed work units (the cost model of the module docs: padded flops, attention scores
    /// and bytes moved); at most [`MAX_UNITS`].
    pub units: u64,
    /// Peak bytes the guest allocates to run the job and return its result, beyond the job
    /// itself: the decoded input elements (as many bytes as the tensors: f32 stays 4 bytes,
    /// f16/bf16 2), the f32 output (`4·out_elems`), the kernels' scratch
    /// (`pupa_kernels::{matmul,attention}_scratch_bytes`, serial drivers),
    /// [`RESULT_COPIES`] × the result bytes (`4·out_elems`) for encoding and sealing, and
    /// [`EXEC_OVERHEAD_BYTES`]. The phases are summed, not overlapped, so it holds whatever
    /// order the worker frees them in.
    pub exec_bytes: u64,
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
    /// A dimension exceeds what the kernels take.
    #[error("dimension {name} = {got} exceeds its limit {max}")]
    DimTooLarge {
        /// The dimension's name.
        name: &'static str,
        /// Its value.
        got: u32,
        /// The limit.
        max: u32,
    },
    /// The job costs more units than one job may (see the cost model).
    #[error("job costs {units} units, more than the per-job cap {max}")]
    TooMuchWork {
        /// The job's units (u64::MAX on overflow).
        units: u64,
        /// The cap, [`MAX_UNITS`].
        max: u64,
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

/// A dimension checked to lie in `1..=max`.
fn bounded(v: u32, name: &'static str, max: u32) -> Result<u64, JobError> {
    if v == 0 {
        Err(JobError::ZeroDim { name })
    } else if v > max {
        Err(JobError::DimTooLarge { name, got: v, max })
    } else {
        Ok(u64::from(v))
    }
}

/// `x` rounded up to a multiple of `p`.
fn pad(x: u64, p: u64) -> u64 {
    x.div_ceil(p).saturating_mul(p)
}

/// Units of work that costs `flops` padded flops, `scores` attention scores and moves `bytes`.
fn units(flops: u64, scores: u64, bytes: u64) -> u64 {
    flops
        .saturating_add(scores.saturating_mul(UNITS_PER_SCORE))
        .saturating_add(bytes.saturating_mul(UNITS_PER_BYTE))
}

/// Units of `C[m×n] = A[m×k]·B[k×n]` (the module docs' matmul formula).
fn matmul_units(m: u64, n: u64, k: u64, es: u64) -> u64 {
    let (mp, np) = (pad(m, 8), pad(n, 16));
    let bytes = [
        mul(&[es, m.saturating_add(n), k]),
        mul(&[4, mp, k]),
        mul(&[4, np, k, m.div_ceil(3072)]),
        mul(&[4, m, n, k.div_ceil(384)]),
        mul(&[4, m, n]),
    ];
    units(mul(&[2, mp, np, k]), 0, sum(&bytes))
}

/// Units of attention (the module docs' attention formula).
fn attention_units(sq: u64, sk: u64, h: u64, g: u64, d: u64, es: u64) -> u64 {
    let scores = mul(&[h, pad(sq, 16), sk]);
    let bytes = [
        mul(&[es, sq, h, d]),
        mul(&[es, 2, sk, g, d]),
        mul(&[es + 4, 2, h, sq.div_ceil(96), sk, d]),
        mul(&[4, sq, h, d]),
    ];
    units(mul(&[4, scores, pad(d, 8)]), scores, sum(&bytes))
}

fn sum(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |a, &b| a.saturating_add(b))
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
        let mut f = match self.op {
            Op::Matmul { m, n, k, .. } => matmul_facts(m, n, k, es)?,
            Op::Attention {
                seq_q,
                seq_k,
                heads,
                kv_heads,
                dim,
                causal,
            } => attention_facts([seq_q, seq_k, heads, kv_heads, dim], causal, es)?,
        };
        let total = self.input_bytes(&self.op.input_elems(), es)?;
        cap("input", total, MAX_INPUT_BYTES)?;
        let out_bytes = f.shape.out_elems.saturating_mul(4);
        cap("output", out_bytes, MAX_OUTPUT_BYTES)?;
        cap("work (flops)", f.shape.flops, MAX_FLOPS)?;
        if f.shape.units > MAX_UNITS {
            return Err(JobError::TooMuchWork {
                units: f.shape.units,
                max: MAX_UNITS,
            });
        }
        // See `JobShape::exec_bytes` for what is counted.
        f.shape.exec_bytes = sum(&[
            total,
            out_bytes,
            f.scratch,
            out_bytes.saturating_mul(RESULT_COPIES),
            EXEC_OVERHEAD_BYTES,
        ]);
        Ok(f.shape)
    }

    /// Checks the tensors' count and byte lengths against the op's element counts; returns
    /// their total bytes.
    fn input_bytes(&self, elems: &[u64], es: u64) -> Result<u64, JobError> {
        if self.tensors.len() != elems.len() {
            return Err(JobError::TensorCount {
                expected: elems.len(),
                got: self.tensors.len(),
            });
        }
        let mut total = 0u64;
        for (index, (t, &n)) in self.tensors.iter().zip(elems).enumerate() {
            let expected = n.saturating_mul(es);
            cap("input tensor", expected, MAX_INPUT_BYTES)?;
            if t.len() as u64 != expected {
                return Err(JobError::TensorBytes {
                    index,
                    expected,
                    got: t.len() as u64,
                });
            }
            total = total.saturating_add(expected);
        }
        Ok(total)
    }
}

/// What `Job::validate` learns from the op alone.
struct OpFacts {
    /// The shape facts (`exec_bytes` still 0).
    shape: JobShape,
    /// The kernels' scratch bound for this shape.
    scratch: u64,
}

fn matmul_facts(m: u32, n: u32, k: u32, es: u64) -> Result<OpFacts, JobError> {
    let mx = MAX_MATMUL_DIM;
    let (m, n, k) = (
        bounded(m, "m", mx)?,
        bounded(n, "n", mx)?,
        bounded(k, "k", mx)?,
    );
    let shape = JobShape {
        out_dims: [m as u32, n as u32, 1],
        out_rank: 2,
        out_elems: mul(&[m, n]),
        flops: mul(&[2, m, n, k]),
        units: matmul_units(m, n, k, es),
        exec_bytes: 0,
    };
    // Dims are ≤ 2^24, so they fit usize on the 64-bit guest.
    let scratch = pupa_kernels::matmul_scratch_bytes(m as usize, n as usize, k as usize);
    Ok(OpFacts {
        shape,
        scratch: scratch as u64,
    })
}

/// `dims`: seq_q, seq_k, heads, kv_heads, dim.
fn attention_facts(dims: [u32; 5], causal: bool, es: u64) -> Result<OpFacts, JobError> {
    let [seq_q, seq_k, heads, kv_heads, dim] = dims;
    let (sq, sk) = (
        bounded(seq_q, "seq_q", MAX_SEQ)?,
        bounded(seq_k, "seq_k", MAX_SEQ)?,
    );
    let (h, g, d) = (
        bounded(heads, "heads", MAX_HEADS)?,
        bounded(kv_heads, "kv_heads", MAX_HEADS)?,
        bounded(dim, "dim", MAX_HEAD_DIM)?,
    );
    if h % g != 0 {
        return Err(JobError::BadGqa { heads, kv_heads });
    }
    if causal && sq > sk {
        return Err(JobError::CausalShape { seq_q, seq_k });
    }
    let shape = JobShape {
        out_dims: [seq_q, heads, dim],
        out_rank: 3,
        out_elems: mul(&[sq, h, d]),
        flops: mul(&[4, h, sq, sk, d]),
        units: attention_units(sq, sk, h, g, d, es),
        exec_bytes: 0,
    };
    Ok(OpFacts {
        shape,
        scratch: pupa_kernels::attention_scratch_bytes(d as usize) as u64,
    })
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
    /// Work units charged ([`JobShape::units`]).
    pub units: u64,
}
