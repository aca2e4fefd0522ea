//! `Job::validate`'s limits and cost model: every dimension is bounded (specific
//! `DimTooLarge`), units and `exec_bytes` follow the documented formulas, and units never
//! undercount flops.

use pupa_protocol::job::{
    DType, Job, JobError, Layout, Op, EXEC_OVERHEAD_BYTES, MAX_HEADS, MAX_HEAD_DIM, MAX_MATMUL_DIM,
    MAX_SEQ, RESULT_COPIES, UNITS_PER_BYTE, UNITS_PER_SCORE,
};
use pupa_protocol::seal::Aead;
use pupa_protocol::serde_bytes::ByteBuf;

fn job(op: Op, dtype: DType, elems: &[u64]) -> Job {
    let es = if dtype == DType::F32 { 4 } else { 2 };
    Job {
        job_id: [1; 16],
        op,
        dtype,
        tensors: elems
            .iter()
            .map(|&n| ByteBuf::from(vec![0u8; (n * es) as usize]))
            .collect(),
        reply_key: [2; 32],
        reply_aead: Aead::ChaCha20Poly1305,
        client_seq: 1,
        voucher: ByteBuf::new(),
    }
}

fn mm(m: u32, n: u32, k: u32) -> Op {
    Op::Matmul {
        m,
        n,
        k,
        a_layout: Layout::RowMajor,
        b_layout: Layout::RowMajor,
    }
}

fn att(d: [u32; 5]) -> Op {
    Op::Attention {
        seq_q: d[0],
        seq_k: d[1],
        heads: d[2],
        kv_heads: d[3],
        dim: d[4],
        causal: false,
    }
}

#[test]
fn every_dimension_is_bounded() {
    let over =
        |name: &'static str, got: u32, max: u32| Err(JobError::DimTooLarge { name, got, max });
    let x = MAX_MATMUL_DIM + 1;
    // Dimensions are checked before the tensors: no need to send them.
    assert_eq!(
        job(mm(x, 1, 1), DType::F32, &[]).validate(),
        over("m", x, MAX_MATMUL_DIM)
    );
    assert_eq!(
        job(mm(1, x, 1), DType::F32, &[]).validate(),
        over("n", x, MAX_MATMUL_DIM)
    );
    assert_eq!(
        job(mm(1, 1, x), DType::F32, &[]).validate(),
        over("k", x, MAX_MATMUL_DIM)
    );
    let cases = [
        ([MAX_SEQ + 1, 1, 1, 1, 1], "seq_q", MAX_SEQ),
        ([1, MAX_SEQ + 1, 1, 1, 1], "seq_k", MAX_SEQ),
        ([1, 1, MAX_HEADS + 1, 1, 1], "heads", MAX_HEADS),
        ([1, 1, 1, MAX_HEADS + 1, 1], "kv_heads", MAX_HEADS),
        ([1, 1, 1, 1, MAX_HEAD_DIM + 1], "dim", MAX_HEAD_DIM),
    ];
    for (d, name, max) in cases {
        let got = d[["seq_q", "seq_k", "heads", "kv_heads", "dim"]
            .iter()
            .position(|&n| n == name)
            .unwrap()];
        assert_eq!(
            job(att(d), DType::Bf16, &[]).validate(),
            over(name, got, max)
        );
    }
    assert_eq!(MAX_HEAD_DIM as usize, pupa_kernels::MAX_HEAD_DIM);
}

#[test]
fn units_and_exec_bytes_follow_the_documented_formulas() {
    // matmul 2×3×4 f32: padded flops 2·8·16·4; bytes: inputs 4·(8+12), A packed 4·8·4, B
    // packed 4·16·4·1, C 4·6·1, result 4·6.
    let s = job(mm(2, 3, 4), DType::F32, &[8, 12]).validate().unwrap();
    assert_eq!(s.flops, 48);
    assert_eq!(s.units, 1024 + UNITS_PER_BYTE * (80 + 128 + 256 + 24 + 24));
    let scratch = pupa_kernels::matmul_scratch_bytes(2, 3, 4) as u64;
    assert_eq!(
        s.exec_bytes,
        80 + 24 + scratch + RESULT_COPIES * 24 + EXEC_OVERHEAD_BYTES
    );
    // attention seq_q 20, seq_k 100, 2 heads on 1 KV head, dim 3, bf16: scores 2·32·100,
    // padded flops 4·scores·8; bytes: inputs 2·(120 + 2·300), K/V streamed
    // (2+4)·2·2·1·100·3, result 4·120.
    let s = job(att([20, 100, 2, 1, 3]), DType::Bf16, &[120, 300, 300])
        .validate()
        .unwrap();
    let scores = 2 * 32 * 100;
    let bytes = 2 * (120 + 600) + 6 * 2 * 2 * 100 * 3 + 4 * 120;
    assert_eq!(
        s.units,
        4 * scores * 8 + UNITS_PER_SCORE * scores + UNITS_PER_BYTE * bytes
    );
    let scratch = pupa_kernels::attention_scratch_bytes(3) as u64;
    assert_eq!(
        s.exec_bytes,
        2 * 720 + 480 + scratch + RESULT_COPIES * 480 + EXEC_OVERHEAD_BYTES
    );
}

#[test]
fn units_grow_with_every_dimension_and_cover_flops() {
    let base = [40, 300, 4, 2, 64];
    let units = |d: [u32; 5]| {
        let (q, kv) = (u64::from(d[0] * d[2] * d[4]), u64::from(d[1] * d[3] * d[4]));
        let s = job(att(d), DType::F32, &[q, kv, kv]).validate().unwrap();
        assert!(s.units >= s.flops);
        s.units
    };
    let u0 = units(base);
    for (i, bigger) in [
        [97, 300, 4, 2, 64],
        [40, 301, 4, 2, 64],
        [40, 300, 8, 2, 64],
        [40, 300, 4, 4, 64],
        [40, 300, 4, 2, 65],
    ]
    .into_iter()
    .enumerate()
    {
        assert!(units(bigger) > u0, "dimension {i}");
    }
    for (m, n, k) in [(1, 1, 1), (1, 1, 1 << 20), (3000, 1, 1), (100, 100, 100)] {
        let s = job(
            mm(m, n, k),
            DType::F16,
            &[u64::from(m * k), u64::from(k * n)],
        )
        .validate()
        .unwrap();
        assert!(s.units >= s.flops && s.exec_bytes > 0);
    }
}
