//! The kernels' limits: deadlines stop every driver (serial and parallel) with
//! `DeadlineExceeded`, a check that never expires changes nothing, head dims above
//! `MAX_HEAD_DIM` are refused, and the scratch bounds cover what the drivers allocate.

use std::cell::Cell;

use pupa_kernels::{
    attention_scratch_bytes, attention_until, attention_with, detect, matmul_scratch_bytes,
    matmul_until, matmul_with, AttnShape, KernelError, MatRef, MAX_HEAD_DIM,
};

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) as f32 / 65536.0 - 0.5
        })
        .collect()
}

/// An `expired` check that returns true from its `n+1`-th call on, and counts calls.
fn after(n: usize, calls: &Cell<usize>) -> impl Fn() -> bool + '_ {
    move || {
        calls.set(calls.get() + 1);
        calls.get() > n
    }
}

fn attn_shape(seq_q: usize, seq_k: usize, dim: usize) -> AttnShape {
    AttnShape {
        seq_q,
        seq_k,
        heads: 2,
        kv_heads: 1,
        dim,
        causal: false,
    }
}

#[test]
fn gemm_deadline_stops_the_serial_driver() {
    let (m, n, k) = (64, 2000, 1000); // 4 N blocks × 3 K blocks = 12 checks
    let (a, b) = (data(m * k, 1), data(k * n, 2));
    let (av, bv) = (
        MatRef::row_major(&a, m, k).unwrap(),
        MatRef::row_major(&b, k, n).unwrap(),
    );
    let mut want = vec![0.0; m * n];
    matmul_with(detect(), av, bv, &mut want, n).unwrap();
    let calls = Cell::new(0);
    let mut c = vec![0.0; m * n];
    assert_eq!(
        matmul_until(detect(), av, bv, &mut c, n, &after(5, &calls)),
        Err(KernelError::DeadlineExceeded)
    );
    assert_eq!(calls.get(), 6, "stops at the first expired check");
    let calls = Cell::new(0);
    matmul_until(detect(), av, bv, &mut c, n, &after(usize::MAX, &calls)).unwrap();
    assert_eq!(c, want, "a deadline that never expires changes nothing");
    assert_eq!(calls.get(), 12, "one check per B block");
    // Within a B block, a check every 240 rows of A: 5 row slices × 2 N blocks.
    let (m, n, k) = (1000, 600, 100);
    let (a, b) = (data(m * k, 11), data(k * n, 12));
    let (av, bv) = (
        MatRef::row_major(&a, m, k).unwrap(),
        MatRef::row_major(&b, k, n).unwrap(),
    );
    let mut c = vec![0.0; m * n];
    let calls = Cell::new(0);
    matmul_until(detect(), av, bv, &mut c, n, &after(usize::MAX, &calls)).unwrap();
    assert_eq!(calls.get(), 10);
    let mut want = vec![0.0; m * n];
    matmul_with(detect(), av, bv, &mut want, n).unwrap();
    assert_eq!(c, want);
}

#[test]
fn attention_deadline_stops_the_serial_driver() {
    let sh = attn_shape(100, 3000, 64);
    let q = data(sh.seq_q * sh.heads * sh.dim, 3);
    let kv = data(sh.seq_k * sh.kv_heads * sh.dim, 4);
    let mut want = vec![0.0; q.len()];
    attention_with(detect(), &q, &kv, &kv, &mut want, sh, None).unwrap();
    let calls = Cell::new(0);
    let mut o = vec![0.0; q.len()];
    assert_eq!(
        attention_until(detect(), &q, &kv, &kv, &mut o, sh, None, &after(7, &calls)),
        Err(KernelError::DeadlineExceeded)
    );
    assert_eq!(calls.get(), 8);
    let calls = Cell::new(0);
    attention_until(
        detect(),
        &q,
        &kv,
        &kv,
        &mut o,
        sh,
        None,
        &after(usize::MAX, &calls),
    )
    .unwrap();
    assert_eq!(o, want);
    assert!(
        calls.get() >= 2 * 2 * 3000 / 256,
        "a check per key block of every tile"
    );
}

#[cfg(feature = "std")]
#[test]
fn deadline_stops_the_parallel_drivers() {
    use pupa_kernels::{attention_parallel_until, matmul_parallel_until};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    fn sync_after(n: usize, calls: &AtomicUsize) -> impl Fn() -> bool + Sync + '_ {
        move || calls.fetch_add(1, Ordering::Relaxed) >= n
    }
    pool.install(|| {
        let (m, n, k) = (512, 1200, 800);
        let (a, b) = (data(m * k, 5), data(k * n, 6));
        let (av, bv) = (
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
        );
        let mut c = vec![0.0; m * n];
        let calls = AtomicUsize::new(0);
        let r = matmul_parallel_until(detect(), av, bv, &mut c, n, &sync_after(3, &calls));
        assert_eq!(r, Err(KernelError::DeadlineExceeded));
        let mut want = vec![0.0; m * n];
        matmul_with(detect(), av, bv, &mut want, n).unwrap();
        matmul_parallel_until(detect(), av, bv, &mut c, n, &|| false).unwrap();
        assert_eq!(c, want);

        let sh = attn_shape(300, 2000, 32);
        let q = data(sh.seq_q * sh.heads * sh.dim, 7);
        let kv = data(sh.seq_k * sh.kv_heads * sh.dim, 8);
        let mut o = vec![0.0; q.len()];
        let calls = AtomicUsize::new(0);
        let r = attention_parallel_until(
            detect(),
            &q,
            &kv,
            &kv,
            &mut o,
            sh,
            None,
            &sync_after(3, &calls),
        );
        assert_eq!(r, Err(KernelError::DeadlineExceeded));
        let mut want = vec![0.0; q.len()];
        attention_with(detect(), &q, &kv, &kv, &mut want, sh, None).unwrap();
        attention_parallel_until(detect(), &q, &kv, &kv, &mut o, sh, None, &|| false).unwrap();
        assert_eq!(o, want);
    });
}

#[test]
fn head_dims_above_the_limit_are_refused() {
    for dim in [MAX_HEAD_DIM + 1, 200_000] {
        let sh = attn_shape(1, 1, dim);
        let (q, kv) = (vec![0.0f32; 2 * dim], vec![0.0f32; dim]);
        let mut o = vec![0.0; 2 * dim];
        assert!(matches!(
            attention_with(detect(), &q, &kv, &kv, &mut o, sh, None),
            Err(KernelError::BadAttentionShape(_))
        ));
    }
    let sh = attn_shape(1, 1, MAX_HEAD_DIM);
    let (q, kv) = (data(2 * MAX_HEAD_DIM, 9), data(MAX_HEAD_DIM, 10));
    let mut o = vec![0.0; 2 * MAX_HEAD_DIM];
    attention_with(detect(), &q, &kv, &kv, &mut o, sh, None).unwrap();
}

#[test]
fn scratch_bounds_are_capped_by_the_blocking() {
    // GEMM scratch grows with small shapes and stops growing at the block sizes.
    assert!(matmul_scratch_bytes(1, 1, 1) <= 64 * 1024);
    let big = matmul_scratch_bytes(1 << 20, 1 << 20, 1 << 20);
    assert_eq!(big, matmul_scratch_bytes(1 << 30, 1 << 30, 1 << 30));
    assert!(big < 16 << 20, "{big}");
    // Attention scratch is O(tile), at most about 1 MiB at the largest head dim.
    let top = attention_scratch_bytes(MAX_HEAD_DIM);
    assert!(attention_scratch_bytes(1) < top && top < 2 << 20, "{top}");
}
