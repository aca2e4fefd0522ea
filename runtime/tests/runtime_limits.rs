//! Jobs bounded by what they cost (issue 11, findings 2 and 5): shapes beyond what the kernels
//! take, and jobs that would hold the guest for minutes, are refused by `Job::validate` with
//! specific errors; random shapes within the limits run through `Job::validate` +
//! `compute::execute` under a memory cap (a counting global allocator that fails allocations
//! beyond it) and either succeed or fail with a specific error, never an abort or a panic; with
//! the cap at `JobShape::exec_bytes` they always succeed.
//!
//! Every test here holds `LOCK` for its whole run: the cap counts the whole process's live
//! bytes, so nothing else may allocate while it is armed.

mod runtime_common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use pupa_protocol::job::{DType, Job, JobError, Layout, Op, MAX_HEAD_DIM, MAX_SEQ, MAX_UNITS};
use pupa_protocol::msg::{ErrorCode, Message};
use pupa_protocol::seal::Aead;
use pupa_protocol::serde_bytes::ByteBuf;
use pupa_runtime::Session;
use pupa_runtime::{execute, ComputeError};
use runtime_common::{
    exchange, expect_error, expect_result, finish, frame, next_seq, worker, Client, Rng,
};

/// Live bytes of the process, and the most live bytes allowed (`usize::MAX`: no cap).
static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The most live bytes seen since `capped` last started.
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LOCK: Mutex<()> = Mutex::new(());

/// The system allocator with a cap on live bytes: an allocation that would exceed it fails
/// (returns null), as the guest's heap does when it is full.
struct Capped;

impl Capped {
    fn take(size: usize) -> bool {
        let before = LIVE.fetch_add(size, SeqCst);
        if before.saturating_add(size) > LIMIT.load(SeqCst) {
            LIVE.fetch_sub(size, SeqCst);
            return false;
        }
        PEAK.fetch_max(before + size, SeqCst);
        true
    }
}

