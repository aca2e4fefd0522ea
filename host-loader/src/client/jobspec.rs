//! The job description of `pupa-client run JOB.json`, its seeded tensors, and the check of a
//! result against the f64 reference kernels (`pupa_kernels::reference`).
//!
//! ```json
//! { "op": "matmul", "m": 64, "n": 64, "k": 64, "dtype": "f32", "seed": 7 }
//! { "op": "attention", "seq_q": 128, "seq_k": 128, "heads": 8, "kv_heads": 2, "dim": 64,
//!   "causal": true, "dtype": "bf16", "seed": 1 }
//! ```
//! Tensors are drawn uniformly from [-1, 1) by ChaCha8 seeded with `seed` (default 0), in the
//! order the op takes them (A, B / Q, K, V), then rounded to `dtype`.

use half::{bf16, f16};
use pupa_kernels::reference::{attention_f64, matmul_f64, rel_l2_error};
use pupa_kernels::{AttnShape, Element, MatRef};
use pupa_protocol::job::{DType, Job, JobError, JobResult, Layout, Op, MAX_INPUT_BYTES};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::DEFAULT_AEAD;

/// A job as written in JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// `matmul` or `attention`.
    pub op: OpName,
    /// Matmul: rows of A and C.
    pub m: Option<u32>,
    /// Matmul: columns of B and C.
    pub n: Option<u32>,
    /// Matmul: columns of A, rows of B.
    pub k: Option<u32>,
    /// Attention: query positions.
    pub seq_q: Option<u32>,
    /// Attention: key positions (default `seq_q`).
    pub seq_k: Option<u32>,
    /// Attention: query heads.
    pub heads: Option<u32>,
    /// Attention: key/value heads (default `heads`).
    pub kv_heads: Option<u32>,
    /// Attention: head dimension.
    pub dim: Option<u32>,
    /// Attention: causal mask.
    #[serde(default)]
    pub causal: bool,
    /// Input element type (default f32).
    #[serde(default)]
    pub dtype: DTypeName,
    /// Seed of the random tensors.
    #[serde(default)]
    pub seed: u64,
}

/// Operation names.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OpName {
    /// Matrix multiplication.
    Matmul,
    /// Attention forward.
    Attention,
}

/// Element type names.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DTypeName {
    /// f32.
    #[default]
    F32,
    /// f16.
    F16,
    /// bf16.
    Bf16,
}

/// Why a job description is refused.
#[derive(Debug, thiserror::Error)]
pub enum JobSpecError {
    /// Not valid JSON of the schema.
    #[error("job description: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the op needs is missing.
    #[error("job description: {op} needs \"{field}\"")]
    Missing {
        /// The op.
        op: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The job the description makes is invalid.
    #[error("job description: {0}")]
    Invalid(#[from] JobError),
    /// The result's shape does not match the job.
    #[error("result has dims {got:?} and {len} bytes; the job needs dims {want:?}")]
    ResultShape {
        /// Dims received.
        got: Vec<u32>,
        /// Byte length received.
        len: usize,
        /// Dims expected.
        want: Vec<u32>,
    },
}

/// A job built from a description, with what is needed to check its result.
#[derive(Debug, Clone)]
pub struct BuiltJob {
    /// The job (its `reply_key` is filled in by `run_job`).
    pub job: Job,
    /// Floating-point operations.
    pub flops: u64,
    /// Output dims.
    pub out_dims: Vec<u32>,
}

/// A result compared with the f64 reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefCheck {
    /// ‖out − ref‖ / ‖ref‖.
    pub rel_err: f64,
    /// The bound for this op and dtype (docs/DESIGN.md, "Kernels").
    pub tolerance: f64,
    /// Whether `rel_err ≤ tolerance` (NaN never passes).
    pub passed: bool,
}

fn need(v: Option<u32>, op: &'static str, field: &'static str) -> Result<u32, JobSpecError> {
    v.ok_or(JobSpecError::Missing { op, field })
}

fn tensor(rng: &mut ChaCha8Rng, elems: u64, dtype: DType) -> Vec<u8> {
    let mut out = Vec::with_capacity((elems * dtype.size()) as usize);
    for _ in 0..elems {
        let x: f32 = rng.random_range(-1.0f32..1.0);
        match dtype {
            DType::F32 => out.extend_from_slice(&x.to_le_bytes()),
            DType::F16 => out.extend_from_slice(&f16::from_f32(x).to_bits().to_le_bytes()),
            DType::Bf16 => out.extend_from_slice(&bf16::from_f32(x).to_bits().to_le_bytes()),
        }
    }
    out
}

impl JobSpec {
    /// Parses a JSON description.
    pub fn from_json(text: &str) -> Result<JobSpec, JobSpecError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The op this description names.
    pub fn op(&self) -> Result<Op, JobSpecError> {
        Ok(match self.op {
            OpName::Matmul => Op::Matmul {
                m: need(self.m, "matmul", "m")?,
                n: need(self.n, "matmul", "n")?,
                k: need(self.k, "matmul", "k")?,
                a_layout: Layout::RowMajor,
                b_layout: Layout::RowMajor,
            },
            OpName::Attention => {
                let seq_q = need(self.seq_q, "attention", "seq_q")?;
                let heads = need(self.heads, "attention", "heads")?;
                Op::Attention {
                    seq_q,
                    seq_k: self.seq_k.unwrap_or(seq_q),
                    heads,
                    kv_heads: self.kv_heads.unwrap_or(heads),
                    dim: need(self.dim, "attention", "dim")?,
                    causal: self.causal,
                }
            }
        })
    }

