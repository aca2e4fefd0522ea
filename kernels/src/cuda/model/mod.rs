//! A pure-Rust model of pupa's Hopper kernels, executed on the CPU.
//!
//! It reproduces, element by element, what the CUDA code in `kernels/cuda/` does: which thread of a
//! warpgroup holds which matrix element ([`fragments`]), where TMA puts a tile in shared memory and
//! where a wgmma matrix descriptor reads it back ([`smem`]), the warpgroup MMA itself on those
//! per-thread registers ([`warpgroup`]), each kernel's tiling, ragged-edge handling, causal
//! masking and online-softmax bookkeeping tile by tile, warpgroup by warpgroup ([`gemm`],
//! [`attention`]), and the mbarrier phase bookkeeping of their TMA pipelines under random
//! interleavings ([`pipeline`]). The tests in `kernels/tests/cuda_model.rs` and
//! `cuda_pipeline.rs` check it against f64 references over many random shapes and against
//! hazard checks over many interleavings; that is what stands in for the GPU here.
//!
//! The model needs no CUDA and no feature: it is compiled into the crate with the `cuda` feature
//! and into the integration test through `#[path]`.

pub mod attention;
pub mod fragments;
pub mod gemm;
pub mod pipeline;
pub mod smem;
pub mod warpgroup;

/// Rounds an f32 to the nearest bf16 (ties to even) and returns its bits, as PTX
/// `cvt.rn.bf16x2.f32` does (PTX ISA "cvt"). NaN becomes the canonical quiet NaN.
/// Written by hand: eight lines do not justify a dependency for the model.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7FC0;
    }
    let bits = x.to_bits();
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bf16 bits (exact: bf16 is the upper half of an f32).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Packs two f32 into a bf16x2 register as `pack_bf16x2(lo, hi)` in hopper.cuh: `lo` in bits 0..16.
pub fn pack_bf16x2(lo: f32, hi: f32) -> u32 {
    u32::from(f32_to_bf16_bits(lo)) | (u32::from(f32_to_bf16_bits(hi)) << 16)
}
