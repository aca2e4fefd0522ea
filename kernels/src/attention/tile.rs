//! One (head, query block) tile of attention: for every key block, `Sᵀ = K·Qᵀ`, masks, the
//! online softmax strip by strip, and `Oᵀ += Vᵀ·Pᵀ`; then `O = Oᵀ / l` and the LSE.

use super::{bc, br, AttnKernel, AttnShape, OutPtr, TileScratch, FORCE_PACK};
use crate::gemm::AlignedBuf;
use crate::mat::{Element, MatRef};
use crate::scratch::check;
use crate::KernelError;

/// Where a tile sits: its KV head, its queries, their padding to NR, and whether K and V are
/// read in place.
#[derive(Clone, Copy)]
struct Geo {
    h: usize,
    g: usize,
    d: usize,
    head: usize,
    kvh: usize,
    /// First query and number of queries.
    q0: usize,
    br: usize,
    /// Queries padded to NR, and NR-column panels of them.
    brp: usize,
    qpanels: usize,
    /// f32 K and V read in place by a kernel that takes a strided A (others are packed).
    direct: bool,
}

/// A key block: first key, keys, keys padded to MR.
#[derive(Clone, Copy)]
struct KeyBlock {
    k0: usize,
    bc: usize,
    bcp: usize,
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
    let q0 = qb * br::<K>();
    let br = br::<K>().min(sh.seq_q - q0);
    let brp = br.div_ceil(K::NR) * K::NR;
    let geo = Geo {
        h,
        g,
        d,
        head,
        kvh: head / (h / g),
        q0,
        br,
        brp,
        qpanels: brp / K::NR,
        direct: K::STRIDED_A
            && T::DTYPE == crate::DType::F32
            && !FORCE_PACK.load(core::sync::atomic::Ordering::Relaxed),
    };
    let c = core::f32::consts::LOG2_E / libm::sqrtf(d as f32);
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
    let mut k0 = 0;
    while k0 < kend {
        check(expired)?;
        let bc = bc::<K>().min(kend - k0);
        let kb = KeyBlock {
            k0,
            bc,
            bcp: bc.div_ceil(K::MR) * K::MR,
        };
        let s = ws.s.view::<f32>(kb.bcp * brp);
        // SAFETY: validated shape (caller); the scratch was sized by `tile_lens` for K.
        unsafe { scores::<K, T>(k, &geo, kb, qt, s, &mut ws.kt) };
        mask::<K>(sh, &geo, kb, s);
        // SAFETY: as above.
        unsafe { softmax::<K>(&geo, kb, s, m, l, alpha, c) };
        for row in ot.chunks_exact_mut(brp) {
            for (x, a) in row.iter_mut().zip(alpha.iter()) {
                *x *= a;
            }
        }
        // SAFETY: as above.
        unsafe { accumulate_pv::<K, T>(v, &geo, kb, s, ot, &mut ws.vt) };
        k0 += bc;
    }
    // SAFETY: the caller's contract on `o`.
    unsafe { write_out(sh, &geo, ot, m, l, o) };
    Ok(())
}

/// `Sᵀ = K·Qᵀ` for one key block, written straight into NR-column panels (the packed-B layout
/// of `Pᵀ`): `s` holds qpanels panels of `bcp` rows × NR.
///
/// # Safety
/// As [`tile`]; `qt` holds qpanels packed panels of `d` steps; `kt` holds `bcp·d` floats.
#[inline(always)]
unsafe fn scores<K: AttnKernel, T: Element>(
    k: &[T],
    geo: &Geo,
    kb: KeyBlock,
    qt: &[f32],
    s: &mut [f32],
    kt: &mut AlignedBuf,
) {
    let (mr, nr, d, g) = (K::MR, K::NR, geo.d, geo.g);
    let kblk = &k[(kb.k0 * g + geo.kvh) * d..];
    if geo.direct {
        // f32 K read in place: A(key, dd) = K[key·g·d + dd].
        let kf = kblk.as_ptr().cast::<f32>();
        for kp in 0..kb.bcp / mr {
            let rows = mr.min(kb.bc - kp * mr);
            for qp in 0..geo.qpanels {
                // SAFETY: T is f32; rows < `rows` of this key panel and d columns lie inside k
                // (validated shape); qt holds qpanels panels of d steps; the destination MR×NR
                // tile lies inside s. Rows ≥ `rows` are masked afterwards.
                unsafe {
                    let a = kf.add(kp * mr * g * d);
                    let b = qt[qp * nr * d..].as_ptr();
                    let cp = s[qp * kb.bcp * nr + kp * mr * nr..].as_mut_ptr();
                    K::run_strided_a(d, a, g * d, 1, b, cp, nr, rows, nr, false);
                }
            }
        }
        return;
    }
    let kt = kt.view::<f32>(kb.bcp * d);
    let kview = MatRef {
        data: kblk,
        rows: kb.bc,
        cols: d,
        rs: g * d,
        cs: 1,
    };
    K::pack_a(&kview, kt);
    for kp in 0..kb.bcp / mr {
        for qp in 0..geo.qpanels {
            // SAFETY: kt holds bcp/MR panels of d steps, qt holds qpanels panels of d steps;
            // the destination MR×NR tile lies inside s (bcp·brp floats).
            unsafe {
                let a = kt[kp * mr * d..].as_ptr();
                let b = qt[qp * nr * d..].as_ptr();
                let cp = s[qp * kb.bcp * nr + kp * mr * nr..].as_mut_ptr();
                K::run(d, a, b, cp, nr, mr, nr, false);
            }
        }
    }
}

