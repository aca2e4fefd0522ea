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
use half::slice::HalfBitsSliceExt;
use pupa_kernels::cuda::{Cubins, CudaError, CudaKernels};
use pupa_protocol::job::{DType, Job, JobShape, Layout, Op};
use pupa_runtime::{attn_shape, Compute, ComputeError, CpuKernels};

use crate::layout::{bf16_row_major, transposed};

/// pupa's Hopper kernels on one GPU, with the CPU kernels for what they do not take.
pub struct CudaCompute {
    gpu: CudaKernels,
    cpu: CpuKernels,
}

impl CudaCompute {
    /// Opens GPU `ordinal` (probes libcuda, requires sm_90) with the kernels from `cubins`
    /// (built ahead of time), or compiled with NVRTC when `None`.
    pub fn open(ordinal: usize, cubins: Option<&std::path::Path>) -> Result<Self, CudaError> {
        let gpu = match cubins {
            Some(dir) => CudaKernels::with_cubins(ordinal, &Cubins::read_dir(dir)?)?,
            None => CudaKernels::new(ordinal)?,
        };
        tracing::info!(
            device = %gpu.device_name().unwrap_or_default(),
            kernels = %cubins.map_or("compiled with NVRTC".into(), |d| format!("cubins from {}", d.display())),
            "CUDA: pupa's Hopper kernels loaded; bf16 jobs run on the GPU"
        );
        Ok(CudaCompute {
            gpu,
            cpu: CpuKernels,
        })
    }

    /// The GPU's result for `job`: `Ok(None)` when the GPU kernels do not take it, `Err` when
    /// its tensors cannot be decoded (the CPU kernels would fail the same way).
    fn on_gpu(&self, job: &Job) -> Result<Option<Result<Vec<f32>, CudaError>>, ComputeError> {
        if job.dtype != DType::Bf16 {
            return Ok(None);
        }
        let flat = |t: &[u8]| bf16_row_major(t, 1, t.len() / 2, Layout::RowMajor);
        Ok(match (job.op, job.tensors.as_slice()) {
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
                let a = bf16_row_major(a, m, k, a_layout)?;
                let b_nk = bf16_row_major(b, n, k, transposed(b_layout))?;
                let (a, b_nk) = (
                    a.reinterpret_cast::<bf16>(),
                    b_nk.reinterpret_cast::<bf16>(),
                );
                Some(self.gpu.gemm_host(a, b_nk, m, n, k))
            }
            (op @ Op::Attention { dim, .. }, [q, k, v]) if dim == 64 || dim == 128 => {
                let Some(shape) = attn_shape(&op) else {
                    return Ok(None);
                };
                let (q, k, v) = (flat(q)?, flat(k)?, flat(v)?);
                Some(self.gpu.attention_host(
                    q.reinterpret_cast(),
                    k.reinterpret_cast(),
                    v.reinterpret_cast(),
                    &shape,
                ))
            }
            _ => None,
        })
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
        expired: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ComputeError> {
        if expired() {
            return Err(ComputeError::Deadline);
        }
        match self.on_gpu(job)? {
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
