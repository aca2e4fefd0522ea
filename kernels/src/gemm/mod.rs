//! GEMM: `C = A · B` with f32 accumulation, A and B any strided views of f32/bf16/f16.
//!
//! Goto/BLIS blocking: B is packed in `KC × NC` blocks (kept in L2), A in `MC × KC` blocks whose
//! `MR × KC` panels stay in L1 while the micro-kernel streams the `KC × NR` panels of B. The
//! first K block overwrites C, later ones add, so every element of C is written (no zeroing
//! pass, poisoned outputs are overwritten).

// The micro-kernels and block drivers take (steps, A, B, C, ldc, rows, cols, accumulate) as raw
// parts by design: bundling them would cost the hot loops nothing but hide the contract.
#![allow(clippy::too_many_arguments)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod pack;
pub(crate) mod portable;

use crate::mat::{Element, MatRef};
pub(crate) use crate::scratch::{AlignedBuf, Pod4};
use crate::{Isa, KernelError};

/// K block size in packed steps (bf16 blocks cover 2·KC values of k: the same packed bytes).
/// Tuned on a Zen 5 core (48 KiB L1d, 1 MiB L2) with `pupa-bench matmul`.
const KC: usize = 384;
/// M block size (multiple of every MR): the packed A block (MC × KC) lives in L3, so a large
/// M block means B is packed once for most shapes.
pub(crate) const MC: usize = 3072;
/// N block size (multiple of the GEMM kernels' NR: 16, 32 and 48): the packed B block
/// (KC × NC, 864 KiB in f32) stays in the 1 MiB L2 while every A panel streams over it.
pub(crate) const NC: usize = 576;

