//! The TDX evidence backend: TDG.MR.REPORT, then TDG.VP.VMCALL<GetQuote> to the host's quote
//! service, behind [`runtime::Tee`](pupa_runtime::Tee).
//!
//! Flow of [`TdxTee::quote`] (runs each time a client asks for evidence):
//! 1. TDREPORT over our REPORT_DATA; check it is a TDX report carrying exactly that REPORTDATA;
//! 2. write the GetQuote request (header + TDREPORT) into the shared buffer;
//! 3. TDG.VP.VMCALL<GetQuote>; the call returns at once and the VMM completes the request
//!    asynchronously (GHCI 1.5 §3.3), so poll STATUS until it leaves IN_FLIGHT, bounded by
//!    [`TdxTee::timeout_ns`] on the platform clock;
//! 4. copy header and quote out of shared memory into private memory, then validate only the
//!    private copy: STATUS, OUT_LEN within the buffer and [`MAX_QUOTE_LEN`], a v4/v5 quote
//!    header with TEE type 0x81, a TD report body whose REPORTDATA is ours and whose MRTD
//!    equals the TDREPORT's, and a signature-data length that fits.
//!
//! The VMM and the quote service are untrusted; these checks keep the guest from serving
//! garbage, while the quote's signature is what the verifier relies on.

use alloc::vec::Vec;

use pupa_protocol::evidence::TeeEvidence;
use pupa_spec::tdx::report::{self as spec, TdReportBody10};

use super::quote::{self, QuoteBufError, HEADER_LEN};
use super::report::{TdReport, TdReportError, MRTD_OFFSET, TDREPORT_LEN};
use super::rtmr::EventLog;
use super::tdcall::VmcallError;
use pupa_runtime::{Tee, TeeFailure};

/// Quote header length (Intel DCAP "Quote Library API", Quote format v4 §A.3/v5; the layouts
/// are [`pupa_spec::tdx::report::QuoteHeader`] and [`TdReportBody10`]).
pub const QUOTE_HEADER_LEN: usize = spec::QUOTE_HEADER_LEN;
/// TD report body (TDX 1.0 "TD10") length; TDX 1.5 "TD15" bodies add 64 bytes.
pub const TD10_BODY_LEN: usize = spec::TD10_BODY_LEN;
/// TD15 report body length.
pub const TD15_BODY_LEN: usize = spec::TD15_BODY_LEN;
/// Offset of REPORTDATA inside a TD report body.
pub const BODY_REPORTDATA: usize = core::mem::offset_of!(TdReportBody10, report_data);
/// Offset of MRTD inside a TD report body.
pub const BODY_MRTD: usize = core::mem::offset_of!(TdReportBody10, mrtd);
/// Quote header TEE type of TDX.
pub const TEE_TYPE_TDX: u32 = spec::TEE_TYPE_TDX;
/// Smallest acceptable quote: header + TD10 body + signature length.
pub const MIN_QUOTE_LEN: usize = QUOTE_HEADER_LEN + TD10_BODY_LEN + 4;
/// Largest accepted quote (real ones with the PCK chain are 5–8 KiB).
pub const MAX_QUOTE_LEN: usize = 64 * 1024;

/// What the firmware provides: the TDCALL wrappers and the shared GetQuote buffer.
pub trait TdxOps {
    /// TDG.MR.REPORT over `report_data` (subtype 0); `Err(RAX)` if the TDCALL failed.
    fn tdreport(&mut self, report_data: &[u8; 64]) -> Result<[u8; TDREPORT_LEN], u64>;
    /// Size of the shared GetQuote buffer (a multiple of 4 KiB).
    fn shared_len(&self) -> usize;
    /// Copies `data` into the shared buffer at `offset` (volatile writes).
    fn write_shared(&mut self, offset: usize, data: &[u8]);
    /// Copies from the shared buffer at `offset` into `out` (volatile reads).
    fn read_shared(&mut self, offset: usize, out: &mut [u8]);
    /// TDG.VP.VMCALL<GetQuote>(shared buffer GPA with the shared bit, shared_len).
    fn get_quote(&mut self) -> Result<(), VmcallError>;
    /// A monotonic clock in nanoseconds.
    fn now_ns(&mut self) -> u64;
    /// Waits a little between polls (PAUSE, or HLT until the next timer tick).
    fn relax(&mut self);
}

