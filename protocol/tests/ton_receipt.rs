//! Receipts, vouchers and payout bodies: signatures over the representation hash,
//! strict parsing, and every off-chain check `Payout::check` makes.

use ed25519_dalek::{SigningKey, Verifier};
use pupa_protocol::ton::*;

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

fn receipt(guest: &SigningKey, client: &SigningKey, seq: u64, price: u128) -> Receipt {
    Receipt {
        domain: domain(),
        guest_key: guest.verifying_key().to_bytes(),
        client_key: client.verifying_key().to_bytes(),
        seq,
        units: seq * 10,
        price,
        last_job: [seq as u8; 32],
    }
}

fn voucher(guest: &SigningKey, client: &SigningKey, cap: u128) -> Voucher {
    Voucher {
        domain: domain(),
        client_key: client.verifying_key().to_bytes(),
        guest_key: guest.verifying_key().to_bytes(),
        cap,
    }
}

fn payout(seq: u64, price: u128, cap: u128) -> Payout {
    let (g, c) = (key(1), key(2));
    Payout {
        query_id: 7,
        receipt: receipt(&g, &c, seq, price).sign(&g).unwrap(),
        voucher: voucher(&g, &c, cap).sign(&c).unwrap(),
    }
}

#[test]
fn signature_is_over_the_cell_hash() {
    let g = key(1);
    let r = receipt(&g, &key(2), 3, 1_000_000_000);
    let s = r.sign(&g).unwrap();
    let cell = r.to_cell().unwrap();
    assert_eq!(r.signing_hash().unwrap(), cell.hash());
    // Independent check with the dalek verifier over the 32-byte hash, as CHKSIGNU does.
    let sig = ed25519_dalek::Signature::from_bytes(&s.signature);
    g.verifying_key().verify(&cell.hash(), &sig).unwrap();
    s.verify().unwrap();
    assert_eq!(cell.depth(), 1);
    // 32 tag + 32 network + 267 address + 64 seq + 64 units + 4+32 coins.
    assert_eq!(cell.bit_len(), 32 + 32 + 267 + 64 + 64 + 4 + 32);
    assert_eq!(cell.refs()[0].bit_len(), 768);
}

#[test]
fn wrong_key_refuses_to_sign() {
    let r = receipt(&key(1), &key(2), 1, 1);
    assert_eq!(r.sign(&key(9)).unwrap_err(), TonError::KeyMismatch);
    let v = voucher(&key(1), &key(2), 1);
    assert_eq!(v.sign(&key(1)).unwrap_err(), TonError::KeyMismatch);
}

#[test]
fn round_trip_through_boc() {
    let p = payout(5, 2_500_000_000, 3_000_000_000);
    let boc = to_boc(&p.to_cell().unwrap());
    let back = Payout::from_cell(&from_boc_single(&boc).unwrap()).unwrap();
    assert_eq!(back, p);
    back.check(&domain()).unwrap();
}

#[test]
fn tampered_receipt_fails_guest_signature() {
    let mut p = payout(5, 1, 10);
    p.receipt.receipt.price = 9;
    assert_eq!(p.check(&domain()).unwrap_err(), TonError::BadGuestSignature);
    let mut p = payout(5, 1, 10);
    p.receipt.signature[0] ^= 1;
    assert_eq!(p.check(&domain()).unwrap_err(), TonError::BadGuestSignature);
}

#[test]
fn tampered_voucher_fails_client_signature() {
    let mut p = payout(5, 1, 10);
    p.voucher.voucher.cap = 1000;
    assert_eq!(
        p.check(&domain()).unwrap_err(),
        TonError::BadClientSignature
    );
}

#[test]
fn other_contract_or_network_is_refused() {
    let p = payout(1, 1, 10);
    let mut other = domain();
    other.contract.hash[31] ^= 1;
    assert_eq!(p.check(&other).unwrap_err(), TonError::WrongDomain);
    let other = Domain {
        network_id: TESTNET_ID,
        ..domain()
    };
    assert_eq!(p.check(&other).unwrap_err(), TonError::WrongDomain);
}

#[test]
fn above_cap_and_mismatched_voucher_are_refused() {
    assert_eq!(
        payout(1, 11, 10).check(&domain()).unwrap_err(),
        TonError::AboveCap
    );
    payout(1, 10, 10).check(&domain()).unwrap();
    let (g, c, other) = (key(1), key(2), key(3));
    let p = Payout {
        query_id: 0,
        receipt: receipt(&g, &c, 1, 1).sign(&g).unwrap(),
        voucher: voucher(&g, &other, 10).sign(&other).unwrap(),
    };
    assert_eq!(p.check(&domain()).unwrap_err(), TonError::VoucherMismatch);
}

#[test]
fn a_receipt_signature_is_not_a_voucher_signature() {
    // Same key as guest and as client: the tags keep the two purposes apart.
    let k = key(4);
    let r = receipt(&k, &k, 1, 5).sign(&k).unwrap();
    let v = voucher(&k, &k, 5);
    let forged = SignedVoucher {
        voucher: v,
        signature: r.signature,
    };
    assert_eq!(forged.verify().unwrap_err(), TonError::BadSignature);
    // And a voucher cell does not parse as a receipt.
    assert_eq!(
        Receipt::from_cell(&v.to_cell().unwrap()).unwrap_err(),
        TonError::WrongTag
    );
}

#[test]
fn strict_parsing_rejects_extra_data() {
    let r = receipt(&key(1), &key(2), 1, 5).to_cell().unwrap();
    let mut b = CellBuilder::new();
    let mut s = CellSlice::new(&r);
    while s.remaining_bits() > 0 {
        b.store_bit(s.load_bit().unwrap()).unwrap();
    }
    b.store_ref(s.load_ref().unwrap().clone()).unwrap();
    b.store_bit(true).unwrap();
    assert_eq!(
        Receipt::from_cell(&b.build().unwrap()).unwrap_err(),
        TonError::TrailingData
    );
}

#[test]
fn owner_proof_and_deposit_body() {
    let c = key(2);
    let owner = MsgAddressInt {
        workchain: 0,
        hash: [0xAB; 32],
    };
    let proof = OwnerProof {
        domain: domain(),
        owner,
    };
    let signed = proof.sign(&c).unwrap();
    // signature:bits512 ^PupaOwner, the signature over the inner cell's hash.
    let mut s = CellSlice::new(&signed);
    let sig = ed25519_dalek::Signature::from_bytes(&s.load_bytes::<64>().unwrap());
    let inner = s.load_ref().unwrap();
    assert_eq!(inner.hash(), proof.to_cell().unwrap().hash());
    c.verifying_key().verify(&inner.hash(), &sig).unwrap();
    let mut d = CellSlice::new(inner);
    assert_eq!(d.load_uint(32).unwrap(), u128::from(OWNER_TAG));
    assert_eq!(d.load_int(32).unwrap(), i128::from(MAINNET_ID));
    assert_eq!(d.load_address().unwrap(), domain().contract);
    assert_eq!(d.load_address().unwrap(), owner);
    d.end().unwrap();
    let body = OwnerProof::deposit_body(5, &c.verifying_key().to_bytes(), Some(signed)).unwrap();
    let mut b = CellSlice::new(&body);
    assert_eq!(b.load_uint(32).unwrap(), u128::from(OP_DEPOSIT));
    assert_eq!(b.load_uint(64).unwrap(), 5);
    assert_eq!(b.load_bytes::<32>().unwrap(), c.verifying_key().to_bytes());
    assert!(b.load_bit().unwrap());
    assert_eq!(b.load_ref().unwrap().refs().len(), 1);
    b.end().unwrap();
}
