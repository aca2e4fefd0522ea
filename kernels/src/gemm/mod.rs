//! GEMM: `C = A · B` with f32 accumulation, A and B any strided views of f32/bf16/f16.
//!
//! Goto/BLIS blocking: B is packed in `KC × NC` blocks (kept in L2), A in `MC × KC` blocks whose
//! `MR × KC` panels stay in L1 while the micro-kernel streams the `KC × NR` panels of B. The
//! first K block overwrites C, later ones add, so every element of C is written (no zeroing
//! pass, poisoned outputs are overwritten).

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod pack;
pub(crate) mod portable;

extern crate alloc;
use alloc::vec::Vec;

use crate::mat::{Element, MatRef};
use crate::{Isa, KernelError};

/// K block size in packed steps (bf16 blocks cover 2·KC values of k: the same packed bytes).
/// Tuned on a Zen 5 core (48 KiB L1d, 1 MiB L2) with `pupa-bench matmul`.
const KC: usize = 256;
/// M block size (multiple of every MR).
const MC: usize = 192;
/// N block size (multiple of the GEMM kernels' NR: 16 and 32).
const NC: usize = 1024;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u32; 16]);

/// Plain 4-byte element types that scratch buffers may be viewed as.
pub(crate) trait Pod4: Copy + Default + Send + Sync + 'static {}
impl Pod4 for f32 {}
impl Pod4 for u32 {}

/// A 64-byte aligned scratch buffer of 4-byte elements (a `Vec` of 64-byte lines), allocated
/// once per call, outside the hot loops. With `std`, freed buffers are kept in a small
/// per-thread pool, so repeated calls do not fault in fresh pages every time.
pub(crate) struct AlignedBuf(Vec<Line>);

#[cfg(feature = "std")]
std::thread_local! {
    static POOL: core::cell::RefCell<Vec<Vec<Line>>> = const { core::cell::RefCell::new(Vec::new()) };
}

impl AlignedBuf {
    /// A buffer of at least `len` 4-byte elements (zeroed when freshly allocated).
    pub(crate) fn new(len: usize) -> Self {
        let lines = len.div_ceil(16).max(1);
        #[cfg(feature = "std")]
        {
            let reused = POOL.with(|p| {
                let mut p = p.borrow_mut();
                let i = p.iter().position(|v| v.len() >= lines)?;
                Some(p.swap_remove(i))
            });
            if let Some(v) = reused {
                return AlignedBuf(v);
            }
        }
        AlignedBuf(alloc::vec![Line([0; 16]); lines])
    }
    /// The buffer as `len` elements of `P`.
    pub(crate) fn view<P: Pod4>(&mut self, len: usize) -> &mut [P] {
        assert!(len <= self.0.len() * 16, "scratch too small");
        // SAFETY: Line is 64 bytes of initialised u32, P is a 4-byte plain type (f32 or u32)
        // for which every bit pattern is valid; the length is within the allocation.
        unsafe { core::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<P>(), len) }
    }
}

