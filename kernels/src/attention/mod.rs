//! Attention forward, FlashAttention-style (Dao et al. 2022, Algorithm 1, with the loop
//! order of FlashAttention-2: query blocks outside, key/value blocks inside).
//!
//! Layouts (as FlashAttention's `(seqlen, nheads, headdim)`): `q`, `out`: `[seq_q][heads][dim]`;
//! `k`, `v`: `[seq_k][kv_heads][dim]`; `lse` (optional): `[heads][seq_q]`, natural log of the
//! softmax denominator. Softmax scale `1/√dim`. GQA/MQA: head `h` reads kv head
//! `h / (heads / kv_heads)`. Causal masks are aligned bottom-right (query `i` sees keys
//! `j ≤ i + seq_k − seq_q`); a query that sees no key gets 0 and `lse = -inf`.
//!
//! Each tile works on transposed scores `Sᵀ = K·Qᵀ` (keys × queries) so that the running max
//! and sum are per-lane vector operations, and accumulates `Oᵀ += Vᵀ·Pᵀ` with the same GEMM
//! micro-kernels: `Pᵀ` is produced directly in the packed-B layout, `Vᵀ` packs from rows of V.
//! Scratch is O(tile): allocated once per call (or per worker thread), bounded by
//! [`attention_scratch_bytes`] since head dims are capped at [`MAX_HEAD_DIM`].

mod shape;
mod softmax;
mod tile;

extern crate alloc;
use alloc::vec::Vec;

use crate::gemm::{AlignedBuf, Kernel, PortableF32};
use crate::mat::Element;
use crate::scratch::try_vec;
use crate::{Isa, KernelError};
pub use shape::{attention_scratch_bytes, AttnShape, MAX_HEAD_DIM};
pub(crate) use tile::tile;

/// An f32 kernel family plus its softmax strip.
pub(crate) trait AttnKernel: Kernel<P = f32> {
    /// See `softmax::strip_portable`.
    ///
    /// # Safety
    /// As `softmax::strip_portable`, plus the CPU supports the family's ISA.
    unsafe fn strip(
        s: *mut f32,
        rows: usize,
        stride: usize,
        m: *mut f32,
        l: *mut f32,
        alpha: *mut f32,
        c: f32,
    );
}

impl AttnKernel for PortableF32 {
    unsafe fn strip(
        s: *mut f32,
        rows: usize,
        stride: usize,
        m: *mut f32,
        l: *mut f32,
        alpha: *mut f32,
        c: f32,
    ) {
        // SAFETY: forwarded.
        unsafe { softmax::strip_portable(s, rows, stride, m, l, alpha, c) }
    }
}
#[cfg(target_arch = "x86_64")]
impl AttnKernel for crate::gemm::Avx2F32 {
    unsafe fn strip(
        s: *mut f32,
        rows: usize,
        stride: usize,
        m: *mut f32,
        l: *mut f32,
        alpha: *mut f32,
        c: f32,
    ) {
        // SAFETY: forwarded.
        unsafe { softmax::strip_portable(s, rows, stride, m, l, alpha, c) }
    }
}
#[cfg(target_arch = "x86_64")]
impl AttnKernel for crate::gemm::Avx512F32 {
    unsafe fn strip(
        s: *mut f32,
        rows: usize,
        stride: usize,
        m: *mut f32,
        l: *mut f32,
        alpha: *mut f32,
        c: f32,
    ) {
        // SAFETY: forwarded; selected only when AVX-512F is present.
        unsafe { softmax::strip_avx512(s, rows, stride, m, l, alpha, c) }
    }
}

/// Test hook: force the packed path even where K and V could be read in place.
#[doc(hidden)]
pub static FORCE_PACK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Query block (rounded to a multiple of NR).
const BR: usize = 96;
/// Key block (rounded down to a multiple of MR).
const BC: usize = 256;

fn br<K: Kernel>() -> usize {
    shape::blocks(K::MR, K::NR).0
}
fn bc<K: Kernel>() -> usize {
    shape::blocks(K::MR, K::NR).1
}

/// Per-worker scratch of one attention tile.
pub(crate) struct TileScratch {
    qt: AlignedBuf,
    kt: AlignedBuf,
    vt: AlignedBuf,
    s: AlignedBuf,
    ot: AlignedBuf,
    m: Vec<f32>,
    l: Vec<f32>,
    alpha: Vec<f32>,
}

