//! Keeps the worked hex examples of `docs/PROTOCOL.md` true.
//!
//! Every example in the document is a fenced block preceded by `<!-- example: ID -->`; its
//! bytes are the hex digits of the block (whitespace ignored, `#` starts a comment to the end
//! of the line). This test rebuilds each example from the fixed inputs the document lists,
//! with the real encoders, and asserts byte equality both ways: every example in the document
//! is rebuilt, every example rebuilt is in the document, and every frame kind has one.
//!
//! To print the current encodings (e.g. after a deliberate protocol change), run
//! `cargo test -p pupa-protocol --test protocol_doc -- --ignored --nocapture`.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use pupa_protocol::evidence::{report_data, sign_dev, Evidence, TeeEvidence};
use pupa_protocol::frame::{Frame, Kind, HEADER_LEN};
use pupa_protocol::job::{DType, Job, JobResult, Layout, Op};
use pupa_protocol::msg::{
    ErrorCode, ErrorReply, EvidenceRequest, Hello, Message, ReceiptReply, SealedJob, SealedResult,
};
use pupa_protocol::receipt::{job_hash, Receipt};
use pupa_protocol::seal::{job_aad, job_info, result_aad, result_info, Aead, KeyPair};
use pupa_protocol::ton::{self, Domain, MsgAddressInt, Payout, Voucher, TESTNET_ID};
use serde_bytes::ByteBuf;

// The fixed inputs (listed in the document's "Worked examples" section).
const GUEST_HPKE_IKM: [u8; 32] = [0x01; 32];
const GUEST_RECEIPT_SEED: [u8; 32] = [0x02; 32];
const CLIENT_REPLY_IKM: [u8; 32] = [0x03; 32];
const CLIENT_VOUCHER_SEED: [u8; 32] = [0x04; 32];
const IMAGE_SHA384: [u8; 48] = [0x05; 48];
const NONCE: [u8; 32] = [0x06; 32];
const JOB_IKM_E: [u8; 32] = [0x07; 32];
const RESULT_IKM_E: [u8; 32] = [0x08; 32];
const JOB_ID: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
const CLIENT_SEQ: u64 = 1_764_777_600_000_000_000;
const CONTRACT_HASH: [u8; 32] = [0xaa; 32];
const VOUCHER_CAP: u128 = 1_000_000_000;
const NANOTONS_PER_MUNIT: u64 = 1;

