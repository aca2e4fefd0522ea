//! `--compute cuda` (cargo feature `cuda`): jobs on pupa's Hopper kernels through
//! `pupa_kernels::cuda::CudaKernels`, the one launcher `pupa-bench --backend cuda` uses.
//!
//! The CUDA kernels take bf16 inputs (GEMM with k a multiple of 8; attention with head dim 64
//! or 128). Jobs they take run on the GPU; every other job (f32 and f16 inputs, other shapes)
//! runs on the CPU kernels, which compute it to its dtype's error bound — converting it to
//! bf16 would not. A GPU failure on a job is logged and the job runs on the CPU kernels:
//! its client still gets the right result. A launch is not interruptible: the deadline is
//! checked before it and after it.

use half::bf16;
use pupa_kernels::cuda::{CudaError, CudaKernels};
use pupa_kernels::AttnShape;
use pupa_protocol::job::{DType, Job, JobShape, Layout, Op};
use pupa_runtime::{Compute, ComputeError, CpuKernels};

/// pupa's Hopper kernels on one GPU, with the CPU kernels for what they do not take.
pub struct CudaCompute {
    gpu: CudaKernels,
    cpu: CpuKernels,
}

impl CudaCompute {
    /// Opens GPU `ordinal` (probes libcuda and NVRTC, requires sm_90, compiles the kernels).
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        let gpu = CudaKernels::new(ordinal)?;
        tracing::info!(
            device = %gpu.device_name().unwrap_or_default(),
            "CUDA: pupa's Hopper kernels compiled; bf16 jobs run on the GPU"
        );
        Ok(CudaCompute {
            gpu,
            cpu: CpuKernels,
        })
    }

    /// The GPU's result for `job`, `None` when the GPU kernels do not take it.
    fn on_gpu(&self, job: &Job) -> Option<Result<Vec<f32>, CudaError>> {
        if job.dtype != DType::Bf16 {
            return None;
        }
        match (job.op, job.tensors.as_slice()) {
            (
                Op::Matmul {
                    m,
                    n,
                    k,
                    a_layout,
                    b_layout,
                },
                [a, b],
            ) if k % 8 == 0 => {
                let (m, n, k) = (m as usize, n as usize, k as usize);
                // A as m x k row-major; B as n x k row-major (Bᵀ), what the GEMM takes.
                let a = row_major(&bf16s(a), m, k, a_layout);
                let b_nk = row_major(&bf16s(b), n, k, flip(b_layout));
                Some(self.gpu.gemm_host(&a, &b_nk, m, n, k))
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
            ) if dim == 64 || dim == 128 => {
                let shape = AttnShape {
                    seq_q: seq_q as usize,
                    seq_k: seq_k as usize,
                    heads: heads as usize,
                    kv_heads: kv_heads as usize,
                    dim: dim as usize,
                    causal,
                };
                Some(
                    self.gpu
                        .attention_host(&bf16s(q), &bf16s(k), &bf16s(v), &shape),
                )
            }
            _ => None,
        }
    }
}

/// The other layout: B (k x n) stored column-major is Bᵀ (n x k) stored row-major.
fn flip(l: Layout) -> Layout {
    match l {
        Layout::RowMajor => Layout::ColMajor,
        Layout::ColMajor => Layout::RowMajor,
    }
}

fn bf16s(bytes: &[u8]) -> Vec<bf16> {
    bytes
        .chunks_exact(2)
        .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

/// `rows x cols` row-major from data stored in `layout` (ColMajor: stored as its transpose).
fn row_major(d: &[bf16], rows: usize, cols: usize, layout: Layout) -> Vec<bf16> {
    match layout {
        Layout::RowMajor => d.to_vec(),
        Layout::ColMajor => {
            let mut out = vec![bf16::ZERO; rows * cols];
            for (j, col) in d.chunks_exact(rows.max(1)).enumerate().take(cols) {
                for (i, &x) in col.iter().enumerate() {
                    out[i * cols + j] = x;
                }
            }
            out
        }
    }
}

impl Compute for CudaCompute {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn execute(
        &mut self,
        job: &mut Job,
        shape: &JobShape,
        expired: &dyn Fn() -> bool,
    ) -> Result<Vec<f32>, ComputeError> {
        if expired() {
            return Err(ComputeError::Deadline);
        }
        match self.on_gpu(job) {
            Some(Ok(out)) => {
                if expired() {
                    return Err(ComputeError::Deadline);
                }
                job.tensors.iter_mut().for_each(|t| *t = Default::default());
                Ok(out)
            }
            Some(Err(e)) => {
                tracing::error!("CUDA job failed, running it on the CPU kernels: {e}");
                self.cpu.execute(job, shape, expired)
            }
            None => self.cpu.execute(job, shape, expired),
        }
    }
}
