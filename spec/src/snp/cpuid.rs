//! The SNP CPUID page (SEV-SNP Firmware ABI spec 56860, SNP_LAUNCH_UPDATE with PAGE_TYPE_CPUID,
//! Table 14 "CPUID Function Structure"; Linux `struct snp_cpuid_table` / `struct snp_cpuid_fn`
//! in `arch/x86/include/asm/sev.h`): the CPUID values the secure processor checked at launch.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One CPUID function (Table 14).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SnpCpuidFn {
    /// 0x00 EAX_IN (the leaf).
    pub eax_in: U32,
    /// 0x04 ECX_IN (the subleaf, for indexed leaves).
    pub ecx_in: U32,
    /// 0x08 XCR0_IN.
    pub xcr0_in: U64,
    /// 0x10 XSS_IN.
    pub xss_in: U64,
    /// 0x18 EAX.
    pub eax: U32,
    /// 0x1C EBX.
    pub ebx: U32,
    /// 0x20 ECX.
    pub ecx: U32,
    /// 0x24 EDX.
    pub edx: U32,
    /// 0x28 reserved.
    pub _reserved: U64,
}

/// Most functions a CPUID page holds.
pub const MAX_ENTRIES: usize = 64;

/// The CPUID page: COUNT, reserved, then [`MAX_ENTRIES`] functions, reserved to 4 KiB.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SnpCpuidPage {
    /// 0x000 COUNT (≤ 64).
    pub count: U32,
    /// 0x004 reserved.
    pub _reserved_004: [u8; 12],
    /// 0x010 the functions (the first COUNT are valid).
    pub functions: [SnpCpuidFn; MAX_ENTRIES],
    /// 0xC10 reserved to the end of the page.
    pub _reserved_c10: [u8; 4096 - 0xC10],
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<SnpCpuidFn>() == 0x30);
    assert!(offset_of!(SnpCpuidFn, xcr0_in) == 0x08);
    assert!(offset_of!(SnpCpuidFn, xss_in) == 0x10);
    assert!(offset_of!(SnpCpuidFn, eax) == 0x18);
    assert!(offset_of!(SnpCpuidFn, ebx) == 0x1C);
    assert!(offset_of!(SnpCpuidFn, ecx) == 0x20);
    assert!(offset_of!(SnpCpuidFn, edx) == 0x24);
    assert!(size_of::<SnpCpuidPage>() == 4096);
    assert!(offset_of!(SnpCpuidPage, functions) == 0x10);
};
