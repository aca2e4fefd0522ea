//! Host-side checks on a payout before it is stored or submitted: the same checks the
//! contract makes that need no chain state, plus "is this one of our guests".

use std::collections::BTreeSet;

use pupa_protocol::ton::{from_boc_single, Domain, Payout, TonError};

use super::{hex, ReceiptError};

/// What a payout must satisfy to be accepted by this host.
#[derive(Clone, Debug)]
pub struct Validator {
    /// The payment contract and network receipts must name.
    pub domain: Domain,
    /// Guest keys this host runs (and the operator registered on the contract).
    pub guests: BTreeSet<[u8; 32]>,
}

impl Validator {
    /// Parses and checks a payout BOC (`payout#70757061`, see `pupa_protocol::ton`).
    pub fn check_boc(&self, boc: &[u8]) -> Result<Payout, ReceiptError> {
        let cell = from_boc_single(boc).map_err(ReceiptError::Malformed)?;
        let payout = Payout::from_cell(&cell).map_err(ReceiptError::Malformed)?;
        self.check(&payout)?;
        Ok(payout)
    }

    /// Checks a parsed payout.
    pub fn check(&self, p: &Payout) -> Result<(), ReceiptError> {
        let guest = p.receipt.receipt.guest_key;
        if !self.guests.contains(&guest) {
            return Err(ReceiptError::UnknownGuest(hex(&guest)));
        }
        p.check(&self.domain).map_err(|e| match e {
            TonError::WrongDomain => ReceiptError::WrongDomain,
            TonError::VoucherMismatch => ReceiptError::VoucherMismatch,
            TonError::BadGuestSignature => ReceiptError::BadGuestSignature,
            TonError::BadClientSignature => ReceiptError::BadClientSignature,
            TonError::AboveCap => ReceiptError::AboveCap {
                price: p.receipt.receipt.price,
                cap: p.voucher.voucher.cap,
            },
            other => ReceiptError::Malformed(other),
        })
    }
}
