//! Host tests of the SNP guest-message framing, with a known VMPCK.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Tag};

use super::guest_msg::{
    self, offset, GuestMessenger, GuestMsgError, MsgType, HEADER_LEN, PAGE_LEN,
};
use super::messages::{self, PayloadError};

fn key() -> [u8; 32] {
    core::array::from_fn(|i| i as u8)
}

fn page() -> Vec<u8> {
    vec![0u8; PAGE_LEN]
}

/// Expected request page for key 00..1f, seqno 1, MSG_REPORT_REQ v1 with REPORT_DATA 0x41×64,
/// VMPL 0, computed independently with Python's `cryptography` AESGCM (key, IV = seqno LE
/// padded to 12 bytes, AAD = header[0x30..0x60]).
const VECTOR_TAG: &str = "887ca364c56a46f21808a5a18f282a32";
const VECTOR_CT: &str = "a36dc37ee5eead460b4544827d80c98a8d208e6f3de92a530f5e1cbf5c67c631adbdb18861e3ef8e999c5c920f4841c9b1948fc5a4311bd6c2c9a13356f56906bcafa49213c0f2445044cd48be94fd5eb5f3e8b761e80896f353185b4abd740d";

fn hex(b: &[u8]) -> alloc::string::String {
    b.iter().map(|x| alloc::format!("{x:02x}")).collect()
}

#[test]
fn request_matches_independent_vector_and_layout() {
    let mut m = GuestMessenger::new(key(), 0, 0);
    let mut p = page();
    m.seal_request(
        MsgType::ReportReq,
        1,
        &messages::report_request(&[0x41; 64], 0),
        &mut p,
    )
    .unwrap();
    assert_eq!(hex(&p[..16]), VECTOR_TAG);
    assert_eq!(p[16..32], [0u8; 16]);
    assert_eq!(hex(&p[HEADER_LEN..HEADER_LEN + 0x60]), VECTOR_CT);
    assert_eq!(p[offset::SEQNO..offset::SEQNO + 8], 1u64.to_le_bytes());
    assert_eq!(
        (
            p[offset::ALGO],
            p[offset::HDR_VERSION],
            p[offset::MSG_TYPE],
            p[offset::MSG_VERSION]
        ),
        (1, 1, 5, 1)
    );
    assert_eq!(p[offset::HDR_SIZE..offset::HDR_SIZE + 2], [0x60, 0]);
    assert_eq!(p[offset::MSG_SIZE..offset::MSG_SIZE + 2], [0x60, 0]);
    // Decrypt independently of guest_msg::open.
    let (h, b) = p.split_at_mut(HEADER_LEN);
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&h[0x20..0x28]);
    Aes256Gcm::new(&key().into())
        .decrypt_in_place_detached(
            &iv.into(),
            &h[0x30..0x60],
            &mut b[..0x60],
            Tag::from_slice(&h[..16]),
        )
        .unwrap();
    assert_eq!(b[..64], [0x41; 64]);
}

fn report_rsp_payload(fill: u8) -> alloc::vec::Vec<u8> {
    let mut r = alloc::vec![0u8; 0x20 + messages::REPORT_LEN];
    r[4..8].copy_from_slice(&1184u32.to_le_bytes());
    r[0x20..].fill(fill);
    r
}

#[test]
fn crafted_response_decrypts_and_sequence_advances() {
    let mut m = GuestMessenger::new(key(), 0, 6);
    let mut req = page();
    m.seal_request(
        MsgType::ReportReq,
        1,
        &messages::report_request(&[1; 64], 0),
        &mut req,
    )
    .unwrap();
    assert_eq!(req[offset::SEQNO], 7);
    let mut rsp = page();
    guest_msg::seal(
        &key(),
        8,
        MsgType::ReportRsp as u8,
        1,
        0,
        &report_rsp_payload(0xAB),
        &mut rsp,
    )
    .unwrap();
    let len = m.open_response(&mut rsp).unwrap();
    let report = messages::report_response(&rsp[HEADER_LEN..HEADER_LEN + len]).unwrap();
    assert_eq!(zerocopy::IntoBytes::as_bytes(report), [0xAB; 1184]);
    assert_eq!(m.seqno(), 8);
    // The next request uses 9.
    m.seal_request(
        MsgType::KeyReq,
        1,
        &messages::key_request(false, 0, 0, 0, 0),
        &mut req,
    )
    .unwrap();
    assert_eq!(req[offset::SEQNO], 9);
}

