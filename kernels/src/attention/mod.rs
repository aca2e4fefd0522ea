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

extern crate alloc;
use alloc::vec::Vec;

use crate::gemm::{AlignedBuf, Kernel, PortableF32};
use crate::mat::{Element, MatRef};
use crate::scratch::{check, try_vec};
use crate::{Isa, KernelError};
pub use shape::{attention_scratch_bytes, AttnShape, MAX_HEAD_DIM};

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

/// Computes one (head, query block) tile and writes its output rows (and LSE). `expired` is
/// polled before every key block (BC keys); when it returns true the tile stops with
/// `DeadlineExceeded`, its output rows unwritten.
///
/// # Safety
/// Inputs validated by [`AttnShape::validate`]; `o.out` valid for the whole output, `o.lse`
/// null or valid for the whole LSE; no other thread writes this tile's elements; the CPU
/// supports `K`'s ISA.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile<K: AttnKernel, T: Element>(
    q: &[T],
    k: &[T],
    v: &[T],
    sh: &AttnShape,
    head: usize,
    qb: usize,
    o: OutPtr,
    ws: &mut TileScratch,
    expired: &dyn Fn() -> bool,
) -> Result<(), KernelError> {
    let (h, g, d) = (sh.heads, sh.kv_heads, sh.dim);
    let (mr, nr) = (K::MR, K::NR);
    let (brm, bcm) = (br::<K>(), bc::<K>());
    let q0 = qb * brm;
    let br = brm.min(sh.seq_q - q0);
    let brp = br.div_ceil(nr) * nr;
    let qpanels = brp / nr;
    let kvh = head / (h / g);
    let c = core::f32::consts::LOG2_E / libm::sqrtf(d as f32);
    // f32 K and V are read in place by kernels that take a strided A; others are packed.
    let direct = K::STRIDED_A
        && T::DTYPE == crate::DType::F32
        && !FORCE_PACK.load(core::sync::atomic::Ordering::Relaxed);

    let qt = ws.qt.view::<f32>(brp * d);
    K::pack_b(
        &MatRef {
            data: &q[(q0 * h + head) * d..],
            rows: d,
            cols: br,
            rs: 1,
            cs: h * d,
        },
        qt,
    );
    let ot = ws.ot.view::<f32>(d * brp);
    ot.fill(0.0);
    let (m, l, alpha) = (&mut ws.m[..brp], &mut ws.l[..brp], &mut ws.alpha[..brp]);
    m.fill(f32::NEG_INFINITY);
    l.fill(0.0);

    let kend = sh.key_limit(q0 + br - 1);
    let first_limit = sh.key_limit(q0);
    let mut k0 = 0;
    while k0 < kend {
        check(expired)?;
        let bc = bcm.min(kend - k0);
        let bcp = bc.div_ceil(mr) * mr;
        let kblk = &k[(k0 * g + kvh) * d..];
        let s = ws.s.view::<f32>(bcp * brp);
        // Sᵀ = K·Qᵀ, written straight into NR-column panels (the packed-B layout of Pᵀ).
        if direct {
            // f32 K read in place: A(key, dd) = K[key·g·d + dd].
            let kf = kblk.as_ptr().cast::<f32>();
            for kp in 0..bcp / mr {
                let rows = mr.min(bc - kp * mr);
                for qp in 0..qpanels {
                    // SAFETY: T is f32; rows < `rows` of this key panel and d columns lie
                    // inside k (validated shape); qt holds qpanels panels of d steps; the
                    // destination MR×NR tile lies inside s. Rows ≥ `rows` are masked below.
                    unsafe {
                        let a = kf.add(kp * mr * g * d);
                        let b = qt[qp * nr * d..].as_ptr();
                        let cp = s[qp * bcp * nr + kp * mr * nr..].as_mut_ptr();
                        K::run_strided_a(d, a, g * d, 1, b, cp, nr, rows, nr, false);
                    }
                }
            }
        } else {
            let kt = ws.kt.view::<f32>(bcp * d);
            let kview = MatRef {
                data: kblk,
                rows: bc,
                cols: d,
                rs: g * d,
                cs: 1,
            };
            K::pack_a(&kview, kt);
            for kp in 0..bcp / mr {
                for qp in 0..qpanels {
                    // SAFETY: kt holds bcp/MR panels of d steps, qt holds qpanels panels of d
                    // steps; the destination MR×NR tile lies inside s (bcp·brp floats).
                    unsafe {
                        let a = kt[kp * mr * d..].as_ptr();
                        let b = qt[qp * nr * d..].as_ptr();
                        let cp = s[qp * bcp * nr + kp * mr * nr..].as_mut_ptr();
                        K::run(d, a, b, cp, nr, mr, nr, false);
                    }
                }
            }
        }
        // Masks: padded keys, and causal keys beyond some query's limit in this block.
        if bc < bcp || k0 + bcp > first_limit {
            for qp in 0..qpanels {
                for r in 0..bcp {
                    let key = k0 + r;
                    let row = &mut s[qp * bcp * nr + r * nr..][..nr];
                    for (jj, x) in row.iter_mut().enumerate() {
                        if key >= k0 + bc || key >= sh.key_limit(q0 + qp * nr + jj) {
                            *x = f32::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        for qp in 0..qpanels {
            for st in 0..nr / 16 {
                let j = qp * nr + st * 16;
                // SAFETY: the strip is bcp rows × 16 columns inside panel qp; m/l/alpha have
                // brp ≥ j + 16 entries.
                unsafe {
                    K::strip(
                        s[qp * bcp * nr + st * 16..].as_mut_ptr(),
                        bcp,
                        nr,
                        m[j..].as_mut_ptr(),
                        l[j..].as_mut_ptr(),
                        alpha[j..].as_mut_ptr(),
                        c,
                    );
                }
            }
        }
        for row in ot.chunks_exact_mut(brp) {
            for (x, a) in row.iter_mut().zip(alpha.iter()) {
                *x *= a;
            }
        }
        // Oᵀ += Vᵀ·Pᵀ.
        let dpanels = d.div_ceil(mr);
        let vblk = &v[(k0 * g + kvh) * d..];
        if direct {
            // f32 V read in place: A(dd, key) = V[key·g·d + dd].
            let vf = vblk.as_ptr().cast::<f32>();
            for dp in 0..dpanels {
                let rows = mr.min(d - dp * mr);
                for qp in 0..qpanels {
                    // SAFETY: T is f32; `rows` head dims × bc keys lie inside v; the Pᵀ
                    // panel has ≥ bc rows of NR; the Oᵀ tile is inside ot.
                    unsafe {
                        let b = s[qp * bcp * nr..].as_ptr();
                        let cp = ot[dp * mr * brp + qp * nr..].as_mut_ptr();
                        K::run_strided_a(bc, vf.add(dp * mr), 1, g * d, b, cp, brp, rows, nr, true);
                    }
                }
            }
        } else {
            let vt = ws.vt.view::<f32>(dpanels * mr * bc);
            let vview = MatRef {
                data: vblk,
                rows: d,
                cols: bc,
                rs: 1,
                cs: g * d,
            };
            K::pack_a(&vview, vt);
            for dp in 0..dpanels {
                let rows = mr.min(d - dp * mr);
                for qp in 0..qpanels {
                    // SAFETY: vt panel dp has bc steps of MR; the Pᵀ panel qp has ≥ bc rows
                    // of NR; the Oᵀ tile (rows × NR at row dp·MR, column qp·NR, stride brp)
                    // is inside ot.
                    unsafe {
                        let a = vt[dp * mr * bc..].as_ptr();
                        let b = s[qp * bcp * nr..].as_ptr();
                        let cp = ot[dp * mr * brp + qp * nr..].as_mut_ptr();
                        K::run(bc, a, b, cp, brp, rows, nr, true);
                    }
                }
            }
        }
        k0 += bc;
    }
    // out[q][head][:] = Oᵀ[:, q] / l[q];  lse = ln 2 · (m + log2 l).
    for j in 0..br {
        let qi = q0 + j;
        let inv = if l[j] > 0.0 { 1.0 / l[j] } else { 0.0 };
        // SAFETY: element (qi, head, 0..d) is inside out and written only by this tile.
        let orow = unsafe { core::slice::from_raw_parts_mut(o.out.add((qi * h + head) * d), d) };
        for (dd, x) in orow.iter_mut().enumerate() {
            *x = ot[dd * brp + j] * inv;
        }
        if !o.lse.is_null() {
            let val = if l[j] > 0.0 {
                core::f32::consts::LN_2 * (m[j] + libm::log2f(l[j]))
            } else {
                f32::NEG_INFINITY
            };
            // SAFETY: element (head, qi) is inside lse and written only by this tile.
            unsafe { *o.lse.add(head * sh.seq_q + qi) = val };
        }
    }
    Ok(())
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
