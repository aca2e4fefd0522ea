//! `PooledKernels`: the CPU kernels split over a `Workers` pool (the firmware's vCPUs) compute
//! exactly what `CpuKernels` computes, bit for bit, for every op and dtype, stop at their
//! deadline, and serve jobs through the worker. Here std threads play the pool.

mod runtime_common;

use std::sync::atomic::{AtomicU32, Ordering};

use pupa_protocol::job::{DType, Job, Layout, Op};
use pupa_protocol::msg::Message;
use pupa_protocol::seal::Aead;
use pupa_protocol::serde_bytes::ByteBuf;
use pupa_runtime::{Compute, ComputeError, Config, CpuKernels, PooledKernels, Workers};
use runtime_common::*;

/// `n` threads: the caller and `n - 1` scoped std threads per broadcast.
struct Threads(usize);

impl Workers for Threads {
    fn threads(&self) -> usize {
        self.0
    }
    fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for i in 1..self.0 {
                s.spawn(move || f(i));
            }
            f(0);
        });
    }
}

static POOL: Threads = Threads(4);

fn job(op: Op, dtype: DType, elems: &[usize]) -> Job {
    let size = match dtype {
        DType::F32 => 4,
        DType::F16 | DType::Bf16 => 2,
    };
    let mut x = 0x2545_f491u32;
    let mut value = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    };
    let tensors = elems
        .iter()
        .map(|&n| {
            let bytes: Vec<u8> = (0..n)
                .flat_map(|_| {
                    let v = value();
                    match dtype {
                        DType::F32 => v.to_le_bytes().to_vec(),
                        DType::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
                        DType::Bf16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
                    }
                })
                .collect();
            assert_eq!(bytes.len(), n * size);
            ByteBuf::from(bytes)
        })
        .collect();
    Job {
        job_id: [9; 16],
        op,
        dtype,
        tensors,
        reply_key: [1; 32],
        reply_aead: Aead::ChaCha20Poly1305,
        client_seq: 1,
        voucher: ByteBuf::new(),
    }
}

fn jobs(dtype: DType) -> Vec<Job> {
    let mm = |m: u32, n: u32, k: u32, b_layout| {
        let op = Op::Matmul {
            m,
            n,
            k,
            a_layout: Layout::RowMajor,
            b_layout,
        };
        job(op, dtype, &[(m * k) as usize, (k * n) as usize])
    };
    let attn = |seq_q: u32, seq_k: u32, heads: u32, kv_heads: u32, dim: u32, causal| {
        let op = Op::Attention {
            seq_q,
            seq_k,
            heads,
            kv_heads,
            dim,
            causal,
        };
        let q = (seq_q * heads * dim) as usize;
        let kv = (seq_k * kv_heads * dim) as usize;
        job(op, dtype, &[q, kv, kv])
    };
    vec![
        mm(300, 260, 200, Layout::RowMajor),
        mm(97, 130, 77, Layout::ColMajor),
        mm(5, 3, 4, Layout::RowMajor),
        attn(150, 300, 4, 2, 64, true),
        attn(70, 90, 2, 2, 32, false),
    ]
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn pooled_kernels_equal_the_serial_cpu_kernels_bit_for_bit() {
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        for j in jobs(dtype) {
            let shape = j.validate().unwrap();
            let want = CpuKernels
                .execute(&mut j.clone(), &shape, &|| false)
                .unwrap();
            let got = PooledKernels(&POOL)
                .execute(&mut j.clone(), &shape, &|| false)
                .unwrap();
            assert_eq!(bits(&got), bits(&want), "{dtype:?} {:?}", j.op);
        }
    }
}

#[test]
fn a_pooled_job_stops_at_its_deadline() {
    for j in jobs(DType::F32)
        .into_iter()
        .take(1)
        .chain(jobs(DType::F32).into_iter().skip(3).take(1))
    {
        let shape = j.validate().unwrap();
        let r = PooledKernels(&POOL).execute(&mut j.clone(), &shape, &|| true);
        assert_eq!(r, Err(ComputeError::Deadline), "{:?}", j.op);
        // Expiring after a few checks, from whichever threads make them.
        let checks = AtomicU32::new(0);
        let r = PooledKernels(&POOL).execute(&mut j.clone(), &shape, &|| {
            checks.fetch_add(1, Ordering::Relaxed) >= 2
        });
        assert_eq!(r, Err(ComputeError::Deadline), "{:?}", j.op);
    }
}

#[test]
fn the_worker_serves_jobs_on_pooled_kernels() {
    let (mut w, _clock) = worker_computing(Config::default(), PooledKernels(&POOL));
    let c = Client::connect(&mut w, 9);
    let (job, a, b) = matmul_job(&c, 3, 40, 30, 50, DType::F32, Layout::RowMajor);
    let sj = c.seal(&job, 0x33);
    let ex = exchange(
        &mut w,
        &frame(&Message::SealedJob(sj.clone())),
        1 << 16,
        false,
    );
    let (res, _) = expect_result(&c, &sj, &ex);
    let want: Vec<f64> = (0..40 * 30)
        .map(|ij| {
            (0..50)
                .map(|p| a[ij / 30 * 50 + p] * b[p * 30 + ij % 30])
                .sum()
        })
        .collect();
    assert!(rel_l2(&floats(&res), &want) < 1e-6);
}