#[test]
fn replayed_response_is_rejected_and_disables_the_key() {
    let mut m = GuestMessenger::new(key(), 0, 0);
    let mut req = page();
    m.seal_request(MsgType::ReportReq, 1, &[0; 0x60], &mut req)
        .unwrap();
    let mut rsp = page();
    guest_msg::seal(
        &key(),
        2,
        MsgType::ReportRsp as u8,
        1,
        0,
        &report_rsp_payload(1),
        &mut rsp,
    )
    .unwrap();
    let old = rsp.clone();
    m.open_response(&mut rsp).unwrap();
    m.seal_request(MsgType::ReportReq, 1, &[0; 0x60], &mut req)
        .unwrap();
    let mut replay = old;
    assert_eq!(
        m.open_response(&mut replay),
        Err(GuestMsgError::BadSeqno { got: 2, want: 4 })
    );
    assert_eq!(
        m.seal_request(MsgType::ReportReq, 1, &[0; 0x60], &mut req),
        Err(GuestMsgError::Disabled)
    );
}

#[test]
fn bad_tag_tampered_aad_and_wrong_key_are_rejected() {
    type Tamper = fn(&mut [u8]);
    let cases: [(Tamper, GuestMsgError); 4] = [
        (|p| p[HEADER_LEN + 3] ^= 1, GuestMsgError::BadTag),
        (|p| p[0] ^= 1, GuestMsgError::BadTag),
        (|p| p[0x40] ^= 1, GuestMsgError::BadTag), // reserved byte inside the AAD
        (
            |p| p[offset::MSG_TYPE] = 5,
            GuestMsgError::BadHeader {
                field: "MSG_TYPE",
                got: 5,
                want: 6,
            },
        ),
    ];
    for (tamper, want) in cases {
        let mut m = GuestMessenger::new(key(), 0, 0);
        let mut req = page();
        m.seal_request(MsgType::ReportReq, 1, &[0; 0x60], &mut req)
            .unwrap();
        let mut rsp = page();
        guest_msg::seal(
            &key(),
            2,
            MsgType::ReportRsp as u8,
            1,
            0,
            &report_rsp_payload(1),
            &mut rsp,
        )
        .unwrap();
        tamper(&mut rsp);
        assert_eq!(m.open_response(&mut rsp), Err(want));
        assert_eq!(m.open_response(&mut rsp), Err(GuestMsgError::Disabled));
    }
    let mut m = GuestMessenger::new(key(), 0, 0);
    let mut req = page();
    m.seal_request(MsgType::ReportReq, 1, &[0; 0x60], &mut req)
        .unwrap();
    let mut rsp = page();
    guest_msg::seal(
        &[9; 32],
        2,
        MsgType::ReportRsp as u8,
        1,
        0,
        &report_rsp_payload(1),
        &mut rsp,
    )
    .unwrap();
    assert_eq!(m.open_response(&mut rsp), Err(GuestMsgError::BadTag));
}

#[test]
fn misuse_and_bounds() {
    let mut m = GuestMessenger::new(key(), 0, 0);
    let mut p = page();
    assert_eq!(m.open_response(&mut p), Err(GuestMsgError::NoRequest));
    assert_eq!(
        m.seal_request(MsgType::ReportReq, 1, &[0; 4001], &mut p),
        Err(GuestMsgError::PayloadTooLarge(4001))
    );
    assert_eq!(
        m.seal_request(MsgType::ReportReq, 1, &[0; 8], &mut p[..100]),
        Err(GuestMsgError::BadBuffer(100))
    );
    m.seal_request(MsgType::ReportReq, 1, &[0; 8], &mut p)
        .unwrap();
    assert_eq!(
        m.seal_request(MsgType::ReportReq, 1, &[0; 8], &mut p),
        Err(GuestMsgError::InFlight)
    );
    let mut m = GuestMessenger::new(key(), 0, u64::MAX - 1);
    assert_eq!(
        m.seal_request(MsgType::ReportReq, 1, &[0; 8], &mut p),
        Err(GuestMsgError::SeqnoExhausted)
    );
    // Response with an oversized MSG_SIZE.
    let mut m = GuestMessenger::new(key(), 0, 0);
    m.seal_request(MsgType::ReportReq, 1, &[0; 8], &mut p)
        .unwrap();
    let mut rsp = page();
    guest_msg::seal(&key(), 2, MsgType::ReportRsp as u8, 1, 0, &[0; 8], &mut rsp).unwrap();
    rsp[offset::MSG_SIZE..offset::MSG_SIZE + 2].copy_from_slice(&4090u16.to_le_bytes());
    assert_eq!(
        m.open_response(&mut rsp),
        Err(GuestMsgError::PayloadTooLarge(4090))
    );
}

