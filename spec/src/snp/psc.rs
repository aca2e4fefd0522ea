//! The SNP page-state-change descriptor (GHCB spec 56421 §4.1.6 "SNP Page State Change",
//! the page state change descriptor; Linux `struct snp_psc_desc`): written into the GHCB
//! shared buffer for an SNP_PSC exit (SW_EXITCODE 0x8000_0010).

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ghcb::SHARED_BUFFER_LEN;

/// The descriptor header.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct PscHeader {
    /// 0x0 CUR_ENTRY: the next entry to process (the hypervisor advances it).
    pub cur_entry: U16,
    /// 0x2 END_ENTRY: the index of the last entry.
    pub end_entry: U16,
    /// 0x4 reserved.
    pub _reserved: U32,
}

/// Most entries in one descriptor: the shared buffer less the header, in 8-byte entries.
pub const MAX_ENTRIES: usize = (SHARED_BUFFER_LEN - size_of::<PscHeader>()) / 8;

/// The descriptor: the header and [`MAX_ENTRIES`] entries, exactly the GHCB shared buffer.
/// Each entry is a u64 of bit fields ([`entry`]).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct PscDesc {
    /// 0x000 the header.
    pub header: PscHeader,
    /// 0x008 the entries.
    pub entries: [U64; MAX_ENTRIES],
}

/// The bit fields of an entry.
pub mod entry {
    /// Bits 11:0 CUR_PAGE: 4 KiB pages of a 2 MiB entry already processed.
    pub const CUR_PAGE_MASK: u64 = 0xFFF;
    /// Bits 51:12 GFN.
    pub const GFN_SHIFT: u32 = 12;
    /// GFN width (40 bits).
    pub const GFN_MASK: u64 = (1 << 40) - 1;
    /// Bits 55:52 OPERATION (1 private, 2 shared).
    pub const OPERATION_SHIFT: u32 = 52;
    /// Bit 56 PAGE_SIZE (1: 2 MiB).
    pub const PAGE_SIZE_SHIFT: u32 = 56;
    /// OPERATION: assign the page to the guest.
    pub const OP_PRIVATE: u64 = 1;
    /// OPERATION: share the page with the hypervisor.
    pub const OP_SHARED: u64 = 2;

    /// An entry from its fields (each masked to its width).
    pub const fn encode(cur_page: u16, gfn: u64, operation: u8, size_2m: bool) -> u64 {
        (cur_page as u64 & CUR_PAGE_MASK)
            | (gfn & GFN_MASK) << GFN_SHIFT
            | (operation as u64 & 0xF) << OPERATION_SHIFT
            | (size_2m as u64) << PAGE_SIZE_SHIFT
    }
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<PscHeader>() == 8);
    assert!(offset_of!(PscHeader, end_entry) == 2);
    assert!(MAX_ENTRIES == 253);
    assert!(offset_of!(PscDesc, entries) == 8);
    assert!(size_of::<PscDesc>() == SHARED_BUFFER_LEN);
};
