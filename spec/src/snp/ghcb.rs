//! The GHCB page (AMD GHCB specification 56421 rev 2.03, §2.5 Table 3 "GHCB Layout"; Linux
//! `struct ghcb` / `struct ghcb_save_area` in `arch/x86/include/asm/svm.h`).
//!
//! The GHCB is shared with the hypervisor, which may rewrite it at any time: the firmware
//! never forms a reference to it as one of these types. It takes the offsets
//! (`core::mem::offset_of!`) and moves each field with volatile accesses. The types exist so
//! the offsets are written down once, with the spec's numbers asserted, and so that host-side
//! mocks can build and inspect a page.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The GHCB save area (Table 3, offsets 0x000–0x407): the VMSA layout for the registers the
/// GHCB exchanges ([`super::vmsa::Vmsa`] asserts the shared offsets), with the software exit
/// fields at 0x390–0x3AF where the VMSA holds the exit information.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct GhcbSaveArea {
    /// 0x000 reserved.
    pub _reserved_000: [u8; 0xCB],
    /// 0x0CB CPL.
    pub cpl: u8,
    /// 0x0CC reserved.
    pub _reserved_0cc: [u8; 0x140 - 0xCC],
    /// 0x140 XSS.
    pub xss: U64,
    /// 0x148 reserved.
    pub _reserved_148: [u8; 0x18],
    /// 0x160 DR7.
    pub dr7: U64,
    /// 0x168 reserved.
    pub _reserved_168: [u8; 0x10],
    /// 0x178 RIP.
    pub rip: U64,
    /// 0x180 reserved.
    pub _reserved_180: [u8; 0x58],
    /// 0x1D8 RSP.
    pub rsp: U64,
    /// 0x1E0 reserved.
    pub _reserved_1e0: [u8; 0x18],
    /// 0x1F8 RAX.
    pub rax: U64,
    /// 0x200 reserved.
    pub _reserved_200: [u8; 0x108],
    /// 0x308 RCX.
    pub rcx: U64,
    /// 0x310 RDX.
    pub rdx: U64,
    /// 0x318 RBX.
    pub rbx: U64,
    /// 0x320 reserved.
    pub _reserved_320: U64,
    /// 0x328 RBP.
    pub rbp: U64,
    /// 0x330 RSI.
    pub rsi: U64,
    /// 0x338 RDI.
    pub rdi: U64,
    /// 0x340 R8 .. R15.
    pub r8_15: [U64; 8],
    /// 0x380 reserved.
    pub _reserved_380: [u8; 0x10],
    /// 0x390 SW_EXITCODE.
    pub sw_exit_code: U64,
    /// 0x398 SW_EXITINFO1.
    pub sw_exit_info_1: U64,
    /// 0x3A0 SW_EXITINFO2.
    pub sw_exit_info_2: U64,
    /// 0x3A8 SW_SCRATCH.
    pub sw_scratch: U64,
    /// 0x3B0 reserved.
    pub _reserved_3b0: [u8; 0x38],
    /// 0x3E8 XCR0.
    pub xcr0: U64,
    /// 0x3F0 VALID_BITMAP: bit n marks the quadword at 8·n of the save area valid.
    pub valid_bitmap: [u8; 16],
    /// 0x400 X87_STATE_GPA.
    pub x87_state_gpa: U64,
}

/// Size of the GHCB shared buffer (Table 3: 0x800–0xFEF).
pub const SHARED_BUFFER_LEN: usize = 2032;

/// The GHCB page (Table 3).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Ghcb {
    /// 0x000 the save area.
    pub save: GhcbSaveArea,
    /// 0x408 reserved.
    pub _reserved_408: [u8; 0x800 - 0x408],
    /// 0x800 SHARED_BUFFER.
    pub shared_buffer: [u8; SHARED_BUFFER_LEN],
    /// 0xFF0 reserved.
    pub _reserved_ff0: [u8; 10],
    /// 0xFFA PROTOCOL_VERSION.
    pub protocol_version: U16,
    /// 0xFFC GHCB_USAGE (0: standard).
    pub ghcb_usage: U32,
}

impl Ghcb {
    /// The VALID_BITMAP byte (its offset in the page) and bit mask that cover the save-area
    /// quadword at `field_offset` (GHCB spec §2.5: bit n covers offset 8·n).
    pub const fn valid_bit(field_offset: usize) -> (usize, u8) {
        let bit = field_offset / 8;
        (
            core::mem::offset_of!(GhcbSaveArea, valid_bitmap) + bit / 8,
            1 << (bit % 8),
        )
    }
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<GhcbSaveArea>() == 0x408);
    assert!(size_of::<Ghcb>() == 4096);
    assert!(offset_of!(GhcbSaveArea, cpl) == 0x0CB);
    assert!(offset_of!(GhcbSaveArea, xss) == 0x140);
    assert!(offset_of!(GhcbSaveArea, dr7) == 0x160);
    assert!(offset_of!(GhcbSaveArea, rip) == 0x178);
    assert!(offset_of!(GhcbSaveArea, rsp) == 0x1D8);
    assert!(offset_of!(GhcbSaveArea, rax) == 0x1F8);
    assert!(offset_of!(GhcbSaveArea, rcx) == 0x308);
    assert!(offset_of!(GhcbSaveArea, rdx) == 0x310);
    assert!(offset_of!(GhcbSaveArea, rbx) == 0x318);
    assert!(offset_of!(GhcbSaveArea, rbp) == 0x328);
    assert!(offset_of!(GhcbSaveArea, rsi) == 0x330);
    assert!(offset_of!(GhcbSaveArea, rdi) == 0x338);
    assert!(offset_of!(GhcbSaveArea, r8_15) == 0x340);
    assert!(offset_of!(GhcbSaveArea, sw_exit_code) == 0x390);
    assert!(offset_of!(GhcbSaveArea, sw_exit_info_1) == 0x398);
    assert!(offset_of!(GhcbSaveArea, sw_exit_info_2) == 0x3A0);
    assert!(offset_of!(GhcbSaveArea, sw_scratch) == 0x3A8);
    assert!(offset_of!(GhcbSaveArea, xcr0) == 0x3E8);
    assert!(offset_of!(GhcbSaveArea, valid_bitmap) == 0x3F0);
    assert!(offset_of!(GhcbSaveArea, x87_state_gpa) == 0x400);
    assert!(offset_of!(Ghcb, shared_buffer) == 0x800);
    assert!(offset_of!(Ghcb, protocol_version) == 0xFFA);
    assert!(offset_of!(Ghcb, ghcb_usage) == 0xFFC);
};