    /// Compares an opened result with the f64 reference of this description's (seeded,
    /// reproducible) inputs; see [`BuiltJob::check`].
    pub fn check(&self, r: &JobResult) -> Result<RefCheck, JobSpecError> {
        self.build()?.check(r)
    }

    /// Builds the job: validated shapes, seeded tensors, a random job id.
    pub fn build(&self) -> Result<BuiltJob, JobSpecError> {
        let op = self.op()?;
        let dtype = match self.dtype {
            DTypeName::F32 => DType::F32,
            DTypeName::F16 => DType::F16,
            DTypeName::Bf16 => DType::Bf16,
        };
        let elems = op.input_elems();
        let input_bytes = elems.iter().fold(0u64, |a, &n| {
            a.saturating_add(n.saturating_mul(dtype.size()))
        });
        if input_bytes > MAX_INPUT_BYTES {
            return Err(JobError::TooLarge {
                what: "input",
                got: input_bytes,
                max: MAX_INPUT_BYTES,
            }
            .into());
        }
        let mut job_id = [0u8; 16];
        rand::rng().fill_bytes(&mut job_id);
        // Validate the shape with empty tensors first, so absurd sizes fail before allocating.
        let mut job = Job {
            job_id,
            op,
            dtype,
            tensors: Vec::new(),
            reply_key: [0; 32],
            reply_aead: DEFAULT_AEAD,
            client_seq: 0, // set when sealed (`run_job`)
            voucher: serde_bytes::ByteBuf::new(),
        };
        match job.validate() {
            Err(JobError::TensorCount { .. }) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        job.tensors = elems
            .iter()
            .map(|&n| serde_bytes::ByteBuf::from(tensor(&mut rng, n, dtype)))
            .collect();
        let shape = job.validate()?;
        Ok(BuiltJob {
            job,
            flops: shape.flops,
            out_dims: shape.out_dims[..shape.out_rank].to_vec(),
        })
    }
}

fn decode<T: Copy>(b: &[u8], f: impl Fn([u8; 2]) -> T) -> Vec<T> {
    b.chunks_exact(2).map(|c| f([c[0], c[1]])).collect()
}

fn reference<T: Element>(op: Op, t: &[Vec<T>]) -> Option<Vec<f64>> {
    match (op, t) {
        (Op::Matmul { m, n, k, .. }, [a, b]) => {
            let a = MatRef::row_major(a, m as usize, k as usize).ok()?;
            let b = MatRef::row_major(b, k as usize, n as usize).ok()?;
            Some(matmul_f64(&a, &b))
        }
        (
            Op::Attention {
                seq_q,
                seq_k,
                heads,
                kv_heads,
                dim,
                causal,
            },
            [q, k, v],
        ) => {
            let s = AttnShape {
                seq_q: seq_q as usize,
                seq_k: seq_k as usize,
                heads: heads as usize,
                kv_heads: kv_heads as usize,
                dim: dim as usize,
                causal,
            };
            Some(attention_f64(q, k, v, &s).0)
        }
        _ => None,
    }
}

impl BuiltJob {
    /// The f64 reference output of this job's inputs.
    pub fn reference(&self) -> Vec<f64> {
        let j = &self.job;
        let r = match j.dtype {
            DType::F32 => {
                let t: Vec<Vec<f32>> = j
                    .tensors
                    .iter()
                    .map(|b| {
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    })
                    .collect();
                reference(j.op, &t)
            }
            DType::F16 => reference(
                j.op,
                &j.tensors
                    .iter()
                    .map(|b| decode(b, |x| f16::from_bits(u16::from_le_bytes(x))))
                    .collect::<Vec<_>>(),
            ),
            DType::Bf16 => reference(
                j.op,
                &j.tensors
                    .iter()
                    .map(|b| decode(b, |x| bf16::from_bits(u16::from_le_bytes(x))))
                    .collect::<Vec<_>>(),
            ),
        };
        r.unwrap_or_default()
    }