#[test]
fn payload_parsers() {
    let mut r = report_rsp_payload(0);
    r[0] = 0x16;
    assert_eq!(
        messages::report_response(&r),
        Err(PayloadError::Status(0x16))
    );
    let mut r = report_rsp_payload(0);
    r[4] = 0;
    assert!(matches!(
        messages::report_response(&r),
        Err(PayloadError::ReportSize(_))
    ));
    assert!(matches!(
        messages::report_response(&report_rsp_payload(0)[..100]),
        Err(PayloadError::Short { .. })
    ));
    let req = messages::key_request(true, 0x3F, 0, 2, 0x0873_0000_0000_0003);
    assert_eq!(req[0], 1);
    assert_eq!(req[8], 0x3F);
    assert_eq!(req[0x14], 2);
    assert_eq!(req[0x18..0x20], 0x0873_0000_0000_0003u64.to_le_bytes());
    let mut k = [0u8; 0x40];
    k[0x20..].fill(7);
    assert_eq!(messages::key_response(&k), Ok([7; 32]));
    k[0] = 1;
    assert_eq!(messages::key_response(&k), Err(PayloadError::Status(1)));
    let mut secrets = [0u8; 4096];
    secrets[0x20..0x40].fill(5);
    assert_eq!(messages::vmpck0(&secrets), Ok([5; 32]));
    assert!(messages::vmpck0(&secrets[..10]).is_err());
}

/// S7: a response whose MSG_VERSION differs from the request's is refused (SNP ABI 56860
/// §8.26, Table 99 "Message Header Format": the response carries the request's MSG_VERSION;
/// Linux `verify_and_dec_payload` checks the same), even when it authenticates, and the key is
/// retired like after any failed exchange.
#[test]
fn response_with_another_msg_version_is_refused() {
    let mut m = GuestMessenger::new(key(), 0, 0);
    let mut req = page();
    m.seal_request(MsgType::ReportReq, 1, &[0; 0x60], &mut req)
        .unwrap();
    let mut rsp = page();
    // Forged with the right key, sequence number and type, but MSG_VERSION 2.
    guest_msg::seal(
        &key(),
        2,
        MsgType::ReportRsp as u8,
        2,
        0,
        &report_rsp_payload(1),
        &mut rsp,
    )
    .unwrap();
    assert_eq!(
        m.open_response(&mut rsp),
        Err(GuestMsgError::BadHeader {
            field: "MSG_VERSION",
            got: 2,
            want: 1,
        })
    );
    assert!(m.is_disabled());
}

/// S5: the SNP hypervisor feature exchange (GHCB spec 56421 §2.3.1: request 0x080, response
/// 0x081 with the bitmap in [63:12]); a hypervisor without the SNP feature (bit 0) is refused.
#[test]
fn hv_features_exchange_requires_snp() {
    use super::ghcb::MsrProtocolError;
    use super::ghcb::{hv_features, hv_features_request, hv_features_response};
    assert_eq!(hv_features_request(), 0x080);
    // KVM answers SNP | AP creation: 0b11 << 12 | 0x081.
    assert_eq!(
        hv_features_response(0b11 << 12 | 0x081),
        Ok(hv_features::SNP | hv_features::SNP_AP_CREATION)
    );
    assert_eq!(
        hv_features_response(0b10 << 12 | 0x081),
        Err(MsrProtocolError::NoSnpSupport(0b10))
    );
    assert_eq!(
        hv_features_response(0x081),
        Err(MsrProtocolError::NoSnpSupport(0))
    );
    // Another response code (e.g. an echo of the request) is not an answer.
    assert_eq!(
        hv_features_response(1 << 12 | 0x080),
        Err(MsrProtocolError::UnexpectedCode {
            got: 0x080,
            want: 0x081
        })
    );
}
