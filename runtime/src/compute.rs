//! Running a validated job: the [`Compute`] trait a platform implements, [`CpuKernels`], the
//! one on pupa's CPU kernels (`pupa_kernels`) on the calling thread, which [`execute_until`]
//! runs, and [`PooledKernels`], the same kernels split over a [`Workers`] pool (the firmware's
//! vCPUs), which [`execute_on`] runs: bit for bit the same results.
//!
//! Nothing here may abort the guest on a job's account: every allocation whose size comes from
//! the job is fallible ([`ComputeError::OutOfMemory`]), the kernels' scratch too, and the
//! kernels poll the caller's deadline once per outer block ([`ComputeError::Deadline`]).
//! `JobShape::exec_bytes` bounds what is allocated here (decoded inputs, output, scratch).

use alloc::vec::Vec;

use half::{bf16, f16};
use pupa_kernels::{detect, AttnShape, Element, KernelError, MatRef, Workers};
use pupa_protocol::job::{DType, Job, JobShape, Layout, Op};

/// Why a validated job could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// The kernel refused the call.
    #[error("kernel: {0}")]
    Kernel(KernelError),
    /// The job's shape did not match the op (a bug: `Job::validate` checks this).
    #[error("job shape inconsistent with its op")]
    Inconsistent,
    /// The job's compute deadline passed; it was stopped.
    #[error("compute deadline exceeded: the job ran out of time and was stopped")]
    Deadline,
    /// An allocation for the job failed.
    #[error("out of memory: could not allocate {bytes} bytes for the job")]
    OutOfMemory {
        /// Bytes asked for.
        bytes: u64,
    },
}

impl From<KernelError> for ComputeError {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::DeadlineExceeded => ComputeError::Deadline,
            KernelError::OutOfMemory { bytes } => ComputeError::OutOfMemory {
                bytes: bytes as u64,
            },
            e => ComputeError::Kernel(e),
        }
    }
}

/// Where jobs run: the runtime hands every validated job to its platform's `Compute`.
///
/// An implementation must compute exactly what the CPU reference kernels compute (to their
/// error bounds), consume the job's tensor bytes, allocate only fallibly, and call `expired`
/// often enough that a job stops soon after its deadline. `expired` is `Sync`: it may be called
/// from every thread the job runs on.
pub trait Compute {
    /// A short name for logs and the banner ("cpu", "cuda").
    fn name(&self) -> &'static str;

    /// Runs `job`, which passed `Job::validate` with the result `shape`; returns the output
    /// as f32 (row-major, `shape.out_elems` values). Stops with [`ComputeError::Deadline`]
    /// once `expired` returns true.
    fn execute(
        &mut self,
        job: &mut Job,
        shape: &JobShape,
        expired: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ComputeError>;
}

/// pupa's CPU kernels on the calling thread, on the best ISA of this CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuKernels;

impl Compute for CpuKernels {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn execute(
        &mut self,
        job: &mut Job,
        shape: &JobShape,
        expired: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ComputeError> {
        execute_until(job, shape, expired)
    }
}

/// pupa's CPU kernels split over the threads of a [`Workers`] pool (the firmware's vCPUs,
/// `pupa_guest::pool`), on the best ISA of this CPU: the same results as [`CpuKernels`], bit
/// for bit (`pupa_kernels::matmul_split_until`, `attention_split_until`).
#[derive(Clone, Copy)]
pub struct PooledKernels(pub &'static dyn Workers);

impl core::fmt::Debug for PooledKernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("PooledKernels")
            .field(&self.0.threads())
            .finish()
    }
}

impl Compute for PooledKernels {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn execute(
        &mut self,
        job: &mut Job,
        shape: &JobShape,
        expired: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ComputeError> {
        execute_on(self.0, job, shape, expired)
    }
}

/// Where [`run`] runs the kernels: on the caller ([`OnCaller`]), or split over a pool
/// ([`OnPool`]). A type parameter, not a value, so that a firmware that only runs one of them
/// links only its drivers (they are large: one copy per dtype and ISA).
trait Drive: Copy {
    fn matmul<T: Element>(
        self,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        c: &mut [f32],
        ldc: usize,
    ) -> Result<(), KernelError>;
    fn attention<T: Element>(
        self,
        q: &[T],
        k: &[T],
        v: &[T],
        out: &mut [f32],
        sh: AttnShape,
    ) -> Result<(), KernelError>;
}

#[derive(Clone, Copy)]
struct OnCaller<'a>(&'a dyn Fn() -> bool);

impl Drive for OnCaller<'_> {
    fn matmul<T: Element>(
        self,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        c: &mut [f32],
        ldc: usize,
    ) -> Result<(), KernelError> {
        pupa_kernels::matmul_until(detect(), a, b, c, ldc, self.0)
    }
    fn attention<T: Element>(
        self,
        q: &[T],
        k: &[T],
        v: &[T],
        out: &mut [f32],
        sh: AttnShape,
    ) -> Result<(), KernelError> {
        pupa_kernels::attention_until(detect(), q, k, v, out, sh, None, self.0)
    }
}

