//! TDREPORT_STRUCT and the DCAP quote's TD report body against samples.
//!
//! `tdx_quote`: a real TDX v4 quote (Phala-Network/dcap-qvl `sample/`, see
//! measurements/testdata/evidence/SOURCE); values cross-read with Python at the Quote Format
//! appendix's offsets.

mod common;

use pupa_spec::tdx::report::{
    QuoteHeader, TdReport, TdReportBody10, REPORT_TYPE_TDX, TDREPORT_LEN, TEE_TYPE_TDX,
};
use zerocopy::FromBytes;

const QUOTE: &[u8] = include_bytes!("../../measurements/testdata/evidence/tdx_quote");

#[test]
fn dcap_quote_header_and_td10_body() {
    let (h, rest) = QuoteHeader::ref_from_prefix(QUOTE).unwrap();
    assert_eq!(h.version.get(), 4);
    assert_eq!(h.att_key_type.get(), 2);
    assert_eq!(h.tee_type.get(), TEE_TYPE_TDX);
    assert_eq!(
        h.qe_vendor_id[..],
        common::unhex("939a7233f79c4ca9940a0db3957f0607")[..]
    );
    let (b, _) = TdReportBody10::ref_from_prefix(rest).unwrap();
    assert_eq!(b.tee_tcb_svn[..4], [6, 1, 3, 0]);
    assert_eq!(b.td_attributes, [0, 0, 0, 0x10, 0, 0, 0, 0]);
    assert_eq!(b.xfam, [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0]);
    assert_eq!(
        b.mrtd[..],
        common::unhex(
            "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407\
             de03ae6dc5f87f27428b2538873118b7"
        )[..]
    );
    assert_eq!(b.rtmr[0][..4], [0x44, 0xc0, 0x19, 0x7b]);
    assert_eq!(b.report_data[..4], [0x9a, 0x9d, 0x48, 0xe7]);
    assert_eq!(b.report_data[60..], [0x2b, 0x52, 0x3f, 0x20]);
}

#[test]
fn tdreport_fields_at_the_abi_offsets() {
    let mut raw = [0u8; TDREPORT_LEN];
    raw[0] = REPORT_TYPE_TDX;
    raw[2] = 1; // REPORTTYPE.VERSION
    raw[128..192].fill(0xD1); // REPORTMACSTRUCT.REPORTDATA
    raw[256 + 24] = 0x5E; // TEE_TCB_INFO.MRSEAM[0]
    raw[512] = 1; // TDINFO_STRUCT.ATTRIBUTES: DEBUG
    raw[528..576].fill(0x7D); // TDINFO_STRUCT.MRTD
    raw[720 + 48 * 3] = 0x33; // RTMR[3][0]
    raw[912] = 0x5D; // SERVTD_HASH[0]
    let r = TdReport::ref_from_bytes(&raw).unwrap();
    assert_eq!((r.mac.report_type, r.mac.report_version), (0x81, 1));
    assert_eq!(r.mac.report_data, [0xD1; 64]);
    assert_eq!(r.tee_tcb_info.mrseam[0], 0x5E);
    assert_eq!(r.attributes(), 1);
    assert_eq!(r.td_info.mrtd, [0x7D; 48]);
    assert_eq!(r.td_info.rtmr[3][0], 0x33);
    assert_eq!(r.td_info.servtd_hash[0], 0x5D);
    assert!(TdReport::ref_from_bytes(&raw[..1023]).is_err());
}

#[test]
fn get_quote_header_fields() {
    use pupa_spec::tdx::get_quote::{GetQuoteHeader, STATUS_IN_FLIGHT};
    let mut raw = [0u8; 24];
    raw[0] = 1; // VERSION
    raw[8..16].fill(0xFF); // STATUS: in flight
    raw[16..20].copy_from_slice(&1024u32.to_le_bytes()); // IN_LEN
    raw[20..24].copy_from_slice(&5006u32.to_le_bytes()); // OUT_LEN
    let h = GetQuoteHeader::ref_from_bytes(&raw).unwrap();
    assert_eq!(h.version.get(), 1);
    assert_eq!(h.status.get(), STATUS_IN_FLIGHT);
    assert_eq!((h.in_len.get(), h.out_len.get()), (1024, 5006));
}
