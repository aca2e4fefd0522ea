//! The whole job flow in a host process: evidence, sealed jobs run on the CPU kernels and
//! checked against f64 references, sealed results, cumulative signed receipts.

mod runtime_common;

use pupa_protocol::evidence::verify_dev;
use pupa_protocol::job::{DType, Job, Layout, Op};
use pupa_protocol::msg::{EvidenceRequest, Message, SealedJob};
use pupa_protocol::seal::Aead;
use pupa_protocol::serde_bytes::ByteBuf;
use pupa_runtime::{Config, DevTee, Session, Worker, WorkerError};
use runtime_common::*;

fn matmul_ref(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

/// `[rows][cols]` row-major → column-major bytes of the same matrix (for `Layout::ColMajor`).
fn to_col_major(bytes: &[u8], rows: usize, cols: usize, es: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes.len()];
    for i in 0..rows {
        for j in 0..cols {
            let (s, d) = ((i * cols + j) * es, (j * rows + i) * es);
            out[d..d + es].copy_from_slice(&bytes[s..s + es]);
        }
    }
    out
}

#[test]
fn matmul_all_dtypes_and_layouts_match_f64_reference() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 2);
    let (m, n, k) = (33usize, 47usize, 65usize);
    let mut ikm = 10u8;
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 2e-3), (DType::Bf16, 1e-2)] {
        for layout in [Layout::RowMajor, Layout::ColMajor] {
            let (mut job, a, b) = matmul_job(
                &c,
                ikm,
                m as u32,
                n as u32,
                k as u32,
                dtype,
                Layout::RowMajor,
            );
            if layout == Layout::ColMajor {
                let es = dtype.size() as usize;
                job.tensors[1] = ByteBuf::from(to_col_major(&job.tensors[1], k, n, es));
                job.op = Op::Matmul {
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    a_layout: Layout::RowMajor,
                    b_layout: layout,
                };
            }
            ikm += 1;
            let sj = c.seal(&job, ikm);
            // Delivered in odd-sized pieces, as TCP may.
            let ex = exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 1000, false);
            let (res, rc) = expect_result(&c, &sj, &ex);
            assert_eq!(res.dims, vec![m as u32, n as u32]);
            // Billed what validation costed (flops and bytes moved: protocol::job's model).
            let shape = job.validate().unwrap();
            assert!(shape.units >= (2 * m * n * k) as u64);
            assert_eq!(res.units, shape.units);
            assert_eq!(rc.receipt.units, res.units);
            let err = rel_l2(&floats(&res), &matmul_ref(&a, &b, m, n, k));
            assert!(err <= tol, "{dtype:?} {layout:?}: rel err {err}");
        }
    }
}

/// f64 attention over `[seq][heads][dim]` tensors; `shape` = (seq_q, seq_k, heads, kv_heads, dim, causal).
fn attention_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    shape: (usize, usize, usize, usize, usize, bool),
) -> Vec<f64> {
    let (sq, sk, h, g, d, causal) = shape;
    let mut o = vec![0.0; sq * h * d];
    let scale = 1.0 / (d as f64).sqrt();
    for hh in 0..h {
        let kh = hh / (h / g);
        for i in 0..sq {
            let lim = if causal { i + sk - sq } else { sk - 1 };
            let s: Vec<f64> = (0..=lim)
                .map(|j| {
                    (0..d)
                        .map(|x| q[(i * h + hh) * d + x] * k[(j * g + kh) * d + x])
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for x in 0..d {
                o[(i * h + hh) * d + x] = e
                    .iter()
                    .enumerate()
                    .map(|(j, p)| p * v[(j * g + kh) * d + x])
                    .sum::<f64>()
                    / z;
            }
        }
    }
    o
}

#[test]
fn attention_matches_f64_reference() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 3);
    let cases = [
        (DType::F32, 1e-4, 37, 53, 4, 2, 64, true),
        (DType::F32, 1e-4, 20, 20, 2, 2, 128, false),
        (DType::Bf16, 1e-2, 16, 40, 4, 1, 64, true),
        (DType::F16, 2e-3, 24, 24, 2, 1, 64, false),
    ];
    for (i, &(dtype, tol, sq, sk, h, g, d, causal)) in cases.iter().enumerate() {
        let mut rng = Rng(77 + i as u64);
        let (q, qb) = tensor(&mut rng, sq * h * d, dtype);
        let (k, kb) = tensor(&mut rng, sk * g * d, dtype);
        let (v, vb) = tensor(&mut rng, sk * g * d, dtype);
        let job = Job {
            job_id: [i as u8; 16],
            op: Op::Attention {
                seq_q: sq as u32,
                seq_k: sk as u32,
                heads: h as u32,
                kv_heads: g as u32,
                dim: d as u32,
                causal,
            },
            dtype,
            tensors: vec![ByteBuf::from(qb), ByteBuf::from(kb), ByteBuf::from(vb)],
            reply_key: c.key.pk,
            reply_aead: Aead::ChaCha20Poly1305,
            client_seq: runtime_common::next_seq(),
            voucher: ByteBuf::new(),
        };
        let sj = c.seal(&job, 100 + i as u8);
        let ex = exchange(
            &mut w,
            &frame(&Message::SealedJob(sj.clone())),
            1 << 16,
            false,
        );
        let (res, _) = expect_result(&c, &sj, &ex);
        assert_eq!(res.dims, vec![sq as u32, h as u32, d as u32]);
        let err = rel_l2(
            &floats(&res),
            &attention_ref(&q, &k, &v, (sq, sk, h, g, d, causal)),
        );
        assert!(err <= tol, "case {i}: rel err {err}");
    }
}

