//! pupa's compute kernels.
//!
//! CPU kernels (always built, `no_std` + `alloc`): GEMM with f32 accumulation over f32, bf16
//! and f16 inputs, and FlashAttention-style attention forward. AVX-512 (with `vdpbf16ps` where
//! present), AVX2+FMA and portable micro-kernels are selected at run time by [`detect`]
//! (CPUID + XCR0 in the guest, `is_x86_feature_detected!` with `std`); callers may pass an
//! [`Isa`] explicitly (checked against the CPU). Scratch is allocated once per call, never in
//! the hot loops, and fallibly: a call whose scratch cannot be allocated returns
//! [`KernelError::OutOfMemory`]; [`matmul_scratch_bytes`] and [`attention_scratch_bytes`] bound
//! it in advance. Attention takes head dims up to [`MAX_HEAD_DIM`].
//!
//! Deadlines: the `*_until` entry points take an `expired` check, polled once per outer block
//! (never per element); when it returns true the call stops with
//! [`KernelError::DeadlineExceeded`] and the output is incomplete. The plain entry points are
//! the same calls with a check that never expires.
//!
//! With the `std` feature: a multi-threaded driver on rayon ([`matmul_parallel`],
//! [`attention_parallel`]) and the `pupa-bench` binary. With `cuda`: the CUDA kernels.
//!
//! ```
//! use pupa_kernels::{matmul, MatRef};
//! let a = [1.0f32, 2.0, 3.0, 4.0]; // 2×2 row-major
//! let b = [1.0f32, 0.0, 0.0, 1.0];
//! let mut c = [f32::NAN; 4];
//! matmul(MatRef::row_major(&a, 2, 2)?, MatRef::row_major(&b, 2, 2)?, &mut c)?;
//! assert_eq!(c, [1.0, 2.0, 3.0, 4.0]);
//! # Ok::<(), pupa_kernels::KernelError>(())
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]

extern crate alloc;

pub mod attention;
#[cfg(feature = "cuda")]
pub mod cuda;
mod error;
mod gemm;
mod isa;
mod mat;
#[cfg(feature = "std")]
mod parallel;
pub mod reference;
mod scratch;
mod split;

pub use attention::{
    attention, attention_scratch_bytes, attention_until, attention_with, AttnShape, MAX_HEAD_DIM,
};
pub use error::KernelError;
pub use gemm::matmul_scratch_bytes;
#[cfg(target_arch = "x86_64")]
pub use isa::detect_cpuid;
pub use isa::{detect, Isa};
pub use mat::{DType, Element, MatRef};
#[cfg(feature = "std")]
pub use parallel::{
    attention_parallel, attention_parallel_until, matmul_parallel, matmul_parallel_until, Rayon,
};
pub use reference::rel_l2_error;
pub use split::{attention_split_until, matmul_split_until, Serial, Workers};

/// `C = A · B` on the best ISA of this CPU. `c` is row-major `m × n`, contiguous
/// (`c.len() ≥ m·n`); every element of it is written.
pub fn matmul<T: Element>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [f32],
) -> Result<(), KernelError> {
    let n = b.cols();
    gemm::gemm(detect(), &a, &b, c, n.max(1), &|| false)
}

/// `C = A · B` with an explicit [`Isa`] and C row stride `ldc ≥ n`. Fails with
/// [`KernelError::IsaUnavailable`] if the CPU lacks `isa`.
pub fn matmul_with<T: Element>(
    isa: Isa,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), KernelError> {
    gemm::gemm(isa, &a, &b, c, ldc, &|| false)
}

/// [`matmul_with`] that polls `expired` before every block of at most 240×384×576
/// multiply-adds (240 rows of A against one packed B block) and stops with [`KernelError::DeadlineExceeded`] once it returns true (C is
/// then incomplete).
pub fn matmul_until<T: Element>(
    isa: Isa,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
    expired: &dyn Fn() -> bool,
) -> Result<(), KernelError> {
    gemm::gemm(isa, &a, &b, c, ldc, expired)
}
