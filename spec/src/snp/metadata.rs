//! OVMF's SEV metadata (edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`: `OvmfSevMetadata`
//! and `OvmfSevMetadataSectionDesc`; QEMU `hw/i386/pc_sysfw_ovmf.c`; virtee/sev-snp-measure
//! `ovmf.py`): the `ASEV` block the OVMF GUID table's SEV metadata entry points to, which tells
//! the VMM which guest pages to pre-validate or fill before an SEV-SNP launch.
//!
//! pupa's own block is written in `guest/src/arch/boot.s` (`sev_metadata`) with this layout;
//! `pupa-measurements` parses images through these types.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The `ASEV` header, followed by `num_sections` [`SevMetadataSection`]s.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SevMetadataHeader {
    /// 0x0 `ASEV`.
    pub signature: [u8; 4],
    /// 0x4 size of the block: the header and all sections.
    pub size: U32,
    /// 0x8 version (1).
    pub version: U32,
    /// 0xC number of sections.
    pub num_sections: U32,
}

/// One section descriptor (`OvmfSevMetadataSectionDesc`).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SevMetadataSection {
    /// 0x0 guest-physical base.
    pub base: U32,
    /// 0x4 size in bytes.
    pub size: U32,
    /// 0x8 section type ([`section_type`]).
    pub kind: U32,
}

/// The header signature.
pub const SIGNATURE: [u8; 4] = *b"ASEV";
/// The header version.
pub const VERSION: u32 = 1;

/// Section types (`OvmfSevMetadata.asm` `OVMF_SECTION_TYPE_*`).
pub mod section_type {
    /// Pre-validated memory, measured as zero pages.
    pub const SNP_SEC_MEM: u32 = 1;
    /// The SNP secrets page.
    pub const SNP_SECRETS: u32 = 2;
    /// The SNP CPUID page.
    pub const CPUID: u32 = 3;
    /// The SVSM calling-area page(s).
    pub const SVSM_CAA: u32 = 4;
    /// The kernel/initrd/cmdline hashes page.
    pub const SNP_KERNEL_HASHES: u32 = 0x10;
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<SevMetadataHeader>() == 16);
    assert!(offset_of!(SevMetadataHeader, size) == 4);
    assert!(offset_of!(SevMetadataHeader, version) == 8);
    assert!(offset_of!(SevMetadataHeader, num_sections) == 12);
    assert!(size_of::<SevMetadataSection>() == 12);
    assert!(offset_of!(SevMetadataSection, size) == 4);
    assert!(offset_of!(SevMetadataSection, kind) == 8);
};