/// Why no quote was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TdxEvidenceError {
    /// TDG.MR.REPORT failed.
    #[error("TDG.MR.REPORT failed with status {0:#x}")]
    Report(u64),
    /// The TDREPORT is malformed.
    #[error("TDREPORT: {0}")]
    TdReport(TdReportError),
    /// The TDREPORT's REPORTDATA is not what was asked.
    #[error("TDREPORT carries a different REPORTDATA")]
    TdReportData,
    /// The shared buffer is unusable or the host's reply is bad.
    #[error("GetQuote buffer: {0}")]
    Buffer(QuoteBufError),
    /// TDG.VP.VMCALL<GetQuote> failed.
    #[error("TDG.VP.VMCALL<GetQuote>: {0}")]
    Vmcall(VmcallError),
    /// The quote service did not answer in time.
    #[error("GetQuote did not complete within the time budget")]
    Timeout,
    /// The quote is shorter than a header and body or longer than [`MAX_QUOTE_LEN`].
    #[error("quote of {0} bytes is out of bounds")]
    QuoteSize(usize),
    /// Not a v4/v5 quote.
    #[error("quote version {0}, want 4 or 5")]
    QuoteVersion(u16),
    /// Not a TDX quote.
    #[error("quote TEE type {0:#x}, want 0x81 (TDX)")]
    QuoteTeeType(u32),
    /// A v5 body type/size that is not a TD report.
    #[error("quote v5 body type {0} with size {1} is not a TD report")]
    QuoteBody(u16, u32),
    /// The quote's REPORTDATA is not ours.
    #[error("quote REPORTDATA differs from the requested one")]
    QuoteReportData,
    /// The quote's MRTD is not this TD's.
    #[error("quote MRTD differs from the TDREPORT's")]
    QuoteMrtd,
    /// The signature data length runs past the quote.
    #[error("quote signature data length {0} does not fit")]
    QuoteSignatureLen(u32),
}

impl TdxEvidenceError {
    /// A fixed description for [`TeeFailure`].
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Report(_) => "TDX: TDG.MR.REPORT failed",
            Self::TdReport(_) => "TDX: malformed TDREPORT",
            Self::TdReportData => "TDX: TDREPORT REPORTDATA mismatch",
            Self::Buffer(QuoteBufError::Status(_)) => "TDX: quote service reported an error",
            Self::Buffer(_) => "TDX: bad GetQuote buffer reply",
            Self::Vmcall(_) => "TDX: TDG.VP.VMCALL<GetQuote> failed",
            Self::Timeout => "TDX: GetQuote timed out",
            Self::QuoteSize(_) => "TDX: quote size out of bounds",
            Self::QuoteVersion(_) | Self::QuoteTeeType(_) | Self::QuoteBody(..) => {
                "TDX: not a v4/v5 TDX quote"
            }
            Self::QuoteReportData => "TDX: quote REPORTDATA mismatch",
            Self::QuoteMrtd => "TDX: quote MRTD mismatch",
            Self::QuoteSignatureLen(_) => "TDX: quote signature length out of bounds",
        }
    }
}

