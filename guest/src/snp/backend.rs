//! [`SnpTee`]: the SEV-SNP [`Tee`] backend. An attestation report is one SNP guest request
//! (GHCB spec 56421 §4.1.7 "SNP Guest Request"): MSG_REPORT_REQ sealed with VMPCK0
//! ([`GuestMessenger`]), carried to the AMD secure processor by the hypervisor
//! ([`GuestRequest`], the firmware's VMGEXIT), and a MSG_REPORT_RSP opened and checked.
//!
//! The hypervisor only carries encrypted pages; a response that does not decrypt, replays an
//! old sequence number, or carries a report for other REPORT_DATA is refused. After any failure
//! whose effect on the secure processor's sequence number is unknown, the key is retired
//! (as Linux `snp_disable_vmpck` does): the guest then serves no evidence rather than risk
//! reusing an IV.

use alloc::boxed::Box;
use alloc::vec::Vec;

use pupa_protocol::evidence::TeeEvidence;

use super::ghcb::GhcbError;
use super::guest_msg::{GuestMessenger, GuestMsgError, MsgType, HEADER_LEN, PAGE_LEN};
use super::messages::{self, PayloadError};
use pupa_runtime::{Tee, TeeFailure};

/// MSG_VERSION of the requests pupa sends (FW ABI Table 98: version 1 of both messages).
pub const MSG_VERSION: u8 = 1;
/// The VMPL pupa runs at and asks reports for.
pub const VMPL: u32 = 0;
/// How long to wait before re-sending a request the hypervisor reported as busy (Linux
/// `SNP_REQ_RETRY_DELAY`, 2 s). Re-sending is safe: the same page, so the same IV with the
/// same plaintext.
pub const BUSY_RETRY_DELAY_NS: u64 = 2_000_000_000;
/// How long busy answers are retried before giving up (Linux `SNP_REQ_MAX_RETRY_DURATION`,
/// 60 s).
pub const BUSY_MAX_DURATION_NS: u64 = 60_000_000_000;

/// SW_EXITINFO2[63:32] of an SNP guest request (GHCB spec §4.1.7; Linux
/// `SNP_GUEST_VMM_ERR_*`).
pub mod vmm_err {
    /// The certificate buffer of an extended request is too small.
    pub const INVALID_LEN: u32 = 1;
    /// The hypervisor is busy (request throttled); retry.
    pub const BUSY: u32 = 2;
}

/// Why the SNP_GUEST_REQUEST exit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuestRequestError {
    /// SW_EXITINFO2[63:32] = 1.
    #[error("hypervisor: invalid length")]
    InvalidLength,
    /// SW_EXITINFO2[63:32] = 2.
    #[error("hypervisor busy")]
    Busy,
    /// Another hypervisor error.
    #[error("hypervisor error {0:#x}")]
    Vmm(u32),
    /// SW_EXITINFO2[31:0]: the secure processor's SNP_GUEST_REQUEST status.
    #[error("secure processor status {0:#x}")]
    Firmware(u32),
    /// The GHCB exchange failed (SW_EXITINFO1).
    #[error("GHCB: {0}")]
    Ghcb(#[from] GhcbError),
    /// The GHCB is not set up or in use.
    #[error("GHCB unavailable")]
    Unavailable,
}

/// Decodes SW_EXITINFO2 after an SNP_GUEST_REQUEST exit: 0 = success.
pub fn guest_request_status(exit_info2: u64) -> Result<(), GuestRequestError> {
    let (vmm, fw) = ((exit_info2 >> 32) as u32, exit_info2 as u32);
    match vmm {
        0 if fw == 0 => Ok(()),
        0 => Err(GuestRequestError::Firmware(fw)),
        vmm_err::INVALID_LEN => Err(GuestRequestError::InvalidLength),
        vmm_err::BUSY => Err(GuestRequestError::Busy),
        e => Err(GuestRequestError::Vmm(e)),
    }
}

