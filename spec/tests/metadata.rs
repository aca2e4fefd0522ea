//! The SEV and TDVF metadata layouts against OVMF's: the last 4 KiB of an edk2 AmdSev build, the
//! fixture virtee/sev-snp-measure tests with (measurements/testdata/SOURCE).

use pupa_spec::snp::metadata::{self as sev, SevMetadataHeader, SevMetadataSection};
use pupa_spec::tdx::metadata::{self as tdvf, TdvfDescriptor, TdvfSection};
use zerocopy::FromBytes;

const OVMF: &[u8] = include_bytes!("../../measurements/testdata/ovmf_AmdSev_suffix.bin");

fn find(sig: &[u8; 4]) -> &'static [u8] {
    let at = OVMF.windows(4).position(|w| w == sig).expect("signature");
    &OVMF[at..]
}

#[test]
fn ovmf_sev_metadata() {
    let (h, rest) = SevMetadataHeader::ref_from_prefix(find(&sev::SIGNATURE)).unwrap();
    assert_eq!(h.version.get(), sev::VERSION);
    assert_eq!((h.size.get(), h.num_sections.get()), (16 + 7 * 12, 7));
    let (s, _) = <[SevMetadataSection]>::ref_from_prefix_with_elems(rest, 7).unwrap();
    let got: Vec<_> = s
        .iter()
        .map(|d| (d.base.get(), d.size.get(), d.kind.get()))
        .collect();
    use sev::section_type::*;
    assert_eq!(
        got,
        [
            (0x80_0000, 0x9000, SNP_SEC_MEM),
            (0x80_a000, 0x3000, SNP_SEC_MEM),
            (0x80_d000, 0x1000, SNP_SECRETS),
            (0x80_e000, 0x1000, CPUID),
            (0x80_f000, 0x1000, SVSM_CAA),
            (0x81_0000, 0x1000, SNP_KERNEL_HASHES),
            (0x81_1000, 0xf000, SNP_SEC_MEM),
        ]
    );
}

#[test]
fn ovmf_tdvf_metadata() {
    let (h, rest) = TdvfDescriptor::ref_from_prefix(find(&tdvf::SIGNATURE)).unwrap();
    assert_eq!(h.version.get(), tdvf::VERSION);
    assert_eq!(
        (h.length.get(), h.number_of_section_entry.get()),
        (16 + 6 * 32, 6)
    );
    let (s, _) = <[TdvfSection]>::ref_from_prefix_with_elems(rest, 6).unwrap();
    let bfv = &s[0];
    assert_eq!(bfv.kind.get(), tdvf::section_type::BFV);
    assert_eq!(
        (bfv.data_offset.get(), bfv.raw_data_size.get()),
        (0x84000, 0x37c000)
    );
    assert_eq!(
        (bfv.memory_address.get(), bfv.memory_data_size.get()),
        (0xffc8_4000, 0x37c000)
    );
    assert_eq!(bfv.attributes.get(), tdvf::ATTR_MR_EXTEND);
    assert_eq!(s[1].kind.get(), tdvf::section_type::CFV);
    assert_eq!(s[1].memory_address.get(), 0xffc0_0000);
    assert_eq!(s[1].attributes.get(), 0);
    let hob = &s[4];
    assert_eq!(hob.kind.get(), tdvf::section_type::TD_HOB);
    assert_eq!(
        (hob.memory_address.get(), hob.memory_data_size.get()),
        (0x80_9000, 0x2000)
    );
    assert_eq!(s[5].kind.get(), tdvf::section_type::TEMP_MEM);
}

#[test]
fn short_input_is_an_error() {
    assert!(TdvfDescriptor::ref_from_prefix(&[0u8; 15]).is_err());
    let (_, rest) = SevMetadataHeader::ref_from_prefix(find(&sev::SIGNATURE)).unwrap();
    assert!(<[SevMetadataSection]>::ref_from_prefix_with_elems(&rest[..20], 2).is_err());
}
