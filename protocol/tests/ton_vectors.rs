//! TON cells, BOC and addresses against the published vectors in
//! `tests/data/ton/vectors.json` (see its SOURCE: cross-checked with @ton/core,
//! tonlib-core and tycho-types).

use ed25519_dalek::{Signer, SigningKey};
use pupa_protocol::ton::*;

const VECTORS: &str = include_str!("data/ton/vectors.json");

/// The string value of `"key": "..."` (or a bare number) in the flat vectors file.
fn v(key: &str) -> String {
    let pat = format!("\"{key}\":");
    let at = VECTORS.find(&pat).unwrap_or_else(|| panic!("no key {key}")) + pat.len();
    let rest = VECTORS[at..].trim_start();
    if let Some(r) = rest.strip_prefix('"') {
        r[..r.find('"').unwrap()].to_string()
    } else {
        rest[..rest.find([',', '\n', '}']).unwrap()]
            .trim()
            .to_string()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn empty_cell_hash_and_boc() {
    let c = Cell::empty();
    assert_eq!(hex(&c.hash()), v("empty_hash"));
    assert_eq!(c.depth(), 0);
    assert_eq!(hex(&to_boc(&c)), v("empty_boc"));
    let parsed = from_boc_single(&unhex(&v("empty_boc"))).unwrap();
    assert_eq!(hex(&parsed.hash()), v("empty_hash"));
}

#[test]
fn one_bit_cell_hash_and_boc_without_crc() {
    let mut b = CellBuilder::new();
    b.store_bit(true).unwrap();
    let c = b.build().unwrap();
    assert_eq!(hex(&c.hash()), v("odd_hash"));
    // The vector's BOC has no CRC32C flag: the parser must accept it and agree.
    let parsed = from_boc_single(&unhex(&v("odd_boc"))).unwrap();
    assert_eq!(parsed.bit_len(), 1);
    assert_eq!(hex(&parsed.hash()), v("odd_hash"));
}

/// The vector's receipt layout (not ours): u64 42, u64 1, u32 1000, u32 250,
/// Coins 0.5 TON, two addresses.
fn vector_receipt() -> Cell {
    let worker = MsgAddressInt::from_raw(&v("worker_raw")).unwrap();
    let (client, _) = MsgAddressInt::from_friendly(&v("client_friendly")).unwrap();
    let mut b = CellBuilder::new();
    b.store_uint(42, 64).unwrap().store_uint(1, 64).unwrap();
    b.store_uint(1000, 32).unwrap().store_uint(250, 32).unwrap();
    b.store_coins(500_000_000).unwrap();
    b.store_address(&worker)
        .unwrap()
        .store_address(&client)
        .unwrap();
    b.build().unwrap()
}

#[test]
fn receipt_vector_cell_hash_boc_and_signature() {
    let c = vector_receipt();
    assert_eq!(c.bit_len().to_string(), v("receipt_bits"));
    assert_eq!(hex(&c.hash()), v("receipt_hash"));
    assert_eq!(hex(&to_boc(&c)), v("receipt_boc"));
    let parsed = from_boc_single(&unhex(&v("receipt_boc"))).unwrap();
    assert_eq!(*parsed, c);

    // Ed25519 from seed 07×32 signs the representation hash.
    let key = SigningKey::from_bytes(&[7u8; 32]);
    assert_eq!(hex(key.verifying_key().as_bytes()), v("pubkey"));
    let sig = key.sign(&c.hash());
    assert_eq!(hex(&sig.to_bytes()), v("sig"));

    // body = signature:bits512 ^receipt, depth 1.
    let mut b = CellBuilder::new();
    b.store_bytes(&sig.to_bytes())
        .unwrap()
        .store_ref(c)
        .unwrap();
    let body = b.build().unwrap();
    assert_eq!(hex(&body.hash()), v("body_hash"));
    assert_eq!(body.depth().to_string(), v("body_depth"));
    assert_eq!(hex(&to_boc(&body)), v("body_boc"));
    let parsed = from_boc_single(&unhex(&v("body_boc"))).unwrap();
    assert_eq!(parsed.hash(), body.hash());
}

#[test]
fn addresses_round_trip_with_vectors() {
    let w = MsgAddressInt::from_raw(&v("worker_raw")).unwrap();
    assert_eq!(w.to_raw(), v("worker_raw"));
    let nb = FriendlyFlags {
        bounceable: false,
        testnet: false,
    };
    let b = FriendlyFlags {
        bounceable: true,
        testnet: false,
    };
    assert_eq!(w.to_friendly(nb), v("worker_friendly"));
    assert_eq!(w.to_friendly(b), v("worker_b"));
    let (c, flags) = MsgAddressInt::from_friendly(&v("client_friendly")).unwrap();
    assert_eq!(c.workchain, -1);
    assert_eq!(c.hash, [0x22; 32]);
    assert!(flags.bounceable && !flags.testnet);
    let (ct, tf) = MsgAddressInt::from_friendly(&v("client_test")).unwrap();
    assert_eq!(ct, c);
    assert!(tf.testnet);
    assert_eq!(c.to_friendly(tf), v("client_test"));
    // One changed character breaks the CRC16.
    let mut bad = v("worker_friendly");
    bad.replace_range(10..11, if &bad[10..11] == "A" { "B" } else { "A" });
    assert!(MsgAddressInt::from_friendly(&bad).is_err());
}

#[test]
fn boc_rejects_corruption_with_specific_errors() {
    let good = unhex(&v("body_boc"));
    assert!(from_boc(&good).is_ok());
    // Every truncation fails, none panics.
    for n in 0..good.len() {
        assert!(from_boc(&good[..n]).is_err(), "truncated to {n} accepted");
    }
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert_eq!(from_boc(&bad).unwrap_err(), TonError::BocBadMagic);
    // Flip a data bit: the CRC catches it.
    let mut bad = good.clone();
    bad[30] ^= 0x10;
    assert_eq!(from_boc(&bad).unwrap_err(), TonError::BocBadCrc);
    let mut long = good.clone();
    long.push(0);
    assert!(from_boc(&long).is_err());
}

#[test]
fn builder_limits() {
    let mut b = CellBuilder::new();
    b.store_uint(0, 1023).unwrap_err(); // > 128 bits at once is refused
    for _ in 0..1023 {
        b.store_bit(true).unwrap();
    }
    assert_eq!(b.store_bit(true).unwrap_err(), TonError::CellOverflow);
    let mut b = CellBuilder::new();
    for _ in 0..4 {
        b.store_ref(Cell::empty()).unwrap();
    }
    assert_eq!(
        b.store_ref(Cell::empty()).unwrap_err(),
        TonError::TooManyRefs
    );
    assert_eq!(
        CellBuilder::new().store_uint(256, 8).unwrap_err(),
        TonError::IntegerOverflow
    );
    assert_eq!(
        CellBuilder::new().store_int(-129, 8).unwrap_err(),
        TonError::IntegerOverflow
    );
    assert_eq!(
        CellBuilder::new().store_coins(MAX_COINS + 1).unwrap_err(),
        TonError::IntegerOverflow
    );
}

#[test]
fn slice_reads_back_what_builder_wrote() {
    let a = MsgAddressInt {
        workchain: -1,
        hash: [0xab; 32],
    };
    let mut b = CellBuilder::new();
    b.store_int(-5, 7)
        .unwrap()
        .store_coins(0)
        .unwrap()
        .store_coins(123_456_789_000)
        .unwrap();
    b.store_address(&a)
        .unwrap()
        .store_uint(u128::from(u64::MAX), 64)
        .unwrap();
    let c = b.build().unwrap();
    let mut s = CellSlice::new(&c);
    assert_eq!(s.load_int(7).unwrap(), -5);
    assert_eq!(s.load_coins().unwrap(), 0);
    assert_eq!(s.load_coins().unwrap(), 123_456_789_000);
    assert_eq!(s.load_address().unwrap(), a);
    assert_eq!(s.load_uint(64).unwrap(), u128::from(u64::MAX));
    s.end().unwrap();
    assert_eq!(s.load_bit().unwrap_err(), TonError::CellUnderflow);
}

#[test]
fn shared_subcells_are_deduplicated_in_boc() {
    // A chain where every cell references the next one twice: 2^40 paths, 41 cells.
    let mut c = Cell::empty();
    for i in 0..40u128 {
        let mut b = CellBuilder::new();
        b.store_uint(i, 8)
            .unwrap()
            .store_ref(c.clone())
            .unwrap()
            .store_ref(c)
            .unwrap();
        c = b.build().unwrap();
    }
    assert_eq!(c.depth(), 40);
    let boc = to_boc(&c);
    let back = from_boc_single(&boc).unwrap();
    assert_eq!(back.hash(), c.hash());
    assert!(boc.len() < 41 * 8 + 32);
}

#[test]
fn non_canonical_coins_are_refused() {
    // Coins 1 written as two bytes 0x0001.
    let mut b = CellBuilder::new();
    b.store_uint(2, 4).unwrap().store_uint(1, 16).unwrap();
    let c = b.build().unwrap();
    assert_eq!(
        CellSlice::new(&c).load_coins().unwrap_err(),
        TonError::NonCanonical
    );
    let mut b = CellBuilder::new();
    b.store_coins(1).unwrap();
    let c = b.build().unwrap();
    assert_eq!(CellSlice::new(&c).load_coins().unwrap(), 1);
}