/// Checks a quote and returns it trimmed to header + body + signature data (quote services pad
/// the quote: the dcap-qvl sample carries 70 zero bytes after the signature data). `mrtd`: the
/// TDREPORT's MRTD.
pub fn check_quote(
    q: &[u8],
    report_data: &[u8; 64],
    mrtd: &[u8],
) -> Result<Vec<u8>, TdxEvidenceError> {
    if q.len() < MIN_QUOTE_LEN || q.len() > MAX_QUOTE_LEN {
        return Err(TdxEvidenceError::QuoteSize(q.len()));
    }
    let u16_at = |o: usize| u16::from_le_bytes([q[o], q[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([q[o], q[o + 1], q[o + 2], q[o + 3]]);
    let tee_type = u32_at(4);
    let (body, body_len) = match u16_at(0) {
        _ if tee_type != TEE_TYPE_TDX => return Err(TdxEvidenceError::QuoteTeeType(tee_type)),
        4 => (QUOTE_HEADER_LEN, TD10_BODY_LEN),
        5 => {
            // v5: u16 body type (2 = TD 1.0, 3 = TD 1.5), u32 body size, body.
            let (ty, size) = (u16_at(48), u32_at(50));
            match (ty, size as usize) {
                (2, TD10_BODY_LEN) | (3, TD15_BODY_LEN) => (QUOTE_HEADER_LEN + 6, size as usize),
                _ => return Err(TdxEvidenceError::QuoteBody(ty, size)),
            }
        }
        v => return Err(TdxEvidenceError::QuoteVersion(v)),
    };
    let sig_at = body + body_len;
    if q.len() < sig_at + 4 {
        return Err(TdxEvidenceError::QuoteSize(q.len()));
    }
    if q[body + BODY_REPORTDATA..body + BODY_REPORTDATA + 64] != report_data[..] {
        return Err(TdxEvidenceError::QuoteReportData);
    }
    if q[body + BODY_MRTD..body + BODY_MRTD + 48] != *mrtd {
        return Err(TdxEvidenceError::QuoteMrtd);
    }
    let sig_len = u32_at(sig_at);
    let end = (sig_at + 4)
        .checked_add(sig_len as usize)
        .filter(|&e| e <= q.len())
        .ok_or(TdxEvidenceError::QuoteSignatureLen(sig_len))?;
    Ok(q[..end].to_vec())
}

/// TDX evidence through [`TdxOps`].
pub struct TdxTee<O: TdxOps> {
    /// The platform.
    pub ops: O,
    /// Budget for one GetQuote round trip.
    pub timeout_ns: u64,
    /// The last failure in full (the [`Tee`] trait only carries a fixed string).
    pub last_error: Option<TdxEvidenceError>,
    /// The RTMR event log of this boot, sent with every quote so that verifiers can replay
    /// RTMR[0..3] (`None`: no log is sent).
    pub event_log: Option<EventLog>,
}

/// Default GetQuote budget: 30 s (a quote service fetching collateral can take seconds).
pub const DEFAULT_TIMEOUT_NS: u64 = 30_000_000_000;

impl<O: TdxOps> TdxTee<O> {
    /// A backend with the default timeout.
    pub fn new(ops: O) -> Self {
        Self {
            ops,
            timeout_ns: DEFAULT_TIMEOUT_NS,
            last_error: None,
            event_log: None,
        }
    }

    /// A backend whose evidence carries `log`, the event log of what this boot measured into
    /// the RTMRs.
    pub fn with_event_log(ops: O, event_log: EventLog) -> Self {
        Self {
            event_log: Some(event_log),
            ..Self::new(ops)
        }
    }

    /// A checked TDX quote whose REPORTDATA is `report_data` (see the module docs).
    pub fn quote(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, TdxEvidenceError> {
        let raw = self
            .ops
            .tdreport(report_data)
            .map_err(TdxEvidenceError::Report)?;
        let rep = TdReport::parse(&raw).map_err(TdxEvidenceError::TdReport)?;
        if rep.report_data() != *report_data {
            return Err(TdxEvidenceError::TdReportData);
        }
        let shared_len = self.ops.shared_len();
        let mut req = alloc::vec![0u8; HEADER_LEN + TDREPORT_LEN];
        quote::write_request(&raw, &mut req).map_err(TdxEvidenceError::Buffer)?;
        if shared_len < req.len() {
            return Err(TdxEvidenceError::Buffer(QuoteBufError::TooSmall(
                shared_len,
            )));
        }
        self.ops.write_shared(0, &req);
        self.ops.get_quote().map_err(TdxEvidenceError::Vmcall)?;

        let start = self.ops.now_ns();
        let mut hdr = [0u8; HEADER_LEN];
        let out_len = loop {
            self.ops.read_shared(0, &mut hdr);
            match quote::parse_header(&hdr) {
                Err(QuoteBufError::InFlight) => {}
                r => break r.map_err(TdxEvidenceError::Buffer)?,
            }
            if self.ops.now_ns().saturating_sub(start) > self.timeout_ns {
                return Err(TdxEvidenceError::Timeout);
            }
            self.ops.relax();
        } as usize;
        if out_len == 0 || out_len > shared_len - HEADER_LEN {
            return Err(TdxEvidenceError::Buffer(QuoteBufError::OutLen(
                out_len as u32,
            )));
        }
        if out_len > MAX_QUOTE_LEN {
            return Err(TdxEvidenceError::QuoteSize(out_len));
        }
        let mut q = alloc::vec![0u8; out_len];
        self.ops.read_shared(HEADER_LEN, &mut q);
        check_quote(&q, report_data, &raw[MRTD_OFFSET..MRTD_OFFSET + 48])
    }
}

impl<O: TdxOps> Tee for TdxTee<O> {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeFailure> {
        match self.quote(report_data) {
            Ok(quote) => {
                self.last_error = None;
                Ok(TeeEvidence::Tdx {
                    quote,
                    event_log: self.event_log.as_ref().map(|l| l.bytes().to_vec().into()),
                })
            }
            Err(e) => {
                self.last_error = Some(e);
                Err(TeeFailure(e.as_str()))
            }
        }
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
