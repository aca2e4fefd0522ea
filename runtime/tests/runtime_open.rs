//! Serving in the open (issue 11): the runtime's answers to hostile connections, in a host
//! process — memory budget, half-close, replays for the life of the keys, canonical
//! encodings, `Busy` refusals.

mod runtime_common;

use pupa_protocol::frame::{Kind, HEADER_LEN, MAX_JOB_FRAME};
use pupa_protocol::msg::{ErrorCode, EvidenceRequest, Hello, Message, SealedJob};
use pupa_protocol::seal::{self, Aead};
use pupa_protocol::PROTOCOL_VERSION;
use pupa_runtime::{Config, Session};
use runtime_common::*;

fn header(kind: Kind, len: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&[PROTOCOL_VERSION, kind as u8]);
    h
}

#[test]
fn garbage_frames_beyond_the_memory_budget_get_busy_and_the_guest_keeps_serving() {
    const BUDGET: usize = 160 << 20;
    let (mut w, _) = worker_with(Config {
        memory_budget: BUDGET,
        ..Config::default()
    });
    let c = Client::connect(&mut w, 1);
    let chunk = vec![0xa5u8; 1 << 20];
    let mut sessions: Vec<Session> = (0..8).map(|_| Session::new(&w)).collect();
    for s in sessions.iter_mut() {
        assert_eq!(
            s.receive(&mut w, &header(Kind::SealedJob, MAX_JOB_FRAME)),
            HEADER_LEN
        );
    }
    // 63 MiB each, interleaved as a network would deliver them.
    for _ in 0..63 {
        for s in sessions.iter_mut() {
            s.receive(&mut w, &chunk);
            assert!(
                w.budget().used() <= BUDGET,
                "{} > {BUDGET}",
                w.budget().used()
            );
        }
    }
    let mut busy = 0;
    for s in sessions.iter_mut() {
        let ex = finish(s);
        if ex.closed {
            let e = expect_error(&ex, ErrorCode::Busy);
            assert!(e.detail.contains("retry"), "{}", e.detail);
            busy += 1;
        } else {
            assert!(ex.replies.is_empty());
        }
    }
    assert!((4..8).contains(&busy), "{busy} of 8 refused");
    assert!(w.budget().high_water() <= BUDGET);
    // While the survivors hold their buffers, small requests still get through.
    normal_job_succeeds(&mut w, &c, 2);
    sessions.clear();
    assert_eq!(w.budget().used(), 0, "every reservation returned");
    normal_job_succeeds(&mut w, &c, 3);
}

#[test]
fn a_half_closed_connection_is_answered_then_closed() {
    let (mut w, _) = worker();
    let mut bytes = frame(&Message::Hello(Hello {}));
    bytes.extend(frame(&Message::EvidenceRequest(EvidenceRequest {
        nonce: [7; 32],
    })));
    // Data and FIN together (nc -N), in one piece and byte by byte.
    for chunk in [bytes.len(), 1] {
        let ex = exchange(&mut w, &bytes, chunk, true);
        assert!(
            matches!(&ex.replies[..], [Message::Evidence(_), Message::Evidence(e)] if e.nonce == [7; 32]),
            "{:?}",
            ex.replies
        );
        assert!(ex.closed);
    }
    // Connect and close at once: nothing to answer, closed.
    let ex = exchange(&mut w, &[], 1, true);
    assert!(ex.replies.is_empty() && ex.closed);
}

#[test]
fn a_refused_connection_gets_busy_and_closes() {
    let (mut w, _) = worker();
    let mut s = Session::refuse(&w, "no free worker slot; retry");
    assert!(!s.wants_read());
    assert_eq!(s.receive(&mut w, &frame(&Message::Hello(Hello {}))), 0);
    let ex = finish(&mut s);
    let e = expect_error(&ex, ErrorCode::Busy);
    assert_eq!(e.detail, "no free worker slot; retry");
    assert!(ex.closed);
}

