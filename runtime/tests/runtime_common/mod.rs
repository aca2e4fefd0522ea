//! Shared harness of the runtime tests: a host-side platform (dev TEE, deterministic test
//! entropy, manual clock) and a client that speaks the wire protocol.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pupa_protocol::evidence::{verify_dev, Evidence};
use pupa_protocol::frame::FrameDecoder;
use pupa_protocol::job::{DType, Job, JobResult, Layout, Op};
use pupa_protocol::msg::{ErrorCode, ErrorReply, Hello, Message, SealedJob};
use pupa_protocol::receipt::SignedReceipt;
use pupa_protocol::seal::{Aead, KeyPair};
use pupa_protocol::serde_bytes::ByteBuf;
use pupa_runtime::{Clock, Compute, Config, DevTee, Entropy, EntropyFailure, Session, Worker};
use sha2::{Digest, Sha256};

/// Image hash the dev TEE reports.
pub const IMAGE: [u8; 48] = [0xab; 48];

/// Test entropy: SHA-256 in counter mode over a seed (deterministic, distinct outputs).
pub struct TestEntropy {
    pub seed: u64,
    pub ctr: u64,
    /// Fail after this many successful calls.
    pub fail_after: Option<u64>,
}

impl Entropy for TestEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailure> {
        if self.fail_after.is_some_and(|n| self.ctr >= n) {
            return Err(EntropyFailure("test source exhausted"));
        }
        for chunk in buf.chunks_mut(32) {
            self.ctr += 1;
            let h = Sha256::new()
                .chain_update(self.seed.to_le_bytes())
                .chain_update(self.ctr.to_le_bytes())
                .finalize();
            chunk.copy_from_slice(&h[..chunk.len()]);
        }
        Ok(())
    }
}

/// A clock the test moves by hand.
#[derive(Clone, Default)]
pub struct TestClock(pub Arc<AtomicU64>);

impl Clock for TestClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TestClock {
    pub fn advance_s(&self, s: u64) {
        self.0.fetch_add(s * 1_000_000_000, Ordering::Relaxed);
    }
}

pub type TestWorker<K = pupa_runtime::CpuKernels> = Worker<DevTee, TestEntropy, TestClock, K>;

pub fn worker_with(config: Config) -> (TestWorker, TestClock) {
    worker_computing(config, pupa_runtime::CpuKernels)
}

/// A test worker whose jobs run on `compute`.
pub fn worker_computing<K: Compute>(config: Config, compute: K) -> (TestWorker<K>, TestClock) {
    let clock = TestClock::default();
    let w = Worker::with_compute(
        DevTee {
            image_sha384: IMAGE,
        },
        TestEntropy {
            seed: 1,
            ctr: 0,
            fail_after: None,
        },
        clock.clone(),
        config,
        compute,
    )
    .expect("worker starts");
    (w, clock)
}

pub fn worker() -> (TestWorker, TestClock) {
    worker_with(Config::default())
}

/// Everything a connection got back.
#[derive(Debug)]
pub struct Exchange {
    pub replies: Vec<Message>,
    pub closed: bool,
}

/// Sends `bytes` on a fresh session in `chunk`-byte pieces, then EOF if `eof`; drains replies.
pub fn exchange<K: Compute>(
    w: &mut TestWorker<K>,
    bytes: &[u8],
    chunk: usize,
    eof: bool,
) -> Exchange {
    let mut s = Session::new(w);
    for piece in bytes.chunks(chunk.max(1)) {
        let n = s.receive(w, piece);
        assert!(n == piece.len() || !s.wants_read());
    }
    if eof {
        s.peer_closed(w);
    }
    s.poll(w);
    finish(&mut s)
}

/// Drains a session's output into decoded replies.
pub fn finish(s: &mut Session) -> Exchange {
    let out = s.pending().to_vec();
    s.advance(out.len());
    Exchange {
        replies: decode_all(&out),
        closed: s.should_close(),
    }
}

pub fn decode_all(bytes: &[u8]) -> Vec<Message> {
    let mut d = FrameDecoder::new();
    d.feed(bytes);
    let mut v = Vec::new();
    while let Some(f) = d.next_frame().expect("guest sends valid frames") {
        v.push(Message::from_frame(&f).expect("guest sends valid messages"));
    }
    d.finish().expect("no partial frame from the guest");
    v
}

pub fn frame(m: &Message) -> Vec<u8> {
    m.to_frame().unwrap()
}

/// The client: fetches evidence, verifies it (dev allowed in tests), seals jobs.
pub struct Client {
    pub key: KeyPair,
    pub evidence: Evidence,
}

impl Client {
    pub fn connect<K: Compute>(w: &mut TestWorker<K>, seed: u8) -> Client {
        let ex = exchange(w, &frame(&Message::Hello(Hello {})), 4096, false);
        let [Message::Evidence(ev)] = &ex.replies[..] else {
            panic!("{:?}", ex.replies)
        };
        assert_eq!(verify_dev(ev), Ok(IMAGE));
        assert!(!ex.closed);
        Client {
            key: KeyPair::derive(&[seed; 32]),
            evidence: ev.clone(),
        }
    }

    pub fn seal(&self, job: &Job, ikm: u8) -> SealedJob {
        SealedJob::seal(job, &self.evidence.hpke_pk, job.reply_aead, &[ikm; 32]).unwrap()
    }
}

/// Checks a normal reply (result + receipt) and returns them.
pub fn expect_result(c: &Client, sj: &SealedJob, ex: &Exchange) -> (JobResult, SignedReceipt) {
    let (res, r, _) = expect_result_ton(c, sj, ex);
    (res, r)
}

