//! Portable micro-kernel: plain Rust over a 4×16 block that the compiler vectorises for the
//! baseline (SSE2). Used when neither AVX2 nor AVX-512 is available.

/// Rows of the register block.
pub(crate) const MR: usize = 4;
/// Columns of the register block.
pub(crate) const NR: usize = 16;

/// f32 micro-kernel over packed panels.
///
/// # Safety
/// `a`/`b` point at packed panels of `kc` steps; `c` valid for `rows ≤ MR` rows of stride
/// `ldc` and `cols ≤ NR` columns.
pub(crate) unsafe fn kernel_f32(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    // SAFETY: caller contract: the panels hold kc·MR and kc·NR floats.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, kc * MR),
            core::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[0f32; NR]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (row, &ai) in acc.iter_mut().zip(ak) {
            for (x, &bj) in row.iter_mut().zip(bk) {
                *x += ai * bj;
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (j, x) in row.iter().enumerate().take(cols) {
            // SAFETY: i < rows, j < cols lie inside C (caller contract).
            unsafe {
                let p = c.add(i * ldc + j);
                *p = if accumulate { *p + x } else { *x };
            }
        }
    }
}
