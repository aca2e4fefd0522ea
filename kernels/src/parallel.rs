//! Multi-threaded drivers (std builds): rayon over independent row blocks of C (against B
//! packed once and shared) and over (head, query block) attention tiles, with one scratch per
//! worker. The `*_until` variants poll a shared deadline once per block on every thread; once
//! one thread sees it expire, all of them stop.

use core::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::attention::{
    prepare, q_blocks, tile, with_attn_kernel, AttnFn, AttnKernel, AttnShape, OutPtr, TileScratch,
};
use crate::gemm::{
    a_scratch, k_blocks, strided_a, tiles_until, validate, with_kernel, AOperand, AlignedBuf,
    KBlock, Kernel, KernelFn, MC, NC,
};
use crate::mat::{Element, MatRef};
use crate::{Isa, KernelError};

/// A deadline shared by the threads of one call: the caller's check, and whether any thread
/// has already seen it expire (so the others stop at their next block without asking again).
struct Stop<'a> {
    expired: &'a (dyn Fn() -> bool + Sync),
    hit: AtomicBool,
}

impl Stop<'_> {
    fn expired(&self) -> bool {
        if self.hit.load(Ordering::Relaxed) || (self.expired)() {
            self.hit.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
    fn check(&self) -> Result<(), KernelError> {
        crate::scratch::check(&|| self.expired())
    }
}

/// [`crate::matmul_with`] split over the threads of the current rayon pool (run it inside
/// `ThreadPool::install` to choose the count). Rows of C are divided into one contiguous
/// block per thread.
pub fn matmul_parallel<T: Element>(
    isa: Isa,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), KernelError> {
    matmul_parallel_until(isa, a, b, c, ldc, &|| false)
}

/// [`matmul_parallel`] with a deadline, as [`crate::matmul_until`]: every thread polls
/// `expired` before each block of B it packs and each 240 rows of A it multiplies with one.
pub fn matmul_parallel_until<T: Element>(
    isa: Isa,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
    expired: &(dyn Fn() -> bool + Sync),
) -> Result<(), KernelError> {
    crate::isa::check(isa)?;
    let (m, k, n) = validate(&a, &b, c, ldc)?;
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 || m < 2 * 8 || k == 0 || n == 0 {
        return crate::matmul_until(isa, a, b, c, ldc, expired);
    }
    struct Run<'x, 'y, T> {
        a: MatRef<'y, T>,
        b: MatRef<'y, T>,
        c: &'x mut [f32],
        ldc: usize,
        threads: usize,
        stop: Stop<'x>,
    }
    impl<T: Element> KernelFn<Result<(), KernelError>> for Run<'_, '_, T> {
        fn call<K: Kernel>(self) -> Result<(), KernelError> {
            let (m, n, k) = (self.a.rows(), self.b.cols(), self.a.cols());
            let (a, b, ldc, stop) = (self.a, self.b, self.ldc, &self.stop);
            let kbs: Vec<_> = k_blocks::<K>(k).collect();
            let njb = n.div_ceil(NC);
            let mut packed = AlignedBuf::try_new(0)?;
            let parts = pack_b_all::<K, T>(&b, &kbs, njb, &mut packed, stop)?;
            let shared = Shared {
                a,
                kbs: &kbs,
                parts: &parts,
                njb,
                n,
                ldc,
                stop,
            };
            // Four row chunks per thread (at least 64 rows each): rayon balances them, so a
            // thread slowed by the machine does not leave the others idle at the end.
            let rows = m.div_ceil(self.threads * 4).max(64).div_ceil(K::MR) * K::MR;
            self.c
                .par_chunks_mut(rows * ldc)
                .enumerate()
                .try_for_each(|(t, cblk)| {
                    row_chunk::<K, T>(&shared, t * rows, rows.min(m - t * rows), cblk)
                })
        }
    }
    let stop = Stop {
        expired,
        hit: AtomicBool::new(false),
    };
    with_kernel::<T, _>(
        isa,
        Run {
            a,
            b,
            c,
            ldc,
            threads,
            stop,
        },
    )
}

/// Packs all of B, every (K block, N block) in parallel, into `packed` (reallocated to fit) and
/// returns the blocks, K-block-major. B is packed once and shared read-only by every thread:
/// each thread repacking all of B would cost each of them the whole packing time.
fn pack_b_all<'p, K: Kernel, T: Element>(
    b: &MatRef<'_, T>,
    kbs: &[KBlock],
    njb: usize,
    packed: &'p mut AlignedBuf,
    stop: &Stop<'_>,
) -> Result<Vec<&'p [K::P]>, KernelError> {
    let n = b.cols();
    let blk_len = |kp: usize, jc: usize| NC.min(n - jc).div_ceil(K::NR) * K::NR * kp;
    let sizes: Vec<usize> = kbs
        .iter()
        .flat_map(|kb| (0..njb).map(move |jb| blk_len(kb.kp, jb * NC)))
        .collect();
    let total: usize = sizes.iter().sum();
    *packed = AlignedBuf::try_new(total)?;
    let mut parts: Vec<&mut [K::P]> = Vec::with_capacity(sizes.len());
    let mut rest = packed.view::<K::P>(total);
    for &len in &sizes {
        let (head, tail) = rest.split_at_mut(len);
        parts.push(head);
        rest = tail;
    }
    parts.par_iter_mut().enumerate().try_for_each(|(i, dst)| {
        stop.check()?;
        let (kb, jc) = (kbs[i / njb], (i % njb) * NC);
        K::pack_b(&b.sub(kb.pc, jc, kb.kc, NC.min(n - jc)), dst);
        Ok::<(), KernelError>(())
    })?;
    Ok(parts.into_iter().map(|d| &*d).collect())
}

