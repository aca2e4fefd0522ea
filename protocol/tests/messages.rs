//! Round trips and refusals of messages, sealed jobs/results, evidence and receipts.

use pupa_protocol::evidence::{
    report_data, sign_dev, verify_dev, Evidence, EvidenceError, TeeEvidence, TeeKind,
};
use pupa_protocol::frame::{Frame, FrameDecoder, Kind};
use pupa_protocol::job::{DType, Job, JobError, JobResult, Layout, Op};
use pupa_protocol::msg::{
    ErrorCode, ErrorReply, Hello, Message, MsgError, OpenError, PayoutPartsError, ReceiptReply,
    SealedJob, SealedResult,
};
use pupa_protocol::receipt::{job_hash, Receipt, ReceiptError};
use pupa_protocol::seal::{Aead, KeyPair, SealError};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha512};

fn matmul_job(m: u32, n: u32, k: u32) -> Job {
    Job {
        job_id: [9; 16],
        op: Op::Matmul {
            m,
            n,
            k,
            a_layout: Layout::RowMajor,
            b_layout: Layout::ColMajor,
        },
        dtype: DType::F32,
        tensors: vec![
            ByteBuf::from(vec![0u8; (m * k * 4) as usize]),
            ByteBuf::from(vec![0u8; (k * n * 4) as usize]),
        ],
        reply_key: KeyPair::derive(&[2; 32]).pk,
        reply_aead: Aead::ChaCha20Poly1305,
        client_seq: 300,
        voucher: ByteBuf::from(b"v".to_vec()),
    }
}

#[test]
fn report_data_is_sha512_of_domain_and_keys() {
    // Independent recomputation with the plain SHA-512 of the concatenation.
    let (a, b, n) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let mut cat = b"pupa/evidence/v1".to_vec();
    cat.extend_from_slice(&a);
    cat.extend_from_slice(&b);
    cat.extend_from_slice(&n);
    assert_eq!(
        report_data(&a, &b, &n).to_vec(),
        Sha512::digest(&cat).to_vec()
    );
    assert_ne!(report_data(&a, &b, &n), report_data(&b, &a, &n));
}

#[test]
fn dev_evidence_verifies_and_refuses_tampering() {
    let image = [0x5a; 48];
    let mut ev = Evidence {
        hpke_pk: [1; 32],
        receipt_pk: [2; 32],
        nonce: [3; 32],
        tee: TeeEvidence::Tdx {
            quote: vec![],
            event_log: None,
        },
        gpus: Vec::new(),
    };
    assert_eq!(verify_dev(&ev), Err(EvidenceError::NotDev));
    assert_eq!(ev.tee.kind(), TeeKind::Tdx);
    ev.tee = TeeEvidence::Dev(sign_dev(&image, &ev.expected_report_data()));
    assert_eq!(verify_dev(&ev), Ok(image));
    assert_eq!(ev.tee.kind(), TeeKind::Dev);
    let snp = TeeEvidence::Snp {
        report: vec![],
        vcek: None,
    };
    assert_eq!((snp.kind(), snp.kind().name()), (TeeKind::Snp, "snp"));
    // Round trip through the wire.
    let frame = Message::Evidence(ev.clone()).to_frame().unwrap();
    let mut d = FrameDecoder::new();
    d.feed(&frame);
    let back = Message::from_frame(&d.next_frame().unwrap().unwrap()).unwrap();
    assert_eq!(back, Message::Evidence(ev.clone()));

    let mut other_nonce = ev.clone();
    other_nonce.nonce = [4; 32];
    assert_eq!(
        verify_dev(&other_nonce),
        Err(EvidenceError::BindingMismatch)
    );
    let TeeEvidence::Dev(r) = &ev.tee else {
        unreachable!()
    };
    let mut other_image = r.clone();
    other_image.image_sha384[0] ^= 1;
    let mut e2 = ev.clone();
    e2.tee = TeeEvidence::Dev(other_image);
    assert_eq!(verify_dev(&e2), Err(EvidenceError::BadSignature));
    let mut no_marker = r.clone();
    no_marker.marker = "PUPA-SECURE".into();
    e2.tee = TeeEvidence::Dev(no_marker);
    assert_eq!(verify_dev(&e2), Err(EvidenceError::BadMarker));
}

