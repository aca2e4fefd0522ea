//! The parallel split of the kernels (`no_std`): independent row blocks of C against B packed
//! once and shared, and (head, query block) attention tiles, handed out from one atomic queue
//! to the threads of a [`Workers`] pool. The host's rayon driver (`parallel.rs`, std) and the
//! guest's vCPU pool (`pupa_guest::pool`) both run this split, so their results are the same,
//! bit for bit, as the serial drivers': every task computes its own output elements exactly as
//! the serial code does, whichever thread takes it.
//!
//! The `*_until` deadline is polled by every thread once per block; once one thread sees it
//! expire, all of them stop at their next block.

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::attention::{
    prepare, q_blocks, tile, with_attn_kernel, AttnFn, AttnKernel, AttnShape, OutPtr, TileScratch,
};
use crate::gemm::{
    a_scratch, k_blocks, strided_a, tiles_until, validate, with_kernel, AOperand, AlignedBuf,
    KBlock, Kernel, KernelFn, MC, NC,
};
use crate::mat::{Element, MatRef};
use crate::{Isa, KernelError};

/// A set of threads that the split runs on.
pub trait Workers: Sync {
    /// How many threads [`Workers::broadcast`] runs `f` on (at least 1).
    fn threads(&self) -> usize;
    /// Calls `f(i)` once for each `i` in `0..threads()`, concurrently where it can, and returns
    /// once every call has returned, with their writes visible to the caller (the calls
    /// happen-before the return). `f` must not wait for another call of `f`: an implementation
    /// may run the calls one after another (it does when it is already busy).
    fn broadcast(&self, f: &(dyn Fn(usize) + Sync));
    /// Whether the call `f(thread)` in flight should stop taking work and return early. The
    /// split asks between tasks (never inside one), so a call that returns early leaves only
    /// whole tasks behind, in the shared queue, for the other calls. A pool that answers
    /// true for a thread must call `f(thread)` again (on any thread) before `broadcast`
    /// returns: the guest's pool lets its network CPU help a job in time slices this way.
    /// Default: never.
    fn should_leave(&self, thread: usize) -> bool {
        let _ = thread;
        false
    }
}

/// One thread: the split runs serially on the caller.
pub struct Serial;

impl Workers for Serial {
    fn threads(&self) -> usize {
        1
    }
    fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        f(0)
    }
}

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

/// The first error any task returned (the others are dropped).
struct FirstError {
    set: AtomicBool,
    val: UnsafeCell<Option<KernelError>>,
}

// SAFETY: `val` is written only by the one thread that flipped `set` from false to true, and
// read only by `take`, which takes `self` after the broadcast (whose calls happen-before its
// return, by the `Workers` contract).
unsafe impl Sync for FirstError {}

impl FirstError {
    fn new() -> Self {
        FirstError {
            set: AtomicBool::new(false),
            val: UnsafeCell::new(None),
        }
    }
    fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }
    fn set(&self, e: KernelError) {
        if !self.set.swap(true, Ordering::AcqRel) {
            // SAFETY: only the thread that flipped `set` gets here, once; see the Sync impl.
            unsafe { *self.val.get() = Some(e) };
        }
    }
    fn take(self) -> Result<(), KernelError> {
        self.val.into_inner().map_or(Ok(()), Err)
    }
}

/// Values handed out by index, each index at most once (by the task queue).
struct Slots<T>(Vec<UnsafeCell<Option<T>>>);

// SAFETY: each slot is taken by exactly one thread (`take` is called with indices from the
// queue's `fetch_add`, each index once), and T: Send moves it there.
unsafe impl<T: Send> Sync for Slots<T> {}

impl<T> Slots<T> {
    fn new(items: impl Iterator<Item = T>) -> Self {
        Slots(items.map(|t| UnsafeCell::new(Some(t))).collect())
    }
    /// # Safety
    /// No other call with the same `i` may ever happen.
    unsafe fn take(&self, i: usize) -> Option<T> {
        // SAFETY: the caller guarantees this thread is the only one touching slot `i`.
        self.0.get(i).and_then(|c| unsafe { (*c.get()).take() })
    }
}

/// Runs `task(scratch, i)` for every `i` in `0..n` on `w`'s threads: an atomic queue hands out
/// the indices (a thread slowed by the machine does not leave the others idle at the end);
/// each thread that takes a task first makes its scratch with `init`. Stops at the first error
/// and returns it.
fn for_each_task<S>(
    w: &dyn Workers,
    n: usize,
    init: &(dyn Fn() -> Result<S, KernelError> + Sync),
    task: &(dyn Fn(&mut S, usize) -> Result<(), KernelError> + Sync),
) -> Result<(), KernelError> {
    let next = AtomicUsize::new(0);
    let err = FirstError::new();
    w.broadcast(&|thread| {
        let mut i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n || err.is_set() {
            return;
        }
        let mut s = match init() {
            Ok(s) => s,
            Err(e) => return err.set(e),
        };
        while i < n && !err.is_set() {
            if let Err(e) = task(&mut s, i) {
                return err.set(e);
            }
            if w.should_leave(thread) {
                return; // the queue keeps the rest; a later call of f(thread) resumes it
            }
            i = next.fetch_add(1, Ordering::Relaxed);
        }
    });
    err.take()
}

