//! GHCB MSR protocol encodings and GHCB page layout against the spec's bit positions.

use super::*;

#[test]
fn mmio_exits_carry_gpa_size_and_data_in_the_shared_buffer() {
    let mut page = [0u8; 4096];
    let mut g = Ghcb::new(&mut page);
    mmio_request(&mut g, 0x60_0800, 0xFEBF_1014, 2, Some(0xABCD_1234));
    assert_eq!(g.get(Field::SwExitCode), Ok(0x8000_0002));
    assert_eq!(g.get(Field::SwExitInfo1), Ok(0xFEBF_1014));
    assert_eq!(g.get(Field::SwExitInfo2), Ok(2));
    assert_eq!(g.get(Field::SwScratch), Ok(0x60_0800));
    assert_eq!(g.shared_buffer()[..3], [0x34, 0x12, 0]);
    mmio_request(&mut g, 0x60_0800, 0xFEBF_1000, 4, None);
    assert_eq!(g.get(Field::SwExitCode), Ok(0x8000_0001));
    // The hypervisor answers in the shared buffer; only `size` bytes are taken.
    g.shared_buffer()[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    g.set(Field::SwExitInfo1, 0);
    assert_eq!(mmio_read_result(&mut g, 4), Ok(0x5566_7788));
    g.set(Field::SwExitInfo1, 2);
    assert_eq!(
        mmio_read_result(&mut g, 4),
        Err(GhcbError::MalformedInput(4))
    );
}

#[test]
fn msr_encodings_match_the_spec_bit_layout() {
    // Linux GHCB_CPUID_REQ(fn, reg) = 0x004 | reg << 30 | fn << 32.
    assert_eq!(
        cpuid_request(0x8000_001F, CpuidReg::Ebx),
        0x8000_001F_4000_0004
    );
    assert_eq!(
        cpuid_response(0x0000_0033_4000_0005, CpuidReg::Ebx),
        Ok(0x33)
    );
    assert_eq!(
        cpuid_response(0x0000_0033_8000_0005, CpuidReg::Ebx),
        Err(MsrProtocolError::WrongRegister { got: 2, want: 1 })
    );
    assert_eq!(
        cpuid_response(0x0000_0033_4000_0001, CpuidReg::Ebx),
        Err(MsrProtocolError::UnexpectedCode { got: 1, want: 5 })
    );
    assert_eq!(register_ghcb_request(0x20_0000), Ok(0x20_0012));
    assert_eq!(
        register_ghcb_request(0x20_0008),
        Err(MsrProtocolError::Unaligned(0x20_0008))
    );
    assert_eq!(register_ghcb_response(0x20_0013, 0x20_0000), Ok(()));
    assert_eq!(
        register_ghcb_response(0xFFFF_FFFF_FFFF_F013, 0x20_0000),
        Err(MsrProtocolError::GpaMismatch {
            got: 0xF_FFFF_FFFF_FFFF,
            want: 0x200
        })
    );
    assert_eq!(
        psc_request(0x40_3000, PageOp::Shared),
        Ok(0x0020_0000_0040_3014)
    );
    assert_eq!(
        psc_request(0x40_3000, PageOp::Private),
        Ok(0x0010_0000_0040_3014)
    );
    assert_eq!(psc_response(0x015), Ok(()));
    assert_eq!(
        psc_response(0x0000_0002_0000_0015),
        Err(MsrProtocolError::PscFailed(2))
    );
    // Linux: GHCB_SEV_TERM_REASON(set, code) = set << 12 | code << 16 | 0x100.
    assert_eq!(terminate_request(1, 4), 0x4_1100);
    assert_eq!(terminate_request(0, 0), 0x100);
}

#[test]
fn sev_info_checks_version_range() {
    let i = sev_info_response(0x0002_0001_3300_0001).unwrap();
    assert_eq!(
        i,
        SevInfo {
            max_version: 2,
            min_version: 1,
            c_bit: 51
        }
    );
    assert_eq!(
        sev_info_response(0x0001_0001_3300_0001),
        Err(MsrProtocolError::UnsupportedVersion { min: 1, max: 1 })
    );
}

#[test]
fn ghcb_fields_land_at_table3_offsets_with_valid_bits() {
    let mut page = [0xAAu8; 4096];
    let mut g = Ghcb::new(&mut page);
    g.reset();
    assert_eq!(g.get(Field::Rax), Err(GhcbError::NotValid(Field::Rax)));
    g.set(Field::Rax, 0x1122_3344_5566_7788);
    g.set(Field::SwExitCode, exit::IOIO);
    g.set(Field::SwExitInfo2, 7);
    g.set(Field::Xcr0, 7);
    assert_eq!(g.get(Field::Rax), Ok(0x1122_3344_5566_7788));
    g.shared_buffer()[0] = 0x55;
    let _ = g;
    // RAX at 0x1F8: valid bit 0x1F8/8 = 63 → byte 0x3F0 + 7, bit 7.
    assert_eq!(page[0x1F8..0x200], 0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(page[0x3F0 + 7], 0x80);
    // SW_EXITCODE 0x390: bit 114 → byte 0x3F0 + 14, bit 2; SW_EXITINFO2 0x3A0: bit 116.
    assert_eq!(page[0x390], 0x7B);
    assert_eq!(page[0x3F0 + 14], 0b0001_0100);
    // XCR0 0x3E8: bit 125 → byte 0x3FF, bit 5.
    assert_eq!(page[0x3FF], 0x20);
    assert_eq!(page[0x800], 0x55);
    assert_eq!(page[0xFFA..0xFFC], [2, 0]);
    assert_eq!(page[0xFFC..0x1000], [0; 4]);
    // reset() cleared the old contents of the save area, not the shared buffer.
    assert_eq!(page[0x100], 0);
    assert_eq!(page[0x801], 0xAA);
}

#[test]
fn exit_result_decodes_exitinfo1() {
    let mut page = [0u8; 4096];
    let mut g = Ghcb::new(&mut page);
    g.reset();
    assert_eq!(g.exit_result(), Ok(()));
    g.set(Field::SwExitInfo1, 1);
    g.set(Field::SwExitInfo2, 0x8000_0B0D);
    assert_eq!(g.exit_result(), Err(GhcbError::Exception(0x8000_0B0D)));
    g.set(Field::SwExitInfo1, 0xFFFF_FFFF_0000_0002);
    assert_eq!(g.exit_result(), Err(GhcbError::MalformedInput(0x8000_0B0D)));
    g.set(Field::SwExitInfo1, 0x7B0211);
    assert_eq!(g.exit_result(), Err(GhcbError::UnknownResult(0x7B0211)));
    // Upper 32 bits are not part of the result.
    g.set(Field::SwExitInfo1, 0x1234_0000_0000);
    assert_eq!(g.exit_result(), Ok(()));
}
