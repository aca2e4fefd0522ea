//! Initial VMSA pages for SEV-ES/SNP vCPUs, as each VMM builds them.
//!
//! The layout is [`pupa_spec::snp::Vmsa`] (AMD64 APM Vol. 2, publication 24593, Appendix B,
//! Table B-4 "VMSA Layout, State Save Area for SEV-ES"; the GHCB save area the firmware uses
//! shares its offsets). Register values: what KVM/QEMU, EC2 and GCE put in a vCPU at reset
//! (learnt from virtee/sev-snp-measure `vmsa.py`; values, not code).

use pupa_spec::snp::{VmcbSegment, Vmsa};
use zerocopy::{FromZeros, IntoBytes};

use super::VmmType;

/// Reset vector of the boot processor.
pub const BSP_EIP: u32 = 0xFFFF_FFF0;

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
    let seg = VmcbSegment::new;
    let mut v = Vmsa::new_zeroed();
    v.es = seg(0, 0x93, 0xffff, 0);
    v.cs = seg(0xf000, cs_flags, 0xffff, u64::from(eip & 0xffff_0000));
    v.ss = seg(0, ss_flags, 0xffff, 0);
    v.ds = seg(0, 0x93, 0xffff, 0);
    v.fs = seg(0, 0x93, 0xffff, 0);
    v.gs = seg(0, 0x93, 0xffff, 0);
    v.gdtr = seg(0, 0, 0xffff, 0);
    v.idtr = seg(0, 0, 0xffff, 0);
    v.ldtr = seg(0, 0x82, 0xffff, 0);
    v.tr = seg(0, tr_flags, 0xffff, 0);
    v.efer.set(0x1000); // EFER.SVME, set by KVM
    v.cr4.set(0x40); // CR4.MCE, set by KVM
    v.cr0.set(0x10); // CR0.ET
    v.dr7.set(0x400);
    v.dr6.set(0xffff_0ff0);
    v.rflags.set(0x2);
    v.rip.set(u64::from(eip & 0xffff));
    v.g_pat.set(g_pat);
    v.rdx.set(rdx);
    v.sev_features.set(sev_features);
    v.xcr0.set(0x1);
    v.mxcsr.set(mxcsr);
    v.x87_fcw.set(fcw);
    let mut p = Box::new([0u8; 4096]);
    p.copy_from_slice(v.as_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages this module built from byte offsets before the typed VMSA (kept in
    /// spec/testdata; sev-snp-measure's launch digests pin them in tests/snp_vectors.rs).
    #[test]
    fn typed_vmsa_matches_the_byte_offset_pages() {
        for (hex, eip, vmm, sig) in [
            (
                include_str!("../../../spec/testdata/vmsa_qemu_bsp.hex"),
                BSP_EIP,
                VmmType::Qemu,
                0x80_0f12,
            ),
            (
                include_str!("../../../spec/testdata/vmsa_ec2_ap.hex"),
                0x80_b004,
                VmmType::Ec2,
                0x80_0f12,
            ),
        ] {
            let want = crate::hexfmt::decode(hex.trim()).expect("hex");
            assert_eq!(
                build(eip, 1, sig, vmm).as_slice(),
                want.as_slice(),
                "{vmm:?}"
            );
        }
    }
}