#[test]
fn receipts_are_cumulative_per_client() {
    let (mut w, _) = worker();
    let alice = Client::connect(&mut w, 4);
    let bob = Client::connect(&mut w, 5);
    let mut total = 0;
    let (probe, _, _) = matmul_job(&alice, 0, 2, 3, 4, DType::F32, Layout::RowMajor);
    let u = probe.validate().unwrap().units;
    for (i, (c, ikm)) in [(&alice, 1u8), (&bob, 2), (&alice, 3), (&alice, 4)]
        .into_iter()
        .enumerate()
    {
        let (job, _, _) = matmul_job(c, i as u8, 2, 3, 4, DType::F32, Layout::RowMajor);
        let sj = c.seal(&job, ikm);
        let ex = exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 4096, false);
        let (_, r) = expect_result(c, &sj, &ex);
        if c.key.pk == alice.key.pk {
            total += u;
            assert_eq!(r.receipt.total_units, total);
            assert_eq!(r.receipt.seq, [1, 0, 2, 3][i]);
        } else {
            assert_eq!((r.receipt.seq, r.receipt.total_units), (1, u));
        }
    }
    assert_eq!(w.jobs_run(), 4);
}

#[test]
fn several_jobs_pipelined_on_one_connection() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 6);
    let mut bytes = Vec::new();
    let mut sealed = Vec::new();
    for i in 0..3u8 {
        let (job, _, _) = matmul_job(&c, i, 4, 4, 4, DType::Bf16, Layout::RowMajor);
        let sj = c.seal(&job, 30 + i);
        bytes.extend(frame(&Message::SealedJob(sj.clone())));
        sealed.push(sj);
    }
    let ex = exchange(&mut w, &bytes, 7, true);
    assert_eq!(ex.replies.len(), 6);
    for (i, sj) in sealed.iter().enumerate() {
        let sub = Exchange {
            replies: ex.replies[2 * i..2 * i + 2].to_vec(),
            closed: false,
        };
        let (res, r) = expect_result(&c, sj, &sub);
        assert_eq!((res.job_id, r.receipt.seq), ([i as u8; 16], i as u64 + 1));
    }
    assert!(ex.closed, "EOF after complete frames closes cleanly");
}

#[test]
fn fresh_evidence_binds_the_client_nonce() {
    let (mut w, _) = worker();
    let nonce = [0x42; 32];
    let ex = exchange(
        &mut w,
        &frame(&Message::EvidenceRequest(EvidenceRequest { nonce })),
        3,
        false,
    );
    let [Message::Evidence(ev)] = &ex.replies[..] else {
        panic!("{:?}", ex.replies)
    };
    assert_eq!(ev.nonce, nonce);
    assert_eq!(verify_dev(ev), Ok(IMAGE));
    assert_eq!(
        (ev.hpke_pk, ev.receipt_pk),
        (w.hpke_public_key(), w.receipt_public_key())
    );
    assert_eq!(w.boot_evidence().nonce, [0; 32]);
    assert_ne!(w.hpke_public_key(), [0; 32]);
}