#[derive(Clone, Copy)]
struct OnPool<'a>(&'a dyn Workers, &'a (dyn Fn() -> bool + Sync));

impl Drive for OnPool<'_> {
    fn matmul<T: Element>(
        self,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        c: &mut [f32],
        ldc: usize,
    ) -> Result<(), KernelError> {
        pupa_kernels::matmul_split_until(self.0, detect(), a, b, c, ldc, self.1)
    }
    fn attention<T: Element>(
        self,
        q: &[T],
        k: &[T],
        v: &[T],
        out: &mut [f32],
        sh: AttnShape,
    ) -> Result<(), KernelError> {
        pupa_kernels::attention_split_until(self.0, detect(), q, k, v, out, sh, None, self.1)
    }
}

/// An empty vector with room for `n` elements, or `OutOfMemory`.
fn try_with_capacity<T>(n: usize) -> Result<Vec<T>, ComputeError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| ComputeError::OutOfMemory {
            bytes: (n as u64).saturating_mul(core::mem::size_of::<T>() as u64),
        })?;
    Ok(v)
}

/// Little-endian bytes to elements (the lengths were checked by `Job::validate`).
fn decode<T, const N: usize>(
    bytes: &[u8],
    f: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, ComputeError> {
    let mut v = try_with_capacity(bytes.len() / N)?;
    v.extend(
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().unwrap_or([0; N]))),
    );
    Ok(v)
}

fn run<T: Element, D: Drive>(
    job: &Job,
    shape: &JobShape,
    tensors: &[Vec<T>],
    on: D,
) -> Result<Vec<f32>, ComputeError> {
    let n_out = usize::try_from(shape.out_elems).map_err(|_| ComputeError::Inconsistent)?;
    let mut out = try_with_capacity(n_out)?;
    out.resize(n_out, 0f32);
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
            let (a, b) = (view(a, m, k, a_layout)?, view(b, k, n, b_layout)?);
            on.matmul(a, b, &mut out, n)?;
        }
        (op @ Op::Attention { .. }, [q, k, v]) => {
            let sh = attn_shape(&op).ok_or(ComputeError::Inconsistent)?;
            on.attention(q, k, v, &mut out, sh)?;
        }
        _ => return Err(ComputeError::Inconsistent),
    }
    Ok(out)
}

