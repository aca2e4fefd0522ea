//! [`SnpTee`] against a mock AMD secure processor that decrypts and encrypts with raw
//! AES-256-GCM (independently of `guest_msg::seal`/`open`) under a known VMPCK0.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Tag};

use super::*;

const KEY: [u8; 32] = [0x5A; 32];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Answer with the previous response page (a replay).
    Replay,
    /// Flip a bit of the tag.
    BadTag,
    /// Put other REPORT_DATA in the report.
    LieReportData,
    /// Report for VMPL 1.
    Vmpl1,
    /// Firmware STATUS 0x16 (INVALID_PARAM) in MSG_REPORT_RSP.
    Status,
    /// The hypervisor is busy this many times, then forwards.
    Busy(usize),
    /// The hypervisor is busy until the mock clock reaches this many nanoseconds.
    BusyUntil(u64),
    /// The hypervisor fails the exit.
    InvalidLength,
}

struct MockPsp {
    /// Last sequence number seen (a request must carry this + 1).
    seqno: u64,
    fault: Fault,
    requests: usize,
    last_rsp: Option<[u8; PAGE_LEN]>,
    last_plaintext: Vec<u8>,
    /// The mock clock: each exit takes 1 ms, each `relax` 1 ms.
    now_ns: u64,
    /// When each request arrived (mock clock).
    request_times: Vec<u64>,
}

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

fn iv(seq: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&seq.to_le_bytes());
    iv
}

impl MockPsp {
    fn new(fault: Fault) -> Self {
        Self {
            seqno: 0,
            fault,
            requests: 0,
            last_rsp: None,
            last_plaintext: vec![],
            now_ns: 0,
            request_times: vec![],
        }
    }

    fn respond(&mut self, req: &[u8; PAGE_LEN]) -> [u8; PAGE_LEN] {
        let mut page = *req;
        let (h, body) = page.split_at_mut(0x60);
        let seq = u64::from_le_bytes(h[0x20..0x28].try_into().unwrap());
        assert_eq!(seq, self.seqno + 1, "request sequence number");
        assert_eq!((h[0x30], h[0x31], h[0x35], h[0x3C]), (1, 1, 1, 0));
        let len = u16::from_le_bytes([h[0x36], h[0x37]]) as usize;
        Aes256Gcm::new(&KEY.into())
            .decrypt_in_place_detached(
                &iv(seq).into(),
                &h[0x30..0x60],
                &mut body[..len],
                Tag::from_slice(&h[..16]),
            )
            .expect("request decrypts under VMPCK0");
        self.last_plaintext = body[..len].to_vec();
        let msg_type = h[0x34];
        let mut payload = match msg_type {
            5 => {
                let mut p = vec![0u8; 0x20 + 1184];
                p[4..8].copy_from_slice(&1184u32.to_le_bytes());
                let r = &mut p[0x20..];
                r[0..4].copy_from_slice(&3u32.to_le_bytes()); // VERSION 3
                r[0x50..0x90].copy_from_slice(&body[..64]); // REPORT_DATA as asked
                r[0x90..0xC0].fill(0xEE); // MEASUREMENT
                r[0x30..0x34].copy_from_slice(
                    &u32::from_le_bytes(body[0x40..0x44].try_into().unwrap()).to_le_bytes(),
                );
                match self.fault {
                    Fault::LieReportData => r[0x50] ^= 1,
                    Fault::Vmpl1 => r[0x30] = 1,
                    Fault::Status => p[0] = 0x16,
                    _ => {}
                }
                p
            }
            3 => {
                let mut p = vec![0u8; 0x40];
                p[0x20..0x40].fill(0xC3);
                p
            }
            t => panic!("unexpected message type {t}"),
        };
        // The response: same header, type + 1, sequence number + 1, fresh payload.
        let mut out = [0u8; PAGE_LEN];
        let rseq = seq + 1;
        out[0x20..0x28].copy_from_slice(&rseq.to_le_bytes());
        out[0x30] = 1;
        out[0x31] = 1;
        out[0x32..0x34].copy_from_slice(&0x60u16.to_le_bytes());
        out[0x34] = msg_type + 1;
        out[0x35] = 1;
        out[0x36..0x38].copy_from_slice(&(payload.len() as u16).to_le_bytes());
        let (oh, ob) = out.split_at_mut(0x60);
        let tag = Aes256Gcm::new(&KEY.into())
            .encrypt_in_place_detached(&iv(rseq).into(), &oh[0x30..0x60], &mut payload)
            .unwrap();
        ob[..payload.len()].copy_from_slice(&payload);
        oh[..16].copy_from_slice(&tag);
        if self.fault == Fault::BadTag {
            oh[3] ^= 0x10;
        }
        self.seqno = rseq;
        out
    }
}