/// Masks the scores of padded keys, and of causal keys beyond some query's limit.
#[inline(always)]
fn mask<K: AttnKernel>(sh: &AttnShape, geo: &Geo, kb: KeyBlock, s: &mut [f32]) {
    let nr = K::NR;
    if kb.bc == kb.bcp && kb.k0 + kb.bcp <= sh.key_limit(geo.q0) {
        return;
    }
    for qp in 0..geo.qpanels {
        for r in 0..kb.bcp {
            let key = kb.k0 + r;
            let row = &mut s[qp * kb.bcp * nr + r * nr..][..nr];
            for (jj, x) in row.iter_mut().enumerate() {
                if key >= kb.k0 + kb.bc || key >= sh.key_limit(geo.q0 + qp * nr + jj) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// The online softmax over one key block, 16 queries at a time: scores become `Pᵀ`, `m` and
/// `l` are updated and `alpha` gets each query's rescaling factor for `Oᵀ`.
///
/// # Safety
/// As [`tile`]; `s` holds the block's qpanels panels; `m`, `l`, `alpha` have `brp` entries.
#[inline(always)]
unsafe fn softmax<K: AttnKernel>(
    geo: &Geo,
    kb: KeyBlock,
    s: &mut [f32],
    m: &mut [f32],
    l: &mut [f32],
    alpha: &mut [f32],
    c: f32,
) {
    let nr = K::NR;
    for qp in 0..geo.qpanels {
        for st in 0..nr / 16 {
            let j = qp * nr + st * 16;
            // SAFETY: the strip is bcp rows × 16 columns inside panel qp; m/l/alpha have
            // brp ≥ j + 16 entries.
            unsafe {
                K::strip(
                    s[qp * kb.bcp * nr + st * 16..].as_mut_ptr(),
                    kb.bcp,
                    nr,
                    m[j..].as_mut_ptr(),
                    l[j..].as_mut_ptr(),
                    alpha[j..].as_mut_ptr(),
                    c,
                );
            }
        }
    }
}

/// `Oᵀ += Vᵀ·Pᵀ` for one key block.
///
/// # Safety
/// As [`tile`]; `s` holds `Pᵀ` for the block; `ot` holds `d·brp` floats; `vt` holds
/// `⌈d⌉_MR·bc` floats.
#[inline(always)]
unsafe fn accumulate_pv<K: AttnKernel, T: Element>(
    v: &[T],
    geo: &Geo,
    kb: KeyBlock,
    s: &[f32],
    ot: &mut [f32],
    vt: &mut AlignedBuf,
) {
    let (mr, nr, d, g, brp) = (K::MR, K::NR, geo.d, geo.g, geo.brp);
    let dpanels = d.div_ceil(mr);
    let vblk = &v[(kb.k0 * g + geo.kvh) * d..];
    if geo.direct {
        // f32 V read in place: A(dd, key) = V[key·g·d + dd].
        let vf = vblk.as_ptr().cast::<f32>();
        for dp in 0..dpanels {
            let rows = mr.min(d - dp * mr);
            for qp in 0..geo.qpanels {
                // SAFETY: T is f32; `rows` head dims × bc keys lie inside v; the Pᵀ panel has
                // ≥ bc rows of NR; the Oᵀ tile is inside ot.
                unsafe {
                    let b = s[qp * kb.bcp * nr..].as_ptr();
                    let cp = ot[dp * mr * brp + qp * nr..].as_mut_ptr();
                    K::run_strided_a(kb.bc, vf.add(dp * mr), 1, g * d, b, cp, brp, rows, nr, true);
                }
            }
        }
        return;
    }
    let vt = vt.view::<f32>(dpanels * mr * kb.bc);
    let vview = MatRef {
        data: vblk,
        rows: d,
        cols: kb.bc,
        rs: 1,
        cs: g * d,
    };
    K::pack_a(&vview, vt);
    for dp in 0..dpanels {
        let rows = mr.min(d - dp * mr);
        for qp in 0..geo.qpanels {
            // SAFETY: vt panel dp has bc steps of MR; the Pᵀ panel qp has ≥ bc rows of NR;
            // the Oᵀ tile (rows × NR at row dp·MR, column qp·NR, stride brp) is inside ot.
            unsafe {
                let a = vt[dp * mr * kb.bc..].as_ptr();
                let b = s[qp * kb.bcp * nr..].as_ptr();
                let cp = ot[dp * mr * brp + qp * nr..].as_mut_ptr();
                K::run(kb.bc, a, b, cp, brp, rows, nr, true);
            }
        }
    }
}

/// `out[q][head][:] = Oᵀ[:, q] / l[q]`;  `lse = ln 2 · (m + log2 l)`.
///
/// # Safety
/// As [`tile`] for `o`.
unsafe fn write_out(sh: &AttnShape, geo: &Geo, ot: &[f32], m: &[f32], l: &[f32], o: OutPtr) {
    let (h, d, head, brp) = (geo.h, geo.d, geo.head, geo.brp);
    for j in 0..geo.br {
        let qi = geo.q0 + j;
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
}