/// One kernel family: register block, packed element type and packing.
pub(crate) trait Kernel {
    /// Rows of the register block.
    const MR: usize;
    /// Columns of the register block.
    const NR: usize;
    /// k values per packed element (1 for f32, 2 for bf16 pairs).
    const KPACK: usize;
    /// Packed element.
    type P: Pod4;
    /// The micro-kernel.
    ///
    /// # Safety
    /// See `avx512::kernel_f32`.
    unsafe fn run(
        kp: usize,
        a: *const Self::P,
        b: *const Self::P,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    );
    /// Whether [`Kernel::run_strided_a`] exists: the micro-kernel reads an f32 A in place
    /// (GEMM skips packing a row-major A, attention skips packing K and V).
    const STRIDED_A: bool = false;
    /// The micro-kernel with an unpacked, strided f32 A (`a[i·rs + k·cs]`).
    ///
    /// # Safety
    /// See `avx512::kernel_f32_strided_a`; only called when `STRIDED_A`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_strided_a(
        _kc: usize,
        _a: *const f32,
        _rs: usize,
        _cs: usize,
        _b: *const Self::P,
        _c: *mut f32,
        _ldc: usize,
        _rows: usize,
        _cols: usize,
        _acc: bool,
    ) {
        unreachable!("no strided-A kernel in this family")
    }
    /// Packs A into MR-row panels.
    fn pack_a<T: Element>(a: &MatRef<'_, T>, dst: &mut [Self::P]);
    /// Packs B into NR-column panels.
    fn pack_b<T: Element>(b: &MatRef<'_, T>, dst: &mut [Self::P]);
}

macro_rules! f32_kernel {
    ($name:ident, $module:ident, $($cfg:tt)*) => {
        f32_kernel!(@impl $name, $module, {}, $($cfg)*);
    };
    (@impl $name:ident, $module:ident, {$($extra:item)*}, $($cfg:tt)*) => {
        $($cfg)*
        pub(crate) struct $name;
        $($cfg)*
        impl Kernel for $name {
            const MR: usize = $module::MR;
            const NR: usize = $module::NR;
            const KPACK: usize = 1;
            type P = f32;
            $($extra)*
            #[inline(always)]
            unsafe fn run(kp: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, rows: usize, cols: usize, accumulate: bool) {
                // SAFETY: forwarded; the dispatcher only selects this kernel after `isa::check`.
                unsafe { $module::kernel_f32(kp, a, b, c, ldc, rows, cols, accumulate) }
            }
            fn pack_a<T: Element>(a: &MatRef<'_, T>, dst: &mut [f32]) {
                pack::pack_a_f32(a, Self::MR, dst)
            }
            fn pack_b<T: Element>(b: &MatRef<'_, T>, dst: &mut [f32]) {
                pack::pack_b_f32(b, Self::NR, dst)
            }
        }
    };
}

f32_kernel!(PortableF32, portable,);
f32_kernel!(Avx2F32, avx2, #[cfg(target_arch = "x86_64")]);
f32_kernel!(@impl Avx512F32, avx512, {
    const STRIDED_A: bool = true;
    #[inline(always)]
    unsafe fn run_strided_a(kc: usize, a: *const f32, rs: usize, cs: usize, b: *const f32, c: *mut f32, ldc: usize, rows: usize, cols: usize, acc: bool) {
        // SAFETY: forwarded; selected only after `isa::check` found AVX-512F.
        unsafe { avx512::kernel_f32_strided_a(kc, a, rs, cs, b, c, ldc, rows, cols, acc) }
    }
}, #[cfg(target_arch = "x86_64")]);

/// AVX-512 bf16 kernel (`vdpbf16ps`).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512Bf16;
#[cfg(target_arch = "x86_64")]
impl Kernel for Avx512Bf16 {
    const MR: usize = avx512::MR12;
    const NR: usize = avx512::NR32;
    const KPACK: usize = 2;
    type P = u32;
    #[inline(always)]
    unsafe fn run(
        kp: usize,
        a: *const u32,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded; selected only after `isa::check` found AVX512_BF16.
        unsafe { avx512::kernel_bf16_12x32(kp, a, b, c, ldc, rows, cols, accumulate) }
    }
    fn pack_a<T: Element>(a: &MatRef<'_, T>, dst: &mut [u32]) {
        pack::pack_a_bf16(a, Self::MR, dst)
    }
    fn pack_b<T: Element>(b: &MatRef<'_, T>, dst: &mut [u32]) {
        pack::pack_b_bf16(b, Self::NR, dst)
    }
}

/// Scratch for one serial GEMM: packed A block and packed B block.
pub(crate) struct GemmScratch {
    a: AlignedBuf,
    b: AlignedBuf,
}

/// Elements of the packed A block and the packed B block of a serial GEMM with register block
/// `mr × nr` and `kpack` k values per packed element (the one formula for both the allocation
/// and [`matmul_scratch_bytes`]).
const fn scratch_lens(
    mr: usize,
    nr: usize,
    kpack: usize,
    m: usize,
    n: usize,
    k: usize,
) -> [usize; 2] {
    let kmax = KC * kpack;
    let kc = (if k < kmax { k } else { kmax }).div_ceil(kpack);
    let mc = if m < MC { m } else { MC };
    let nc = if n < NC { n } else { NC };
    [mc.div_ceil(mr) * mr * kc, nc.div_ceil(nr) * nr * kc]
}

/// Upper bound, over every kernel family, of the scratch bytes [`crate::matmul`] and
/// [`crate::matmul_until`] allocate for `A[m×k] · B[k×n]` (the serial driver; it does not
/// depend on the dtype beyond the family chosen). Independent of `m`, `n`, `k` beyond
/// MC×KC + KC×NC elements: the blocks are capped.
pub const fn matmul_scratch_bytes(m: usize, n: usize, k: usize) -> usize {
    // (MR, NR, KPACK) of the portable, AVX2, AVX-512 f32 and AVX-512 bf16 families.
    const FAMILIES: [[usize; 3]; 4] = [[4, 16, 1], [6, 16, 1], [8, 48, 1], [12, 32, 2]];
    let mut max = 0;
    let mut i = 0;
    while i < FAMILIES.len() {
        let [mr, nr, kp] = FAMILIES[i];
        let [a, b] = scratch_lens(mr, nr, kp, m, n, k);
        let bytes = crate::scratch::aligned_bytes(a) + crate::scratch::aligned_bytes(b);
        if bytes > max {
            max = bytes;
        }
        i += 1;
    }
    max
}

impl GemmScratch {
    /// Scratch for `a · b`; no A block when the kernel reads this A in place.
    pub(crate) fn try_new<K: Kernel, T: Element>(
        a: &MatRef<'_, T>,
        b: &MatRef<'_, T>,
    ) -> Result<Self, KernelError> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let [a_len, b_len] = scratch_lens(K::MR, K::NR, K::KPACK, m, n, k);
        let a_in_place = strided_a::<K, T>(&a.sub(0, 0, MC.min(m), KC.min(k))).is_some();
        Ok(GemmScratch {
            a: AlignedBuf::try_new(if a_in_place { 0 } else { a_len })?,
            b: AlignedBuf::try_new(b_len)?,
        })
    }
}

/// Serial blocked GEMM on already validated operands: `C[m×n] = A[m×k] · B[k×n]`, C row
/// stride `ldc`. `c` must hold `(m-1)·ldc + n` elements; `k ≥ 1`. `expired` is polled before
/// every [`CHECK_ROWS`] rows of every B block (at most CHECK_ROWS×KC×NC multiply-adds apart).
///
/// Loop nest (BLIS roles: A is the broadcast operand, B the vector operand): M blocks of `MC`
/// rows → K blocks → pack the A block once (L3) → N blocks of `NC` columns → pack the B block
/// (L2) → [`tiles`]. Each element of A and of B is packed once per call (B once per M block).
pub(crate) fn gemm_serial<K: Kernel, T: Element>(
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
    s: &mut GemmScratch,
    expired: &dyn Fn() -> bool,
) -> Result<(), KernelError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n);
    let cptr = c.as_mut_ptr();
    for ic in (0..m).step_by(MC) {
        let mc = MC.min(m - ic);
        for kb in k_blocks::<K>(k) {
            let asub = a.sub(ic, kb.pc, mc, kb.kc);
            let a_in_place = strided_a::<K, T>(&asub);
            let apack: &[K::P] = if a_in_place.is_none() {
                let apack = s.a.view::<K::P>(mc.div_ceil(K::MR) * K::MR * kb.kp);
                K::pack_a(&asub, apack);
                apack
            } else {
                &[]
            };
            for jc in (0..n).step_by(NC) {
                let nc = NC.min(n - jc);
                let bpack = s.b.view::<K::P>(nc.div_ceil(K::NR) * K::NR * kb.kp);
                K::pack_b(&b.sub(kb.pc, jc, kb.kc, nc), bpack);
                let a_op = match a_in_place {
                    Some(p) => AOperand::InPlace(p, a.rs),
                    None => AOperand::Packed(apack),
                };
                // SAFETY: rows ic..ic+mc and columns jc..jc+nc lie inside C (caller contract);
                // both blocks were just packed with kb.kp steps (or A is read in place).
                unsafe {
                    tiles_until::<K>(
                        a_op,
                        mc,
                        bpack,
                        nc,
                        kb.kp,
                        cptr.add(ic * ldc + jc),
                        ldc,
                        kb.pc > 0,
                        expired,
                    )?
                };
            }
        }
    }
    Ok(())
}

