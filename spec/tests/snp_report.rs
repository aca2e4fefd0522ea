//! The attestation report and guest-message layouts against known samples.
//!
//! `report_milan.hex`: a real SEV-SNP report from a Milan host (virtee/sev `tests/certs_data`,
//! see measurements/testdata/evidence/SOURCE).

mod common;

use pupa_spec::snp::guest_msg::{AAD_OFFSET, HEADER_LEN};
use pupa_spec::snp::report::{REPORT_LEN, SIGNED_LEN};
use pupa_spec::snp::{AttestationReport, GuestMsgHeader, ReportRsp};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

fn milan() -> Vec<u8> {
    common::unhex(include_str!(
        "../../measurements/testdata/evidence/report_milan.hex"
    ))
}

#[test]
fn milan_report_fields() {
    let raw = milan();
    assert_eq!(raw.len(), REPORT_LEN);
    let r = AttestationReport::ref_from_bytes(&raw).expect("1184 bytes");
    assert_eq!(r.version.get(), 2);
    assert_eq!(r.guest_svn.get(), 0);
    assert_eq!(r.policy.get(), 0x30000);
    assert_eq!(r.vmpl.get(), 0);
    assert_eq!(r.signature_algo.get(), 1);
    assert_eq!(r.current_tcb.get(), 0x7308_0000_0000_0003);
    assert_eq!(r.reported_tcb.get(), 0x7308_0000_0000_0003);
    assert_eq!(r.committed_tcb.get(), 0x7308_0000_0000_0003);
    assert_eq!(r.launch_tcb.get(), 0x7308_0000_0000_0003);
    assert_eq!(r.platform_info.get(), 1);
    assert_eq!((r.signing_key(), r.mask_chip_key()), (0, false));
    assert_eq!(r.current_version, [4, 0x34, 1, 0]);
    assert_eq!(
        r.report_data[..8],
        common::unhex("d447b55d197491bf")[..],
        "REPORT_DATA at 0x50"
    );
    assert_eq!(
        r.measurement[..],
        common::unhex(
            "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d\
             3e1a0dc39b2c60bd95b9c480cd81841f"
        )[..]
    );
    assert_eq!(r.chip_id[..8], common::unhex("d49554ec717f4e5b")[..]);
    assert_eq!(r.signature.r[..8], common::unhex("61ab4f11aa661997")[..]);
    assert_eq!(&r.as_bytes()[..SIGNED_LEN], &raw[..0x2A0]);
    assert!(AttestationReport::ref_from_bytes(&raw[..REPORT_LEN - 1]).is_err());
}

#[test]
fn report_response_wraps_the_report() {
    let mut rsp = ReportRsp::new_zeroed();
    rsp.report_size.set(REPORT_LEN as u32);
    rsp.report = AttestationReport::read_from_bytes(&milan()).unwrap();
    let b = rsp.as_bytes();
    assert_eq!(b[4..8], 1184u32.to_le_bytes());
    assert_eq!(b[0x20..], milan()[..]);
}

#[test]
fn guest_msg_header_fields() {
    let mut page = [0u8; HEADER_LEN];
    page[0x20] = 7; // MSG_SEQNO
    page[0x30] = 1; // ALGO
    page[0x31] = 1; // HDR_VERSION
    page[0x32] = 0x60; // HDR_SIZE
    page[0x34] = 5; // MSG_TYPE
    page[0x35] = 1; // MSG_VERSION
    page[0x36] = 0x60; // MSG_SIZE
    page[0x3C] = 2; // MSG_VMPCK
    let h = GuestMsgHeader::ref_from_bytes(&page).unwrap();
    assert_eq!(h.msg_seqno.get(), 7);
    assert_eq!((h.algo, h.hdr_version, h.hdr_size.get()), (1, 1, 0x60));
    assert_eq!((h.msg_type, h.msg_version, h.msg_size.get()), (5, 1, 0x60));
    assert_eq!(h.msg_vmpck, 2);
    assert_eq!(AAD_OFFSET, 0x30);
}