fn f32s(v: &[f32]) -> ByteBuf {
    ByteBuf::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

fn frame(m: Message) -> Vec<u8> {
    m.to_frame().expect("example encodes")
}

/// Every example, rebuilt from the fixed inputs, by id.
fn examples() -> BTreeMap<&'static str, Vec<u8>> {
    let guest = KeyPair::derive(&GUEST_HPKE_IKM);
    let receipt_key = SigningKey::from_bytes(&GUEST_RECEIPT_SEED);
    let receipt_pk = receipt_key.verifying_key().to_bytes();
    let client = KeyPair::derive(&CLIENT_REPLY_IKM);
    let voucher_key = SigningKey::from_bytes(&CLIENT_VOUCHER_SEED);
    let domain = Domain {
        network_id: TESTNET_ID,
        contract: MsgAddressInt {
            workchain: 0,
            hash: CONTRACT_HASH,
        },
    };
    let mut ex = BTreeMap::new();

    // Evidence.
    ex.insert("hello-frame", frame(Message::Hello(Hello {})));
    ex.insert(
        "evidence-request-frame",
        frame(Message::EvidenceRequest(EvidenceRequest { nonce: NONCE })),
    );
    let rd = report_data(&guest.pk, &receipt_pk, &NONCE);
    ex.insert("report-data", rd.to_vec());
    ex.insert(
        "evidence-dev-frame",
        frame(Message::Evidence(Evidence {
            hpke_pk: guest.pk,
            receipt_pk,
            nonce: NONCE,
            tee: TeeEvidence::Dev(sign_dev(&IMAGE_SHA384, &rd)),
            gpus: Vec::new(),
        })),
    );

    // The voucher the job carries.
    let voucher = Voucher {
        domain,
        client_key: voucher_key.verifying_key().to_bytes(),
        guest_key: receipt_pk,
        cap: VOUCHER_CAP,
    }
    .sign(&voucher_key)
    .expect("voucher signs");
    let voucher_boc = ton::to_boc(&voucher.to_cell().expect("voucher cell"));
    ex.insert("voucher-boc", voucher_boc.clone());

    // The matmul job: C[1×2] = A[1×2] · B[2×2], B stored column-major.
    let job = Job {
        job_id: JOB_ID,
        op: Op::Matmul {
            m: 1,
            n: 2,
            k: 2,
            a_layout: Layout::RowMajor,
            b_layout: Layout::ColMajor,
        },
        dtype: DType::F32,
        tensors: vec![f32s(&[1.0, 2.0]), f32s(&[3.0, 5.0, 4.0, 6.0])],
        reply_key: client.pk,
        reply_aead: Aead::ChaCha20Poly1305,
        client_seq: CLIENT_SEQ,
        voucher: ByteBuf::from(voucher_boc.clone()),
    };
    let shape = job.validate().expect("example job is valid");
    ex.insert(
        "job-plaintext",
        postcard::to_allocvec(&job).expect("job encodes"),
    );
    ex.insert("job-info", job_info(&guest.pk));
    ex.insert("job-aad", job_aad(Aead::Aes256Gcm));
    let sealed = SealedJob::seal(&job, &guest.pk, Aead::Aes256Gcm, &JOB_IKM_E).expect("seals");
    assert_eq!(sealed.open(&guest).expect("opens"), job);
    let hash = job_hash(&sealed.enc, &sealed.ciphertext);
    ex.insert("job-hash", hash.to_vec());
    ex.insert(
        "sealed-job-frame",
        frame(Message::SealedJob(sealed.clone())),
    );

    // The attention job (plaintext only): bf16, GQA 2:1, causal.
    let one = ByteBuf::from([0x80u8, 0x3f].repeat(4));
    let attention = Job {
        job_id: JOB_ID,
        op: Op::Attention {
            seq_q: 1,
            seq_k: 2,
            heads: 2,
            kv_heads: 1,
            dim: 2,
            causal: true,
        },
        dtype: DType::Bf16,
        tensors: vec![one.clone(), one.clone(), one],
        reply_key: client.pk,
        reply_aead: Aead::Aes256Gcm,
        client_seq: CLIENT_SEQ + 1,
        voucher: ByteBuf::new(),
    };
    attention
        .validate()
        .expect("example attention job is valid");
    ex.insert(
        "attention-job-plaintext",
        postcard::to_allocvec(&attention).expect("job encodes"),
    );

    // The result: C = [1·3 + 2·5, 1·4 + 2·6].
    let result = JobResult {
        job_id: JOB_ID,
        dims: vec![1, 2],
        data: f32s(&[13.0, 16.0]),
        units: shape.units,
    };
    ex.insert(
        "job-result-plaintext",
        postcard::to_allocvec(&result).expect("result encodes"),
    );
    ex.insert("result-info", result_info(&guest.pk, &client.pk));
    ex.insert(
        "result-aad",
        result_aad(Aead::ChaCha20Poly1305, &sealed.enc),
    );
    let sealed_result = SealedResult::seal(
        &result,
        &guest.pk,
        &client.pk,
        &sealed.enc,
        Aead::ChaCha20Poly1305,
        &RESULT_IKM_E,
    )
    .expect("seals");
    assert_eq!(
        sealed_result
            .open(&client, &guest.pk, &sealed.enc)
            .expect("opens"),
        result
    );
    ex.insert(
        "sealed-result-frame",
        frame(Message::SealedResult(sealed_result)),
    );

    // The receipts: the statement and the TON receipt (first job of this client).
    let statement = Receipt {
        guest_key: receipt_pk,
        client_key: client.pk,
        job_hash: hash,
        seq: 1,
        units: shape.units,
        total_units: shape.units,
    };
    ex.insert("statement-signed-bytes", statement.signed_bytes().to_vec());
    let price = (u128::from(shape.units) * u128::from(NANOTONS_PER_MUNIT)).div_ceil(1_000_000);
    let ton_receipt = ton::Receipt {
        domain,
        guest_key: receipt_pk,
        client_key: voucher.voucher.client_key,
        seq: 1,
        units: shape.units,
        price,
        last_job: hash,
    }
    .sign(&receipt_key)
    .expect("receipt signs");
    let ton_boc = ton::to_boc(&ton_receipt.to_cell().expect("receipt cell"));
    ex.insert("ton-receipt-boc", ton_boc.clone());
    let reply = ReceiptReply {
        statement: statement.sign(&receipt_key),
        ton: Some(ByteBuf::from(ton_boc)),
        ton_voucher: Some(ByteBuf::from(voucher_boc.clone())),
    };
    let payout = Payout {
        query_id: 1,
        receipt: ton_receipt,
        voucher,
    };
    // The reply's clear TON parts are exactly the payout of example payout-boc.
    assert_eq!(reply.payout(), Ok(Some(payout)));
    ex.insert("receipt-frame", frame(Message::Receipt(reply)));
    payout.check(&domain).expect("payout checks");
    ex.insert(
        "payout-boc",
        ton::to_boc(&payout.to_cell().expect("payout cell")),
    );

    // Errors: one naming its job, one not.
    ex.insert(
        "error-replay-frame",
        frame(Message::Error(ErrorReply::new(
            ErrorCode::Replay,
            Some(JOB_ID),
            "client_seq replayed",
        ))),
    );
    ex.insert(
        "error-busy-frame",
        frame(Message::Error(ErrorReply::new(
            ErrorCode::Busy,
            None,
            "retry",
        ))),
    );
    ex
}

