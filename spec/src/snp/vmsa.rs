//! The VM save area of an SEV-ES/SNP vCPU (AMD64 APM Vol. 2, publication 24593, Appendix B,
//! Table B-4 "VMSA Layout, State Save Area for SEV-ES"; Linux `struct sev_es_save_area` in
//! `arch/x86/include/asm/svm.h`).
//!
//! The GHCB save area ([`super::ghcb::GhcbSaveArea`], GHCB spec 56421 Table 3) mirrors the
//! general-purpose registers, RIP, RSP, DR7, XSS, CPL and XCR0 of this layout at the same
//! offsets; the assertions at the end of this file check that the two agree field by field.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ghcb::GhcbSaveArea;

/// A segment register in VMCB format (APM Vol. 2 Table B-4 "ES ... TR": selector, attributes,
/// limit, base; 16 bytes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VmcbSegment {
    /// Selector.
    pub selector: U16,
    /// Attributes (the descriptor's type, S, DPL, P, AVL, L, D/B, G bits, compressed).
    pub attrib: U16,
    /// Limit.
    pub limit: U32,
    /// Base.
    pub base: U64,
}

impl VmcbSegment {
    /// A segment from its four fields.
    pub fn new(selector: u16, attrib: u16, limit: u32, base: u64) -> Self {
        Self {
            selector: selector.into(),
            attrib: attrib.into(),
            limit: limit.into(),
            base: base.into(),
        }
    }
}

const _: () = assert!(size_of::<VmcbSegment>() == 16);

