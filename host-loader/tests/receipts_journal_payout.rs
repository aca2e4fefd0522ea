//! The payment loop on the host, without a VM: the guest's `Receipt` reply (the statement, the
//! TON receipt and the voucher that covered the job, the last two in the clear) goes through
//! the relay's journal exactly as `pupa-host run` writes it, and `receipts relay` builds each
//! payout from the record alone: the receipt under its own job's voucher. Every forgery or
//! mismatch a host could meet in a journal is refused with its own error.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use ed25519_dalek::SigningKey;
use pupa_host::receipts::policy::BatchPolicy;
use pupa_host::receipts::relay::{Relay, TickReport};
use pupa_host::receipts::store::ReceiptStore;
use pupa_host::receipts::toncenter::TonApi;
use pupa_host::receipts::validate::Validator;
use pupa_host::receipts::{hex, ReceiptError};
use pupa_host::relay::journal::{Journal, Record};
use pupa_protocol::msg::{Message, ReceiptReply};
use pupa_protocol::receipt::Receipt as Statement;
use pupa_protocol::ton::*;
use serde_bytes::ByteBuf;

const GUEST: [u8; 32] = [0x11; 32];
const CLIENT: [u8; 32] = [0xA1; 32];

fn domain() -> Domain {
    Domain {
        network_id: MAINNET_ID,
        contract: MsgAddressInt {
            workchain: 0,
            hash: [0xC0; 32],
        },
    }
}