/// [`expect_result`], also returning the TON receipt BOC if any.
pub fn expect_result_ton(
    c: &Client,
    sj: &SealedJob,
    ex: &Exchange,
) -> (JobResult, SignedReceipt, Option<Vec<u8>>) {
    let [Message::SealedResult(sr), Message::Receipt(rr)] = &ex.replies[..] else {
        panic!("{:?}", ex.replies)
    };
    let r = &rr.statement;
    let res = sr
        .open(&c.key, &c.evidence.hpke_pk, &sj.enc)
        .expect("result opens");
    r.verify(&c.evidence.receipt_pk).expect("receipt verifies");
    assert_eq!(r.receipt.client_key, c.key.pk);
    assert_eq!(
        r.receipt.job_hash,
        pupa_protocol::receipt::job_hash(&sj.enc, &sj.ciphertext)
    );
    // The TON receipt and the voucher that covered the job come together, or not at all.
    assert_eq!(rr.ton.is_some(), rr.ton_voucher.is_some(), "{rr:?}");
    (res, *r, rr.ton.as_ref().map(|b| b.to_vec()))
}

pub fn expect_error(ex: &Exchange, code: ErrorCode) -> ErrorReply {
    match &ex.replies[..] {
        [Message::Error(e)] if e.code == code => e.clone(),
        other => panic!("expected one {code:?} error, got {other:?}"),
    }
}

/// Deterministic xorshift for test data.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random values rounded to `dtype`: (their exact f64 values, their little-endian bytes).
pub fn tensor(rng: &mut Rng, n: usize, dtype: DType) -> (Vec<f64>, Vec<u8>) {
    let mut vals = Vec::with_capacity(n);
    let mut bytes = Vec::new();
    for _ in 0..n {
        let x = rng.unit();
        match dtype {
            DType::F32 => {
                vals.push(f64::from(x));
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            DType::F16 => {
                let h = half::f16::from_f32(x);
                vals.push(f64::from(h.to_f32()));
                bytes.extend_from_slice(&h.to_bits().to_le_bytes());
            }
            DType::Bf16 => {
                let h = half::bf16::from_f32(x);
                vals.push(f64::from(h.to_f32()));
                bytes.extend_from_slice(&h.to_bits().to_le_bytes());
            }
        }
    }
    (vals, bytes)
}

/// A small valid matmul job for `client`, with its inputs as f64 (A row-major m×k, B k×n).
pub fn matmul_job(
    client: &Client,
    id: u8,
    m: u32,
    n: u32,
    k: u32,
    dtype: DType,
    b_layout: Layout,
) -> (Job, Vec<f64>, Vec<f64>) {
    let mut rng = Rng(0x9e3779b97f4a7c15 ^ u64::from(id));
    let (a, ab) = tensor(&mut rng, (m * k) as usize, dtype);
    let (b, bb) = tensor(&mut rng, (k * n) as usize, dtype);
    let job = Job {
        job_id: [id; 16],
        op: Op::Matmul {
            m,
            n,
            k,
            a_layout: Layout::RowMajor,
            b_layout,
        },
        dtype,
        tensors: vec![ByteBuf::from(ab), ByteBuf::from(bb)],
        reply_key: client.key.pk,
        reply_aead: Aead::Aes256Gcm,
        client_seq: next_seq(),
        voucher: ByteBuf::new(),
    };
    (job, a, b)
}

/// A fresh `ikmE` (never of the `[x; 32]` form the tests use for chosen ones).
/// A job counter above every earlier one of this test process.
pub fn next_seq() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn fresh_ikm() -> [u8; 32] {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut ikm = [0xa5; 32];
    ikm[..8].copy_from_slice(
        &N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    ikm
}

/// Runs a small f32 matmul on a fresh connection and checks it fully: the "normal job on
/// another connection succeeds" probe.
pub fn normal_job_succeeds(w: &mut TestWorker, c: &Client, id: u8) {
    let (job, _, _) = matmul_job(c, id, 3, 5, 4, DType::F32, Layout::RowMajor);
    let sj = SealedJob::seal(&job, &c.evidence.hpke_pk, job.reply_aead, &fresh_ikm()).unwrap();
    let ex = exchange(w, &frame(&Message::SealedJob(sj.clone())), 4096, false);
    let (res, _) = expect_result(c, &sj, &ex);
    assert_eq!(res.job_id, [id; 16]);
    assert_eq!(res.dims, vec![3, 5]);
    assert!(!ex.closed);
}

/// ‖x − y‖₂ / ‖y‖₂.
pub fn rel_l2(x: &[f32], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    let num: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (f64::from(*a) - b).powi(2))
        .sum();
    let den: f64 = y.iter().map(|b| b * b).sum();
    if x.iter().any(|v| v.is_nan()) {
        return f64::INFINITY;
    }
    (num / den).sqrt()
}

pub fn floats(res: &JobResult) -> Vec<f32> {
    res.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The payment contract the test vouchers name.
pub fn test_domain() -> pupa_protocol::ton::Domain {
    pupa_protocol::ton::Domain {
        network_id: pupa_protocol::ton::TESTNET_ID,
        contract: pupa_protocol::ton::MsgAddressInt {
            workchain: 0,
            hash: [0x3c; 32],
        },
    }
}

/// BOC of a voucher signed by `client` (an Ed25519 seed) for `guest_key`, capped at `cap`.
pub fn voucher(client: &[u8; 32], guest_key: &[u8; 32], cap: u128) -> Vec<u8> {
    let sk = ed25519_dalek::SigningKey::from_bytes(client);
    let v = pupa_protocol::ton::Voucher {
        domain: test_domain(),
        client_key: sk.verifying_key().to_bytes(),
        guest_key: *guest_key,
        cap,
    };
    pupa_protocol::ton::to_boc(&v.sign(&sk).unwrap().to_cell().unwrap())
}
