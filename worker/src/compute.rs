//! Where jobs run: `--compute cpu` (pupa's CPU kernels, [`CpuKernels`]), `cuda` (pupa's
//! Hopper kernels through `pupa_kernels::cuda::CudaKernels`, the launcher `pupa-bench
//! --backend cuda` uses; cargo feature `cuda`), `auto` (CUDA when it can be opened, else the
//! CPU kernels, saying so).

use pupa_protocol::job::{Job, JobShape};
use pupa_runtime::{Compute, ComputeError, CpuKernels};

/// The `--compute` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ComputeChoice {
    /// CUDA if a usable GPU is present, else the CPU kernels.
    Auto,
    /// pupa's CPU kernels.
    Cpu,
    /// pupa's Hopper CUDA kernels; refuses to start without them.
    Cuda,
}

/// Why `--compute cuda` cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum ComputeSetupError {
    /// This binary has no CUDA backend.
    #[error("--compute cuda: this pupa-worker was built without the `cuda` feature (cargo build -p pupa-worker --features cuda)")]
    NotBuilt,
    /// The CUDA backend could not be opened (no driver, no NVRTC, no Hopper GPU, ...).
    #[error("--compute cuda: {0}")]
    Cuda(String),
}

/// The backend the worker runs jobs on.
pub enum WorkerCompute {
    /// pupa's CPU kernels.
    Cpu(CpuKernels),
    /// pupa's Hopper CUDA kernels.
    #[cfg(feature = "cuda")]
    Cuda(Box<crate::cuda::CudaCompute>),
}

impl Compute for WorkerCompute {
    fn name(&self) -> &'static str {
        match self {
            WorkerCompute::Cpu(c) => c.name(),
            #[cfg(feature = "cuda")]
            WorkerCompute::Cuda(c) => c.name(),
        }
    }

    fn execute(
        &mut self,
        job: &mut Job,
        shape: &JobShape,
        expired: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ComputeError> {
        match self {
            WorkerCompute::Cpu(c) => c.execute(job, shape, expired),
            #[cfg(feature = "cuda")]
            WorkerCompute::Cuda(c) => c.execute(job, shape, expired),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(cubins: Option<&std::path::Path>) -> Result<WorkerCompute, ComputeSetupError> {
    crate::cuda::CudaCompute::open(0, cubins)
        .map(|c| WorkerCompute::Cuda(Box::new(c)))
        .map_err(|e| ComputeSetupError::Cuda(e.to_string()))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_: Option<&std::path::Path>) -> Result<WorkerCompute, ComputeSetupError> {
    Err(ComputeSetupError::NotBuilt)
}

/// Opens the backend `choice` asks for (CUDA kernels from `cubins` when given, else compiled
/// with NVRTC). `auto` never fails: without CUDA it logs why and takes the CPU kernels.
pub fn select(
    choice: ComputeChoice,
    cubins: Option<&std::path::Path>,
) -> Result<WorkerCompute, ComputeSetupError> {
    match choice {
        ComputeChoice::Cpu => Ok(WorkerCompute::Cpu(CpuKernels)),
        ComputeChoice::Cuda => open_cuda(cubins),
        ComputeChoice::Auto => match open_cuda(cubins) {
            Ok(c) => Ok(c),
            Err(e) => {
                let why = match e {
                    ComputeSetupError::NotBuilt => "built without the `cuda` feature".into(),
                    ComputeSetupError::Cuda(m) => m,
                };
                tracing::info!(
                    "--compute auto: no CUDA backend ({why}); jobs run on the CPU kernels"
                );
                Ok(WorkerCompute::Cpu(CpuKernels))
            }
        },
    }
}