#[test]
fn no_entropy_no_worker() {
    let r = Worker::new(
        DevTee {
            image_sha384: IMAGE,
        },
        TestEntropy {
            seed: 1,
            ctr: 0,
            fail_after: Some(0),
        },
        TestClock::default(),
        Config::default(),
    );
    assert!(matches!(r, Err(WorkerError::Entropy(_))));
}

#[test]
fn connections_interleave_byte_by_byte() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 7);
    let frames: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            frame(&Message::SealedJob(c.seal(
                &matmul_job(&c, i, 2, 2, 2, DType::F32, Layout::RowMajor).0,
                50 + i,
            )))
        })
        .collect();
    let mut sessions: Vec<Session> = frames.iter().map(|_| Session::new(&w)).collect();
    let longest = frames.iter().map(Vec::len).max().unwrap();
    for at in 0..longest {
        for (s, f) in sessions.iter_mut().zip(&frames) {
            if let Some(b) = f.get(at) {
                assert_eq!(s.receive(&mut w, std::slice::from_ref(b)), 1);
            }
        }
    }
    for s in &mut sessions {
        let ex = finish(s);
        assert_eq!(ex.replies.len(), 2, "{:?}", ex.replies);
    }
}

#[test]
fn vouchers_yield_cumulative_ton_receipts_the_contract_accepts() {
    use pupa_protocol::ton::{from_boc_single, Payout, SignedReceipt, SignedVoucher};
    let (mut w, _) = worker_with(Config {
        nanotons_per_munit: 1000,
        ..Config::default()
    });
    let c = Client::connect(&mut w, 20);
    let client_seed = [0x61; 32];
    // Each 4×4×4 job costs `u` units → ⌈u × 1000 / 10⁶⌉ nanotons; the cap covers two.
    let (probe, _, _) = matmul_job(&c, 0, 4, 4, 4, DType::F32, Layout::RowMajor);
    let u = probe.validate().unwrap().units;
    let each = pupa_runtime::price(u, 1000);
    let cap = 2 * each;
    let v = voucher(&client_seed, &c.evidence.receipt_pk, cap);
    let sv = SignedVoucher::from_cell(&from_boc_single(&v).unwrap()).unwrap();
    let mut last_seq = 0;
    for i in 0..2u8 {
        let (mut job, _, _) = matmul_job(&c, i, 4, 4, 4, DType::F32, Layout::RowMajor);
        job.voucher = ByteBuf::from(v.clone());
        let sj = SealedJob::seal(&job, &c.evidence.hpke_pk, Aead::Aes256Gcm, &fresh_ikm()).unwrap();
        let ex = exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 4096, false);
        let (_, _, ton) = expect_result_ton(&c, &sj, &ex);
        let r = SignedReceipt::from_cell(&from_boc_single(&ton.expect("TON receipt")).unwrap())
            .unwrap();
        r.verify().unwrap();
        let rc = r.receipt;
        assert_eq!(rc.guest_key, c.evidence.receipt_pk);
        assert_eq!(rc.client_key, sv.voucher.client_key);
        assert_eq!(
            (rc.units, rc.price),
            (u * (u64::from(i) + 1), each * (u128::from(i) + 1))
        );
        assert_eq!(
            rc.last_job,
            pupa_protocol::receipt::job_hash(&sj.enc, &sj.ciphertext)
        );
        assert!(rc.seq > last_seq);
        last_seq = rc.seq;
        // The reply carries the voucher that covered the job in the clear beside the TON
        // receipt: together, the payout the host relays (query id = seq).
        let Message::Receipt(rr) = &ex.replies[1] else {
            panic!("{:?}", ex.replies)
        };
        let payout = rr.payout().unwrap().expect("a payout");
        assert_eq!(
            payout,
            Payout {
                query_id: rc.seq,
                receipt: r,
                voucher: sv,
            }
        );
        // What the payment contract checks off-chain (signatures, domain, keys, price ≤ cap).
        payout.check(&test_domain()).unwrap();
    }
    // A third job would exceed the cap: refused before it runs.
    let (mut job, _, _) = matmul_job(&c, 9, 4, 4, 4, DType::F32, Layout::RowMajor);
    job.voucher = ByteBuf::from(v.clone());
    let ex = exchange(
        &mut w,
        &frame(&Message::SealedJob(c.seal(&job, 99))),
        4096,
        false,
    );
    let e = expect_error(&ex, pupa_protocol::msg::ErrorCode::VoucherRefused);
    assert!(
        e.detail
            .contains(&format!("would exceed the voucher cap {cap}")),
        "{}",
        e.detail
    );
    assert_eq!(w.jobs_run(), 2);
}