/// The VMSA page (APM Vol. 2 Table B-4): the encrypted register state of one SEV-ES/SNP vCPU,
/// measured at launch as an SNP VMSA page (SNP ABI 56860 §8.17.2). Offsets are the table's.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Vmsa {
    /// 0x000 ES.
    pub es: VmcbSegment,
    /// 0x010 CS.
    pub cs: VmcbSegment,
    /// 0x020 SS.
    pub ss: VmcbSegment,
    /// 0x030 DS.
    pub ds: VmcbSegment,
    /// 0x040 FS.
    pub fs: VmcbSegment,
    /// 0x050 GS.
    pub gs: VmcbSegment,
    /// 0x060 GDTR (selector and attributes reserved).
    pub gdtr: VmcbSegment,
    /// 0x070 LDTR.
    pub ldtr: VmcbSegment,
    /// 0x080 IDTR (selector and attributes reserved).
    pub idtr: VmcbSegment,
    /// 0x090 TR.
    pub tr: VmcbSegment,
    /// 0x0A0 PL0_SSP .. PL3_SSP (shadow-stack pointers).
    pub pl_ssp: [U64; 4],
    /// 0x0C0 U_CET.
    pub u_cet: U64,
    /// 0x0C8 reserved.
    pub _reserved_0c8: [u8; 2],
    /// 0x0CA VMPL.
    pub vmpl: u8,
    /// 0x0CB CPL.
    pub cpl: u8,
    /// 0x0CC reserved.
    pub _reserved_0cc: [u8; 4],
    /// 0x0D0 EFER.
    pub efer: U64,
    /// 0x0D8 reserved.
    pub _reserved_0d8: [u8; 104],
    /// 0x140 XSS.
    pub xss: U64,
    /// 0x148 CR4.
    pub cr4: U64,
    /// 0x150 CR3.
    pub cr3: U64,
    /// 0x158 CR0.
    pub cr0: U64,
    /// 0x160 DR7.
    pub dr7: U64,
    /// 0x168 DR6.
    pub dr6: U64,
    /// 0x170 RFLAGS.
    pub rflags: U64,
    /// 0x178 RIP.
    pub rip: U64,
    /// 0x180 DR0 .. DR3.
    pub dr0_3: [U64; 4],
    /// 0x1A0 DR0_ADDR_MASK .. DR3_ADDR_MASK.
    pub dr0_3_addr_mask: [U64; 4],
    /// 0x1C0 reserved.
    pub _reserved_1c0: [u8; 24],
    /// 0x1D8 RSP.
    pub rsp: U64,
    /// 0x1E0 S_CET.
    pub s_cet: U64,
    /// 0x1E8 SSP.
    pub ssp: U64,
    /// 0x1F0 ISST_ADDR.
    pub isst_addr: U64,
    /// 0x1F8 RAX.
    pub rax: U64,
    /// 0x200 STAR.
    pub star: U64,
    /// 0x208 LSTAR.
    pub lstar: U64,
    /// 0x210 CSTAR.
    pub cstar: U64,
    /// 0x218 SFMASK.
    pub sfmask: U64,
    /// 0x220 KERNEL_GS_BASE.
    pub kernel_gs_base: U64,
    /// 0x228 SYSENTER_CS.
    pub sysenter_cs: U64,
    /// 0x230 SYSENTER_ESP.
    pub sysenter_esp: U64,
    /// 0x238 SYSENTER_EIP.
    pub sysenter_eip: U64,
    /// 0x240 CR2.
    pub cr2: U64,
    /// 0x248 reserved.
    pub _reserved_248: [u8; 32],
    /// 0x268 G_PAT.
    pub g_pat: U64,
    /// 0x270 DBGCTL.
    pub dbgctl: U64,
    /// 0x278 BR_FROM.
    pub br_from: U64,
    /// 0x280 BR_TO.
    pub br_to: U64,
    /// 0x288 LASTEXCPFROM.
    pub last_excp_from: U64,
    /// 0x290 LASTEXCPTO.
    pub last_excp_to: U64,
    /// 0x298 reserved.
    pub _reserved_298: [u8; 80],
    /// 0x2E8 PKRU.
    pub pkru: U32,
    /// 0x2EC TSC_AUX.
    pub tsc_aux: U32,
    /// 0x2F0 reserved.
    pub _reserved_2f0: [u8; 24],
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
    pub _reserved_380: [u8; 16],
    /// 0x390 GUEST_EXITINFO1.
    pub guest_exit_info_1: U64,
    /// 0x398 GUEST_EXITINFO2.
    pub guest_exit_info_2: U64,
    /// 0x3A0 GUEST_EXITINTINFO.
    pub guest_exit_int_info: U64,
    /// 0x3A8 GUEST_NRIP.
    pub guest_nrip: U64,
    /// 0x3B0 SEV_FEATURES (bit 0: SNP active; APM Vol. 2 Table 15-38/B-4).
    pub sev_features: U64,
    /// 0x3B8 VINTR_CTRL.
    pub vintr_ctrl: U64,
    /// 0x3C0 GUEST_EXITCODE.
    pub guest_exit_code: U64,
    /// 0x3C8 VIRTUAL_TOM.
    pub virtual_tom: U64,
    /// 0x3D0 TLB_ID.
    pub tlb_id: U64,
    /// 0x3D8 PCPU_ID.
    pub pcpu_id: U64,
    /// 0x3E0 EVENTINJ.
    pub event_inj: U64,
    /// 0x3E8 XCR0.
    pub xcr0: U64,
    /// 0x3F0 reserved.
    pub _reserved_3f0: [u8; 16],
    /// 0x400 X87_DP.
    pub x87_dp: U64,
    /// 0x408 MXCSR.
    pub mxcsr: U32,
    /// 0x40C X87_FTW.
    pub x87_ftw: U16,
    /// 0x40E X87_FSW.
    pub x87_fsw: U16,
    /// 0x410 X87_FCW.
    pub x87_fcw: U16,
    /// 0x412 X87_FOP.
    pub x87_fop: U16,
    /// 0x414 X87_DS.
    pub x87_ds: U16,
    /// 0x416 X87_CS.
    pub x87_cs: U16,
    /// 0x418 X87_RIP.
    pub x87_rip: U64,
    /// 0x420 FPREG_X87 (8 × 10 bytes).
    pub fpreg_x87: [u8; 80],
    /// 0x470 FPREG_XMM (16 × 16 bytes).
    pub fpreg_xmm: [u8; 256],
    /// 0x570 FPREG_YMM (upper halves, 16 × 16 bytes).
    pub fpreg_ymm: [u8; 256],
    /// 0x670 reserved to the end of the page.
    pub _reserved_670: [u8; 0x1000 - 0x670],
}