/// The SNP_GUEST_REQUEST exit, implemented by the firmware: copy `req` into a shared request
/// page, SW_EXITINFO1/2 = the GPAs of the shared request and response pages, VMGEXIT, check
/// SW_EXITINFO1 and (with [`guest_request_status`]) SW_EXITINFO2, copy the response page into
/// `rsp`. Called at boot and when a client asks for fresh evidence, never in the #VC handler.
pub trait GuestRequest {
    /// Sends one request page and receives the response page.
    fn exchange(
        &mut self,
        req: &[u8; PAGE_LEN],
        rsp: &mut [u8; PAGE_LEN],
    ) -> Result<(), GuestRequestError>;
    /// A monotonic clock in nanoseconds (the firmware: the calibrated TSC), for the back-off
    /// between requests the hypervisor reports as busy.
    fn now_ns(&mut self) -> u64;
    /// Called while waiting for the back-off to pass (the firmware: a spin-loop pause; there is
    /// nothing else to run).
    fn relax(&mut self);
}

/// Why the SNP backend could not produce a report or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// Framing, sequence number or tag (or the key is retired).
    #[error("guest message: {0}")]
    Message(#[from] GuestMsgError),
    /// The exchange with the hypervisor failed.
    #[error("guest request: {0}")]
    Request(#[from] GuestRequestError),
    /// The response payload is unusable (includes a non-zero firmware STATUS).
    #[error("response payload: {0}")]
    Payload(#[from] PayloadError),
    /// The report is for other REPORT_DATA than requested.
    #[error("report carries other REPORT_DATA than requested")]
    ReportDataMismatch,
    /// The report is for another VMPL.
    #[error("report for VMPL {0}, want 0")]
    Vmpl(u32),
    /// Report VERSION below 2.
    #[error("report version {0}, want >= 2")]
    ReportVersion(u32),
    /// The hypervisor answered busy for longer than [`BUSY_MAX_DURATION_NS`]; VMPCK0 was
    /// retired (see [`SnpTee`]'s busy handling).
    #[error("hypervisor busy for {elapsed_ms} ms, over the 60 s limit")]
    BusyTimeout {
        /// Time from the first attempt to the last busy answer.
        elapsed_ms: u64,
    },
}

impl SnpError {
    /// A static description for [`TeeFailure`].
    pub fn as_str(&self) -> &'static str {
        match self {
            SnpError::Message(GuestMsgError::Disabled) => "SNP: VMPCK0 retired after a failure",
            SnpError::Message(GuestMsgError::BadTag) => "SNP: response tag does not verify",
            SnpError::Message(GuestMsgError::BadSeqno { .. }) => {
                "SNP: response sequence number wrong (replay)"
            }
            SnpError::Message(_) => "SNP: guest message framing",
            SnpError::Request(GuestRequestError::Busy) => "SNP: hypervisor busy",
            SnpError::Request(_) => "SNP: guest request exit failed",
            SnpError::Payload(PayloadError::Status(_)) => "SNP: secure processor returned an error",
            SnpError::Payload(_) => "SNP: malformed response payload",
            SnpError::ReportDataMismatch => "SNP: report carries other REPORT_DATA",
            SnpError::Vmpl(_) => "SNP: report for another VMPL",
            SnpError::ReportVersion(_) => "SNP: report version below 2",
            SnpError::BusyTimeout { .. } => "SNP: hypervisor busy for over 60 s (VMPCK0 retired)",
        }
    }
}

/// The SNP backend over a [`GuestRequest`] transport.
pub struct SnpTee<G: GuestRequest> {
    messenger: GuestMessenger,
    transport: G,
    req: Box<[u8; PAGE_LEN]>,
    rsp: Box<[u8; PAGE_LEN]>,
}

impl<G: GuestRequest> SnpTee<G> {
    /// A backend using VMPCK0 `key` (its sequence numbers start at 0 after launch).
    pub fn new(vmpck0: [u8; 32], transport: G) -> Self {
        Self {
            messenger: GuestMessenger::new(vmpck0, 0, 0),
            transport,
            req: Box::new([0; PAGE_LEN]),
            rsp: Box::new([0; PAGE_LEN]),
        }
    }

    /// A backend with VMPCK0 from the secrets page (4096 bytes).
    pub fn from_secrets_page(secrets: &[u8], transport: G) -> Result<Self, PayloadError> {
        Ok(Self::new(messages::vmpck0(secrets)?, transport))
    }

    /// Whether VMPCK0 was retired.
    pub fn is_disabled(&self) -> bool {
        self.messenger.is_disabled()
    }

    /// One request/response round trip; returns the payload length (payload in
    /// `self.rsp[HEADER_LEN..]`).
    fn round_trip(&mut self, t: MsgType, payload: &[u8]) -> Result<usize, SnpError> {
        self.messenger
            .seal_request(t, MSG_VERSION, payload, &mut self.req[..])?;
        if let Err(e) = self.send_until_not_busy() {
            self.messenger.disable();
            return Err(e);
        }
        Ok(self.messenger.open_response(&mut self.rsp[..])?)
    }

    /// Sends the sealed request page; while the hypervisor answers busy, waits
    /// [`BUSY_RETRY_DELAY_NS`] on the transport's clock and re-sends the same page, for at most
    /// [`BUSY_MAX_DURATION_NS`] (Linux `__handle_guest_request`).
    ///
    /// On any error the caller retires VMPCK0, the busy timeout included, as Linux
    /// `snp_send_guest_request` does: the request has left the guest, the hypervisor may have
    /// passed it to the secure processor while answering busy, so its sequence number may be
    /// spent, and any other message under that number would reuse the AES-GCM IV.
    fn send_until_not_busy(&mut self) -> Result<(), SnpError> {
        let start = self.transport.now_ns();
        loop {
            match self.transport.exchange(&self.req, &mut self.rsp) {
                Ok(()) => return Ok(()),
                Err(GuestRequestError::Busy) => {}
                Err(e) => return Err(e.into()),
            }
            let busy_at = self.transport.now_ns();
            let elapsed = busy_at.saturating_sub(start);
            if elapsed > BUSY_MAX_DURATION_NS {
                return Err(SnpError::BusyTimeout {
                    elapsed_ms: elapsed / 1_000_000,
                });
            }
            while self.transport.now_ns().saturating_sub(busy_at) < BUSY_RETRY_DELAY_NS {
                self.transport.relax();
            }
        }
    }

    /// An attestation report (1184 bytes) over `report_data`, checked: REPORT_DATA as asked,
    /// VMPL 0, VERSION ≥ 2.
    pub fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, SnpError> {
        let req = messages::report_request(report_data, VMPL);
        let len = self.round_trip(MsgType::ReportReq, &req)?;
        let r = messages::report_response(&self.rsp[HEADER_LEN..HEADER_LEN + len])?;
        // The report's layout: pupa_spec::snp::AttestationReport (FW ABI 56860 §7.3 Table 23).
        let version = r.version.get();
        if version < 2 {
            return Err(SnpError::ReportVersion(version));
        }
        if r.report_data != *report_data {
            return Err(SnpError::ReportDataMismatch);
        }
        match r.vmpl.get() {
            VMPL => Ok(zerocopy::IntoBytes::as_bytes(r).to_vec()),
            v => Err(SnpError::Vmpl(v)),
        }
    }

    /// A key derived by the secure processor from the VCEK (MSG_KEY_REQ, FW ABI §7.2 Table 18)
    /// for VMPL 0, mixing in the guest fields `guest_field_select` selects (bit 0 policy, 1
    /// image ID, 2 family ID, 3 measurement, 4 guest SVN, 5 TCB version) with the given
    /// GUEST_SVN and TCB_VERSION. For sealing data to this guest.
    pub fn derived_key(
        &mut self,
        guest_field_select: u64,
        guest_svn: u32,
        tcb_version: u64,
    ) -> Result<[u8; 32], SnpError> {
        let req = messages::key_request(false, guest_field_select, VMPL, guest_svn, tcb_version);
        let len = self.round_trip(MsgType::KeyReq, &req)?;
        Ok(messages::key_response(
            &self.rsp[HEADER_LEN..HEADER_LEN + len],
        )?)
    }
}

impl<G: GuestRequest> Tee for SnpTee<G> {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeFailure> {
        let report = self
            .report(report_data)
            .map_err(|e| TeeFailure(e.as_str()))?;
        Ok(TeeEvidence::Snp { report, vcek: None })
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