/// One K block: rows `pc..pc+kc` of B (columns of A), `kp` packed steps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KBlock {
    pub(crate) pc: usize,
    pub(crate) kc: usize,
    pub(crate) kp: usize,
}

/// The K blocks of a GEMM over `k` (bf16 blocks cover twice the k in the same packed bytes).
pub(crate) fn k_blocks<K: Kernel>(k: usize) -> impl Iterator<Item = KBlock> {
    let kcb = KC * K::KPACK;
    (0..k).step_by(kcb).map(move |pc| {
        let kc = kcb.min(k - pc);
        KBlock {
            pc,
            kc,
            kp: kc.div_ceil(K::KPACK),
        }
    })
}

/// Scratch for the packed A block of rows `m` over `k` (see [`GemmScratch::try_new`]).
pub(crate) fn a_scratch<K: Kernel>(m: usize, k: usize) -> Result<AlignedBuf, KernelError> {
    AlignedBuf::try_new(scratch_lens(K::MR, K::NR, K::KPACK, m, 0, k)[0])
}

/// The A block as the micro-kernel reads it.
#[derive(Clone, Copy)]
pub(crate) enum AOperand<'a, P> {
    /// Packed by `K::pack_a`.
    Packed(&'a [P]),
    /// Row-major f32 read in place: the block's first element and the row stride.
    InPlace(*const f32, usize),
}

