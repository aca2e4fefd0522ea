//! Cross-checks of our no_std cells, BOCs, addresses and messages against an independent
//! implementation, `tonlib-core` (ston-fi/tonlib-rs).

use ed25519_dalek::SigningKey;
use num_bigint::BigUint;
use pupa_host::receipts::message::{external_payout, external_payout_boc, internal_payout};
use pupa_protocol::ton::*;
use tonlib_core::cell::{BagOfCells, CellBuilder as TCellBuilder};
use tonlib_core::TonAddress;

fn payout(seq: u64, price: u128) -> Payout {
    let (g, c) = (
        SigningKey::from_bytes(&[0x11; 32]),
        SigningKey::from_bytes(&[0xA1; 32]),
    );
    let domain = Domain {
        network_id: MAINNET_ID,
        contract: MsgAddressInt {
            workchain: 0,
            hash: [0xC0; 32],
        },
    };
    let receipt = Receipt {
        domain,
        guest_key: g.verifying_key().to_bytes(),
        client_key: c.verifying_key().to_bytes(),
        seq,
        units: 77,
        price,
        last_job: [0x42; 32],
    };
    let voucher = Voucher {
        domain,
        client_key: receipt.client_key,
        guest_key: receipt.guest_key,
        cap: price * 2,
    };
    Payout {
        query_id: 9,
        receipt: receipt.sign(&g).unwrap(),
        voucher: voucher.sign(&c).unwrap(),
    }
}

#[test]
fn tonlib_parses_our_bocs_to_the_same_hashes() {
    for (seq, price) in [
        (1u64, 0u128),
        (2, 1),
        (3, 500_000_000),
        (u64::MAX, (1u128 << 62) - 1),
    ] {
        let p = payout(seq, price);
        for cell in [
            p.to_cell().unwrap(),
            p.receipt.receipt.to_cell().unwrap(),
            p.voucher.voucher.to_cell().unwrap(),
        ] {
            let boc = to_boc(&cell);
            let theirs = BagOfCells::parse(&boc).unwrap().single_root().unwrap();
            assert_eq!(theirs.cell_hash().as_slice(), &cell.hash()[..]);
            assert_eq!(theirs.cell_depth(), cell.depth());
            // And their serialisation parses back in ours to the same cell.
            let again = BagOfCells::from_root((*theirs).clone())
                .serialize(true)
                .unwrap();
            assert_eq!(from_boc_single(&again).unwrap().hash(), cell.hash());
        }
    }
}

#[test]
fn receipt_built_with_tonlib_matches_ours() {
    let p = payout(5, 123_456_789);
    let r = &p.receipt.receipt;
    let contract = TonAddress::from_hex_str(&r.domain.contract.to_raw()).unwrap();
    let mut keys = TCellBuilder::new();
    keys.store_slice(&r.guest_key)
        .unwrap()
        .store_slice(&r.client_key)
        .unwrap()
        .store_slice(&r.last_job)
        .unwrap();
    let keys = keys.build().unwrap();
    let mut b = TCellBuilder::new();
    b.store_u32(32, RECEIPT_TAG)
        .unwrap()
        .store_i32(32, r.domain.network_id)
        .unwrap()
        .store_address(&contract)
        .unwrap()
        .store_u64(64, r.seq)
        .unwrap()
        .store_u64(64, r.units)
        .unwrap()
        .store_coins(&BigUint::from(r.price))
        .unwrap()
        .store_child(keys)
        .unwrap();
    let theirs = b.build().unwrap();
    assert_eq!(
        theirs.cell_hash().as_slice(),
        &r.signing_hash().unwrap()[..]
    );
}

#[test]
fn addresses_agree_with_tonlib() {
    for (wc, byte) in [(0i8, 0x11u8), (-1, 0x22), (0, 0xC0)] {
        let ours = MsgAddressInt {
            workchain: wc,
            hash: [byte; 32],
        };
        let theirs = TonAddress::from_hex_str(&ours.to_raw()).unwrap();
        let nb = FriendlyFlags {
            bounceable: false,
            testnet: false,
        };
        assert_eq!(
            ours.to_friendly(nb),
            theirs.to_base64_url_flags(true, false)
        );
        let tb = FriendlyFlags {
            bounceable: true,
            testnet: true,
        };
        assert_eq!(
            ours.to_friendly(tb),
            theirs.to_base64_url_flags(false, true)
        );
        assert_eq!(MsgAddressInt::parse(&theirs.to_base64_url()).unwrap(), ours);
    }
}

#[test]
fn external_message_reads_back_in_tonlib() {
    let p = payout(3, 1_000);
    let contract = p.receipt.receipt.domain.contract;
    let boc = external_payout_boc(&contract, &p).unwrap();
    let msg = BagOfCells::parse(&boc).unwrap().single_root().unwrap();
    let mut s = msg.parser();
    assert_eq!(s.load_u8(2).unwrap(), 0b10); // ext_in_msg_info
    assert_eq!(s.load_u8(2).unwrap(), 0b00); // src addr_none
    assert_eq!(
        s.load_address().unwrap(),
        TonAddress::from_hex_str(&contract.to_raw()).unwrap()
    );
    assert_eq!(s.load_coins().unwrap(), BigUint::from(0u32));
    assert!(!s.load_bit().unwrap()); // no init
    assert!(s.load_bit().unwrap()); // body in a ref
    let body = s.next_reference().unwrap();
    assert_eq!(
        body.cell_hash().as_slice(),
        &p.to_cell().unwrap().hash()[..]
    );
    assert_eq!(
        msg.cell_hash().as_slice(),
        &external_payout(&contract, &p).unwrap().hash()[..]
    );
}

#[test]
fn internal_message_reads_back_in_tonlib() {
    let p = payout(3, 1_000);
    let contract = p.receipt.receipt.domain.contract;
    let cell = internal_payout(&contract, 50_000_000, &p).unwrap();
    let msg = BagOfCells::parse(&to_boc(&cell))
        .unwrap()
        .single_root()
        .unwrap();
    let mut s = msg.parser();
    assert!(!s.load_bit().unwrap()); // int_msg_info$0
    assert!(s.load_bit().unwrap()); // ihr_disabled
    assert!(s.load_bit().unwrap()); // bounce
    assert!(!s.load_bit().unwrap()); // bounced
    assert_eq!(s.load_u8(2).unwrap(), 0); // src addr_none
    assert_eq!(
        s.load_address().unwrap(),
        TonAddress::from_hex_str(&contract.to_raw()).unwrap()
    );
    assert_eq!(s.load_coins().unwrap(), BigUint::from(50_000_000u32));
    assert!(!s.load_bit().unwrap()); // no extra currencies
    assert_eq!(s.load_coins().unwrap(), BigUint::from(0u32));
    assert_eq!(s.load_coins().unwrap(), BigUint::from(0u32));
    assert_eq!(s.load_u64(64).unwrap(), 0);
    assert_eq!(s.load_u32(32).unwrap(), 0);
    assert!(!s.load_bit().unwrap());
    assert!(s.load_bit().unwrap());
    assert_eq!(
        s.next_reference().unwrap().cell_hash().as_slice(),
        &p.to_cell().unwrap().hash()[..]
    );
}
