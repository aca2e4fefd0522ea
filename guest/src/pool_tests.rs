//! Host tests of the vCPU pool: std threads play the APs (registering and polling as
//! `ap_main` does, but with a stop flag so that the test ends).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::{self, ThreadId};

use pupa_kernels::{
    attention_split_until, attention_until, detect, matmul_split_until, matmul_until, AttnShape,
    MatRef, Workers,
};

use super::{Ap, Pool};

/// Runs `body` with `aps` threads serving `pool` as APs (all online before `body` starts).
fn with_aps(pool: &Pool, aps: usize, body: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..aps {
            s.spawn(|| {
                let mut ap = pool.register();
                while !stop.load(Ordering::Acquire) {
                    if !ap.poll() {
                        thread::yield_now();
                    }
                }
            });
        }
        while pool.online() < aps {
            thread::yield_now();
        }
        body();
        stop.store(true, Ordering::Release);
    });
}

#[test]
fn without_aps_the_caller_is_the_only_thread() {
    let pool = Pool::new();
    assert_eq!(pool.threads(), 1);
    let calls = Mutex::new(Vec::new());
    pool.broadcast(&|i| calls.lock().unwrap().push(i));
    assert_eq!(*calls.lock().unwrap(), [0]);
}

#[test]
fn every_index_runs_exactly_once_per_broadcast_and_its_writes_are_visible() {
    let pool = Pool::new();
    pool.set_expected(4);
    with_aps(&pool, 3, || {
        assert_eq!((pool.threads(), pool.online(), pool.expected()), (4, 3, 4));
        let counts: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        let out: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        for round in 1..=500u64 {
            pool.broadcast(&|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
                // Relaxed: the broadcast's return is what makes it visible.
                out[i].store(round * 10 + i as u64, Ordering::Relaxed);
            });
            for i in 0..4 {
                assert_eq!(counts[i].load(Ordering::Relaxed), round as usize);
                assert_eq!(out[i].load(Ordering::Relaxed), round * 10 + i as u64);
            }
        }
    });
}

#[test]
fn the_calls_run_on_the_aps_threads() {
    let pool = Pool::new();
    with_aps(&pool, 2, || {
        let ids: Mutex<Vec<(usize, ThreadId)>> = Mutex::new(Vec::new());
        pool.broadcast(&|i| ids.lock().unwrap().push((i, thread::current().id())));
        let mut ids = ids.into_inner().unwrap();
        ids.sort_by_key(|&(i, _)| i);
        assert_eq!(ids.iter().map(|&(i, _)| i).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(ids[0].1, thread::current().id(), "f(0) runs on the caller");
        assert_ne!(ids[1].1, ids[0].1);
        assert_ne!(ids[2].1, ids[0].1);
        assert_ne!(ids[1].1, ids[2].1);
    });
}

#[test]
fn a_nested_broadcast_runs_serially_on_its_caller() {
    let pool = Pool::new();
    with_aps(&pool, 2, || {
        let inner: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let same_thread = AtomicBool::new(true);
        pool.broadcast(&|_| {
            let me = thread::current().id();
            pool.broadcast(&|j| {
                inner[j].fetch_add(1, Ordering::Relaxed);
                if thread::current().id() != me {
                    same_thread.store(false, Ordering::Relaxed);
                }
            });
        });
        // Each of the 3 outer calls ran the inner closure for 0..3 on its own thread.
        for c in &inner {
            assert_eq!(c.load(Ordering::Relaxed), 3);
        }
        assert!(same_thread.load(Ordering::Relaxed));
        // The pool is free again afterwards: a plain broadcast still reaches every thread.
        let ids = Mutex::new(Vec::new());
        pool.broadcast(&|i| ids.lock().unwrap().push((i, thread::current().id())));
        let ids = ids.into_inner().unwrap();
        assert_eq!(ids.len(), 3);
        let mut threads: Vec<_> = ids.iter().map(|&(_, t)| t).collect();
        threads.sort_by_key(|t| format!("{t:?}"));
        threads.dedup();
        assert_eq!(threads.len(), 3, "the calls ran in parallel again");
    });
}

#[test]
fn an_ap_registering_during_a_broadcast_joins_the_next_one() {
    let pool = Pool::new();
    with_aps(&pool, 1, || {
        let late: Mutex<Option<Ap<'_>>> = Mutex::new(None);
        let calls = Mutex::new(Vec::new());
        pool.broadcast(&|i| {
            calls.lock().unwrap().push(i);
            if i == 0 {
                let mut ap = pool.register();
                assert_eq!(ap.slot(), 2);
                assert!(!ap.poll(), "the generation in flight does not include it");
                *late.lock().unwrap() = Some(ap);
            }
        });
        let mut calls = calls.into_inner().unwrap();
        calls.sort();
        assert_eq!(calls, [0, 1]);
        assert_eq!(pool.threads(), 3);
        let mut ap = late.into_inner().unwrap().unwrap();
        let stop = AtomicBool::new(false);
        let calls = Mutex::new(Vec::new());
        thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    if !ap.poll() {
                        thread::yield_now();
                    }
                }
            });
            pool.broadcast(&|i| calls.lock().unwrap().push(i));
            stop.store(true, Ordering::Release);
        });
        let mut calls = calls.into_inner().unwrap();
        calls.sort();
        assert_eq!(calls, [0, 1, 2]);
    });
}

/// Deterministic inputs in [-1, 1).
fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn the_split_kernels_over_the_pool_equal_the_serial_ones_bit_for_bit() {
    let pool = Pool::new();
    let isa = detect();
    let never = || false;
    with_aps(&pool, 3, || {
        for &(m, k, n) in &[(300usize, 200usize, 150usize), (17, 33, 9), (513, 64, 257)] {
            let (a, b) = (data(m * k, 1), data(k * n, 2));
            let a = MatRef::row_major(&a, m, k).unwrap();
            let b = MatRef::row_major(&b, k, n).unwrap();
            let mut want = vec![0f32; m * n];
            matmul_until(isa, a, b, &mut want, n, &never).unwrap();
            for _ in 0..3 {
                let mut got = vec![0f32; m * n];
                matmul_split_until(&pool, isa, a, b, &mut got, n, &never).unwrap();
                assert_eq!(bits(&got), bits(&want), "matmul {m}x{k}x{n}");
            }
        }
        for causal in [false, true] {
            let sh = AttnShape {
                seq_q: 200,
                seq_k: 300,
                heads: 4,
                kv_heads: 2,
                dim: 64,
                causal,
            };
            let q = data(sh.seq_q * sh.heads * sh.dim, 3);
            let k = data(sh.seq_k * sh.kv_heads * sh.dim, 4);
            let v = data(sh.seq_k * sh.kv_heads * sh.dim, 5);
            let mut want = vec![0f32; sh.seq_q * sh.heads * sh.dim];
            attention_until(isa, &q, &k, &v, &mut want, sh, None, &never).unwrap();
            for _ in 0..3 {
                let mut got = vec![0f32; want.len()];
                attention_split_until(&pool, isa, &q, &k, &v, &mut got, sh, None, &never).unwrap();
                assert_eq!(bits(&got), bits(&want), "attention causal={causal}");
            }
        }
    });
}