impl TileScratch {
    pub(crate) fn try_new<K: Kernel>(dim: usize) -> Result<Self, KernelError> {
        let ([qt, kt, vt, s, ot], br) = shape::tile_lens(K::MR, K::NR, dim);
        Ok(TileScratch {
            qt: AlignedBuf::try_new(qt)?,
            kt: AlignedBuf::try_new(kt)?,
            vt: AlignedBuf::try_new(vt)?,
            s: AlignedBuf::try_new(s)?,
            ot: AlignedBuf::try_new(ot)?,
            m: try_vec(br, 0.0)?,
            l: try_vec(br, 0.0)?,
            alpha: try_vec(br, 0.0)?,
        })
    }
}

/// Where a tile writes its results; the tiles of one call write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr {
    pub(crate) out: *mut f32,
    pub(crate) lse: *mut f32,
}
// SAFETY: tiles write disjoint (query, head) elements through these pointers.
unsafe impl Send for OutPtr {}

/// Checks shared by the serial and parallel drivers: the ISA runs here and every buffer has the
/// length `shape` needs; returns where the tiles write.
pub(crate) fn prepare<T: Element>(
    isa: Isa,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    shape: AttnShape,
    lse: Option<&mut [f32]>,
) -> Result<OutPtr, KernelError> {
    crate::isa::check(isa)?;
    shape.validate(
        q.len(),
        k.len(),
        v.len(),
        out.len(),
        lse.as_ref().map(|l| l.len()),
    )?;
    Ok(OutPtr {
        out: out.as_mut_ptr(),
        lse: lse.map_or(core::ptr::null_mut(), |l| l.as_mut_ptr()),
    })
}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// Number of query blocks per head for kernel family `K`.
pub(crate) fn q_blocks<K: Kernel>(seq_q: usize) -> usize {
    seq_q.div_ceil(br::<K>())
}

/// A computation generic over the f32 attention kernel family.
pub(crate) trait AttnFn<R> {
    fn call<K: AttnKernel>(self) -> R;
}

/// Runs `f` with the f32 kernel family for `isa`.
pub(crate) fn with_attn_kernel<R>(isa: Isa, f: impl AttnFn<R>) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512Bf16 | Isa::Avx512 => f.call::<crate::gemm::Avx512F32>(),
            Isa::Avx2Fma => f.call::<crate::gemm::Avx2F32>(),
            Isa::Portable => f.call::<PortableF32>(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        f.call::<PortableF32>()
    }
}

/// Attention forward on the best ISA of this CPU (see the module docs for layouts).
/// Every element of `out` (and of `lse`, when given) is written.
pub fn attention<T: Element>(
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    shape: AttnShape,
    lse: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    attention_with(crate::detect(), q, k, v, out, shape, lse)
}

/// [`attention`] with an explicit [`Isa`] (checked against the CPU).
pub fn attention_with<T: Element>(
    isa: Isa,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    shape: AttnShape,
    lse: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    attention_until(isa, q, k, v, out, shape, lse, &|| false)
}

/// [`attention_with`] that polls `expired` before every key block of every tile (BC = 256
/// keys × up to BR = 96 queries) and stops with [`KernelError::DeadlineExceeded`] once it
/// returns true (`out` and `lse` are then incomplete).
#[allow(clippy::too_many_arguments)]
pub fn attention_until<T: Element>(
    isa: Isa,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    shape: AttnShape,
    lse: Option<&mut [f32]>,
    expired: &dyn Fn() -> bool,
) -> Result<(), KernelError> {
    let o = prepare(isa, q, k, v, out, shape, lse)?;
    struct Run<'x, T> {
        q: &'x [T],
        k: &'x [T],
        v: &'x [T],
        sh: AttnShape,
        o: OutPtr,
        expired: &'x dyn Fn() -> bool,
    }
    impl<T: Element> AttnFn<Result<(), KernelError>> for Run<'_, T> {
        fn call<K: AttnKernel>(self) -> Result<(), KernelError> {
            let (sh, ex) = (&self.sh, self.expired);
            let mut ws = TileScratch::try_new::<K>(sh.dim)?;
            for head in 0..sh.heads {
                for qb in 0..q_blocks::<K>(sh.seq_q) {
                    // SAFETY: validated above; serial, so tiles cannot race; ISA checked.
                    unsafe {
                        tile::<K, T>(self.q, self.k, self.v, sh, head, qb, self.o, &mut ws, ex)?
                    };
                }
            }
            Ok(())
        }
    }
    with_attn_kernel(
        isa,
        Run {
            q,
            k,
            v,
            sh: shape,
            o,
            expired,
        },
    )
}