/// The examples of the document: `<!-- example: ID -->`, then a fenced block of hex.
fn doc_examples(doc: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- example:") else {
            continue;
        };
        let id = rest
            .strip_suffix("-->")
            .unwrap_or_else(|| panic!("unterminated example marker: {line}"))
            .trim()
            .to_string();
        let fence = lines
            .next()
            .unwrap_or_else(|| panic!("example {id}: no block after the marker"));
        assert!(
            fence.trim_start().starts_with("```"),
            "example {id}: the marker must be followed directly by a fenced block"
        );
        let mut digits = String::new();
        loop {
            let l = lines
                .next()
                .unwrap_or_else(|| panic!("example {id}: unterminated block"));
            if l.trim_start().starts_with("```") {
                break;
            }
            let l = l.split('#').next().unwrap_or("");
            digits.extend(l.chars().filter(|c| !c.is_whitespace()));
        }
        let bytes = hex::decode(&digits).unwrap_or_else(|e| panic!("example {id}: bad hex: {e}"));
        assert!(
            out.insert(id.clone(), bytes).is_none(),
            "example {id} appears twice"
        );
    }
    out
}

fn read_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_example_in_the_document_is_what_the_code_encodes() {
    let doc = doc_examples(&read_doc());
    let built = examples();
    let doc_ids: BTreeSet<&str> = doc.keys().map(String::as_str).collect();
    let built_ids: BTreeSet<&str> = built.keys().copied().collect();
    assert_eq!(
        doc_ids, built_ids,
        "the document's examples and the test's differ"
    );
    for (id, bytes) in &built {
        assert!(
            doc[*id] == *bytes,
            "example {id} drifted; the code now encodes\n{}",
            hex::encode(bytes)
        );
    }
}

#[test]
fn every_frame_kind_has_an_example_that_decodes() {
    let doc = doc_examples(&read_doc());
    let mut kinds = BTreeSet::new();
    for (id, bytes) in doc.iter().filter(|(id, _)| id.ends_with("-frame")) {
        assert!(
            bytes.len() >= HEADER_LEN,
            "example {id}: shorter than a header"
        );
        let (h, body) = bytes.split_at(HEADER_LEN);
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        assert_eq!(len, body.len(), "example {id}: length field");
        assert_eq!(
            h[4],
            pupa_protocol::PROTOCOL_VERSION,
            "example {id}: version"
        );
        let kind = Kind::from_u8(h[5]).unwrap_or_else(|| panic!("example {id}: kind {}", h[5]));
        let f = Frame {
            kind,
            body: body.to_vec(),
        };
        let m = Message::from_frame(&f).unwrap_or_else(|e| panic!("example {id}: {e}"));
        assert_eq!(m.to_frame().expect("re-encodes"), *bytes, "example {id}");
        kinds.insert(h[5]);
    }
    let all: BTreeSet<u8> = (0..=u8::MAX)
        .filter(|b| Kind::from_u8(*b).is_some())
        .collect();
    assert_eq!(kinds, all, "every frame kind needs an example");
}

#[test]
#[ignore = "prints the examples for the document; run with --ignored --nocapture"]
fn print_examples() {
    for (id, bytes) in examples() {
        println!("<!-- example: {id} -->\n```text");
        for line in bytes.chunks(32) {
            println!("{}", hex::encode(line));
        }
        println!("```\n");
    }
}