    /// The accuracy bound for this job (docs/DESIGN.md, "Kernels": f32 ≤ 1e-5, attention
    /// ≤ 1e-4; f16 inputs ≤ 2e-3; bf16 inputs ≤ 1e-2).
    pub fn tolerance(&self) -> f64 {
        match (self.job.dtype, self.job.op) {
            (DType::F32, Op::Matmul { .. }) => 1e-5,
            (DType::F32, Op::Attention { .. }) => 1e-4,
            (DType::F16, _) => 2e-3,
            (DType::Bf16, _) => 1e-2,
        }
    }

    /// Compares an opened result with the f64 reference.
    pub fn check(&self, r: &JobResult) -> Result<RefCheck, JobSpecError> {
        let elems: u64 = self.out_dims.iter().map(|&d| u64::from(d)).product();
        if r.dims != self.out_dims || r.data.len() as u64 != elems * 4 {
            return Err(JobSpecError::ResultShape {
                got: r.dims.clone(),
                len: r.data.len(),
                want: self.out_dims.clone(),
            });
        }
        let out: Vec<f32> = r
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let rel_err = rel_l2_error(&out, &self.reference());
        let tolerance = self.tolerance();
        Ok(RefCheck {
            rel_err,
            tolerance,
            passed: rel_err <= tolerance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_tensors_are_reproducible_and_sized() {
        let s = JobSpec::from_json(r#"{"op":"matmul","m":3,"n":5,"k":4,"dtype":"bf16","seed":7}"#)
            .unwrap();
        let (a, b) = (s.build().unwrap(), s.build().unwrap());
        assert_eq!(a.job.tensors, b.job.tensors);
        assert_eq!(a.job.tensors[0].len(), 3 * 4 * 2);
        assert_eq!(a.job.tensors[1].len(), 4 * 5 * 2);
        assert_eq!(a.out_dims, vec![3, 5]);
        assert_ne!(a.job.job_id, b.job.job_id);
    }

    #[test]
    fn bad_descriptions_are_specific() {
        assert!(matches!(
            JobSpec::from_json(r#"{"op":"matmul","m":3,"n":5}"#)
                .unwrap()
                .build(),
            Err(JobSpecError::Missing { field: "k", .. })
        ));
        assert!(matches!(
            JobSpec::from_json(r#"{"op":"conv","m":1}"#),
            Err(JobSpecError::Json(_))
        ));
        assert!(matches!(
            JobSpec::from_json(r#"{"op":"matmul","m":1,"n":1,"k":1,"bogus":1}"#),
            Err(JobSpecError::Json(_))
        ));
        let huge =
            JobSpec::from_json(r#"{"op":"matmul","m":4000000000,"n":4000000000,"k":4000000000}"#)
                .unwrap();
        assert!(matches!(
            huge.build(),
            Err(JobSpecError::Invalid(JobError::TooLarge { .. }))
        ));
        let gqa =
            JobSpec::from_json(r#"{"op":"attention","seq_q":4,"heads":3,"kv_heads":2,"dim":8}"#)
                .unwrap();
        assert!(matches!(
            gqa.build(),
            Err(JobSpecError::Invalid(JobError::BadGqa { .. }))
        ));
    }

    #[test]
    fn check_catches_a_wrong_result() {
        let b = JobSpec::from_json(r#"{"op":"matmul","m":2,"n":2,"k":3,"seed":1}"#)
            .unwrap()
            .build()
            .unwrap();
        let reference = b.reference();
        let good: Vec<u8> = reference
            .iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect();
        let mut r = JobResult {
            job_id: b.job.job_id,
            dims: vec![2, 2],
            data: serde_bytes::ByteBuf::from(good),
            units: b.flops,
        };
        assert!(b.check(&r).unwrap().passed);
        r.data[3] ^= 0x40; // flip the top exponent bit of element 0
        assert!(!b.check(&r).unwrap().passed);
        r.dims = vec![4];
        assert!(matches!(b.check(&r), Err(JobSpecError::ResultShape { .. })));
    }
}