#[test]
fn a_replay_is_refused_after_twenty_thousand_jobs_of_other_clients() {
    let (mut w, _) = worker_with(Config {
        max_clients: 1000,
        ..Config::default()
    });
    let c = Client::connect(&mut w, 4);
    let (job, _, _) = matmul_job(
        &c,
        1,
        1,
        1,
        1,
        pupa_protocol::job::DType::F32,
        pupa_protocol::job::Layout::RowMajor,
    );
    let sj = c.seal(&job, 1);
    let f = frame(&Message::SealedJob(sj.clone()));
    expect_result(&c, &sj, &exchange(&mut w, &f, 1 << 16, false));
    for i in 0..20_000u32 {
        let other = Client {
            key: pupa_protocol::seal::KeyPair::derive(&{
                let mut k = [9u8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                k
            }),
            evidence: c.evidence.clone(),
        };
        let (mut j, _, _) = matmul_job(
            &other,
            2,
            1,
            1,
            1,
            pupa_protocol::job::DType::F32,
            pupa_protocol::job::Layout::RowMajor,
        );
        j.client_seq = next_seq();
        let sj = other.seal(&j, 2);
        let ex = exchange(
            &mut w,
            &frame(&Message::SealedJob(sj.clone())),
            1 << 16,
            false,
        );
        expect_result(&other, &sj, &ex);
    }
    assert!(w.clients() <= 1000);
    let ex = exchange(&mut w, &f, 1 << 16, false);
    let e = expect_error(&ex, ErrorCode::Replay);
    assert_eq!(e.job_id, Some(job.job_id));
    assert_eq!(w.jobs_run(), 20_001, "the replay did not run");
}

#[test]
fn non_canonical_encodings_are_refused() {
    let (mut w, _) = worker();
    let c = Client::connect(&mut w, 5);
    // A frame body with an overlong varint: EvidenceRequest has none, so use a SealedJob
    // whose ciphertext length is written in two bytes where one would do.
    let (job, _, _) = matmul_job(
        &c,
        3,
        1,
        1,
        1,
        pupa_protocol::job::DType::F32,
        pupa_protocol::job::Layout::RowMajor,
    );
    let sj = c.seal(&job, 3);
    let body = Message::SealedJob(sj.clone()).encode_body().unwrap();
    // recipient (32) | aead (varint) | enc (32) | ciphertext length (varint) | ciphertext
    let len_at = 32 + 1 + 32;
    let last = (len_at..).find(|&i| body[i] & 0x80 == 0).unwrap();
    // The same value with one more (zero) continuation byte: overlong LEB128.
    let mut bad = body[..last].to_vec();
    bad.extend_from_slice(&[body[last] | 0x80, 0x00]);
    bad.extend_from_slice(&body[last + 1..]);
    assert_eq!(
        postcard::from_bytes::<SealedJob>(&bad).unwrap(),
        sj,
        "postcard itself accepts it"
    );
    let mut f = header(Kind::SealedJob, bad.len() as u32);
    f.extend_from_slice(&bad);
    let e = expect_error(
        &exchange(&mut w, &f, 4096, false),
        ErrorCode::MalformedMessage,
    );
    assert!(e.detail.contains("canonical"), "{}", e.detail);

    // Inside the seal: the job's `op` variant index (after the 16-byte job_id) as 0x80 0x00.
    let mut pt = postcard::to_allocvec(&job).unwrap();
    assert_eq!(pt[16], 0, "Matmul is variant 0");
    pt.splice(16..17, [0x80, 0x00]);
    let pk = c.evidence.hpke_pk;
    let (enc, ciphertext) = seal::seal_raw(
        Aead::Aes256Gcm,
        &pk,
        &seal::job_info(&pk),
        &seal::job_aad(Aead::Aes256Gcm),
        &pt,
        &[4; 32],
    )
    .unwrap();
    let sj = SealedJob {
        recipient: pk,
        aead: Aead::Aes256Gcm,
        enc,
        ciphertext,
    };
    let ex = exchange(&mut w, &frame(&Message::SealedJob(sj)), 4096, false);
    let e = expect_error(&ex, ErrorCode::MalformedMessage);
    assert!(e.detail.contains("canonical"), "{}", e.detail);
    normal_job_succeeds(&mut w, &c, 6);
}

/// A clock that advances one second each time it is read: a job that polls its deadline
/// once per outer block runs out of time after a few blocks, deterministically.
struct Ticking(std::sync::atomic::AtomicU64);
impl pupa_runtime::Clock for Ticking {
    fn now_ns(&self) -> u64 {
        let tick = 1_000_000_000;
        self.0.fetch_add(tick, std::sync::atomic::Ordering::Relaxed) + tick
    }
}

#[test]
fn a_job_past_its_compute_deadline_is_stopped_and_not_billed() {
    use pupa_runtime::{DevTee, Worker};
    let mut w = Worker::new(
        DevTee {
            image_sha384: [0x11; 48],
        },
        TestEntropy {
            seed: 3,
            ctr: 0,
            fail_after: None,
        },
        Ticking(std::sync::atomic::AtomicU64::new(0)),
        Config {
            job_timeout_ns: 5_000_000_000,
            ..Config::default()
        },
    )
    .unwrap();
    let hello = frame(&Message::Hello(Hello {}));
    let mut s = Session::new(&w);
    s.receive(&mut w, &hello);
    let ev = match &finish(&mut s).replies[..] {
        [Message::Evidence(e)] => e.clone(),
        r => panic!("{r:?}"),
    };
    let c = Client {
        key: pupa_protocol::seal::KeyPair::derive(&[8; 32]),
        evidence: ev,
    };
    // Attention over 2048 keys: 8 key blocks per query block, far more than 5 deadline checks.
    let (sq, sk, d) = (256usize, 2048usize, 64usize);
    let job = pupa_protocol::job::Job {
        job_id: [0x77; 16],
        op: pupa_protocol::job::Op::Attention {
            seq_q: sq as u32,
            seq_k: sk as u32,
            heads: 1,
            kv_heads: 1,
            dim: d as u32,
            causal: false,
        },
        dtype: pupa_protocol::job::DType::Bf16,
        tensors: vec![
            pupa_protocol::serde_bytes::ByteBuf::from(vec![0u8; sq * d * 2]),
            pupa_protocol::serde_bytes::ByteBuf::from(vec![0u8; sk * d * 2]),
            pupa_protocol::serde_bytes::ByteBuf::from(vec![0u8; sk * d * 2]),
        ],
        reply_key: c.key.pk,
        reply_aead: Aead::Aes256Gcm,
        client_seq: next_seq(),
        voucher: pupa_protocol::serde_bytes::ByteBuf::new(),
    };
    let mut s = Session::new(&w);
    s.receive(&mut w, &frame(&Message::SealedJob(c.seal(&job, 1))));
    let ex = finish(&mut s);
    let e = expect_error(&ex, ErrorCode::DeadlineExceeded);
    assert_eq!(e.job_id, Some([0x77; 16]));
    assert!(!ex.closed, "the connection stays usable");
    assert_eq!(w.jobs_run(), 0, "not run to completion, no receipt");
}