// SAFETY: forwards to `System` with the same layouts; only the accounting is added.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        if !Capped::take(l.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        let p = unsafe { System.alloc(l) };
        if p.is_null() {
            LIVE.fetch_sub(l.size(), SeqCst);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        if !Capped::take(l.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        let p = unsafe { System.alloc_zeroed(l) };
        if p.is_null() {
            LIVE.fetch_sub(l.size(), SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), SeqCst);
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, new: usize) -> *mut u8 {
        if new > l.size() && !Capped::take(new - l.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        let q = unsafe { System.realloc(p, l, new) };
        if new > l.size() && q.is_null() {
            LIVE.fetch_sub(new - l.size(), SeqCst);
        } else if new < l.size() && !q.is_null() {
            LIVE.fetch_sub(l.size() - new, SeqCst);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

/// Runs `f` with at most `cap` bytes more than are live now; returns its result and the most
/// bytes it had live beyond those at the start.
fn capped<R>(cap: usize, f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.load(SeqCst);
    PEAK.store(base, SeqCst);
    LIMIT.store(base.saturating_add(cap), SeqCst);
    let r = f();
    LIMIT.store(usize::MAX, SeqCst);
    (r, PEAK.load(SeqCst).saturating_sub(base))
}

fn job(op: Op, dtype: DType, rng: &mut Rng) -> Job {
    let es = dtype.size() as usize;
    let tensors = op
        .input_elems()
        .iter()
        .map(|&n| {
            let mut b = vec![0u8; n as usize * es];
            // Small finite values in every dtype (top byte 0x3c/0x3e: about 1 in f16/bf16/f32).
            for (i, x) in b.iter_mut().enumerate() {
                *x = if i % es == es - 1 {
                    0x3c
                } else {
                    rng.next() as u8
                };
            }
            ByteBuf::from(b)
        })
        .collect();
    Job {
        job_id: [9; 16],
        op,
        dtype,
        tensors,
        reply_key: [1; 32],
        reply_aead: Aead::ChaCha20Poly1305,
        client_seq: next_seq(),
        voucher: ByteBuf::new(),
    }
}

fn attention(seq_q: u32, seq_k: u32, heads: u32, kv_heads: u32, dim: u32, causal: bool) -> Op {
    Op::Attention {
        seq_q,
        seq_k,
        heads,
        kv_heads,
        dim,
        causal,
    }
}

/// A random job of small shape: mostly within the limits, sometimes just beyond one.
fn random_job(rng: &mut Rng) -> Job {
    let mut below = |n: u64| 1 + rng.next() % n;
    let dtype = [DType::F32, DType::F16, DType::Bf16][below(3) as usize - 1];
    let op = if below(2) == 1 {
        // Square-ish, or skinny with one long dimension.
        let (m, n, k) = match below(4) {
            1 => (below(4), below(4), below(20_000)),
            2 => (below(3), below(3_000), below(300)),
            _ => (below(200), below(200), below(200)),
        };
        let l = |x| {
            if x == 1 {
                Layout::RowMajor
            } else {
                Layout::ColMajor
            }
        };
        Op::Matmul {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a_layout: l(below(2)),
            b_layout: l(below(2)),
        }
    } else {
        let g = below(3);
        let h = g * below(3);
        let d = match below(6) {
            1 => 64,
            2 => 128,
            3 => u64::from(MAX_HEAD_DIM),
            4 => u64::from(MAX_HEAD_DIM) + below(4), // refused: beyond the kernels' limit
            _ => below(40),
        };
        let (sq, sk) = (below(150), below(300));
        attention(
            sq as u32,
            sk as u32,
            h as u32,
            g as u32,
            d as u32,
            below(2) == 1,
        )
    };
    job(op, dtype, rng)
}

#[test]
fn random_shapes_under_a_memory_cap_succeed_or_fail_specifically() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut ran, mut oom, mut refused) = (0, 0, 0);
    for case in 0..400 {
        let mut j = random_job(&mut rng);
        let shape = match j.validate() {
            Ok(s) => s,
            Err(e) => {
                // Only the shapes the generator pushes past a limit, or causal with more
                // queries than keys.
                assert!(
                    matches!(
                        e,
                        JobError::DimTooLarge { name: "dim", .. } | JobError::CausalShape { .. }
                    ),
                    "case {case}: {e}"
                );
                refused += 1;
                continue;
            }
        };
        assert!(shape.units >= shape.flops && shape.units <= MAX_UNITS);
        // Half the cases get exactly the memory the job says it needs: they must succeed.
        // The others get a random part of it: they succeed or report OutOfMemory.
        let exec = usize::try_from(shape.exec_bytes).unwrap();
        let full = rng.next().is_multiple_of(2);
        let cap = if full {
            exec
        } else {
            (rng.next() as usize) % exec
        };
        let (r, peak) = capped(cap, || execute(&mut j, &shape));
        assert!(peak <= exec, "case {case}: peak {peak} > exec_bytes {exec}");
        match r {
            Ok(out) => {
                assert_eq!(out.len() as u64, shape.out_elems, "case {case}");
                assert!(out.iter().all(|x| x.is_finite()), "case {case}");
                ran += 1;
            }
            Err(ComputeError::OutOfMemory { bytes }) if !full => {
                assert!(bytes > 0, "case {case}");
                oom += 1;
            }
            Err(e) => panic!("case {case} (cap {cap} of {exec}, full {full}): {e}"),
        }
    }
    eprintln!("{ran} ran, {oom} out of memory, {refused} refused");
    assert!(
        ran > 100 && oom > 30 && refused > 10,
        "{ran} {oom} {refused}"
    );
}

/// The whole runtime (open, validate, run, encode, seal, sign) inside the memory the job's
/// `exec_bytes` allows, plus what the job itself takes (its frame, opened in place, and the
/// decoded job): jobs with outputs large enough that the result copies dominate all succeed.
#[test]
fn worker_runs_jobs_within_exec_bytes() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 4);
    let mut rng = Rng(0xfeed_0002);
    let ops = [
        mm_op(512, 512, 8),
        mm_op(1, 2048, 300),
        attention(300, 300, 4, 2, 128, true),
    ];
    for (i, op) in ops.into_iter().enumerate() {
        for dtype in [DType::F32, DType::Bf16] {
            let mut j = job(op, dtype, &mut rng);
            j.reply_key = c.key.pk;
            let shape = j.validate().unwrap();
            let sj = c.seal(&j, 0x50 + i as u8);
            let bytes = frame(&Message::SealedJob(sj.clone()));
            let cap = shape.exec_bytes as usize + 3 * bytes.len() + (256 << 10);
            let mut s = Session::new(&w);
            let ((), peak) = capped(cap, || {
                assert_eq!(s.receive(&mut w, &bytes), bytes.len());
                s.poll(&mut w);
            });
            eprintln!(
                "job {i} {dtype:?}: peak {peak} bytes, exec_bytes {}, frame {}",
                shape.exec_bytes,
                bytes.len()
            );
            let (res, _) = expect_result(&c, &sj, &finish(&mut s));
            assert_eq!(res.data.len() as u64, 4 * shape.out_elems);
            // Billed units: `shape.units` once the worker bills them (flops before).
            assert!(res.units == shape.units || res.units == shape.flops);
        }
    }
}

fn mm_op(m: u32, n: u32, k: u32) -> Op {
    Op::Matmul {
        m,
        n,
        k,
        a_layout: Layout::RowMajor,
        b_layout: Layout::RowMajor,
    }
}

