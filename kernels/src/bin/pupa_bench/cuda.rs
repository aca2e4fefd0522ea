//! `--backend cuda`: times kcuda's Hopper kernels (`pupa_kernels::cuda`) with CUDA events,
//! bf16 inputs only (what the kernels implement), and for matmul the same problem through
//! cuBLAS (`cublasGemmEx`, bf16 in, f32 out and compute) as the side-by-side reference.

use pupa_kernels::cuda::CudaKernels;
use pupa_kernels::AttnShape;

/// What to time on the GPU.
pub enum Job {
    /// m, n, k
    Matmul(usize, usize, usize),
    /// attention shape
    Attention(AttnShape),
}

/// One timed implementation: name, note, GFLOP/s samples.
pub type Timed = (&'static str, &'static str, Vec<f64>);

/// GFLOP/s samples of one job (pupa's kernel first, then the cuBLAS reference for matmul) and
/// its FLOPs, or a clear error (no driver, no sm_90 GPU, bad shape).
pub fn time(job: &Job, warmup: usize, iters: usize) -> Result<(Vec<Timed>, f64), String> {
    let gpu = CudaKernels::new(0).map_err(|e| format!("--backend cuda: {e}"))?;
    let rate = |secs: Vec<f64>, flops: f64| secs.iter().map(|s| flops / s / 1e9).collect();
    match job {
        Job::Matmul(m, n, k) => {
            let flops = 2.0 * (*m as f64) * (*n as f64) * (*k as f64);
            let ours = gpu
                .time_gemm(*m, *n, *k, warmup, iters)
                .map_err(|e| e.to_string())?;
            let cublas = gpu
                .time_cublas_gemm(*m, *n, *k, warmup, iters)
                .map_err(|e| e.to_string())?;
            Ok((
                vec![
                    ("pupa-cuda", "CUDA events", rate(ours, flops)),
                    (
                        "cublas",
                        "cublasGemmEx bf16→f32, CUDA events",
                        rate(cublas, flops),
                    ),
                ],
                flops,
            ))
        }
        Job::Attention(sh) => {
            let flops = sh.flops();
            let ours = gpu
                .time_attention(sh, warmup, iters)
                .map_err(|e| e.to_string())?;
            Ok((
                vec![(
                    "pupa-cuda",
                    "CUDA events (cuBLAS has no fused attention to compare with)",
                    rate(ours, flops),
                )],
                flops,
            ))
        }
    }
}
