//! Initial VMSA pages for SEV-ES/SNP vCPUs, as each VMM builds them.
//!
//! Field offsets: AMD64 Architecture Programmer's Manual Vol. 2 (publication 24593),
//! Appendix B, Table B-4 "VMSA Layout, State Save Area for SEV-ES" (also Linux
//! `struct sev_es_save_area`). Register values: what KVM/QEMU, EC2 and GCE put in a vCPU at
//! reset (learnt from virtee/sev-snp-measure `vmsa.py`; values, not code).

use super::VmmType;

/// Offsets into the VMSA (APM Vol. 2, Table B-4).
mod off {
    pub const ES: usize = 0x000;
    pub const CS: usize = 0x010;
    pub const SS: usize = 0x020;
    pub const DS: usize = 0x030;
    pub const FS: usize = 0x040;
    pub const GS: usize = 0x050;
    pub const GDTR: usize = 0x060;
    pub const LDTR: usize = 0x070;
    pub const IDTR: usize = 0x080;
    pub const TR: usize = 0x090;
    pub const EFER: usize = 0x0D0;
    pub const CR4: usize = 0x148;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const G_PAT: usize = 0x268;
    pub const RDX: usize = 0x310;
    pub const SEV_FEATURES: usize = 0x3B0;
    pub const XCR0: usize = 0x3E8;
    pub const MXCSR: usize = 0x408;
    pub const X87_FCW: usize = 0x410;
}

/// Reset vector of the boot processor.
pub const BSP_EIP: u32 = 0xFFFF_FFF0;

/// A segment register image: selector, attributes, limit, base (VMCB segment format).
fn seg(page: &mut [u8; 4096], at: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
    page[at..at + 2].copy_from_slice(&selector.to_le_bytes());
    page[at + 2..at + 4].copy_from_slice(&attrib.to_le_bytes());
    page[at + 4..at + 8].copy_from_slice(&limit.to_le_bytes());
    page[at + 8..at + 16].copy_from_slice(&base.to_le_bytes());
}

fn put64(page: &mut [u8; 4096], at: usize, v: u64) {
    page[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Builds the VMSA of a vCPU starting at `eip` (real mode, CS base = eip & 0xFFFF0000).
pub fn build(eip: u32, sev_features: u64, vcpu_sig: u64, vmm: VmmType) -> Box<[u8; 4096]> {
    // Per-VMM differences in reset state.
    let (cs_flags, ss_flags, tr_flags, rdx, mxcsr, fcw, g_pat) = match vmm {
        // KVM reset state; RDX holds the CPUID(1).EAX signature (x86 reset convention).
        VmmType::Qemu => (
            0x9b,
            0x93,
            0x8b,
            vcpu_sig,
            0x1f80u32,
            0x37fu16,
            0x0007_0406_0007_0406u64,
        ),
        // EC2 marks the BSP's CS non-accessed and uses a fixed RDX.
        VmmType::Ec2 => {
            let cs = if eip == BSP_EIP { 0x9a } else { 0x9b };
            (cs, 0x92, 0x83, 0x600, 0, 0, 0x0007_0406_0007_0406)
        }
        // GCE overrides the default PAT.
        VmmType::Gce => (0x9b, 0x93, 0x8b, 0x600, 0, 0, 0x0007_0106),
    };
    let mut p = Box::new([0u8; 4096]);
    seg(&mut p, off::ES, 0, 0x93, 0xffff, 0);
    seg(
        &mut p,
        off::CS,
        0xf000,
        cs_flags,
        0xffff,
        u64::from(eip & 0xffff_0000),
    );
    seg(&mut p, off::SS, 0, ss_flags, 0xffff, 0);
    seg(&mut p, off::DS, 0, 0x93, 0xffff, 0);
    seg(&mut p, off::FS, 0, 0x93, 0xffff, 0);
    seg(&mut p, off::GS, 0, 0x93, 0xffff, 0);
    seg(&mut p, off::GDTR, 0, 0, 0xffff, 0);
    seg(&mut p, off::IDTR, 0, 0, 0xffff, 0);
    seg(&mut p, off::LDTR, 0, 0x82, 0xffff, 0);
    seg(&mut p, off::TR, 0, tr_flags, 0xffff, 0);
    put64(&mut p, off::EFER, 0x1000); // EFER.SVME, set by KVM
    put64(&mut p, off::CR4, 0x40); // CR4.MCE, set by KVM
    put64(&mut p, off::CR0, 0x10); // CR0.ET
    put64(&mut p, off::DR7, 0x400);
    put64(&mut p, off::DR6, 0xffff_0ff0);
    put64(&mut p, off::RFLAGS, 0x2);
    put64(&mut p, off::RIP, u64::from(eip & 0xffff));
    put64(&mut p, off::G_PAT, g_pat);
    put64(&mut p, off::RDX, rdx);
    put64(&mut p, off::SEV_FEATURES, sev_features);
    put64(&mut p, off::XCR0, 0x1);
    p[off::MXCSR..off::MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
    p[off::X87_FCW..off::X87_FCW + 2].copy_from_slice(&fcw.to_le_bytes());
    p
}