/// [`crate::matmul_until`] split over `w`'s threads: rows of C in blocks of at least 64 rows,
/// four per thread, against B packed once (in parallel) and shared read-only.
pub fn matmul_split_until<T: Element>(
    w: &dyn Workers,
    isa: Isa,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [f32],
    ldc: usize,
    expired: &(dyn Fn() -> bool + Sync),
) -> Result<(), KernelError> {
    crate::isa::check(isa)?;
    let (m, k, n) = validate(&a, &b, c, ldc)?;
    let threads = w.threads().max(1);
    if threads == 1 || m < 2 * 8 || k == 0 || n == 0 {
        return crate::matmul_until(isa, a, b, c, ldc, expired);
    }
    struct Run<'x, 'y, T> {
        w: &'x dyn Workers,
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
            let parts = pack_b_all::<K, T>(self.w, &b, &kbs, njb, &mut packed, stop)?;
            let shared = Shared {
                a,
                kbs: &kbs,
                parts: &parts,
                njb,
                n,
                ldc,
                stop,
            };
            // Four row chunks per thread (at least 64 rows each), taken from the queue.
            let rows = m.div_ceil(self.threads * 4).max(64).div_ceil(K::MR) * K::MR;
            let chunks = m.div_ceil(rows);
            let cblks = Slots::new(self.c.chunks_mut(rows * ldc).take(chunks));
            for_each_task(self.w, chunks, &|| Ok(()), &|_, t| {
                // SAFETY: the queue hands out each chunk index once. (There are exactly
                // `chunks` slots: `None` cannot happen; it is not unwrapped all the same.)
                let cblk = unsafe { cblks.take(t) }.ok_or(KernelError::DeadlineExceeded)?;
                row_chunk::<K, T>(&shared, t * rows, rows.min(m - t * rows), cblk)
            })
        }
    }
    let stop = Stop {
        expired,
        hit: AtomicBool::new(false),
    };
    let run = Run {
        w,
        a,
        b,
        c,
        ldc,
        threads,
        stop,
    };
    with_kernel::<T, _>(isa, run)
}

/// Packs all of B, every (K block, N block) in parallel, into `packed` (reallocated to fit) and
/// returns the blocks, K-block-major. B is packed once and shared read-only by every thread:
/// each thread repacking all of B would cost each of them the whole packing time.
fn pack_b_all<'p, K: Kernel, T: Element>(
    w: &dyn Workers,
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
    let ptrs: Vec<(*const K::P, usize)> = parts.iter().map(|d| (d.as_ptr(), d.len())).collect();
    let slots = Slots::new(parts.into_iter());
    for_each_task(w, sizes.len(), &|| Ok(()), &|_, i| {
        stop.check()?;
        // SAFETY: the queue hands out each block index once.
        let dst = unsafe { slots.take(i) }.ok_or(KernelError::DeadlineExceeded)?;
        let (kb, jc) = (kbs[i / njb], (i % njb) * NC);
        K::pack_b(&b.sub(kb.pc, jc, kb.kc, NC.min(n - jc)), dst);
        Ok(())
    })?;
    // SAFETY: each (pointer, length) is one of the disjoint blocks of `packed` split above,
    // which `packed` (borrowed for 'p) keeps alive; their `&mut` borrows ended with the tasks.
    Ok(ptrs
        .into_iter()
        .map(|(p, l)| unsafe { core::slice::from_raw_parts(p, l) })
        .collect())
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

/// [`crate::attention_until`] split over `w`'s threads: (head, query block) tiles are
/// independent and write disjoint output rows; each thread has its own tile scratch.
#[allow(clippy::too_many_arguments)]
pub fn attention_split_until<T: Element>(
    w: &dyn Workers,
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
        w: &'x dyn Workers,
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
            let init = || TileScratch::try_new::<K>(sh.dim);
            let heads = sh.heads;
            for_each_task(self.w, heads * nqb, &init, &|ws, item| {
                // Query blocks last to first (every head's, then the previous block): under
                // a causal mask a later block attends to more keys, and handing out the
                // longest tiles first leaves the shortest for the end, so no thread finishes
                // long after the others (longest-first scheduling). Each tile writes its own
                // rows, so the order changes no result.
                let (head, qb) = (item % heads, nqb - 1 - item / heads);
                // SAFETY: validated by `prepare`; each (head, qb) tile writes only its own
                // output rows and LSE entries, and the queue hands out each tile once; ISA
                // checked.
                unsafe { tile::<K, T>(q, k, v, &sh, head, qb, o, ws, &expired) }
            })
        }
    }
    let stop = Stop {
        expired,
        hit: AtomicBool::new(false),
    };
    let run = Run {
        w,
        q,
        k,
        v,
        sh: shape,
        o,
        stop,
    };
    with_attn_kernel(isa, run)
}
