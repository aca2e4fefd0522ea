//! PAGE_INFO (SEV-SNP Firmware ABI spec 56860, §8.17.2 "SNP_LAUNCH_UPDATE", Table 67 "Layout
//! of the PAGE_INFO Structure"): for every page added at launch the secure processor sets the
//! launch digest to SHA-384 of this record, which holds the previous digest.

use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// PAGE_INFO (Table 67).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct PageInfo {
    /// 0x00 DIGEST_CUR: the launch digest before this page.
    pub digest_cur: [u8; 48],
    /// 0x30 CONTENTS: SHA-384 of the page for NORMAL and VMSA pages, zero otherwise.
    pub contents: [u8; 48],
    /// 0x60 LENGTH: the size of this structure (0x70).
    pub length: U16,
    /// 0x62 PAGE_TYPE ([`page_type`]).
    pub page_type: u8,
    /// 0x63 IMI_PAGE (0: not an IMI page).
    pub imi_page: u8,
    /// 0x64 VMPL3_PERMS.
    pub vmpl3_perms: u8,
    /// 0x65 VMPL2_PERMS.
    pub vmpl2_perms: u8,
    /// 0x66 VMPL1_PERMS.
    pub vmpl1_perms: u8,
    /// 0x67 reserved.
    pub _reserved: u8,
    /// 0x68 GPA of the page (for VMSA pages: 0xFFFF_FFFF_F000, see below).
    pub gpa: U64,
}

/// Size of PAGE_INFO, also its LENGTH field.
pub const PAGE_INFO_LEN: usize = 0x70;

/// PAGE_TYPE values (SNP ABI 56860, §8.17.2, the PAGE_TYPE encodings of SNP_LAUNCH_UPDATE).
pub mod page_type {
    /// A page with measured contents.
    pub const NORMAL: u8 = 1;
    /// A VMSA page.
    pub const VMSA: u8 = 2;
    /// A zero page.
    pub const ZERO: u8 = 3;
    /// An unmeasured page.
    pub const UNMEASURED: u8 = 4;
    /// The secrets page.
    pub const SECRETS: u8 = 5;
    /// The CPUID page.
    pub const CPUID: u8 = 6;
}

/// The GPA the secure processor records for VMSA pages: (u64)-1 made page-aligned with the bits
/// above 51 clear (sev-snp-measure `VMSA_GPA`; KVM adds VMSAs without a guest address).
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<PageInfo>() == PAGE_INFO_LEN);
    assert!(offset_of!(PageInfo, contents) == 0x30);
    assert!(offset_of!(PageInfo, length) == 0x60);
    assert!(offset_of!(PageInfo, page_type) == 0x62);
    assert!(offset_of!(PageInfo, imi_page) == 0x63);
    assert!(offset_of!(PageInfo, vmpl3_perms) == 0x64);
    assert!(offset_of!(PageInfo, vmpl1_perms) == 0x66);
    assert!(offset_of!(PageInfo, gpa) == 0x68);
};
