//! Fuzzes the TON BOC parser and the payout schema parser on arbitrary bytes: they must
//! never panic, and whatever parses must re-serialise to a BOC that parses to the same
//! cell (hash-stable round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_protocol::ton::{from_boc, from_boc_single, to_boc, Payout};

fuzz_target!(|data: &[u8]| {
    if let Ok(roots) = from_boc(data) {
        for root in roots {
            let again = to_boc(&root);
            let back = from_boc_single(&again).expect("our own BOC must parse");
            assert_eq!(back.hash(), root.hash());
            assert_eq!(back.depth(), root.depth());
            if let Ok(p) = Payout::from_cell(&root) {
                // Whatever parses as a payout re-encodes to the same cell.
                assert_eq!(p.to_cell().map(|c| c.hash()).ok(), Some(root.hash()));
                let _ = p.receipt.verify();
                let _ = p.voucher.verify();
            }
        }
    }
});
