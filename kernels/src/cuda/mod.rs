//! CUDA backend for Hopper (feature `cuda`): a bf16 GEMM and attention forward written for
//! `sm_90a` (TMA, mbarrier pipelines, `wgmma.mma_async`), compiled at run time with NVRTC from
//! CUDA 13.2 and launched through `cudarc` with dynamic loading, so a binary built with this
//! feature still starts (and reports a clear error) on machines without the NVIDIA driver.
//! [`CudaKernels::with_cubins`] loads the kernels built ahead of time instead (`Cubins`, for
//! NVIDIA's R535 driver, whose PTX JIT predates CUDA 13; `kernels/cuda/check.sh` builds and
//! gates them).
//!
//! ```no_run
//! # fn main() -> Result<(), pupa_kernels::cuda::CudaError> {
//! use pupa_kernels::cuda::CudaKernels;
//! let gpu = CudaKernels::new(0)?; // probes libcuda and libnvrtc first, checks for sm_90
//! # Ok(()) }
//! ```
//!
//! [`model`] is the CPU model of these kernels that the tests check without a GPU.

mod bench;
mod error;
mod launch;
pub mod model;
pub mod source;

pub use error::CudaError;
pub use launch::{compile_all_ptx, probe, probe_driver, Cubins, CudaKernels};
