//! Bad input is refused by the host before submission, with a specific error; the store
//! keeps receipts durably, detects conflicts and reports payout status.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use pupa_host::receipts::store::{Inserted, ReceiptStore};
use pupa_host::receipts::validate::Validator;
use pupa_host::receipts::ReceiptError;
use pupa_protocol::ton::*;

const GUEST: u8 = 0x11;
const CLIENT: u8 = 0xA1;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn domain() -> Domain {
    Domain {
        network_id: MAINNET_ID,
        contract: MsgAddressInt {
            workchain: 0,
            hash: [0xC0; 32],
        },
    }
}

fn validator() -> Validator {
    Validator {
        domain: domain(),
        guests: BTreeSet::from([key(GUEST).verifying_key().to_bytes()]),
    }
}

fn payout(guest: u8, seq: u64, price: u128, cap: u128) -> Payout {
    let (g, c) = (key(guest), key(CLIENT));
    let receipt = Receipt {
        domain: domain(),
        guest_key: g.verifying_key().to_bytes(),
        client_key: c.verifying_key().to_bytes(),
        seq,
        units: seq,
        price,
        last_job: [0; 32],
    };
    let voucher = Voucher {
        domain: domain(),
        client_key: receipt.client_key,
        guest_key: receipt.guest_key,
        cap,
    };
    Payout {
        query_id: 0,
        receipt: receipt.sign(&g).unwrap(),
        voucher: voucher.sign(&c).unwrap(),
    }
}

fn boc(p: &Payout) -> Vec<u8> {
    to_boc(&p.to_cell().unwrap())
}

#[test]
fn valid_payout_is_accepted() {
    let p = validator()
        .check_boc(&boc(&payout(GUEST, 1, 10, 100)))
        .unwrap();
    assert_eq!(p.receipt.receipt.seq, 1);
}

#[test]
fn corrupt_and_truncated_bocs_are_malformed() {
    let good = boc(&payout(GUEST, 1, 10, 100));
    for n in [0, 4, 10, good.len() / 2, good.len() - 1] {
        match validator().check_boc(&good[..n]) {
            Err(ReceiptError::Malformed(_)) => {}
            other => panic!("truncated to {n}: {other:?}"),
        }
    }
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x04;
    assert!(matches!(
        validator().check_boc(&bad),
        Err(ReceiptError::Malformed(TonError::BocBadCrc))
    ));
    // A valid BOC that is not a payout.
    let not_payout = to_boc(&Cell::empty());
    assert!(matches!(
        validator().check_boc(&not_payout),
        Err(ReceiptError::Malformed(_))
    ));
}

#[test]
fn bad_signatures_are_named() {
    let mut p = payout(GUEST, 1, 10, 100);
    p.receipt.signature[10] ^= 1;
    assert!(matches!(
        validator().check_boc(&boc(&p)),
        Err(ReceiptError::BadGuestSignature)
    ));
    let mut p = payout(GUEST, 1, 10, 100);
    p.voucher.signature[10] ^= 1;
    assert!(matches!(
        validator().check_boc(&boc(&p)),
        Err(ReceiptError::BadClientSignature)
    ));
}

#[test]
fn unknown_guest_other_domain_and_above_cap() {
    assert!(matches!(
        validator().check_boc(&boc(&payout(0x12, 1, 10, 100))),
        Err(ReceiptError::UnknownGuest(_))
    ));
    let mut v = validator();
    v.domain.network_id = TESTNET_ID;
    assert!(matches!(
        v.check_boc(&boc(&payout(GUEST, 1, 10, 100))),
        Err(ReceiptError::WrongDomain)
    ));
    assert!(matches!(
        validator().check_boc(&boc(&payout(GUEST, 1, 101, 100))),
        Err(ReceiptError::AboveCap {
            price: 101,
            cap: 100
        })
    ));
}

#[test]
fn store_is_durable_and_detects_conflicts() {
    let dir = std::env::temp_dir().join(format!("pupa-receipts-reject-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("r.sqlite");
    {
        let mut s = ReceiptStore::open(&db).unwrap();
        assert_eq!(
            s.insert(&payout(GUEST, 1, 10, 100), 1, Some(("off", 5)))
                .unwrap(),
            Inserted::New
        );
        assert_eq!(
            s.insert(&payout(GUEST, 3, 30, 100), 2, None).unwrap(),
            Inserted::New
        );
        assert_eq!(
            s.insert(&payout(GUEST, 1, 10, 100), 3, None).unwrap(),
            Inserted::Duplicate
        );
        assert!(matches!(
            s.insert(&payout(GUEST, 1, 11, 100), 3, None),
            Err(ReceiptError::Conflict { seq: 1 })
        ));
        // seq 2 may not cost more than seq 3, nor less than seq 1.
        assert!(matches!(
            s.insert(&payout(GUEST, 2, 31, 100), 3, None),
            Err(ReceiptError::NonMonotonic { seq: 2 })
        ));
        assert!(matches!(
            s.insert(&payout(GUEST, 2, 9, 100), 3, None),
            Err(ReceiptError::NonMonotonic { seq: 2 })
        ));
        assert_eq!(
            s.insert(&payout(GUEST, 2, 20, 100), 3, None).unwrap(),
            Inserted::New
        );
    }
    // Reopened: everything is still there.
    let s = ReceiptStore::open(&db).unwrap();
    assert_eq!(s.meta("off").unwrap(), Some(5));
    let ch = s.channels().unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!(
        (ch[0].latest_seq, ch[0].latest_price, ch[0].oldest_unpaid_at),
        (3, 30, 1)
    );
    let g = ch[0].guest_key;
    let c = ch[0].client_key;
    s.mark_submitted(&g, &c, 3, 10).unwrap();
    s.set_confirmed(&g, &c, 2, 20).unwrap();
    let rows = s.list(10).unwrap();
    let status: Vec<_> = rows.iter().map(|r| (r.seq, r.status)).collect();
    assert_eq!(status, vec![(2, "paid"), (3, "submitted"), (1, "paid")]);
    let _ = std::fs::remove_dir_all(&dir);
}
