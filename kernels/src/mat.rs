//! Element types and strided matrix views.

use crate::KernelError;
use half::{bf16, f16};

/// Input element type of a kernel: `f32`, `half::bf16` or `half::f16`. Products are always
/// accumulated in f32.
pub trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The data type's tag.
    const DTYPE: DType;
    /// Exact widening to f32.
    fn to_f32(self) -> f32;
    /// Rounds an f32 to this type (round to nearest even).
    fn from_f32(x: f32) -> Self;
    /// The bf16 bit pattern of this value (exact for bf16, rounded otherwise).
    fn to_bf16_bits(self) -> u16;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::bf16 {}
    impl Sealed for half::f16 {}
}

/// Data type tag of an [`Element`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32
    F32,
    /// bfloat16
    Bf16,
    /// IEEE binary16
    F16,
}

impl DType {
    /// Lowercase name: `f32`, `bf16`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
        }
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn to_bf16_bits(self) -> u16 {
        bf16::from_f32(self).to_bits()
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::Bf16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        // bf16 is the top half of an f32: widening is a shift.
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    #[inline(always)]
    fn to_bf16_bits(self) -> u16 {
        self.to_bits()
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    #[inline(always)]
    fn to_bf16_bits(self) -> u16 {
        bf16::from_f32(f16::to_f32(self)).to_bits()
    }
}

/// A read-only strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
///
/// Row-major is `rs = cols, cs = 1`; column-major is `rs = 1, cs = rows`; [`MatRef::t`] gives
/// the transposed view of the same memory, so transposed operands cost nothing.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A view with explicit strides; checks that every element lies inside `data`.
    pub fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, KernelError> {
        let needed = if rows == 0 || cols == 0 {
            Some(0)
        } else {
            (rows - 1)
                .checked_mul(rs)
                .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)))
                .and_then(|x| x.checked_add(1))
        };
        match needed {
            Some(n) if n <= data.len() => Ok(MatRef {
                data,
                rows,
                cols,
                rs,
                cs,
            }),
            _ => Err(KernelError::MatrixOutOfBounds {
                what: "view",
                rows,
                cols,
                rs,
                cs,
                needed: needed.unwrap_or(usize::MAX),
                len: data.len(),
            }),
        }
    }

    /// A row-major `rows × cols` view (`rs = cols`).
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// A column-major `rows × cols` view (`cs = rows`).
    pub fn col_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, 1, rows)
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)`, or `None` outside the view.
    pub fn get(&self, i: usize, j: usize) -> Option<&T> {
        if i < self.rows && j < self.cols {
            self.data.get(i * self.rs + j * self.cs)
        } else {
            None
        }
    }

    /// Internal: element `(i, j)` without the range check on `(i, j)` (still bounds-checked
    /// against the slice).
    #[inline(always)]
    pub(crate) fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        self.data[i * self.rs + j * self.cs]
    }

    /// Internal: the sub-view starting at `(i0, j0)` of size `rows × cols` (caller checked).
    pub(crate) fn sub(&self, i0: usize, j0: usize, rows: usize, cols: usize) -> Self {
        let off = if rows == 0 || cols == 0 {
            0
        } else {
            i0 * self.rs + j0 * self.cs
        };
        MatRef {
            data: &self.data[off..],
            rows,
            cols,
            rs: self.rs,
            cs: self.cs,
        }
    }
}
