//! Multi-threaded drivers (std builds): rayon over independent row blocks of C (against B
//! packed once and shared) and over (head, query block) attention tiles, with one scratch per
//! worker.

use rayon::prelude::*;

use crate::attention::{
    prepare, q_blocks, tile, with_attn_kernel, AttnFn, AttnKernel, AttnShape, OutPtr, TileScratch,
};
use crate::gemm::{
    a_scratch, b_blocks, macro_kernel, validate, with_kernel, AlignedBuf, Kernel, KernelFn,
};
use crate::mat::{Element, MatRef};
use crate::{Isa, KernelError};

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
    crate::isa::check(isa)?;
    let (m, k, n) = validate(&a, &b, c, ldc)?;
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 || m < 2 * 8 || k == 0 || n == 0 {
        return crate::matmul_with(isa, a, b, c, ldc);
    }
    struct Run<'x, 'y, T> {
        a: MatRef<'y, T>,
        b: MatRef<'y, T>,
        c: &'x mut [f32],
        ldc: usize,
        threads: usize,
    }
    impl<T: Element> KernelFn<()> for Run<'_, '_, T> {
        fn call<K: Kernel>(self) {
            let (m, n, k) = (self.a.rows(), self.b.cols(), self.a.cols());
            let (a, b, ldc) = (self.a, self.b, self.ldc);
            // B is packed once, all blocks in parallel, and shared read-only by every thread
            // (each thread repacking all of B would cost each of them the whole packing time).
            let blocks: Vec<_> = b_blocks::<K>(k, n).collect();
            let mut offsets = Vec::with_capacity(blocks.len() + 1);
            offsets.push(0);
            for blk in &blocks {
                offsets.push(offsets.last().unwrap() + blk.len::<K>());
            }
            let mut packed = AlignedBuf::new(*offsets.last().unwrap());
            let all = packed.view::<K::P>(*offsets.last().unwrap());
            let mut parts = Vec::with_capacity(blocks.len());
            let mut rest = all;
            for blk in &blocks {
                let (head, tail) = rest.split_at_mut(blk.len::<K>());
                parts.push((blk, head));
                rest = tail;
            }
            parts
                .par_iter_mut()
                .for_each(|(blk, dst)| K::pack_b(&b.sub(blk.pc, blk.jc, blk.kc, blk.nc), dst));
            let packed: Vec<(_, &[K::P])> = parts.into_iter().map(|(b, d)| (b, &*d)).collect();
            let rows = m.div_ceil(self.threads).div_ceil(K::MR) * K::MR;
            self.c
                .par_chunks_mut(rows * ldc)
                .enumerate()
                .for_each(|(t, cblk)| {
                    let i0 = t * rows;
                    let mr = rows.min(m - i0);
                    let asub = a.sub(i0, 0, mr, k);
                    let mut ascratch = a_scratch::<K>(mr, k);
                    for (blk, bpack) in &packed {
                        // SAFETY: `cblk` holds rows i0..i0+mr of C at stride ldc (the last
                        // chunk may be shorter than rows·ldc but holds (mr-1)·ldc + n, checked
                        // by `validate`); `bpack` is `blk` packed by K::pack_b above.
                        unsafe {
                            macro_kernel::<K, T>(
                                &asub,
                                blk,
                                bpack,
                                cblk.as_mut_ptr(),
                                ldc,
                                &mut ascratch,
                            )
                        };
                    }
                });
        }
    }
    with_kernel::<T, ()>(
        isa,
        Run {
            a,
            b,
            c,
            ldc,
            threads,
        },
    );
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
    let o = prepare(isa, q, k, v, out, shape, lse)?;
    struct Run<'x, T> {
        q: &'x [T],
        k: &'x [T],
        v: &'x [T],
        sh: AttnShape,
        o: OutPtr,
    }
    impl<T: Element> AttnFn<()> for Run<'_, T> {
        fn call<K: AttnKernel>(self) {
            let nqb = q_blocks::<K>(self.sh.seq_q);
            let (q, k, v, sh, o) = (self.q, self.k, self.v, self.sh, self.o);
            (0..self.sh.heads * nqb).into_par_iter().for_each_init(
                || TileScratch::new::<K>(sh.dim),
                |ws, item| {
                    let (head, qb) = (item / nqb, item % nqb);
                    // SAFETY: validated above; each (head, qb) tile writes only its own
                    // output rows and LSE entries; ISA checked.
                    unsafe { tile::<K, T>(q, k, v, &sh, head, qb, o, ws) };
                },
            );
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
        },
    );
    Ok(())
}