#[cfg(feature = "std")]
impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let v = core::mem::take(&mut self.0);
        // Keep at most 8 buffers per thread; `try_with` because a thread-local may already be
        // gone during thread exit.
        let _ = POOL.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.len() < 8 {
                    p.push(v);
                }
            }
        });
    }
}

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
    /// Packs A into MR-row panels.
    fn pack_a<T: Element>(a: &MatRef<'_, T>, dst: &mut [Self::P]);
    /// Packs B into NR-column panels.
    fn pack_b<T: Element>(b: &MatRef<'_, T>, dst: &mut [Self::P]);
}

macro_rules! f32_kernel {
    ($name:ident, $module:ident, $($cfg:tt)*) => {
        $($cfg)*
        pub(crate) struct $name;
        $($cfg)*
        impl Kernel for $name {
            const MR: usize = $module::MR;
            const NR: usize = $module::NR;
            const KPACK: usize = 1;
            type P = f32;
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
f32_kernel!(Avx512F32, avx512, #[cfg(target_arch = "x86_64")]);

/// AVX-512 f32 with the 12×32 block, for plain GEMM.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512F32Wide;
#[cfg(target_arch = "x86_64")]
impl Kernel for Avx512F32Wide {
    const MR: usize = avx512::MR12;
    const NR: usize = avx512::NR32;
    const KPACK: usize = 1;
    type P = f32;
    #[inline(always)]
    unsafe fn run(
        kp: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded; selected only after `isa::check` found AVX-512F.
        unsafe { avx512::kernel_f32_12x32(kp, a, b, c, ldc, rows, cols, accumulate) }
    }
    fn pack_a<T: Element>(a: &MatRef<'_, T>, dst: &mut [f32]) {
        pack::pack_a_f32(a, Self::MR, dst)
    }
    fn pack_b<T: Element>(b: &MatRef<'_, T>, dst: &mut [f32]) {
        pack::pack_b_f32(b, Self::NR, dst)
    }
}

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

impl GemmScratch {
    pub(crate) fn new<K: Kernel>(m: usize, n: usize, k: usize) -> Self {
        let kc = (KC * K::KPACK).min(k).div_ceil(K::KPACK);
        let nc = NC.min(n).div_ceil(K::NR) * K::NR;
        GemmScratch {
            a: a_scratch::<K>(m, k),
            b: AlignedBuf::new(nc * kc),
        }
    }
}

/// Serial blocked GEMM on already validated operands: `C[m×n] = A[m×k] · B[k×n]`, C row
/// stride `ldc`. `c` must hold `(m-1)·ldc + n` elements; `k ≥ 1`.
pub(crate) fn gemm_serial<K: Kernel, T: Element>(
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
    s: &mut GemmScratch,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n);
    for blk in b_blocks::<K>(k, n) {
        let bpack = s.b.view::<K::P>(blk.len::<K>());
        K::pack_b(&b.sub(blk.pc, blk.jc, blk.kc, blk.nc), bpack);
        // SAFETY: forwarded caller contract (c holds the m × n result at stride ldc).
        unsafe { macro_kernel::<K, T>(a, &blk, bpack, c.as_mut_ptr(), ldc, &mut s.a) };
    }
}

/// One `KC × NC` block of B: rows `pc..pc+kc`, columns `jc..jc+nc`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BBlock {
    pub(crate) jc: usize,
    pub(crate) nc: usize,
    pub(crate) pc: usize,
    pub(crate) kc: usize,
}

impl BBlock {
    /// Packed steps (k values per packed element: `K::KPACK`).
    fn kp<K: Kernel>(&self) -> usize {
        self.kc.div_ceil(K::KPACK)
    }
    /// Packed size in elements.
    pub(crate) fn len<K: Kernel>(&self) -> usize {
        self.nc.div_ceil(K::NR) * K::NR * self.kp::<K>()
    }
}

/// The B blocks in the order the serial driver visits them (NC outer, KC inner).
pub(crate) fn b_blocks<K: Kernel>(k: usize, n: usize) -> impl Iterator<Item = BBlock> {
    // The same packed bytes per K block for every family: bf16 blocks cover twice the k.
    let kcb = KC * K::KPACK;
    (0..n).step_by(NC).flat_map(move |jc| {
        (0..k).step_by(kcb).map(move |pc| BBlock {
            jc,
            nc: NC.min(n - jc),
            pc,
            kc: kcb.min(k - pc),
        })
    })
}

/// Scratch for the packed A block of rows `m` over `k` (see [`GemmScratch::new`]).
pub(crate) fn a_scratch<K: Kernel>(m: usize, k: usize) -> AlignedBuf {
    let kc = (KC * K::KPACK).min(k).div_ceil(K::KPACK);
    AlignedBuf::new(MC.min(m).div_ceil(K::MR) * K::MR * kc)
}

/// All M blocks of A against one packed B block: `C[:, jc..jc+nc] (+)= A[:, pc..pc+kc] · B`.
/// The first K block (`pc == 0`) overwrites C, later ones add.
///
/// # Safety
/// `c` must be valid for writes of the `a.rows × (blk.jc + blk.nc)` result at row stride `ldc`;
/// `bpack` holds `blk` packed by `K::pack_b`.
pub(crate) unsafe fn macro_kernel<K: Kernel, T: Element>(
    a: &MatRef<'_, T>,
    blk: &BBlock,
    bpack: &[K::P],
    cptr: *mut f32,
    ldc: usize,
    ascratch: &mut AlignedBuf,
) {
    let m = a.rows;
    let (jc, nc, pc, kc) = (blk.jc, blk.nc, blk.pc, blk.kc);
    let kp = blk.kp::<K>();
    let npan = nc.div_ceil(K::NR);
    debug_assert!(bpack.len() >= blk.len::<K>());
    for ic in (0..m).step_by(MC) {
        let mc = MC.min(m - ic);
        let mpan = mc.div_ceil(K::MR);
        let apack = ascratch.view::<K::P>(mpan * K::MR * kp);
        K::pack_a(&a.sub(ic, pc, mc, kc), apack);
        let tile = |ir: usize, jr: usize| {
            let rows = K::MR.min(mc - ir * K::MR);
            let ap = apack[ir * K::MR * kp..].as_ptr();
            let cols = K::NR.min(nc - jr * K::NR);
            let bp = bpack[jr * K::NR * kp..].as_ptr();
            // SAFETY: the panels hold kp steps; rows/cols of this tile lie inside C because
            // ic+ir·MR+rows ≤ m and jc+jr·NR+cols ≤ jc+nc, which the caller guarantees.
            unsafe {
                let cp = cptr.add((ic + ir * K::MR) * ldc + jc + jr * K::NR);
                K::run(kp, ap, bp, cp, ldc, rows, cols, pc > 0);
            }
        };
        // The A panel stays in L1 while the B panels stream from L2.
        for ir in 0..mpan {
            for jr in 0..npan {
                tile(ir, jr);
            }
        }
    }
}

/// Which kernel family runs for a dtype on an ISA.
pub(crate) fn with_kernel<T: Element, R>(isa: Isa, f: impl KernelFn<R>) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512Bf16 if T::DTYPE == crate::DType::Bf16 => f.call::<Avx512Bf16>(),
            Isa::Avx512Bf16 | Isa::Avx512 => f.call::<Avx512F32Wide>(),
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
    }
    impl<T: Element> KernelFn<()> for Run<'_, '_, T> {
        fn call<K: Kernel>(self) {
            let mut s = GemmScratch::new::<K>(self.a.rows, self.b.cols, self.a.cols);
            gemm_serial::<K, T>(self.a, self.b, self.c, self.ldc, &mut s);
        }
    }
    with_kernel::<T, ()>(isa, Run { a, b, c, ldc });
    Ok(())
}
