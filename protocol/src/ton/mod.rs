//! TON cells, BOC and receipts (no_std).
//!
//! - [`Cell`], [`CellBuilder`], [`CellSlice`]: ordinary cells with representation hash
//!   and depth; [`to_boc`] / [`from_boc`]: bag-of-cells with CRC32C.
//! - [`MsgAddressInt`]: `addr_std` in raw and user-friendly form.
//! - [`Receipt`] (signed by the guest), [`Voucher`] (signed by the client), [`Payout`]
//!   (what the relay sends to the payment contract in `contracts/`).

pub mod address;
pub mod boc;
pub mod builder;
pub mod cell;
pub mod receipt;

pub use address::{FriendlyFlags, MsgAddressInt};
pub use boc::{from_boc, from_boc_single, from_boc_with_limits, to_boc, BocLimits};
pub use builder::{CellBuilder, CellSlice, MAX_COINS};
pub use cell::{Cell, MAX_BITS, MAX_DEPTH, MAX_REFS};
pub use receipt::{
    Domain, OwnerProof, Payout, Receipt, SignedReceipt, SignedVoucher, Voucher, MAINNET_ID,
    OP_DEPOSIT, OP_PAYOUT, OWNER_TAG, RECEIPT_TAG, TESTNET_ID, VOUCHER_TAG,
};

/// Everything that can go wrong building, parsing or checking TON data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TonError {
    /// More than 1023 bits in a cell.
    #[error("cell overflow: more than 1023 bits")]
    CellOverflow,
    /// More than 4 references in a cell.
    #[error("cell has more than 4 references")]
    TooManyRefs,
    /// Read past the end of a cell, or too little data for the bit length.
    #[error("cell underflow: read past the end of the cell")]
    CellUnderflow,
    /// Cell tree deeper than allowed.
    #[error("cell depth exceeds 1024")]
    TooDeep,
    /// A value does not fit the field width.
    #[error("integer does not fit its field")]
    IntegerOverflow,
    /// A value not in its shortest encoding (e.g. `Coins` with a leading zero byte).
    #[error("non-canonical encoding")]
    NonCanonical,
    /// Bits or references left over after a strict parse, or bytes after a BOC.
    #[error("trailing data after the expected fields")]
    TrailingData,
    /// An address form other than `addr_std` without anycast.
    #[error("unsupported address form (only addr_std without anycast)")]
    UnsupportedAddress,
    /// An address string that is neither raw nor user-friendly.
    #[error("malformed address string")]
    BadAddress,
    /// A user-friendly address with a wrong CRC16.
    #[error("address checksum mismatch")]
    BadAddressChecksum,
    /// Not a BOC: wrong magic.
    #[error("BOC: bad magic (expected b5ee9c72)")]
    BocBadMagic,
    /// A BOC header field out of range.
    #[error("BOC: malformed header")]
    BocBadHeader,
    /// The BOC ends before its declared contents.
    #[error("BOC: truncated")]
    BocTruncated,
    /// CRC32C mismatch.
    #[error("BOC: CRC32C mismatch")]
    BocBadCrc,
    /// More cells or roots than the parser's limits.
    #[error("BOC: too many cells or roots")]
    BocTooLarge,
    /// A reference or root index out of range or not pointing forward.
    #[error("BOC: bad cell reference index")]
    BocBadRef,
    /// Exotic, leveled or hashed cells.
    #[error("BOC: unsupported cell type (exotic, level > 0 or stored hashes)")]
    BocUnsupportedCell,
    /// A malformed completion tag.
    #[error("BOC: malformed bit padding")]
    BocBadPadding,
    /// Not exactly one root where one was expected.
    #[error("BOC: expected exactly one root")]
    BocRootCount,
    /// A cell's tag does not name the expected schema.
    #[error("wrong schema tag")]
    WrongTag,
    /// A receipt or voucher for another network or contract.
    #[error("receipt or voucher is for another network or contract")]
    WrongDomain,
    /// The voucher names another guest or client than the receipt.
    #[error("voucher does not match the receipt's guest and client keys")]
    VoucherMismatch,
    /// Claimed cumulative price above the voucher's cap.
    #[error("cumulative price exceeds the voucher cap")]
    AboveCap,
    /// Signing key is not the one named in the document.
    #[error("signing key does not match the key named in the document")]
    KeyMismatch,
    /// Not a valid Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    BadPublicKey,
    /// Signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The receipt's signature does not verify under its guest key.
    #[error("bad guest signature on receipt")]
    BadGuestSignature,
    /// The voucher's signature does not verify under its client key.
    #[error("bad client signature on voucher")]
    BadClientSignature,
}
