//! Billing: checks a job's TON voucher before the job runs and, after it ran, signs the TON
//! receipt with the running totals (the cumulative pattern of docs/DESIGN.md "Receipts and
//! payment on TON"; cell formats in `pupa_protocol::ton::receipt`).
//!
//! Per (network, contract, client voucher key) the guest keeps `seq`, cumulative `units` and
//! cumulative `price` (nanotons). A job is billed its `JobShape::units` (the cost model of
//! `pupa_protocol::job`: padded flops, attention scores and bytes moved, so that units track
//! time), and its price is `⌈units × nanotons per 10⁶ units / 10⁶⌉`. A job
//! is refused before it runs when its voucher does not parse, its client signature does not
//! verify, it names another guest key, or the new cumulative price would exceed its cap —
//! the contract would refuse to pay such a receipt.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use ed25519_dalek::SigningKey;
use pupa_protocol::ton::{self, Domain, Receipt, SignedVoucher, TonError};

/// Why a voucher is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// The guest requires a voucher and the job has none.
    #[error("this guest requires a voucher")]
    Missing,
    /// Not a BOC of a signed voucher cell.
    #[error("voucher does not parse: {0}")]
    Malformed(TonError),
    /// The client's signature does not verify.
    #[error("voucher signature does not verify: {0}")]
    BadSignature(TonError),
    /// The voucher is for another guest key.
    #[error("voucher names another guest key")]
    OtherGuest,
    /// The cumulative price would exceed the voucher's cap.
    #[error("cumulative price {would} nanotons would exceed the voucher cap {cap}")]
    CapExceeded {
        /// Cumulative price including this job.
        would: u128,
        /// The voucher's cap.
        cap: u128,
    },
    /// The guest already keeps running totals for as many vouchers as it may (by default
    /// [`MAX_VOUCHER_LEDGERS`]): a new one
    /// is refused (the job is not run). Totals cannot be forgotten: a receipt's cumulative
    /// price must never go back, or the contract could pay twice or not at all.
    #[error("this guest already keeps totals for {0} vouchers; no new voucher is accepted")]
    TableFull(usize),
    /// The receipt cell could not be built (a bug, or totals out of range).
    #[error("receipt cell: {0}")]
    Receipt(TonError),
}

type LedgerKey = (i32, ton::MsgAddressInt, [u8; 32]);

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    seq: u64,
    units: u64,
    price: u128,
}

/// A checked voucher and the totals a job would bring it to.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    domain: Domain,
    client_key: [u8; 32],
    next: Totals,
    voucher: SignedVoucher,
}

/// What a billed job gives its client, and the host's relay, to claim payment with: the
/// signed TON receipt and the client's voucher that covered it, as BOCs (neither is secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// BOC of the `Signed PupaReceipt` with the new running totals.
    pub receipt: Vec<u8>,
    /// BOC of the client's `Signed PupaVoucher` (its one cell re-encoded canonically).
    pub voucher: Vec<u8>,
}

/// Most vouchers (network, contract, client key) a guest keeps totals for: bounded memory
/// (about 10 MiB at most) whatever clients send.
pub const MAX_VOUCHER_LEDGERS: usize = 1 << 16;

/// The TON ledgers of one guest.
#[derive(Debug)]
pub struct Billing {
    ledgers: BTreeMap<LedgerKey, Totals>,
    capacity: usize,
}

impl Default for Billing {
    fn default() -> Self {
        Billing::new(MAX_VOUCHER_LEDGERS)
    }
}

/// Price in nanotons of `units` (`JobShape::units`) at `nanotons_per_munit` nanotons per 10⁶
/// units, rounded up.
pub fn price(units: u64, nanotons_per_munit: u64) -> u128 {
    (u128::from(units) * u128::from(nanotons_per_munit)).div_ceil(1_000_000)
}

impl Billing {
    /// Ledgers for at most `capacity` vouchers.
    pub fn new(capacity: usize) -> Self {
        Billing {
            ledgers: BTreeMap::new(),
            capacity,
        }
    }

    /// Checks `voucher` (a BOC; empty = none) for a job billed `units` (`JobShape::units`) by
    /// the guest `guest_key`, at `rate` nanotons per 10⁶ units. `Ok(None)`: no voucher and none
    /// required.
    pub fn check(
        &self,
        voucher: &[u8],
        guest_key: &[u8; 32],
        units: u64,
        rate: u64,
        required: bool,
    ) -> Result<Option<Charge>, VoucherError> {
        if voucher.is_empty() {
            return if required {
                Err(VoucherError::Missing)
            } else {
                Ok(None)
            };
        }
        let limits = ton::BocLimits {
            max_cells: 8,
            max_roots: 1,
        };
        let cells = ton::from_boc_with_limits(voucher, limits).map_err(VoucherError::Malformed)?;
        let [root] = &cells[..] else {
            return Err(VoucherError::Malformed(TonError::TrailingData));
        };
        let sv = SignedVoucher::from_cell(root).map_err(VoucherError::Malformed)?;
        sv.verify().map_err(VoucherError::BadSignature)?;
        let v = sv.voucher;
        if &v.guest_key != guest_key {
            return Err(VoucherError::OtherGuest);
        }
        let key = (v.domain.network_id, v.domain.contract, v.client_key);
        let cur = match self.ledgers.get(&key) {
            Some(t) => *t,
            None if self.ledgers.len() >= self.capacity => {
                return Err(VoucherError::TableFull(self.capacity))
            }
            None => Totals::default(),
        };
        let would = cur.price.saturating_add(price(units, rate));
        if would > v.cap {
            return Err(VoucherError::CapExceeded { would, cap: v.cap });
        }
        let next = Totals {
            seq: cur.seq.saturating_add(1),
            units: cur.units.saturating_add(units),
            price: would,
        };
        Ok(Some(Charge {
            domain: v.domain,
            client_key: v.client_key,
            next,
            voucher: sv,
        }))
    }

    /// Records a charge for the job `job_hash` and returns the signed TON receipt with the
    /// voucher that covers it.
    pub fn commit(
        &mut self,
        charge: &Charge,
        job_hash: &[u8; 32],
        key: &SigningKey,
    ) -> Result<Claim, VoucherError> {
        let t = charge.next;
        let receipt = Receipt {
            domain: charge.domain,
            guest_key: key.verifying_key().to_bytes(),
            client_key: charge.client_key,
            seq: t.seq,
            units: t.units,
            price: t.price,
            last_job: *job_hash,
        };
        let cell = receipt
            .sign(key)
            .and_then(|s| s.to_cell())
            .map_err(VoucherError::Receipt)?;
        let voucher = charge.voucher.to_cell().map_err(VoucherError::Receipt)?;
        self.ledgers.insert(
            (
                charge.domain.network_id,
                charge.domain.contract,
                charge.client_key,
            ),
            t,
        );
        Ok(Claim {
            receipt: ton::to_boc(&cell),
            voucher: ton::to_boc(&voucher),
        })
    }
}
