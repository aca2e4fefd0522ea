//! TDVF metadata (Intel TDX Virtual Firmware Design Guide, §11 "TDVF Metadata": Table 11-1
//! `TDVF_DESCRIPTOR`, Table 11-2 `TDVF_SECTION`; QEMU `hw/i386/tdvf.c`, td-shim
//! `td-shim-interface/src/metadata.rs`): the `TDVF` block the OVMF GUID table's TDX metadata
//! entry points to, which tells the VMM which pages to add (TDH.MEM.PAGE.ADD), extend into MRTD
//! (TDH.MR.EXTEND) or leave for the guest to accept.
//!
//! pupa's own block is written in `guest/src/arch/boot.s` (`tdvf_descriptor`) with this layout;
//! `pupa-measurements` parses images through these types.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `TDVF_DESCRIPTOR` (Table 11-1), followed by `number_of_section_entry` [`TdvfSection`]s.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TdvfDescriptor {
    /// 0x0 `TDVF`.
    pub signature: [u8; 4],
    /// 0x4 size of the descriptor and all sections.
    pub length: U32,
    /// 0x8 version (1).
    pub version: U32,
    /// 0xC number of sections.
    pub number_of_section_entry: U32,
}

/// `TDVF_SECTION` (Table 11-2).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TdvfSection {
    /// 0x00 offset of the section's data in the image file (BFV, CFV).
    pub data_offset: U32,
    /// 0x04 bytes of data in the file (0 for memory-only sections).
    pub raw_data_size: U32,
    /// 0x08 guest-physical address.
    pub memory_address: U64,
    /// 0x10 size in guest memory (a page multiple, ≥ the raw size).
    pub memory_data_size: U64,
    /// 0x18 section type ([`section_type`]).
    pub kind: U32,
    /// 0x1C attributes ([`ATTR_MR_EXTEND`], [`ATTR_PAGE_AUG`]).
    pub attributes: U32,
}

/// The descriptor signature.
pub const SIGNATURE: [u8; 4] = *b"TDVF";
/// The descriptor version.
pub const VERSION: u32 = 1;
/// Attribute bit 0: the pages are extended into MRTD (TDH.MR.EXTEND).
pub const ATTR_MR_EXTEND: u32 = 1 << 0;
/// Attribute bit 1: the pages are added after launch with TDH.MEM.PAGE.AUG (unmeasured).
pub const ATTR_PAGE_AUG: u32 = 1 << 1;

/// Section types (Table 11-2 "Type").
pub mod section_type {
    /// Boot firmware volume (copied from the image).
    pub const BFV: u32 = 0;
    /// Configuration firmware volume (copied from the image).
    pub const CFV: u32 = 1;
    /// The TD HOB, written by the VMM.
    pub const TD_HOB: u32 = 2;
    /// Temporary memory, zero at launch.
    pub const TEMP_MEM: u32 = 3;
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<TdvfDescriptor>() == 16);
    assert!(offset_of!(TdvfDescriptor, length) == 4);
    assert!(offset_of!(TdvfDescriptor, version) == 8);
    assert!(offset_of!(TdvfDescriptor, number_of_section_entry) == 12);
    assert!(size_of::<TdvfSection>() == 32);
    assert!(offset_of!(TdvfSection, raw_data_size) == 0x04);
    assert!(offset_of!(TdvfSection, memory_address) == 0x08);
    assert!(offset_of!(TdvfSection, memory_data_size) == 0x10);
    assert!(offset_of!(TdvfSection, kind) == 0x18);
    assert!(offset_of!(TdvfSection, attributes) == 0x1C);
};
