//! Register fragments: which thread holds which matrix element.
//!
//! Notation of the PTX ISA: in a warp, `groupID = lane / 4` and `threadID_in_group = lane % 4`.

/// Threads in a warpgroup (four consecutive warps).
pub const WARPGROUP: usize = 128;

/// `mma.m16n8k16` A fragment, 16-bit types (PTX ISA "Matrix Fragments for
/// mma.m16n8k16 with floating point type", figure "MMA .m16n8k16 fragment layout for matrix A"):
/// element `e` in 0..8 of `lane` is A(row, col) with
/// row = groupID (+8 for a2, a3, a6, a7), col = 2*threadID_in_group + (e & 1) (+8 for a4..a7).
pub fn mma_m16n8k16_a(lane: usize, e: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    (g + 8 * ((e / 2) % 2), 2 * t + (e % 2) + 8 * (e / 4))
}

/// `mma.m16n8k16` B fragment, 16-bit types (same section, matrix B): element `e` in 0..4 of `lane`
/// is B(k, n) with k = 2*threadID_in_group + (e & 1) (+8 for b2, b3), n = groupID.
pub fn mma_m16n8k16_b(lane: usize, e: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    (2 * t + (e % 2) + 8 * (e / 2), g)
}

/// `mma.m16n8k16` C/D fragment, f32 (same section, matrix C/D): element `e` in 0..4 of `lane` is
/// D(row, col) with row = groupID (+8 for c2, c3), col = 2*threadID_in_group + (e & 1).
pub fn mma_m16n8_c(lane: usize, e: usize) -> (usize, usize) {
    let (g, t) = (lane / 4, lane % 4);
    (g + 8 * (e / 2), 2 * t + (e % 2))
}

/// `wgmma .m64nNk16` accumulator D, f32 (PTX ISA 9.7.15.5.1.1.1 "Matrix Fragments for
/// wgmma.mma_async.m64nNk16", figure "WGMMA .m64nNk16 register fragment layout for
/// accumulator matrix D"):
/// warp w of the warpgroup owns rows 16w..16w+16; within it register `i` in 0..N/2 repeats the
/// m16n8 C layout once per 8 columns: D(16w + row_c, 8*(i/4) + col_c) with
/// (row_c, col_c) = [`mma_m16n8_c`](lane, i % 4).
pub fn wgmma_d(thread: usize, i: usize) -> (usize, usize) {
    let (w, lane) = (thread / 32, thread % 32);
    let (r, c) = mma_m16n8_c(lane, i % 4);
    (16 * w + r, 8 * (i / 4) + c)
}

/// `wgmma .m64nNk16` A from registers, 16-bit types (same section, figure "WGMMA .m64nNk16
/// register fragment layout for matrix A"): warp w supplies rows 16w..16w+16 in the
/// `mma.m16n8k16` A layout; element `e` in 0..8 sits in register e/2, low half for even e.
pub fn wgmma_a(thread: usize, e: usize) -> (usize, usize) {
    let (w, lane) = (thread / 32, thread % 32);
    let (r, c) = mma_m16n8k16_a(lane, e);
    (16 * w + r, c)
}

/// The A-operand registers for K slice `ks` (columns 16ks..16ks+16) built from a wgmma
/// accumulator, as the attention kernel does for P: register j packs accumulator elements
/// `8ks + 2j` (low half) and `8ks + 2j + 1` (high half). Correct because [`wgmma_d`] of those
/// indices equals [`wgmma_a`] of (2j, 2j+1) shifted by 16ks columns (tested).
pub fn accumulator_to_a(acc: &[f32], ks: usize) -> [u32; 4] {
    core::array::from_fn(|j| super::pack_bf16x2(acc[8 * ks + 2 * j], acc[8 * ks + 2 * j + 1]))
}
