//! Receipts on the host: validate what the guest signed, keep it durably, and relay the
//! latest cumulative receipt of each (guest, client) pair to the TON payment contract.
//!
//! - [`validate`]: every check the host can make before a payout reaches the chain;
//! - [`store`]: the SQLite receipt store (a receipt is committed before it is acknowledged);
//! - [`policy`]: when to submit (unpaid amount over a threshold, or a timer);
//! - [`message`]: external/internal message cells carrying a payout;
//! - [`toncenter`]: a client for a toncenter-compatible HTTP API;
//! - [`relay`]: the loop tying them together, safe to kill at any point.

pub mod message;
pub mod policy;
pub mod relay;
pub mod store;
pub mod toncenter;
pub mod validate;

use pupa_protocol::ton::TonError;

/// Why the host refused a receipt or could not relay it.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Not a well-formed BOC or payout (corrupt, truncated, wrong schema).
    #[error("malformed payout BOC: {0}")]
    Malformed(TonError),
    /// The receipt's guest signature does not verify.
    #[error("receipt has a bad guest signature")]
    BadGuestSignature,
    /// The voucher's client signature does not verify.
    #[error("voucher has a bad client signature")]
    BadClientSignature,
    /// The guest key is not one this host runs (or registered).
    #[error("unknown guest key {0}")]
    UnknownGuest(String),
    /// Receipt or voucher for another network or contract.
    #[error("receipt or voucher is for another network or contract")]
    WrongDomain,
    /// The voucher names another guest or client.
    #[error("voucher does not match the receipt's guest and client")]
    VoucherMismatch,
    /// Claim above the voucher cap.
    #[error("cumulative price {price} exceeds the voucher cap {cap}")]
    AboveCap {
        /// Claimed cumulative price.
        price: u128,
        /// The voucher's cap.
        cap: u128,
    },
    /// A price that does not fit the store's 63-bit column (more TON than exists).
    #[error("price {0} nanoton is out of range")]
    PriceOutOfRange(u128),
    /// A different receipt with the same sequence number is already stored.
    #[error("conflicting receipt: seq {seq} already stored with different content")]
    Conflict {
        /// The sequence number.
        seq: u64,
    },
    /// Totals that fall while the sequence number rises (or the reverse).
    #[error("receipt seq {seq} is not monotonic with stored receipts")]
    NonMonotonic {
        /// The sequence number.
        seq: u64,
    },
    /// The database failed.
    #[error("receipt store: {0}")]
    Store(#[from] rusqlite::Error),
    /// The HTTP API failed or refused.
    #[error("TON API: {0}")]
    Api(#[from] toncenter::ApiError),
    /// An input line that is not a journal record (or a hex payout BOC).
    #[error("{0}")]
    Record(#[from] crate::relay::journal::RecordError),
    /// A journaled voucher BOC that is not a `Signed PupaVoucher`.
    #[error("malformed journaled voucher BOC: {0}")]
    MalformedVoucher(TonError),
    /// A journal record with a voucher but no TON receipt: nothing to pay it for.
    #[error("journal record has a voucher but no TON receipt")]
    VoucherWithoutReceipt,
    /// A journaled TON receipt that came without a voucher (a record of an earlier version)
    /// and that no `--vouchers` entry matches.
    #[error("no voucher for client {client} and guest {guest} (give it with --vouchers)")]
    NoVoucher {
        /// Client key (hex).
        client: String,
        /// Guest key (hex).
        guest: String,
    },
    /// Reading the receipt input failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Lowercase hex of a byte string.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses 64 hex characters into 32 bytes.
pub fn parse_key(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Parses an even-length hex string.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