impl GuestRequest for &mut MockPsp {
    fn exchange(
        &mut self,
        req: &[u8; PAGE_LEN],
        rsp: &mut [u8; PAGE_LEN],
    ) -> Result<(), GuestRequestError> {
        self.requests += 1;
        self.request_times.push(self.now_ns);
        self.now_ns += MS;
        match self.fault {
            Fault::Busy(n) if self.requests <= n => return Err(GuestRequestError::Busy),
            Fault::BusyUntil(t) if self.now_ns < t => return Err(GuestRequestError::Busy),
            Fault::InvalidLength => return Err(GuestRequestError::InvalidLength),
            _ => {}
        }
        let fresh = self.respond(req);
        *rsp = match (self.fault, self.last_rsp) {
            (Fault::Replay, Some(old)) => old,
            _ => fresh,
        };
        self.last_rsp = Some(fresh);
        Ok(())
    }
    fn now_ns(&mut self) -> u64 {
        self.now_ns
    }
    fn relax(&mut self) {
        self.now_ns += MS;
    }
}

fn secrets_page() -> Vec<u8> {
    let mut s = vec![0u8; 4096];
    s[0x20..0x40].copy_from_slice(&KEY);
    s
}

#[test]
fn evidence_round_trip_with_the_mock_psp() {
    let mut psp = MockPsp::new(Fault::None);
    let mut tee = SnpTee::from_secrets_page(&secrets_page(), &mut psp).unwrap();
    let rd: [u8; 64] = core::array::from_fn(|i| i as u8);
    match tee.evidence(&rd).unwrap() {
        TeeEvidence::Snp { report, vcek } => {
            assert_eq!(report.len(), 1184);
            assert_eq!(report[0x50..0x90], rd);
            assert_eq!(report[0x90..0xC0], [0xEE; 48]);
            assert!(vcek.is_none());
        }
        _ => panic!("not an SNP report"),
    }
    // A second report and a derived key use the next sequence numbers (checked by the PSP).
    tee.report(&[7; 64]).unwrap();
    assert_eq!(tee.derived_key(0b1001, 0, 0).unwrap(), [0xC3; 32]);
    drop(tee);
    assert_eq!((psp.requests, psp.seqno), (3, 6));
    // MSG_KEY_REQ as sent: VCEK root, GUEST_FIELD_SELECT 0b1001, VMPL 0.
    assert_eq!(psp.last_plaintext[0..4], [0; 4]);
    assert_eq!(psp.last_plaintext[8], 0b1001);
    assert_eq!(psp.last_plaintext[0x10..0x14], [0; 4]);
}

#[test]
fn replay_and_bad_tag_retire_the_key() {
    for (fault, want) in [
        (
            Fault::Replay,
            "SNP: response sequence number wrong (replay)",
        ),
        (Fault::BadTag, "SNP: response tag does not verify"),
    ] {
        let mut psp = MockPsp::new(fault);
        let mut tee = SnpTee::new(KEY, &mut psp);
        if fault == Fault::Replay {
            // The first exchange is genuine; the second gets the first response again.
            tee.report(&[1; 64]).unwrap();
        }
        assert_eq!(tee.evidence(&[2; 64]), Err(TeeFailure(want)));
        assert!(tee.is_disabled());
        assert_eq!(
            tee.report(&[3; 64]),
            Err(SnpError::Message(GuestMsgError::Disabled))
        );
        let sent = if fault == Fault::Replay { 2 } else { 1 };
        drop(tee);
        assert_eq!(psp.requests, sent, "nothing sent after the key was retired");
    }
}

#[test]
fn lying_or_failing_secure_processor_is_refused() {
    for (fault, want) in [
        (Fault::LieReportData, SnpError::ReportDataMismatch),
        (Fault::Vmpl1, SnpError::Vmpl(1)),
        (Fault::Status, SnpError::Payload(PayloadError::Status(0x16))),
    ] {
        let mut psp = MockPsp::new(fault);
        let mut tee = SnpTee::new(KEY, &mut psp);
        assert_eq!(tee.report(&[9; 64]), Err(want));
    }
}

