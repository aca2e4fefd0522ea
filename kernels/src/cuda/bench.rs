//! Timing of the CUDA kernels with CUDA events, for `pupa-bench --backend cuda`. Inputs are
//! random bf16 values in [-1, 1) generated on the host once; every run is timed on its own.

use cudarc::cublas::{sys as blas, CudaBlas};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};

use super::{CudaError, CudaKernels};
use crate::AttnShape;

/// `n` bf16 bit patterns of values uniform in [-1, 1) (splitmix64; truncation to bf16 is fine
/// for timing inputs).
fn random_bf16(n: usize, mut seed: u64) -> Vec<u16> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let x = ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            (x.to_bits() >> 16) as u16
        })
        .collect()
}

impl CudaKernels {
    /// Times `run` `warmup + iters` times between CUDA events; the seconds of the last `iters`.
    fn time_runs(
        &self,
        warmup: usize,
        iters: usize,
        mut run: impl FnMut() -> Result<(), CudaError>,
    ) -> Result<Vec<f64>, CudaError> {
        let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let (start, end) = (self.ctx.new_event(flags)?, self.ctx.new_event(flags)?);
        let mut secs = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            start.record(&self.stream)?;
            run()?;
            end.record(&self.stream)?;
            let ms = start.elapsed_ms(&end)?;
            if i >= warmup {
                secs.push(f64::from(ms) / 1e3);
            }
        }
        Ok(secs)
    }

    /// Seconds of each of `iters` GEMM runs (after `warmup` untimed ones) of shape m x n x k.
    /// FLOPs per run: 2·m·n·k.
    pub fn time_gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        warmup: usize,
        iters: usize,
    ) -> Result<Vec<f64>, CudaError> {
        let (a, b, mut c) = self.gemm_operands(m, n, k)?;
        self.time_runs(warmup, iters, || self.gemm(&a, &b, &mut c, m, n, k))
    }

    /// The timing inputs of an m x n x k GEMM on the device: A (m x k) and B (n x k) random
    /// bf16, C (m x n) f32 zeros. The same seeds for pupa's kernel and cuBLAS.
    #[allow(clippy::type_complexity)]
    fn gemm_operands(
        &self,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<(CudaSlice<u16>, CudaSlice<u16>, CudaSlice<f32>), CudaError> {
        Ok((
            self.stream
                .clone_htod(&random_bf16(m.saturating_mul(k), 1))?,
            self.stream
                .clone_htod(&random_bf16(n.saturating_mul(k), 2))?,
            self.stream.alloc_zeros::<f32>(m.saturating_mul(n).max(1))?,
        ))
    }

    /// The cuBLAS reference for [`CudaKernels::time_gemm`]: the same problem (C f32 m x n
    /// row-major = A bf16 m x k row-major · Bᵀ with B bf16 n x k) through `cublasGemmEx` with
    /// bf16 inputs, f32 output and f32 compute, default algorithm (tensor cores on sm_90).
    /// Column-major view: Cᵀ (n x m, ldc n) = op(B) · A, op(B) = the k x n column-major B
    /// transposed (lda k), A as k x m column-major (ldb k).
    pub fn time_cublas_gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        warmup: usize,
        iters: usize,
    ) -> Result<Vec<f64>, CudaError> {
        let dim = |x: usize| {
            i32::try_from(x).map_err(|_| CudaError::BadShape(format!("{x} does not fit cuBLAS")))
        };
        let (mi, ni, ki) = (dim(m)?, dim(n)?, dim(k)?);
        if m == 0 || n == 0 || k == 0 {
            return Err(CudaError::BadShape("cuBLAS gemm needs m, n, k > 0".into()));
        }
        let (a, b, mut c) = self.gemm_operands(m, n, k)?;
        let blas = CudaBlas::new(self.stream.clone())?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        self.time_runs(warmup, iters, || {
            let (ap, _ga) = a.device_ptr(&self.stream);
            let (bp, _gb) = b.device_ptr(&self.stream);
            let (cp, _gc) = c.device_ptr_mut(&self.stream);
            // SAFETY: the three device buffers hold m·k, n·k and m·n elements as the leading
            // dimensions and sizes above describe; alpha/beta are host f32 scalars (the
            // handle's default pointer mode); the call is enqueued on the handle's stream.
            unsafe {
                cudarc::cublas::result::gemm_ex(
                    *blas.handle(),
                    blas::cublasOperation_t::CUBLAS_OP_T,
                    blas::cublasOperation_t::CUBLAS_OP_N,
                    ni,
                    mi,
                    ki,
                    (&alpha as *const f32).cast(),
                    bp as *const _,
                    blas::cudaDataType::CUDA_R_16BF,
                    ki,
                    ap as *const _,
                    blas::cudaDataType::CUDA_R_16BF,
                    ki,
                    (&beta as *const f32).cast(),
                    cp as *mut _,
                    blas::cudaDataType::CUDA_R_32F,
                    ni,
                    blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )?;
            }
            Ok(())
        })
    }

    /// Seconds of each of `iters` attention runs (after `warmup`) of `shape`; FLOPs per run:
    /// [`AttnShape::flops`].
    pub fn time_attention(
        &self,
        shape: &AttnShape,
        warmup: usize,
        iters: usize,
    ) -> Result<Vec<f64>, CudaError> {
        let nq = shape
            .seq_q
            .saturating_mul(shape.heads)
            .saturating_mul(shape.dim);
        let nk = shape
            .seq_k
            .saturating_mul(shape.kv_heads)
            .saturating_mul(shape.dim);
        let q = self.stream.clone_htod(&random_bf16(nq.max(1), 3))?;
        let k = self.stream.clone_htod(&random_bf16(nk.max(1), 4))?;
        let v = self.stream.clone_htod(&random_bf16(nk.max(1), 5))?;
        let mut out = self.stream.alloc_zeros::<f32>(nq.max(1))?;
        self.time_runs(warmup, iters, || {
            self.attention(&q, &k, &v, &mut out, shape)
        })
    }
}
