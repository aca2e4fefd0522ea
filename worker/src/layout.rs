//! Job tensors as the CUDA kernels take them (`--compute cuda`): little-endian bf16 bytes
//! decoded straight into row-major order, in one fallible allocation per tensor (no more
//! memory than the CPU path's decoded inputs, which `JobShape::exec_bytes` accounts for).
//!
//! The GEMM takes A as m x k and B as its transpose, n x k, both row-major
//! (`pupa_kernels::cuda::CudaKernels::gemm`); a job's B is k x n in either layout.

use pupa_protocol::job::Layout;
use pupa_runtime::ComputeError;

/// The layout that reads B (k x n, stored in `l`) as Bᵀ (n x k): a column-major B is a
/// row-major Bᵀ and vice versa.
pub fn transposed(l: Layout) -> Layout {
    match l {
        Layout::RowMajor => Layout::ColMajor,
        Layout::ColMajor => Layout::RowMajor,
    }
}

/// Decodes `bytes` (bf16 bits, little-endian) of a `rows x cols` matrix stored in `layout`
/// into row-major bf16 bits. Fails with `Inconsistent` when the byte count is not
/// `2·rows·cols`, `OutOfMemory` when the allocation fails.
pub fn bf16_row_major(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    layout: Layout,
) -> Result<Vec<u16>, ComputeError> {
    let n = rows.checked_mul(cols).ok_or(ComputeError::Inconsistent)?;
    if bytes.len() != n.checked_mul(2).ok_or(ComputeError::Inconsistent)? {
        return Err(ComputeError::Inconsistent);
    }
    let mut out = Vec::new();
    out.try_reserve_exact(n)
        .map_err(|_| ComputeError::OutOfMemory {
            bytes: (n as u64).saturating_mul(2),
        })?;
    out.resize(n, 0u16);
    let elems = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    match layout {
        Layout::RowMajor => out.iter_mut().zip(elems).for_each(|(o, x)| *o = x),
        // Stored column by column: element (i, j) is at j·rows + i.
        Layout::ColMajor => {
            for (at, x) in elems.enumerate() {
                let (j, i) = (at / rows.max(1), at % rows.max(1));
                out[i * cols + j] = x;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: &[u16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn row_and_column_major_decode_to_the_same_matrix() {
        // 2 x 3: [[1, 2, 3], [4, 5, 6]].
        let row = bytes(&[1, 2, 3, 4, 5, 6]);
        let col = bytes(&[1, 4, 2, 5, 3, 6]);
        let want = vec![1, 2, 3, 4, 5, 6];
        assert_eq!(bf16_row_major(&row, 2, 3, Layout::RowMajor).unwrap(), want);
        assert_eq!(bf16_row_major(&col, 2, 3, Layout::ColMajor).unwrap(), want);
    }

    #[test]
    fn b_is_read_as_its_transpose() {
        // B (k=2 x n=3) = [[1, 2, 3], [4, 5, 6]]; Bᵀ (3 x 2) = [[1, 4], [2, 5], [3, 6]].
        let bt = vec![1, 4, 2, 5, 3, 6];
        let row = bytes(&[1, 2, 3, 4, 5, 6]);
        let got = bf16_row_major(&row, 3, 2, transposed(Layout::RowMajor)).unwrap();
        assert_eq!(got, bt);
        let col = bytes(&[1, 4, 2, 5, 3, 6]);
        let got = bf16_row_major(&col, 3, 2, transposed(Layout::ColMajor)).unwrap();
        assert_eq!(got, bt);
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert_eq!(
            bf16_row_major(&[0; 10], 2, 3, Layout::RowMajor),
            Err(ComputeError::Inconsistent)
        );
        assert_eq!(
            bf16_row_major(&[], usize::MAX, 3, Layout::RowMajor),
            Err(ComputeError::Inconsistent)
        );
    }
}