#[test]
fn busy_is_retried_and_other_exit_errors_retire_the_key() {
    let mut psp = MockPsp::new(Fault::Busy(3));
    let mut tee = SnpTee::new(KEY, &mut psp);
    tee.report(&[1; 64]).unwrap();
    drop(tee);
    assert_eq!(psp.requests, 4);

    let mut psp = MockPsp::new(Fault::InvalidLength);
    let mut tee = SnpTee::new(KEY, &mut psp);
    assert_eq!(
        tee.evidence(&[1; 64]),
        Err(TeeFailure("SNP: guest request exit failed"))
    );
    assert!(tee.is_disabled());
}

#[test]
fn an_empty_vmpck0_is_refused() {
    let mut psp = MockPsp::new(Fault::None);
    let mut s = secrets_page();
    s[0x20..0x40].fill(0);
    assert!(matches!(
        SnpTee::from_secrets_page(&s, &mut psp),
        Err(PayloadError::EmptyVmpck)
    ));
    assert!(matches!(
        SnpTee::from_secrets_page(&s[..4095], &mut psp),
        Err(PayloadError::SecretsPage(4095))
    ));
}

#[test]
fn guest_request_status_decodes_exitinfo2() {
    assert_eq!(guest_request_status(0), Ok(()));
    assert_eq!(
        guest_request_status(1 << 32),
        Err(GuestRequestError::InvalidLength)
    );
    assert_eq!(guest_request_status(2 << 32), Err(GuestRequestError::Busy));
    assert_eq!(
        guest_request_status(0x16),
        Err(GuestRequestError::Firmware(0x16))
    );
    assert_eq!(
        guest_request_status(7 << 32 | 5),
        Err(GuestRequestError::Vmm(7))
    );
}

/// S4: a PSP the hypervisor reports busy for 50 s is retried every 2 s (Linux
/// `SNP_REQ_RETRY_DELAY`) on the clock, not back to back, and the request then succeeds with
/// the key intact.
#[test]
fn busy_for_50_s_is_retried_on_the_clock_and_succeeds() {
    let mut psp = MockPsp::new(Fault::BusyUntil(50 * S));
    let mut tee = SnpTee::new(KEY, &mut psp);
    tee.report(&[1; 64]).unwrap();
    assert!(!tee.is_disabled());
    tee.report(&[2; 64]).unwrap();
    drop(tee);
    let t = &psp.request_times;
    // 0, 2, ..., 50 s (each plus the exits' 1 ms), then the second report.
    assert_eq!(t.len(), 27, "{t:?}");
    assert!(t
        .windows(2)
        .take(25)
        .all(|w| w[1] - w[0] >= BUSY_RETRY_DELAY_NS));
    assert!(t[25] >= 50 * S && t[25] < 51 * S, "{t:?}");
}

/// S4: busy for longer than 60 s (Linux `SNP_REQ_MAX_RETRY_DURATION`) fails with its own
/// error, and VMPCK0 is retired, as Linux `snp_send_guest_request` does after -ETIMEDOUT: the
/// hypervisor may have passed the request on, so its sequence number may be spent, and any
/// other message under it would reuse the AES-GCM IV.
#[test]
fn busy_for_over_60_s_times_out_and_retires_the_key() {
    let mut psp = MockPsp::new(Fault::BusyUntil(u64::MAX));
    let mut tee = SnpTee::new(KEY, &mut psp);
    let err = tee.report(&[1; 64]).unwrap_err();
    let SnpError::BusyTimeout { elapsed_ms } = err else {
        panic!("{err:?}")
    };
    assert!((60_000..63_000).contains(&elapsed_ms), "{elapsed_ms}");
    assert_eq!(
        err.as_str(),
        "SNP: hypervisor busy for over 60 s (VMPCK0 retired)"
    );
    assert!(tee.is_disabled());
    assert_eq!(
        tee.report(&[1; 64]),
        Err(SnpError::Message(GuestMsgError::Disabled))
    );
    drop(tee);
    // Every 2 s from 0 to 60 s: the 31st answer comes 60.03 s after the first attempt.
    assert_eq!(psp.requests, 31, "then nothing");
}
