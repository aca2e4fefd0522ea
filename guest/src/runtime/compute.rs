//! Running a validated job on the CPU kernels of `pupa_kernels`. [`execute`] is the one
//! function that touches the kernels: swapping the backend is a change here only.

use alloc::vec;
use alloc::vec::Vec;

use half::{bf16, f16};
use pupa_kernels::{AttnShape, Element, KernelError, MatRef};
use pupa_protocol::job::{DType, Job, JobShape, Layout, Op};

/// Why a validated job could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// The kernel refused the call.
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    /// The job's shape did not match the op (a bug: `Job::validate` checks this).
    #[error("job shape inconsistent with its op")]
    Inconsistent,
}

/// Little-endian bytes to elements (the lengths were checked by `Job::validate`).
fn decode<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().unwrap_or([0; N])))
        .collect()
}

fn run<T: Element>(
    job: &Job,
    shape: &JobShape,
    tensors: &[Vec<T>],
) -> Result<Vec<f32>, ComputeError> {
    let n_out = usize::try_from(shape.out_elems).map_err(|_| ComputeError::Inconsistent)?;
    let mut out = vec![0f32; n_out];
    match (job.op, tensors) {
        (
            Op::Matmul {
                m,
                n,
                k,
                a_layout,
                b_layout,
            },
            [a, b],
        ) => {
            let (m, n, k) = (m as usize, n as usize, k as usize);
            pupa_kernels::matmul(view(a, m, k, a_layout)?, view(b, k, n, b_layout)?, &mut out)?;
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
            let sh = AttnShape {
                seq_q: seq_q as usize,
                seq_k: seq_k as usize,
                heads: heads as usize,
                kv_heads: kv_heads as usize,
                dim: dim as usize,
                causal,
            };
            pupa_kernels::attention(q, k, v, &mut out, sh, None)?;
        }
        _ => return Err(ComputeError::Inconsistent),
    }
    Ok(out)
}

fn view<T: Element>(
    d: &[T],
    rows: usize,
    cols: usize,
    l: Layout,
) -> Result<MatRef<'_, T>, KernelError> {
    match l {
        Layout::RowMajor => MatRef::row_major(d, rows, cols),
        Layout::ColMajor => MatRef::col_major(d, rows, cols),
    }
}

/// Converts each tensor to elements, freeing its bytes as it goes (one tensor's bytes extra
/// at a time, not a second copy of the job).
fn take_all<T, const N: usize>(job: &mut Job, f: impl Fn([u8; N]) -> T + Copy) -> Vec<Vec<T>> {
    job.tensors
        .iter_mut()
        .map(|b| decode(&core::mem::take(b), f))
        .collect()
}

/// Runs a job that passed `Job::validate` (whose result is `shape`); returns the output as f32.
/// The job's tensor bytes are consumed (left empty).
pub fn execute(job: &mut Job, shape: &JobShape) -> Result<Vec<f32>, ComputeError> {
    match job.dtype {
        DType::F32 => {
            let t = take_all(job, f32::from_le_bytes);
            run(job, shape, &t)
        }
        DType::F16 => {
            let t = take_all(job, |x| f16::from_bits(u16::from_le_bytes(x)));
            run(job, shape, &t)
        }
        DType::Bf16 => {
            let t = take_all(job, |x| bf16::from_bits(u16::from_le_bytes(x)));
            run(job, shape, &t)
        }
    }
}