/// What every row chunk of the parallel GEMM reads.
struct Shared<'a, P, T> {
    a: MatRef<'a, T>,
    kbs: &'a [KBlock],
    /// B packed per (K block, N block), K-block-major.
    parts: &'a [&'a [P]],
    njb: usize,
    n: usize,
    ldc: usize,
    stop: &'a Stop<'a>,
}

/// Rows `i0..i0+mr` of C, held in `cblk` (row stride `ldc`), against all of the packed B.
fn row_chunk<K: Kernel, T: Element>(
    sh: &Shared<'_, K::P, T>,
    i0: usize,
    mr: usize,
    cblk: &mut [f32],
) -> Result<(), KernelError> {
    let (a, n, ldc, njb) = (&sh.a, sh.n, sh.ldc, sh.njb);
    let mut ascratch = a_scratch::<K>(mr, a.cols())?;
    for ic in (0..mr).step_by(MC) {
        let mc = MC.min(mr - ic);
        for (ki, kb) in sh.kbs.iter().enumerate() {
            let asub = a.sub(i0 + ic, kb.pc, mc, kb.kc);
            let a_op = match strided_a::<K, T>(&asub) {
                Some(p) => AOperand::InPlace(p, a.rs),
                None => {
                    let apack = ascratch.view::<K::P>(mc.div_ceil(K::MR) * K::MR * kb.kp);
                    K::pack_a(&asub, apack);
                    AOperand::Packed(&*apack)
                }
            };
            let expired = || sh.stop.expired();
            for jb in 0..njb {
                let jc = jb * NC;
                // SAFETY: `cblk` holds rows i0..i0+mr of C at stride ldc (the last chunk may
                // be shorter than rows·ldc but holds (mr-1)·ldc + n, checked by `validate`);
                // the blocks were packed by `pack_b_all` with kb.kp steps.
                unsafe {
                    tiles_until::<K>(
                        a_op,
                        mc,
                        sh.parts[ki * njb + jb],
                        NC.min(n - jc),
                        kb.kp,
                        cblk.as_mut_ptr().add(ic * ldc + jc),
                        ldc,
                        kb.pc > 0,
                        &expired,
                    )?
                };
            }
        }
    }
    Ok(())
}

/// [`crate::attention_with`] over the threads of the current rayon pool: (head, query block)
/// tiles are independent and write disjoint output rows.
pub fn attention_parallel<T: Element>(
    isa: Isa,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    shape: AttnShape,
    lse: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    attention_parallel_until(isa, q, k, v, out, shape, lse, &|| false)
}

/// [`attention_parallel`] with a deadline, as [`crate::attention_until`]: every tile polls
/// `expired` before each key block.
#[allow(clippy::too_many_arguments)]
pub fn attention_parallel_until<T: Element>(
    isa: Isa,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    shape: AttnShape,
    lse: Option<&mut [f32]>,
    expired: &(dyn Fn() -> bool + Sync),
) -> Result<(), KernelError> {
    let o = prepare(isa, q, k, v, out, shape, lse)?;
    struct Run<'x, T> {
        q: &'x [T],
        k: &'x [T],
        v: &'x [T],
        sh: AttnShape,
        o: OutPtr,
        stop: Stop<'x>,
    }
    impl<T: Element> AttnFn<Result<(), KernelError>> for Run<'_, T> {
        fn call<K: AttnKernel>(self) -> Result<(), KernelError> {
            let nqb = q_blocks::<K>(self.sh.seq_q);
            let (q, k, v, sh, o, stop) = (self.q, self.k, self.v, self.sh, self.o, &self.stop);
            let expired = || stop.expired();
            (0..self.sh.heads * nqb).into_par_iter().try_for_each_init(
                || TileScratch::try_new::<K>(sh.dim),
                |ws, item| {
                    let ws = ws.as_mut().map_err(|e| e.clone())?;
                    let (head, qb) = (item / nqb, item % nqb);
                    // SAFETY: validated above; each (head, qb) tile writes only its own
                    // output rows and LSE entries; ISA checked.
                    unsafe { tile::<K, T>(q, k, v, &sh, head, qb, o, ws, &expired) }
                },
            )
        }
    }
    let stop = Stop {
        expired,
        hit: AtomicBool::new(false),
    };
    with_attn_kernel(
        isa,
        Run {
            q,
            k,
            v,
            sh: shape,
            o,
            stop,
        },
    )
}
