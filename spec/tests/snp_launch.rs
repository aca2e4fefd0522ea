//! PAGE_INFO and the page-state-change descriptor against byte layouts written out by hand
//! from the spec tables (Python `struct.pack('<HBBBBBBQ', …)` for PAGE_INFO's tail).

mod common;

use pupa_spec::snp::page_info::{page_type, PAGE_INFO_LEN, VMSA_GPA};
use pupa_spec::snp::psc::{entry, MAX_ENTRIES};
use pupa_spec::snp::{PageInfo, PscDesc};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

#[test]
fn page_info_bytes() {
    let mut p = PageInfo::new_zeroed();
    p.digest_cur = core::array::from_fn(|i| i as u8);
    p.contents = core::array::from_fn(|i| 0xC0 + (i % 16) as u8);
    p.length.set(PAGE_INFO_LEN as u16);
    p.page_type = page_type::VMSA;
    p.gpa.set(VMSA_GPA);
    let want = common::unhex(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
         202122232425262728292a2b2c2d2e2fc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
         c0c1c2c3c4c5c6c7c8c9cacbcccdcecfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
         700002000000000000f0ffffffff0000",
    );
    assert_eq!(p.as_bytes(), want);
    assert_eq!(PageInfo::read_from_bytes(&want).unwrap(), p);
}

#[test]
fn psc_descriptor_bytes() {
    let mut d = PscDesc::new_zeroed();
    d.header.end_entry.set(1);
    d.entries[0].set(entry::encode(0, 0x800, entry::OP_PRIVATE as u8, true));
    d.entries[1].set(entry::encode(5, 0xF_FFFF, entry::OP_SHARED as u8, false));
    let b = d.as_bytes();
    assert_eq!(b.len(), 2032);
    assert_eq!(b[..8], [0, 0, 1, 0, 0, 0, 0, 0]);
    // GFN 0x800 at bit 12, operation 1 at bit 52, page size at bit 56.
    assert_eq!(b[8..16], 0x0110_0000_0080_0000u64.to_le_bytes());
    assert_eq!(b[16..24], 0x0020_0000_FFFF_F005u64.to_le_bytes());
    assert_eq!(MAX_ENTRIES, 253);
    // Fields are masked to their widths.
    assert_eq!(
        entry::encode(0x1FFF, 1 << 41, 0x12, false),
        0x0020_0000_0000_0FFF
    );
}

#[test]
fn cpuid_page_entry_at_table_14_offsets() {
    use pupa_spec::snp::SnpCpuidPage;
    let mut page = vec![0u8; 4096];
    page[0] = 1; // COUNT
    let e = 0x10; // entry 0
    page[e..e + 4].copy_from_slice(&0x8000_001Fu32.to_le_bytes()); // EAX_IN
    page[e + 8] = 1; // XCR0_IN
    page[e + 0x1C..e + 0x20].copy_from_slice(&0x33u32.to_le_bytes()); // EBX: C-bit 51
    page[e + 0x30] = 0xEE; // entry 1's EAX_IN
    let p = SnpCpuidPage::ref_from_bytes(&page).unwrap();
    assert_eq!(p.count.get(), 1);
    let f = &p.functions[0];
    assert_eq!(f.eax_in.get(), 0x8000_001F);
    assert_eq!((f.xcr0_in.get(), f.xss_in.get()), (1, 0));
    assert_eq!(f.ebx.get() & 0x3F, 51);
    assert_eq!(p.functions[1].eax_in.get(), 0xEE);
}