/// Finding 2: attention with dim 200,000 (a 2.4 MB job) crashed the guest by allocating
/// unbounded scratch. Now the worker refuses it as an invalid job, naming the limit.
#[test]
fn finding_2_huge_head_dim_is_an_invalid_job() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 3);
    let mut j = job(
        attention(1, 1, 1, 1, 200_000, false),
        DType::F32,
        &mut Rng(2),
    );
    j.reply_key = c.key.pk;
    assert_eq!(
        j.validate(),
        Err(JobError::DimTooLarge {
            name: "dim",
            got: 200_000,
            max: MAX_HEAD_DIM
        })
    );
    let sj = c.seal(&j, 0x42);
    let ex = exchange(&mut w, &frame(&Message::SealedJob(sj)), 1 << 16, false);
    let e = expect_error(&ex, ErrorCode::InvalidJob);
    assert!(
        e.detail.contains("dim = 200000 exceeds its limit 256"),
        "{}",
        e.detail
    );
}

/// Finding 5: attention with seq_k 5,000,000 and dim 1 was billed 2e7 flops and held the guest
/// for minutes. Sequences are now bounded, and a job that is cheap in flops but expensive in
/// time (many scores of dim 1) is refused by its units.
#[test]
fn finding_5_long_cheap_attention_is_refused() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng(5);
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 6);
    let mut j = job(
        attention(1, 5_000_000, 1, 1, 1, false),
        DType::Bf16,
        &mut rng,
    );
    j.reply_key = c.key.pk;
    assert_eq!(
        j.validate(),
        Err(JobError::DimTooLarge {
            name: "seq_k",
            got: 5_000_000,
            max: MAX_SEQ
        })
    );
    let ex = exchange(
        &mut w,
        &frame(&Message::SealedJob(c.seal(&j, 0x43))),
        1 << 20,
        false,
    );
    let e = expect_error(&ex, ErrorCode::InvalidJob);
    assert!(
        e.detail
            .contains("seq_k = 5000000 exceeds its limit 1048576"),
        "{}",
        e.detail
    );
    // Within every dimension limit and 4 MB of input, 4.3e9 flops, but 1.7e10 softmax scores:
    // its units exceed the cap.
    let j = job(
        attention(1, MAX_SEQ, 1024, 1, 1, false),
        DType::Bf16,
        &mut rng,
    );
    match j.validate() {
        Err(JobError::TooMuchWork { units, max }) => {
            assert_eq!(max, MAX_UNITS);
            assert!(units > MAX_UNITS);
        }
        other => panic!("{other:?}"),
    }
    // The finding's shape at the longest sequence allowed is billed for its time, not its
    // flops: far more units than flops.
    let j = job(attention(1, MAX_SEQ, 1, 1, 1, false), DType::Bf16, &mut rng);
    let s = j.validate().unwrap();
    assert!(s.units > 100 * s.flops, "{} {}", s.units, s.flops);
}

/// Not a check (timings vary with the machine): prints the nanoseconds per billed unit of
/// `execute` (decode + kernel) for a compute-bound GEMM, the finding-5 attention scaled down to
/// seq_k 500,000, and other shapes at the corners of the cost model. Run with
/// `cargo test --release -p pupa-guest --test runtime_limits -- --ignored --nocapture`.
#[test]
#[ignore]
fn cost_model_ns_per_unit() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mm = |m, n, k| Op::Matmul {
        m,
        n,
        k,
        a_layout: Layout::RowMajor,
        b_layout: Layout::RowMajor,
    };
    let cases = [
        ("gemm 1024³", mm(1024, 1024, 1024)),
        ("finding 5 / 10", attention(1, 500_000, 1, 1, 1, false)),
        ("gemm k=1", mm(3072, 3072, 1)),
        ("gemv 3072×1×4096", mm(3072, 1, 4096)),
        ("dot k=4M", mm(1, 1, 4 << 20)),
        (
            "attention 2048² h4 d64",
            attention(2048, 2048, 4, 4, 64, false),
        ),
        ("decode 50k h8 d128", attention(1, 50_000, 8, 1, 128, false)),
        ("attention 4096² d1", attention(4096, 4096, 1, 1, 1, false)),
        ("mqa 1×10k h256 d1", attention(1, 10_000, 256, 1, 1, false)),
    ];
    let mut rng = Rng(77);
    let mut per_unit = Vec::new();
    for dtype in [DType::F32, DType::Bf16] {
        for (name, op) in cases {
            let j = job(op, dtype, &mut rng);
            let shape = j.validate().unwrap();
            let mut best = f64::MAX;
            for _ in 0..3 {
                let mut j = j.clone();
                let t = std::time::Instant::now();
                execute(&mut j, &shape).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
            let ns = best * 1e9 / shape.units as f64;
            per_unit.push(ns);
            eprintln!(
                "{dtype:?} {name:24} {best:8.4} s  {:.3e} units  {ns:.4} ns/unit",
                shape.units as f64
            );
        }
    }
    let (lo, hi) = per_unit
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    eprintln!("ns/unit from {lo:.4} to {hi:.4}");
}
