//! Multi-threaded drivers (std builds): the kernels' parallel split (`split.rs`) on the threads
//! of the current rayon pool. The guest runs the same split on its vCPUs (`pupa_guest::pool`).

use crate::attention::AttnShape;
use crate::mat::{Element, MatRef};
use crate::split::{attention_split_until, matmul_split_until, Workers};
use crate::{Isa, KernelError};

/// The threads of the current rayon pool (the global one, or the one `ThreadPool::install`
/// runs in).
pub struct Rayon;

impl Workers for Rayon {
    fn threads(&self) -> usize {
        rayon::current_num_threads()
    }
    fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        // `rayon::broadcast` runs the closure once on every thread of the current pool and
        // returns once all have (joining them: their writes are visible here).
        rayon::broadcast(|ctx| f(ctx.index()));
    }
}

/// [`crate::matmul_with`] split over the threads of the current rayon pool (run it inside
/// `ThreadPool::install` to choose the count). Rows of C are divided into blocks, four per
/// thread, taken from a shared queue.
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
    matmul_split_until(&Rayon, isa, a, b, c, ldc, expired)
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
    attention_split_until(&Rayon, isa, q, k, v, out, shape, lse, expired)
}