/// Where `K` can read this block of A in place: a row-major f32 view, and a kernel with
/// [`Kernel::STRIDED_A`]. Returns the block's first element.
pub(crate) fn strided_a<K: Kernel, T: Element>(a: &MatRef<'_, T>) -> Option<*const f32> {
    if !K::STRIDED_A || T::DTYPE != crate::DType::F32 || a.cs != 1 || a.rows == 0 || a.cols == 0 {
        return None;
    }
    // Bounds: the last element read is (rows-1)·rs + cols-1, inside the view (checked on
    // construction); slicing re-checks it.
    let _ = &a.data[..=(a.rows - 1) * a.rs + a.cols - 1];
    Some(a.data.as_ptr().cast())
}

/// `C[mc × nc] (+)= Ablock · Bblock` for blocks of `kp` steps: every (A panel, B panel) pair,
/// the A panel held in L1 while the B panels stream from L2. The first K block
/// (`accumulate == false`) overwrites C, later ones add.
///
/// # Safety
/// `c` must be valid for the `mc × nc` block at row stride `ldc`; `bpack` holds the block
/// packed by `K::pack_b` with `kp` steps; `a` is packed by `K::pack_a` with `kp` steps, or (in
/// place) `mc` rows of `kp` f32 at stride `rs` from [`strided_a`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tiles<K: Kernel>(
    a: AOperand<'_, K::P>,
    mc: usize,
    bpack: &[K::P],
    nc: usize,
    kp: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let (mpan, npan) = (mc.div_ceil(K::MR), nc.div_ceil(K::NR));
    debug_assert!(bpack.len() >= npan * K::NR * kp);
    for ir in 0..mpan {
        let rows = K::MR.min(mc - ir * K::MR);
        for jr in 0..npan {
            let cols = K::NR.min(nc - jr * K::NR);
            let bp = bpack[jr * K::NR * kp..].as_ptr();
            // SAFETY: the panels hold kp steps; this tile's rows/cols lie inside the block.
            unsafe {
                let cp = c.add(ir * K::MR * ldc + jr * K::NR);
                match a {
                    AOperand::Packed(apack) => {
                        let ap = apack[ir * K::MR * kp..].as_ptr();
                        K::run(kp, ap, bp, cp, ldc, rows, cols, accumulate)
                    }
                    AOperand::InPlace(p, rs) => {
                        let ap = p.add(ir * K::MR * rs);
                        K::run_strided_a(kp, ap, rs, 1, bp, cp, ldc, rows, cols, accumulate)
                    }
                }
            }
        }
    }
}

/// Rows of A between two deadline checks inside a B block (a multiple of every MR: 4, 6, 8,
/// 12): 240×384×576 multiply-adds, about a millisecond on one core.
pub(crate) const CHECK_ROWS: usize = 240;
// 24 is the least common multiple of the MRs.
const _: () = assert!(CHECK_ROWS.is_multiple_of(24));

