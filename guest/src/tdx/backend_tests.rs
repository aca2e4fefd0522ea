//! Tests of the TDX backend with a mock TDX module + VMM (including lying ones), checked
//! against a real TDX quote v4 (Phala-Network/dcap-qvl `sample/`, see
//! measurements/testdata/evidence/SOURCE).

use super::*;
use crate::tdx::quote::{STATUS_IN_FLIGHT, STATUS_SUCCESS};
use crate::tdx::report::{REPORTDATA_OFFSET, REPORT_TYPE_TDX};

const QUOTE: &[u8] = include_bytes!("../../../measurements/testdata/evidence/tdx_quote");

/// The sample without the 70 zero bytes the quote service padded it with: header + body +
/// u32 signature-data length (4300 at offset 632) + signature data.
fn trimmed() -> &'static [u8] {
    &QUOTE[..636 + 4300]
}

fn quote_report_data() -> [u8; 64] {
    QUOTE[48 + BODY_REPORTDATA..48 + BODY_REPORTDATA + 64]
        .try_into()
        .unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Vmm {
    Honest,
    WrongReportData,
    OutLenPastBuffer,
    StatusError,
    NeverCompletes,
    VmcallFails,
    BadTdReport,
    V5,
    Trailing,
}

struct Mock {
    vmm: Vmm,
    shared: Vec<u8>,
    polls_left: u32,
    pending: bool,
    clock: u64,
    relaxes: u32,
}

impl Mock {
    fn new(vmm: Vmm) -> Self {
        Self {
            vmm,
            shared: alloc::vec![0xEE; 16 * 1024],
            polls_left: 3,
            pending: false,
            clock: 0,
            relaxes: 0,
        }
    }
    fn finish(&mut self) {
        let mut q = QUOTE.to_vec();
        match self.vmm {
            Vmm::WrongReportData => q[48 + BODY_REPORTDATA] ^= 1,
            Vmm::V5 => {
                q[0] = 5;
                let mut v5 = q[..48].to_vec();
                v5.extend_from_slice(&2u16.to_le_bytes());
                v5.extend_from_slice(&(TD10_BODY_LEN as u32).to_le_bytes());
                v5.extend_from_slice(&q[48..]);
                q = v5;
            }
            Vmm::Trailing => q.extend_from_slice(&[0; 100]),
            _ => {}
        }
        let status = if self.vmm == Vmm::StatusError {
            0x8000_0000_0000_0001
        } else {
            STATUS_SUCCESS
        };
        let out_len = if self.vmm == Vmm::OutLenPastBuffer {
            self.shared.len() as u32
        } else {
            q.len() as u32
        };
        self.shared[8..16].copy_from_slice(&status.to_le_bytes());
        self.shared[20..24].copy_from_slice(&out_len.to_le_bytes());
        self.shared[24..24 + q.len()].copy_from_slice(&q);
    }
}

impl TdxOps for Mock {
    fn tdreport(&mut self, report_data: &[u8; 64]) -> Result<[u8; TDREPORT_LEN], u64> {
        let mut r = [0u8; TDREPORT_LEN];
        r[0] = REPORT_TYPE_TDX;
        r[REPORTDATA_OFFSET..REPORTDATA_OFFSET + 64].copy_from_slice(report_data);
        if self.vmm == Vmm::BadTdReport {
            r[REPORTDATA_OFFSET] ^= 0x80;
        }
        r[MRTD_OFFSET..MRTD_OFFSET + 48]
            .copy_from_slice(&QUOTE[48 + BODY_MRTD..48 + BODY_MRTD + 48]);
        Ok(r)
    }
    fn shared_len(&self) -> usize {
        self.shared.len()
    }
    fn write_shared(&mut self, offset: usize, data: &[u8]) {
        self.shared[offset..offset + data.len()].copy_from_slice(data);
    }
    fn read_shared(&mut self, offset: usize, out: &mut [u8]) {
        if self.pending {
            if self.polls_left == 0 {
                self.pending = false;
                self.finish();
            } else {
                self.polls_left -= 1;
            }
        }
        out.copy_from_slice(&self.shared[offset..offset + out.len()]);
    }
    fn get_quote(&mut self) -> Result<(), VmcallError> {
        if self.vmm == Vmm::VmcallFails {
            return Err(VmcallError::InvalidOperand);
        }
        // The request the guest wrote: version 1, IN_LEN 1024, the TDREPORT.
        assert_eq!(self.shared[0..8], 1u64.to_le_bytes());
        assert_eq!(self.shared[16..20], 1024u32.to_le_bytes());
        assert_eq!(self.shared[24], REPORT_TYPE_TDX);
        self.shared[8..16].copy_from_slice(&STATUS_IN_FLIGHT.to_le_bytes());
        self.pending = self.vmm != Vmm::NeverCompletes;
        if self.vmm == Vmm::NeverCompletes {
            self.polls_left = u32::MAX;
        }
        Ok(())
    }
    fn now_ns(&mut self) -> u64 {
        self.clock
    }
    fn relax(&mut self) {
        self.relaxes += 1;
        self.clock += 1_000_000; // 1 ms per poll
    }
}

fn run(vmm: Vmm) -> (Result<TeeEvidence, TeeFailure>, TdxTee<Mock>) {
    let mut t = TdxTee::new(Mock::new(vmm));
    let r = t.evidence(&quote_report_data());
    (r, t)
}

#[test]
fn honest_vmm_yields_the_real_quote() {
    let (r, t) = run(Vmm::Honest);
    assert_eq!(
        r,
        Ok(TeeEvidence::Tdx {
            quote: trimmed().to_vec(),
            event_log: None,
        })
    );
    assert_eq!(t.ops.relaxes, 3); // polled while IN_FLIGHT
    assert_eq!(t.last_error, None);
    // Independent look at the sample: v4, TDX, 4300 bytes of signature data, zero padding.
    assert_eq!(QUOTE[0..2], [4, 0]);
    assert_eq!(QUOTE[632..636], 4300u32.to_le_bytes());
    assert!(QUOTE[636 + 4300..].iter().all(|&b| b == 0));
}

#[test]
fn the_boot_event_log_travels_with_every_quote() {
    // The backend owns the log of what the boot measured: each evidence carries its bytes, so
    // nothing outside the backend has to patch evidence after the fact.
    let mut log = crate::tdx::rtmr::EventLog::new();
    log.measure(2, 0xD, b"pupa test event", &mut |_, _| 0)
        .unwrap();
    let mut t = TdxTee::with_event_log(Mock::new(Vmm::Honest), log.clone());
    for _ in 0..2 {
        let Ok(TeeEvidence::Tdx { quote, event_log }) = t.evidence(&quote_report_data()) else {
            panic!("honest VMM")
        };
        assert_eq!(quote, trimmed());
        assert_eq!(event_log.as_deref().map(|v| &v[..]), Some(log.bytes()));
    }
}

#[test]
fn v5_and_trailing_bytes() {
    let (r, _) = run(Vmm::V5);
    let Ok(TeeEvidence::Tdx { quote, .. }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(quote.len(), trimmed().len() + 6);
    assert_eq!(quote[0], 5);
    let (r, _) = run(Vmm::Trailing);
    assert_eq!(
        r,
        Ok(TeeEvidence::Tdx {
            quote: trimmed().to_vec(),
            event_log: None,
        })
    );
}

#[test]
fn lying_vmm_is_refused_with_specific_errors() {
    let cases = [
        (Vmm::WrongReportData, TdxEvidenceError::QuoteReportData),
        (
            Vmm::OutLenPastBuffer,
            TdxEvidenceError::Buffer(QuoteBufError::OutLen(16 * 1024)),
        ),
        (
            Vmm::StatusError,
            TdxEvidenceError::Buffer(QuoteBufError::Status(0x8000_0000_0000_0001)),
        ),
        (Vmm::NeverCompletes, TdxEvidenceError::Timeout),
        (
            Vmm::VmcallFails,
            TdxEvidenceError::Vmcall(VmcallError::InvalidOperand),
        ),
        (Vmm::BadTdReport, TdxEvidenceError::TdReportData),
    ];
    for (vmm, want) in cases {
        let (r, t) = run(vmm);
        assert_eq!(r, Err(TeeFailure(want.as_str())));
        assert_eq!(t.last_error, Some(want));
    }
    // The timeout is the budget, not the first poll.
    let (_, t) = run(Vmm::NeverCompletes);
    assert_eq!(t.ops.clock, DEFAULT_TIMEOUT_NS + 1_000_000);
}

#[test]
fn check_quote_rejections() {
    let rd = quote_report_data();
    let mrtd = &QUOTE[48 + BODY_MRTD..48 + BODY_MRTD + 48];
    assert_eq!(check_quote(QUOTE, &rd, mrtd).unwrap(), trimmed());
    let mut q = QUOTE.to_vec();
    q[0] = 3;
    assert_eq!(
        check_quote(&q, &rd, mrtd),
        Err(TdxEvidenceError::QuoteVersion(3))
    );
    let mut q = QUOTE.to_vec();
    q[4] = 0;
    assert_eq!(
        check_quote(&q, &rd, mrtd),
        Err(TdxEvidenceError::QuoteTeeType(0))
    );
    assert_eq!(
        check_quote(&[0; 100], &rd, mrtd),
        Err(TdxEvidenceError::QuoteSize(100))
    );
    assert!(matches!(
        check_quote(&trimmed()[..trimmed().len() - 1], &rd, mrtd),
        Err(TdxEvidenceError::QuoteSignatureLen(_))
    ));
    assert_eq!(
        check_quote(QUOTE, &rd, &[0; 48]),
        Err(TdxEvidenceError::QuoteMrtd)
    );
    let mut q = QUOTE.to_vec();
    q[0] = 5;
    q[48] = 1; // v5 body type 1 = SGX
    assert!(matches!(
        check_quote(&q, &rd, mrtd),
        Err(TdxEvidenceError::QuoteBody(..))
    ));
    // Every truncation is an error, never a panic.
    for n in 0..trimmed().len() {
        assert!(
            check_quote(&trimmed()[..n], &rd, mrtd).is_err(),
            "truncated at {n}"
        );
    }
    let big = alloc::vec![0u8; MAX_QUOTE_LEN + 1];
    assert_eq!(
        check_quote(&big, &rd, mrtd),
        Err(TdxEvidenceError::QuoteSize(MAX_QUOTE_LEN + 1))
    );
}