#[test]
fn job_seals_to_guest_and_result_to_client() {
    let guest = KeyPair::derive(&[1; 32]);
    let client = KeyPair::derive(&[2; 32]);
    for aead in [Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
        let job = matmul_job(2, 3, 4);
        let sj = SealedJob::seal(&job, &guest.pk, aead, &[5; 32]).unwrap();
        assert_eq!(
            sj.enc,
            KeyPair::derive(&[5; 32]).pk,
            "enc is DeriveKeyPair(ikmE).pk"
        );
        assert_eq!(sj.open(&guest).unwrap(), job);
        assert_eq!(sj.clone().open_owned(&guest).unwrap(), job);
        let mut bad = sj.clone();
        bad.ciphertext.truncate(10);
        assert_eq!(
            bad.open_owned(&guest),
            Err(OpenError::Seal(SealError::OpenFailed))
        );

        let other = KeyPair::derive(&[8; 32]);
        assert_eq!(sj.open(&other), Err(OpenError::WrongRecipient));
        // Lying about the recipient does not help: `info` binds the real one.
        let mut lie = sj.clone();
        lie.recipient = other.pk;
        assert_eq!(
            lie.open(&other),
            Err(OpenError::Seal(SealError::OpenFailed))
        );
        let mut swapped = sj.clone();
        swapped.aead = if aead == Aead::Aes256Gcm {
            Aead::ChaCha20Poly1305
        } else {
            Aead::Aes256Gcm
        };
        assert_eq!(
            swapped.open(&guest),
            Err(OpenError::Seal(SealError::OpenFailed))
        );

        let res = JobResult {
            job_id: job.job_id,
            dims: vec![2, 3],
            data: ByteBuf::from(vec![1u8; 24]),
            units: 48,
        };
        let sr = SealedResult::seal(&res, &guest.pk, &client.pk, &sj.enc, aead, &[6; 32]).unwrap();
        assert_eq!(sr.open(&client, &guest.pk, &sj.enc).unwrap(), res);
        assert!(
            sr.open(&client, &guest.pk, &[0x11; 32]).is_err(),
            "bound to the job's enc"
        );
        assert!(
            sr.open(&client, &other.pk, &sj.enc).is_err(),
            "bound to the guest key"
        );
        assert!(sr.open(&other, &guest.pk, &sj.enc).is_err());
    }
}

#[test]
fn seal_refuses_invalid_recipient_key() {
    // The all-zero point gives an all-zero DH output (RFC 9180 §7.1.4): refused.
    let r = SealedJob::seal(&matmul_job(1, 1, 1), &[0; 32], Aead::Aes256Gcm, &[5; 32]);
    assert!(matches!(r, Err(MsgError::Seal(SealError::BadKey))), "{r:?}");
}

#[test]
fn messages_refuse_trailing_and_malformed_bodies() {
    let f = Frame {
        kind: Kind::Hello,
        body: vec![0],
    };
    assert_eq!(
        Message::from_frame(&f),
        Err(MsgError::TrailingBytes {
            kind: Kind::Hello,
            extra: 1
        })
    );
    let f = Frame {
        kind: Kind::EvidenceRequest,
        body: vec![1, 2, 3],
    };
    assert!(matches!(
        Message::from_frame(&f),
        Err(MsgError::Malformed {
            kind: Kind::EvidenceRequest,
            ..
        })
    ));
    let f = Frame {
        kind: Kind::Error,
        body: vec![200],
    };
    assert!(matches!(
        Message::from_frame(&f),
        Err(MsgError::Malformed { .. })
    ));
    let m = Message::Hello(Hello {});
    assert_eq!(m.to_frame().unwrap(), vec![0, 0, 0, 0, 1, 1]);
    let e = Message::Error(ErrorReply::new(
        ErrorCode::Replay,
        Some([1; 16]),
        &"é".repeat(400),
    ));
    let Message::Error(er) = &e else {
        unreachable!()
    };
    assert!(er.detail.len() <= 512 && er.detail.chars().all(|c| c == 'é'));
}