/// [`tiles`] in slices of [`CHECK_ROWS`] rows, polling `expired` before each (the B block stays
/// in L2 across them, so the slicing costs nothing but the checks).
///
/// # Safety
/// As [`tiles`].
#[inline(always)]
pub(crate) unsafe fn tiles_until<K: Kernel>(
    a: AOperand<'_, K::P>,
    mc: usize,
    bpack: &[K::P],
    nc: usize,
    kp: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    expired: &dyn Fn() -> bool,
) -> Result<(), KernelError> {
    debug_assert!(CHECK_ROWS.is_multiple_of(K::MR));
    for r0 in (0..mc).step_by(CHECK_ROWS) {
        crate::scratch::check(expired)?;
        // Row r0 is a multiple of MR: packed A panels start at r0·kp, in-place rows at r0·rs.
        let a_rows = match a {
            AOperand::Packed(p) => AOperand::Packed(&p[r0 * kp..]),
            // SAFETY: row r0 < mc of the block the caller's pointer addresses.
            AOperand::InPlace(p, rs) => AOperand::InPlace(unsafe { p.add(r0 * rs) }, rs),
        };
        // SAFETY: the caller's block, restricted to rows r0..r0+rows.
        unsafe {
            tiles::<K>(
                a_rows,
                CHECK_ROWS.min(mc - r0),
                bpack,
                nc,
                kp,
                c.add(r0 * ldc),
                ldc,
                accumulate,
            )
        };
    }
    Ok(())
}

/// Which kernel family runs for a dtype on an ISA.
pub(crate) fn with_kernel<T: Element, R>(isa: Isa, f: impl KernelFn<R>) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512Bf16 if T::DTYPE == crate::DType::Bf16 => f.call::<Avx512Bf16>(),
            Isa::Avx512Bf16 | Isa::Avx512 => f.call::<Avx512F32>(),
            Isa::Avx2Fma => f.call::<Avx2F32>(),
            Isa::Portable => f.call::<PortableF32>(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        f.call::<PortableF32>()
    }
}

/// A computation generic over the kernel family (a poor man's generic closure).
pub(crate) trait KernelFn<R> {
    fn call<K: Kernel>(self) -> R;
}

/// Validates `a · b → c` and returns `(m, k, n)`.
pub(crate) fn validate<T>(
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: &[f32],
    ldc: usize,
) -> Result<(usize, usize, usize), KernelError> {
    if a.cols != b.rows {
        return Err(KernelError::ShapeMismatch {
            m: a.rows,
            ka: a.cols,
            kb: b.rows,
            n: b.cols,
        });
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m > 0 && n > 0 {
        if ldc < n {
            return Err(KernelError::BufferTooShort {
                what: "C row stride (ldc < n)",
                needed: n,
                len: ldc,
            });
        }
        let needed = (m - 1)
            .checked_mul(ldc)
            .and_then(|x| x.checked_add(n))
            .unwrap_or(usize::MAX);
        if c.len() < needed {
            return Err(KernelError::BufferTooShort {
                what: "C",
                needed,
                len: c.len(),
            });
        }
    }
    Ok((m, k, n))
}

/// Serial GEMM entry (validated); handles `k == 0` by writing zeros.
pub(crate) fn gemm<T: Element>(
    isa: Isa,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
    expired: &dyn Fn() -> bool,
) -> Result<(), KernelError> {
    crate::isa::check(isa)?;
    let (m, k, n) = validate(a, b, c, ldc)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for i in 0..m {
            c[i * ldc..i * ldc + n].fill(0.0);
        }
        return Ok(());
    }
    struct Run<'x, 'y, T> {
        a: &'x MatRef<'y, T>,
        b: &'x MatRef<'y, T>,
        c: &'x mut [f32],
        ldc: usize,
        expired: &'x dyn Fn() -> bool,
    }
    impl<T: Element> KernelFn<Result<(), KernelError>> for Run<'_, '_, T> {
        fn call<K: Kernel>(self) -> Result<(), KernelError> {
            let mut s = GemmScratch::try_new::<K, T>(self.a, self.b)?;
            gemm_serial::<K, T>(self.a, self.b, self.c, self.ldc, &mut s, self.expired)
        }
    }
    with_kernel::<T, _>(
        isa,
        Run {
            a,
            b,
            c,
            ldc,
            expired,
        },
    )
}
