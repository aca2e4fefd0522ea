//! The TDG.VP.VMCALL<GetQuote> shared-buffer header (Intel GHCI 1.5, §3.3 "TDG.VP.VMCALL
//! <GetQuote>", Table 3-10 "GetQuote Shared Buffer Format"; Linux `struct tdx_quote_buf`).
//! The TDREPORT (request) or the quote (response) follows the header.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The GetQuote buffer header.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct GetQuoteHeader {
    /// 0 VERSION (1).
    pub version: U64,
    /// 8 STATUS (written by the VMM; [`STATUS_SUCCESS`], [`STATUS_IN_FLIGHT`], errors).
    pub status: U64,
    /// 16 IN_LEN: bytes of the request after the header.
    pub in_len: U32,
    /// 20 OUT_LEN: bytes of the response after the header.
    pub out_len: U32,
}

/// Size of the header.
pub const HEADER_LEN: usize = 24;
/// The buffer version.
pub const VERSION: u64 = 1;
/// STATUS: success.
pub const STATUS_SUCCESS: u64 = 0;
/// STATUS: the request is still being processed.
pub const STATUS_IN_FLIGHT: u64 = 0xFFFF_FFFF_FFFF_FFFF;

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<GetQuoteHeader>() == HEADER_LEN);
    assert!(offset_of!(GetQuoteHeader, status) == 8);
    assert!(offset_of!(GetQuoteHeader, in_len) == 16);
    assert!(offset_of!(GetQuoteHeader, out_len) == 20);
};