/// The kernels' shape of an attention op (`None` for other ops).
pub fn attn_shape(op: &Op) -> Option<AttnShape> {
    match *op {
        Op::Attention {
            seq_q,
            seq_k,
            heads,
            kv_heads,
            dim,
            causal,
        } => Some(AttnShape {
            seq_q: seq_q as usize,
            seq_k: seq_k as usize,
            heads: heads as usize,
            kv_heads: kv_heads as usize,
            dim: dim as usize,
            causal,
        }),
        Op::Matmul { .. } => None,
    }
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
fn take_all<T, const N: usize>(
    job: &mut Job,
    f: impl Fn([u8; N]) -> T + Copy,
) -> Result<Vec<Vec<T>>, ComputeError> {
    let mut all = try_with_capacity(job.tensors.len())?;
    for b in job.tensors.iter_mut() {
        all.push(decode(&core::mem::take(b), f)?);
    }
    Ok(all)
}

/// Runs a job that passed `Job::validate` (whose result is `shape`) with no deadline; returns
/// the output as f32. The job's tensor bytes are consumed (left empty).
pub fn execute(job: &mut Job, shape: &JobShape) -> Result<Vec<f32>, ComputeError> {
    execute_until(job, shape, &|| false)
}

/// [`execute`] with a compute deadline: the kernels call `expired` once per outer block (a
/// GEMM block of at most 240×384×576 multiply-adds, an attention block of 256 keys × 96
/// queries) and the job stops with [`ComputeError::Deadline`] once it returns true.
pub fn execute_until(
    job: &mut Job,
    shape: &JobShape,
    expired: &dyn Fn() -> bool,
) -> Result<Vec<f32>, ComputeError> {
    run_job(job, shape, OnCaller(expired))
}

/// [`execute_until`] with the kernels split over `workers`' threads (each of which may call
/// `expired`): the same results, bit for bit.
pub fn execute_on(
    workers: &dyn Workers,
    job: &mut Job,
    shape: &JobShape,
    expired: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<f32>, ComputeError> {
    run_job(job, shape, OnPool(workers, expired))
}

fn run_job<D: Drive>(job: &mut Job, shape: &JobShape, on: D) -> Result<Vec<f32>, ComputeError> {
    match job.dtype {
        DType::F32 => {
            let t = take_all(job, f32::from_le_bytes)?;
            run(job, shape, &t, on)
        }
        DType::F16 => {
            let t = take_all(job, |x| f16::from_bits(u16::from_le_bytes(x)))?;
            run(job, shape, &t, on)
        }
        DType::Bf16 => {
            let t = take_all(job, |x| bf16::from_bits(u16::from_le_bytes(x)))?;
            run(job, shape, &t, on)
        }
    }
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use pupa_protocol::seal::Aead;
    use pupa_protocol::serde_bytes::ByteBuf;

    use super::*;

    fn job(op: Op, tensors: &[usize]) -> Job {
        Job {
            job_id: [7; 16],
            op,
            dtype: DType::F32,
            tensors: tensors
                .iter()
                .map(|&n| {
                    let v: Vec<u8> = (0..n)
                        .flat_map(|i| ((i % 13) as f32 / 13.0).to_le_bytes())
                        .collect();
                    ByteBuf::from(v)
                })
                .collect(),
            reply_key: [1; 32],
            reply_aead: Aead::ChaCha20Poly1305,
            client_seq: 1,
            voucher: ByteBuf::new(),
        }
    }

    fn matmul() -> Job {
        let op = Op::Matmul {
            m: 64,
            n: 1200,
            k: 800,
            a_layout: Layout::RowMajor,
            b_layout: Layout::ColMajor,
        };
        job(op, &[64 * 800, 800 * 1200])
    }

    fn attention() -> Job {
        let op = Op::Attention {
            seq_q: 100,
            seq_k: 2000,
            heads: 2,
            kv_heads: 1,
            dim: 64,
            causal: true,
        };
        job(op, &[100 * 2 * 64, 2000 * 64, 2000 * 64])
    }

    /// A deadline that expires at its `n+1`-th check, counting checks (deterministic, no clock).
    fn after(n: u32, calls: &Cell<u32>) -> impl Fn() -> bool + '_ {
        move || {
            calls.set(calls.get() + 1);
            calls.get() > n
        }
    }

    #[test]
    fn a_deadline_that_expires_mid_run_stops_the_job() {
        for make in [matmul as fn() -> Job, attention] {
            let shape = make().validate().unwrap();
            let want = execute(&mut make(), &shape).unwrap();
            let calls = Cell::new(0);
            let got = execute_until(&mut make(), &shape, &after(u32::MAX, &calls)).unwrap();
            assert_eq!(got, want, "a deadline that never expires changes nothing");
            let total = calls.get();
            assert!(total >= 4, "several checks per job, got {total}");
            let calls = Cell::new(0);
            let r = execute_until(&mut make(), &shape, &after(total / 2, &calls));
            assert_eq!(r, Err(ComputeError::Deadline));
            assert_eq!(
                calls.get(),
                total / 2 + 1,
                "stops at the first expired check"
            );
        }
    }

    #[test]
    fn kernel_errors_map_to_specific_compute_errors() {
        assert_eq!(
            ComputeError::from(KernelError::DeadlineExceeded),
            ComputeError::Deadline
        );
        assert_eq!(
            ComputeError::from(KernelError::OutOfMemory { bytes: 12 }),
            ComputeError::OutOfMemory { bytes: 12 }
        );
    }
}
