//! `--backend cuda`: times kcuda's Hopper kernels (`pupa_kernels::cuda`) with CUDA events.
//! bf16 inputs only (what the kernels implement). The cuBLAS side-by-side column is not
//! wired in yet: the run says so in its note.

use pupa_kernels::cuda::CudaKernels;
use pupa_kernels::AttnShape;

/// What to time on the GPU.
pub enum Job {
    /// m, n, k
    Matmul(usize, usize, usize),
    /// attention shape
    Attention(AttnShape),
}

/// GFLOP/s samples of one job, or a clear error (no driver, no sm_90 GPU, bad shape).
pub fn time(job: &Job, warmup: usize, iters: usize) -> Result<(Vec<f64>, f64), String> {
    let gpu = CudaKernels::new(0).map_err(|e| format!("--backend cuda: {e}"))?;
    let (secs, flops) = match job {
        Job::Matmul(m, n, k) => (
            gpu.time_gemm(*m, *n, *k, warmup, iters)
                .map_err(|e| e.to_string())?,
            2.0 * (*m as f64) * (*n as f64) * (*k as f64),
        ),
        Job::Attention(sh) => (
            gpu.time_attention(sh, warmup, iters)
                .map_err(|e| e.to_string())?,
            sh.flops(),
        ),
    };
    Ok((secs.iter().map(|s| flops / s / 1e9).collect(), flops))
}
