//! Multi-threaded drivers (std builds): rayon over independent row blocks of C and over
//! (head, query block) attention tiles, with one scratch per worker.

use rayon::prelude::*;

use crate::attention::{
    prepare, q_blocks, tile, with_attn_kernel, AttnFn, AttnKernel, AttnShape, OutPtr, TileScratch,
};
use crate::gemm::{validate, with_kernel, GemmScratch, Kernel, KernelFn};
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
            let rows = m.div_ceil(self.threads).div_ceil(K::MR) * K::MR;
            let ldc = self.ldc;
            let (a, b) = (self.a, self.b);
            self.c
                .par_chunks_mut(rows * ldc)
                .enumerate()
                .for_each(|(t, cblk)| {
                    let i0 = t * rows;
                    let mr = rows.min(m - i0);
                    let mut s = GemmScratch::new::<K>(mr, n, k);
                    crate::gemm::gemm_serial::<K, T>(&a.sub(i0, 0, mr, k), &b, cblk, ldc, &mut s);
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
