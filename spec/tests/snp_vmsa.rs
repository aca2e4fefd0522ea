//! The VMSA and GHCB layouts against known pages.
//!
//! `testdata/vmsa_qemu_bsp.hex` and `vmsa_ec2_ap.hex`: the VMSA pages pupa-measurements built
//! (before this crate existed, from byte offsets) for the sev-snp-measure fixture
//! `ovmf_AmdSev_suffix.bin` (QEMU: BSP; EC2: an AP at the SEV-ES reset address 0x80B004). Those
//! pages reproduce sev-snp-measure's published launch digests (measurements/tests/snp_vectors.rs).

mod common;

use pupa_spec::snp::{Ghcb, VmcbSegment, Vmsa};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

fn page(hex: &str) -> Vmsa {
    Vmsa::read_from_bytes(&common::unhex(hex)).expect("one page")
}

#[test]
fn qemu_bsp_vmsa_fields() {
    let v = page(include_str!("../testdata/vmsa_qemu_bsp.hex"));
    assert_eq!(v.cs, VmcbSegment::new(0xf000, 0x9b, 0xffff, 0xffff_0000));
    assert_eq!(v.ss, VmcbSegment::new(0, 0x93, 0xffff, 0));
    assert_eq!(v.ldtr, VmcbSegment::new(0, 0x82, 0xffff, 0));
    assert_eq!(v.tr, VmcbSegment::new(0, 0x8b, 0xffff, 0));
    assert_eq!(v.rip.get(), 0xfff0);
    assert_eq!(v.efer.get(), 0x1000);
    assert_eq!(v.cr0.get(), 0x10);
    assert_eq!(v.cr4.get(), 0x40);
    assert_eq!(v.dr6.get(), 0xffff_0ff0);
    assert_eq!(v.dr7.get(), 0x400);
    assert_eq!(v.rflags.get(), 2);
    assert_eq!(v.g_pat.get(), 0x0007_0406_0007_0406);
    assert_eq!(v.rdx.get(), 0x0080_0f12, "EPYC CPUID(1).EAX signature");
    assert_eq!(v.sev_features.get(), 1);
    assert_eq!(v.xcr0.get(), 1);
    assert_eq!(v.mxcsr.get(), 0x1f80);
    assert_eq!(v.x87_fcw.get(), 0x37f);
}

#[test]
fn ec2_ap_vmsa_fields() {
    let v = page(include_str!("../testdata/vmsa_ec2_ap.hex"));
    assert_eq!(v.cs, VmcbSegment::new(0xf000, 0x9b, 0xffff, 0x0080_0000));
    assert_eq!(v.rip.get(), 0xb004);
    assert_eq!(v.ss.attrib.get(), 0x92);
    assert_eq!(v.tr.attrib.get(), 0x83);
    assert_eq!(v.rdx.get(), 0x600);
    assert_eq!(v.mxcsr.get(), 0);
}

#[test]
fn vmsa_round_trips() {
    let hex = include_str!("../testdata/vmsa_qemu_bsp.hex");
    assert_eq!(page(hex).as_bytes(), common::unhex(hex));
    assert!(Vmsa::read_from_bytes(&[0u8; 4095]).is_err());
}

#[test]
fn ghcb_fields_land_at_table_3_offsets() {
    let mut g = Ghcb::new_zeroed();
    g.save.rax.set(0x1122_3344_5566_7788);
    g.save.sw_exit_code.set(0x7b);
    g.protocol_version.set(2);
    let b = g.as_bytes();
    assert_eq!(b[0x1F8..0x200], 0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(b[0x390..0x398], 0x7bu64.to_le_bytes());
    assert_eq!(b[0xFFA..0xFFC], [2, 0]);
    // RAX (0x1F8 / 8 = bit 63) lives in bitmap byte 0x3F0 + 7, mask 0x80.
    assert_eq!(Ghcb::valid_bit(0x1F8), (0x3F7, 0x80));
    // SW_EXITCODE (0x390 / 8 = bit 114): byte 0x3F0 + 14, mask 1 << 2.
    assert_eq!(Ghcb::valid_bit(0x390), (0x3FE, 0x04));
}
