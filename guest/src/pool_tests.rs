//! Host tests of the vCPU pool: std threads play the APs (working and "halting" as `ap_main`
//! does, but with a stop flag so that the test ends) and the boot CPU's helper.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, ThreadId};
use std::time::Instant;

use pupa_kernels::{
    attention_split_until, attention_until, detect, matmul_split_until, matmul_until, AttnShape,
    MatRef, Workers,
};

use super::Pool;

fn no_wake() {}

/// Nanoseconds since the first call (the helper's slices).
fn now_ns() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn pool() -> Pool {
    Pool::new(no_wake, now_ns)
}

/// Runs `body` with `aps` threads serving `pool` as APs (all online before `body` starts).
fn with_aps(pool: &Pool, aps: usize, body: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..aps {
            s.spawn(|| {
                pool.register();
                while !stop.load(Ordering::Acquire) {
                    if !pool.work() {
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
    let pool = pool();
    assert_eq!(pool.threads(), 1);
    let calls = Mutex::new(Vec::new());
    pool.broadcast(&|i| calls.lock().unwrap().push(i));
    assert_eq!(*calls.lock().unwrap(), [0]);
    assert!(
        !pool.has_work() && !pool.work(),
        "nothing left after the broadcast"
    );
}

#[test]
fn every_index_runs_exactly_once_per_broadcast_and_its_writes_are_visible() {
    let pool = pool();
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
fn the_calls_spread_over_the_aps_threads() {
    let pool = pool();
    with_aps(&pool, 2, || {
        // Each call waits (bounded) until three distinct threads have started one: the APs
        // claim what the caller has not, so the calls overlap.
        let ids: Mutex<Vec<(usize, ThreadId)>> = Mutex::new(Vec::new());
        let started = AtomicUsize::new(0);
        pool.broadcast(&|i| {
            ids.lock().unwrap().push((i, thread::current().id()));
            started.fetch_add(1, Ordering::AcqRel);
            let t0 = Instant::now();
            while started.load(Ordering::Acquire) < 3 && t0.elapsed().as_secs() < 5 {
                thread::yield_now();
            }
        });
        let mut ids = ids.into_inner().unwrap();
        ids.sort_by_key(|&(i, _)| i);
        assert_eq!(ids.iter().map(|&(i, _)| i).collect::<Vec<_>>(), [0, 1, 2]);
        let mut threads: Vec<_> = ids.iter().map(|&(_, t)| format!("{t:?}")).collect();
        threads.sort();
        threads.dedup();
        assert_eq!(threads.len(), 3, "three calls on three threads");
    });
}

#[test]
fn two_broadcasters_take_turns_and_both_complete() {
    let pool = pool();
    with_aps(&pool, 2, || {
        let sums: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
        thread::scope(|s| {
            for (b, sum) in sums.iter().enumerate() {
                let pool = &pool;
                s.spawn(move || {
                    for _ in 0..200 {
                        pool.broadcast(&|i| {
                            sum.fetch_add(i + 1 + b * 100, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        // threads() = 3: each broadcast adds (1 + 2 + 3) + 3·100·b.
        assert_eq!(sums[0].load(Ordering::Relaxed), 200 * 6);
        assert_eq!(sums[1].load(Ordering::Relaxed), 200 * (6 + 300));
    });
}

#[test]
fn the_helper_leaves_in_slices_and_its_parked_call_is_resumed() {
    // One AP broadcasts a queue of 400 tasks (and is the only AP: threads() = 2, one call
    // for it, one for the helper); the "boot CPU" helps in 200 µs slices. Every task runs
    // exactly once, the helper leaves between tasks (its call is parked and called again),
    // and its slices end on time.
    let pool = pool();
    pool.register();
    {
        let next = AtomicUsize::new(0);
        let runs: Vec<AtomicUsize> = (0..400).map(|_| AtomicUsize::new(0)).collect();
        let helper_calls = AtomicUsize::new(0);
        let done = AtomicBool::new(false);
        let helper = thread::current().id();
        thread::scope(|s| {
            s.spawn(|| {
                // the broadcaster (as an AP running a job would)
                pool.broadcast(&|thread| {
                    if thread::current().id() == helper {
                        helper_calls.fetch_add(1, Ordering::Relaxed);
                    }
                    loop {
                        let t = next.fetch_add(1, Ordering::Relaxed);
                        if t >= runs.len() {
                            return;
                        }
                        runs[t].fetch_add(1, Ordering::Relaxed);
                        let t0 = Instant::now();
                        while t0.elapsed().as_micros() < 50 {
                            std::hint::spin_loop();
                        }
                        if pool.should_leave(thread) {
                            return;
                        }
                    }
                });
                done.store(true, Ordering::Release);
            });
            let mut slices = 0;
            while !done.load(Ordering::Acquire) {
                let until = now_ns() + 200_000;
                if pool.help(until) {
                    slices += 1;
                    // a slice ends within one task (50 µs) of its end, plus scheduling noise
                    assert!(now_ns() < until + 50_000_000, "slice overran by far");
                }
                thread::yield_now();
            }
            assert!(slices >= 1, "the helper took part");
        });
        for (t, r) in runs.iter().enumerate() {
            assert_eq!(r.load(Ordering::Relaxed), 1, "task {t} ran once");
        }
        assert!(helper_calls.load(Ordering::Relaxed) >= 1);
        assert!(!pool.has_work());
    }
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
    let pool = pool();
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