#[test]
fn bad_vouchers_are_refused() {
    use pupa_protocol::msg::ErrorCode;
    let (mut w, _) = worker_with(Config {
        require_voucher: true,
        ..Config::default()
    });
    let c = Client::connect(&mut w, 21);
    let good = voucher(&[1; 32], &c.evidence.receipt_pk, 1 << 40);
    // A voucher naming client key A but signed by key B.
    let forged = {
        use ed25519_dalek::Signer;
        let a = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let b = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let v = pupa_protocol::ton::Voucher {
            domain: test_domain(),
            client_key: a.verifying_key().to_bytes(),
            guest_key: c.evidence.receipt_pk,
            cap: 1 << 40,
        };
        let sv = pupa_protocol::ton::SignedVoucher {
            voucher: v,
            signature: b.sign(&v.signing_hash().unwrap()).to_bytes(),
        };
        pupa_protocol::ton::to_boc(&sv.to_cell().unwrap())
    };
    let cases: [(Vec<u8>, &str); 4] = [
        (Vec::new(), "requires a voucher"),
        (b"not a boc".to_vec(), "does not parse"),
        (voucher(&[1; 32], &[9; 32], 1 << 40), "another guest"),
        (forged, "signature does not verify"),
    ];
    for (i, (v, needle)) in cases.into_iter().enumerate() {
        let (mut job, _, _) = matmul_job(&c, i as u8, 2, 2, 2, DType::F32, Layout::RowMajor);
        job.voucher = ByteBuf::from(v);
        let ex = exchange(
            &mut w,
            &frame(&Message::SealedJob(c.seal(&job, 200 + i as u8))),
            4096,
            false,
        );
        let e = expect_error(&ex, ErrorCode::VoucherRefused);
        assert!(e.detail.contains(needle), "case {i}: {}", e.detail);
    }
    let (mut job, _, _) = matmul_job(&c, 7, 2, 2, 2, DType::F32, Layout::RowMajor);
    job.voucher = ByteBuf::from(good);
    let sj = c.seal(&job, 250);
    let (_, _, ton) = expect_result_ton(
        &c,
        &sj,
        &exchange(&mut w, &frame(&Message::SealedJob(sj.clone())), 4096, false),
    );
    assert!(ton.is_some());
    assert_eq!(w.jobs_run(), 1);
}

#[test]
fn the_voucher_table_is_bounded_and_known_vouchers_keep_working() {
    use pupa_protocol::msg::ErrorCode;
    let (mut w, _) = worker_with(Config {
        max_vouchers: 2,
        ..Config::default()
    });
    let c = Client::connect(&mut w, 23);
    let run = |w: &mut TestWorker, client_seed: u8, id: u8| {
        let (mut job, _, _) = matmul_job(&c, id, 2, 2, 2, DType::F32, Layout::RowMajor);
        job.voucher = ByteBuf::from(voucher(&[client_seed; 32], &c.evidence.receipt_pk, 1 << 40));
        let sj = SealedJob::seal(&job, &c.evidence.hpke_pk, Aead::Aes256Gcm, &fresh_ikm()).unwrap();
        exchange(w, &frame(&Message::SealedJob(sj.clone())), 4096, false)
    };
    for (seed, id) in [(1, 1), (2, 2), (1, 3)] {
        let ex = run(&mut w, seed, id);
        assert!(matches!(
            ex.replies[..],
            [Message::SealedResult(_), Message::Receipt(_)]
        ));
    }
    let e = expect_error(&run(&mut w, 3, 4), ErrorCode::VoucherRefused);
    assert!(e.detail.contains("no new voucher"), "{}", e.detail);
    assert_eq!(w.jobs_run(), 3, "the refused job did not run");
    let ex = run(&mut w, 2, 5); // a known voucher still works
    assert!(matches!(
        ex.replies[..],
        [Message::SealedResult(_), Message::Receipt(_)]
    ));
}