#[test]
fn job_validation_errors_are_specific() {
    assert!(matmul_job(2, 3, 4).validate().is_ok());
    let s = matmul_job(2, 3, 4).validate().unwrap();
    assert_eq!(
        (s.out_dims, s.out_rank, s.out_elems, s.flops),
        ([2, 3, 1], 2, 6, 48)
    );

    let mut j = matmul_job(2, 3, 4);
    j.op = Op::Matmul {
        m: 0,
        n: 3,
        k: 4,
        a_layout: Layout::RowMajor,
        b_layout: Layout::RowMajor,
    };
    assert_eq!(j.validate(), Err(JobError::ZeroDim { name: "m" }));
    let mut j = matmul_job(2, 3, 4);
    j.tensors.pop();
    assert_eq!(
        j.validate(),
        Err(JobError::TensorCount {
            expected: 2,
            got: 1
        })
    );
    let mut j = matmul_job(2, 3, 4);
    j.dtype = DType::Bf16;
    assert_eq!(
        j.validate(),
        Err(JobError::TensorBytes {
            index: 0,
            expected: 16,
            got: 32
        })
    );
    let mut j = matmul_job(2, 3, 4);
    j.op = Op::Matmul {
        m: u32::MAX,
        n: u32::MAX,
        k: u32::MAX,
        a_layout: Layout::RowMajor,
        b_layout: Layout::RowMajor,
    };
    assert_eq!(
        j.validate(),
        Err(JobError::DimTooLarge {
            name: "m",
            got: u32::MAX,
            max: pupa_protocol::job::MAX_MATMUL_DIM
        })
    );
    let mut j = matmul_job(2, 3, 4);
    j.voucher = ByteBuf::from(vec![0; 5000]);
    assert!(matches!(
        j.validate(),
        Err(JobError::TooLarge {
            what: "voucher",
            ..
        })
    ));

    let att = |seq_q, seq_k, heads, kv_heads, causal| {
        let mut j = matmul_job(1, 1, 1);
        j.op = Op::Attention {
            seq_q,
            seq_k,
            heads,
            kv_heads,
            dim: 8,
            causal,
        };
        j.tensors = vec![
            ByteBuf::from(vec![0u8; (heads * seq_q * 8 * 4) as usize]),
            ByteBuf::from(vec![0u8; (kv_heads * seq_k * 8 * 4) as usize]),
            ByteBuf::from(vec![0u8; (kv_heads * seq_k * 8 * 4) as usize]),
        ];
        j.validate()
    };
    assert_eq!(att(4, 6, 4, 2, true).unwrap().out_dims, [4, 4, 8]);
    assert_eq!(att(3, 6, 4, 2, true).unwrap().out_dims, [3, 4, 8]);
    assert_eq!(
        att(4, 6, 4, 3, false),
        Err(JobError::BadGqa {
            heads: 4,
            kv_heads: 3
        })
    );
    assert_eq!(
        att(7, 6, 2, 2, true),
        Err(JobError::CausalShape { seq_q: 7, seq_k: 6 })
    );
    assert!(att(7, 6, 2, 2, false).is_ok());
}

#[test]
fn receipts_sign_and_verify() {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let gk = sk.verifying_key().to_bytes();
    let r = Receipt {
        guest_key: gk,
        client_key: [1; 32],
        job_hash: job_hash(&[2; 32], b"ct"),
        seq: 1,
        units: 10,
        total_units: 10,
    };
    let s = r.sign(&sk);
    assert_eq!(s.verify(&gk), Ok(()));
    assert_eq!(s.verify(&[0; 32]), Err(ReceiptError::WrongGuest));
    let mut t = s;
    t.receipt.total_units = 11;
    assert_eq!(t.verify(&gk), Err(ReceiptError::BadSignature));
    for ton in [None, Some(ByteBuf::from(vec![0xb5, 0xee]))] {
        let m = Message::Receipt(ReceiptReply {
            statement: s,
            ton_voucher: ton.clone(),
            ton,
        });
        let back = Message::from_frame(&Frame {
            kind: Kind::Receipt,
            body: m.encode_body().unwrap(),
        })
        .unwrap();
        assert_eq!(back, m);
    }
    assert_ne!(job_hash(&[2; 32], b"ct"), job_hash(&[2; 32], b"cu"));
    // The TON parts make a payout only together, and only when they parse.
    let reply = |ton: Option<&[u8]>, v: Option<&[u8]>| ReceiptReply {
        statement: s,
        ton: ton.map(ByteBuf::from),
        ton_voucher: v.map(ByteBuf::from),
    };
    assert_eq!(reply(None, None).payout(), Ok(None));
    let junk: &[u8] = &[0xb5, 0xee];
    assert_eq!(
        reply(Some(junk), None).payout(),
        Err(PayoutPartsError::Unpaired)
    );
    assert_eq!(
        reply(None, Some(junk)).payout(),
        Err(PayoutPartsError::Unpaired)
    );
    assert!(matches!(
        reply(Some(junk), Some(junk)).payout(),
        Err(PayoutPartsError::Receipt(_))
    ));
}