/// The size of a VMSA: one page.
pub const VMSA_LEN: usize = 4096;

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<Vmsa>() == VMSA_LEN);
    assert!(offset_of!(Vmsa, es) == 0x000);
    assert!(offset_of!(Vmsa, cs) == 0x010);
    assert!(offset_of!(Vmsa, ss) == 0x020);
    assert!(offset_of!(Vmsa, ds) == 0x030);
    assert!(offset_of!(Vmsa, fs) == 0x040);
    assert!(offset_of!(Vmsa, gs) == 0x050);
    assert!(offset_of!(Vmsa, gdtr) == 0x060);
    assert!(offset_of!(Vmsa, ldtr) == 0x070);
    assert!(offset_of!(Vmsa, idtr) == 0x080);
    assert!(offset_of!(Vmsa, tr) == 0x090);
    assert!(offset_of!(Vmsa, u_cet) == 0x0C0);
    assert!(offset_of!(Vmsa, vmpl) == 0x0CA);
    assert!(offset_of!(Vmsa, cpl) == 0x0CB);
    assert!(offset_of!(Vmsa, efer) == 0x0D0);
    assert!(offset_of!(Vmsa, xss) == 0x140);
    assert!(offset_of!(Vmsa, cr4) == 0x148);
    assert!(offset_of!(Vmsa, cr3) == 0x150);
    assert!(offset_of!(Vmsa, cr0) == 0x158);
    assert!(offset_of!(Vmsa, dr7) == 0x160);
    assert!(offset_of!(Vmsa, dr6) == 0x168);
    assert!(offset_of!(Vmsa, rflags) == 0x170);
    assert!(offset_of!(Vmsa, rip) == 0x178);
    assert!(offset_of!(Vmsa, dr0_3) == 0x180);
    assert!(offset_of!(Vmsa, dr0_3_addr_mask) == 0x1A0);
    assert!(offset_of!(Vmsa, rsp) == 0x1D8);
    assert!(offset_of!(Vmsa, s_cet) == 0x1E0);
    assert!(offset_of!(Vmsa, isst_addr) == 0x1F0);
    assert!(offset_of!(Vmsa, rax) == 0x1F8);
    assert!(offset_of!(Vmsa, star) == 0x200);
    assert!(offset_of!(Vmsa, cr2) == 0x240);
    assert!(offset_of!(Vmsa, g_pat) == 0x268);
    assert!(offset_of!(Vmsa, last_excp_to) == 0x290);
    assert!(offset_of!(Vmsa, pkru) == 0x2E8);
    assert!(offset_of!(Vmsa, tsc_aux) == 0x2EC);
    assert!(offset_of!(Vmsa, rcx) == 0x308);
    assert!(offset_of!(Vmsa, rdx) == 0x310);
    assert!(offset_of!(Vmsa, rbx) == 0x318);
    assert!(offset_of!(Vmsa, rbp) == 0x328);
    assert!(offset_of!(Vmsa, rsi) == 0x330);
    assert!(offset_of!(Vmsa, rdi) == 0x338);
    assert!(offset_of!(Vmsa, r8_15) == 0x340);
    assert!(offset_of!(Vmsa, guest_exit_info_1) == 0x390);
    assert!(offset_of!(Vmsa, guest_nrip) == 0x3A8);
    assert!(offset_of!(Vmsa, sev_features) == 0x3B0);
    assert!(offset_of!(Vmsa, guest_exit_code) == 0x3C0);
    assert!(offset_of!(Vmsa, virtual_tom) == 0x3C8);
    assert!(offset_of!(Vmsa, event_inj) == 0x3E0);
    assert!(offset_of!(Vmsa, xcr0) == 0x3E8);
    assert!(offset_of!(Vmsa, x87_dp) == 0x400);
    assert!(offset_of!(Vmsa, mxcsr) == 0x408);
    assert!(offset_of!(Vmsa, x87_ftw) == 0x40C);
    assert!(offset_of!(Vmsa, x87_fcw) == 0x410);
    assert!(offset_of!(Vmsa, x87_rip) == 0x418);
    assert!(offset_of!(Vmsa, fpreg_x87) == 0x420);
    assert!(offset_of!(Vmsa, fpreg_xmm) == 0x470);
    assert!(offset_of!(Vmsa, fpreg_ymm) == 0x570);
};

/// The GHCB save area is the VMSA's layout for the fields the GHCB exchanges (GHCB spec 56421
/// §2.5: "the GHCB save area follows the VMSA layout"): the same offsets, checked here.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(GhcbSaveArea, cpl) == offset_of!(Vmsa, cpl));
    assert!(offset_of!(GhcbSaveArea, xss) == offset_of!(Vmsa, xss));
    assert!(offset_of!(GhcbSaveArea, dr7) == offset_of!(Vmsa, dr7));
    assert!(offset_of!(GhcbSaveArea, rip) == offset_of!(Vmsa, rip));
    assert!(offset_of!(GhcbSaveArea, rsp) == offset_of!(Vmsa, rsp));
    assert!(offset_of!(GhcbSaveArea, rax) == offset_of!(Vmsa, rax));
    assert!(offset_of!(GhcbSaveArea, rcx) == offset_of!(Vmsa, rcx));
    assert!(offset_of!(GhcbSaveArea, rdx) == offset_of!(Vmsa, rdx));
    assert!(offset_of!(GhcbSaveArea, rbx) == offset_of!(Vmsa, rbx));
    assert!(offset_of!(GhcbSaveArea, rbp) == offset_of!(Vmsa, rbp));
    assert!(offset_of!(GhcbSaveArea, rsi) == offset_of!(Vmsa, rsi));
    assert!(offset_of!(GhcbSaveArea, rdi) == offset_of!(Vmsa, rdi));
    assert!(offset_of!(GhcbSaveArea, r8_15) == offset_of!(Vmsa, r8_15));
    assert!(offset_of!(GhcbSaveArea, xcr0) == offset_of!(Vmsa, xcr0));
};