fn key(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// The TON receipt (cumulative `price` at `seq`) the guest signs.
fn receipt(seq: u64, price: u128) -> Receipt {
    Receipt {
        domain: domain(),
        guest_key: key(GUEST).verifying_key().to_bytes(),
        client_key: key(CLIENT).verifying_key().to_bytes(),
        seq,
        units: 1000 * seq,
        price,
        last_job: [seq as u8; 32],
    }
}

/// The client's voucher for the guest with `cap`.
fn voucher(cap: u128) -> Voucher {
    Voucher {
        domain: domain(),
        client_key: key(CLIENT).verifying_key().to_bytes(),
        guest_key: key(GUEST).verifying_key().to_bytes(),
        cap,
    }
}

fn boc_of_receipt(r: &Receipt, signer: [u8; 32]) -> Vec<u8> {
    let sig = r.signing_hash().unwrap();
    let signed = SignedReceipt {
        receipt: *r,
        signature: ed25519_dalek::Signer::sign(&key(signer), &sig).to_bytes(),
    };
    to_boc(&signed.to_cell().unwrap())
}

fn boc_of_voucher(v: &Voucher, signer: [u8; 32]) -> Vec<u8> {
    let sig = v.signing_hash().unwrap();
    let signed = SignedVoucher {
        voucher: *v,
        signature: ed25519_dalek::Signer::sign(&key(signer), &sig).to_bytes(),
    };
    to_boc(&signed.to_cell().unwrap())
}

/// The `Receipt` frame body the guest sends for job `seq` with these TON parts.
fn reply_body(seq: u64, ton: Option<Vec<u8>>, ton_voucher: Option<Vec<u8>>) -> Vec<u8> {
    let statement = Statement {
        guest_key: key(GUEST).verifying_key().to_bytes(),
        client_key: [0x33; 32],
        job_hash: [seq as u8; 32],
        seq,
        units: 1000,
        total_units: 1000 * seq,
    }
    .sign(&key(GUEST));
    Message::Receipt(ReceiptReply {
        statement,
        ton: ton.map(ByteBuf::from),
        ton_voucher: ton_voucher.map(ByteBuf::from),
    })
    .encode_body()
    .unwrap()
}

fn relay_over(dir: &Path) -> Relay {
    Relay {
        store: ReceiptStore::open(&dir.join("receipts.sqlite")).unwrap(),
        validator: Validator {
            domain: domain(),
            guests: BTreeSet::from([key(GUEST).verifying_key().to_bytes()]),
        },
        api: TonApi::new("http://127.0.0.1:9", None),
        policy: BatchPolicy {
            threshold: u128::MAX,
            max_delay_s: u64::MAX,
            resubmit_after_s: 60,
        },
        ingest_batch: 100,
        vouchers: Vec::new(),
    }
}

#[test]
fn each_journaled_receipt_is_paid_under_the_voucher_of_its_job_and_counted_once() {
    let dir = common::temp_dir("journal-payout");
    let path = dir.join("receipts.journal");
    let j = Journal::open(&path).unwrap();
    // Three jobs; before each the client signs a voucher whose cap is exactly the new total:
    // only the receipt's own voucher covers it.
    let prices = [100u128, 250, 400];
    let mut bodies = Vec::new();
    for (i, &p) in prices.iter().enumerate() {
        let seq = i as u64 + 1;
        let body = reply_body(
            seq,
            Some(boc_of_receipt(&receipt(seq, p), GUEST)),
            Some(boc_of_voucher(&voucher(p), CLIENT)),
        );
        j.append(&body).unwrap();
        bodies.push(body);
    }
    // A job without a voucher: nothing to pay. And the second receipt journaled twice.
    j.append(&reply_body(9, None, None)).unwrap();
    j.append(&bodies[1]).unwrap();
    let mut relay = relay_over(&dir);
    let mut report = TickReport::default();
    relay.ingest(&path, 1, &mut report).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!((report.lines, report.ingested, report.skipped), (5, 3, 1));
    let ch = relay.store.channels().unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!((ch[0].latest_seq, ch[0].latest_price), (3, 400));
    // What would be submitted: the latest receipt with its own voucher, query id = seq.
    let (g, c) = (ch[0].guest_key, ch[0].client_key);
    let boc = relay.store.payout_boc(&g, &c, 3).unwrap().unwrap();
    let p = Payout::from_cell(&from_boc_single(&boc).unwrap()).unwrap();
    assert_eq!((p.query_id, p.receipt.receipt.price), (3, 400));
    assert_eq!(p.voucher.voucher.cap, 400);
    p.check(&domain()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Ingests one record and returns why it was refused.
fn refusal(tag: &str, record: Record) -> String {
    let dir = common::temp_dir(tag);
    let path = dir.join("receipts.journal");
    Journal::open(&path)
        .unwrap()
        .append_record(&record)
        .unwrap();
    let mut relay = relay_over(&dir);
    let mut report = TickReport::default();
    relay.ingest(&path, 1, &mut report).unwrap();
    assert_eq!(report.ingested, 0, "{tag}: {report:?}");
    assert_eq!(report.rejected.len(), 1, "{tag}: {report:?}");
    assert!(relay.store.channels().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
    report.rejected.remove(0)
}

fn record(ton: Option<Vec<u8>>, ton_voucher: Option<Vec<u8>>) -> Record {
    Record::Receipt {
        received_at: 1,
        guest_key: hex(&key(GUEST).verifying_key().to_bytes()),
        client_key: "33".repeat(32),
        job_hash: "00".repeat(32),
        seq: 1,
        units: 1000,
        total_units: 1000,
        signature: "00".repeat(64),
        ton_receipt_boc: ton.map(|b| hex(&b)),
        ton_voucher_boc: ton_voucher.map(|b| hex(&b)),
    }
}

#[test]
fn every_forged_or_mismatched_journal_record_gets_its_own_error() {
    let good_r = || Some(boc_of_receipt(&receipt(1, 500), GUEST));
    let other_contract = Domain {
        contract: MsgAddressInt {
            workchain: 0,
            hash: [0xC1; 32],
        },
        ..domain()
    };
    let mut other_client = voucher(500);
    other_client.client_key = key([0xB1; 32]).verifying_key().to_bytes();
    let mut foreign_guest = receipt(1, 500);
    foreign_guest.guest_key = key([0x22; 32]).verifying_key().to_bytes();
    let cases: Vec<(&str, Record, ReceiptError)> = vec![
        (
            "forged-voucher",
            // Names the client's key, signed by another key.
            record(good_r(), Some(boc_of_voucher(&voucher(500), [0xEE; 32]))),
            ReceiptError::BadClientSignature,
        ),
        (
            "forged-receipt",
            record(
                Some(boc_of_receipt(&receipt(1, 500), [0xEE; 32])),
                Some(boc_of_voucher(&voucher(500), CLIENT)),
            ),
            ReceiptError::BadGuestSignature,
        ),
        (
            "wrong-contract",
            record(
                good_r(),
                Some(boc_of_voucher(
                    &Voucher {
                        domain: other_contract,
                        ..voucher(500)
                    },
                    CLIENT,
                )),
            ),
            ReceiptError::WrongDomain,
        ),
        (
            "cap-below-price",
            record(good_r(), Some(boc_of_voucher(&voucher(499), CLIENT))),
            ReceiptError::AboveCap {
                price: 500,
                cap: 499,
            },
        ),
        (
            "other-client",
            record(good_r(), Some(boc_of_voucher(&other_client, [0xB1; 32]))),
            ReceiptError::VoucherMismatch,
        ),
        (
            "unknown-guest",
            record(
                Some(boc_of_receipt(&foreign_guest, [0x22; 32])),
                Some(boc_of_voucher(&voucher(500), CLIENT)),
            ),
            ReceiptError::UnknownGuest(hex(&foreign_guest.guest_key)),
        ),
        (
            "voucher-alone",
            record(None, Some(boc_of_voucher(&voucher(500), CLIENT))),
            ReceiptError::VoucherWithoutReceipt,
        ),
        (
            "receipt-alone",
            record(good_r(), None),
            ReceiptError::NoVoucher {
                client: hex(&key(CLIENT).verifying_key().to_bytes()),
                guest: hex(&key(GUEST).verifying_key().to_bytes()),
            },
        ),
        (
            "voucher-not-a-voucher",
            // A receipt BOC where the voucher belongs.
            record(good_r(), good_r()),
            ReceiptError::MalformedVoucher(TonError::WrongTag),
        ),
    ];
    for (tag, rec, want) in cases {
        let got = refusal(tag, rec);
        assert!(
            got.ends_with(&want.to_string()),
            "{tag}: got {got:?}, want {want}"
        );
    }
}
