//! Payloads of the SNP guest messages pupa sends (SEV-SNP Firmware ABI spec 56860, §7.3
//! Table 21 "MSG_REPORT_REQ", Table 25 "MSG_REPORT_RSP", §7.2 Table 18 "MSG_KEY_REQ",
//! Table 20 "MSG_KEY_RSP"), and the secrets page (§8.14.2.5, Table 71). The layouts are the
//! typed ones of [`pupa_spec::snp::guest_msg`] and [`pupa_spec::snp::report`].

use pupa_spec::snp::{AttestationReport, KeyReq, KeyRsp, ReportReq, ReportRsp, SecretsPage};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Size of MSG_REPORT_REQ.
pub const REPORT_REQ_LEN: usize = size_of::<ReportReq>();
/// Size of the attestation report in MSG_REPORT_RSP.
pub const REPORT_LEN: usize = pupa_spec::snp::report::REPORT_LEN;
/// Offset of the report in MSG_REPORT_RSP.
pub const REPORT_RSP_REPORT_OFFSET: usize = core::mem::offset_of!(ReportRsp, report);
/// Size of MSG_KEY_REQ.
pub const KEY_REQ_LEN: usize = size_of::<KeyReq>();
/// Size of MSG_KEY_RSP.
pub const KEY_RSP_LEN: usize = size_of::<KeyRsp>();
/// Offset of VMPCK0 in the secrets page.
pub const SECRETS_VMPCK0_OFFSET: usize = core::mem::offset_of!(SecretsPage, vmpck);

/// Why a response payload is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The firmware returned a non-zero STATUS.
    #[error("firmware status {0:#x}")]
    Status(u32),
    /// The payload is shorter than its format.
    #[error("payload of {got} bytes, want {want}")]
    Short {
        /// Found.
        got: usize,
        /// Needed.
        want: usize,
    },
    /// REPORT_SIZE is not 1184.
    #[error("REPORT_SIZE {0}, want 1184")]
    ReportSize(u32),
    /// The secrets page is not a page.
    #[error("secrets page of {0} bytes")]
    SecretsPage(usize),
    /// VMPCK0 is all zeros: the key was wiped (Linux `is_vmpck_empty` refuses it likewise).
    #[error("VMPCK0 in the secrets page is empty")]
    EmptyVmpck,
}

/// MSG_REPORT_REQ: REPORT_DATA, VMPL, KEY_SEL 0 (the VLEK if installed, else the VCEK).
pub fn report_request(report_data: &[u8; 64], vmpl: u32) -> [u8; REPORT_REQ_LEN] {
    let mut m = ReportReq::new_zeroed();
    m.report_data = *report_data;
    m.vmpl.set(vmpl);
    let mut out = [0u8; REPORT_REQ_LEN];
    out.copy_from_slice(m.as_bytes());
    out
}

/// MSG_REPORT_RSP: STATUS, REPORT_SIZE, REPORT. STATUS is checked first (an error response
/// may be shorter than a report), then REPORT_SIZE, then the length.
pub fn report_response(payload: &[u8]) -> Result<&AttestationReport, PayloadError> {
    let Ok((head, _)) = <[U32; 2]>::ref_from_prefix(payload) else {
        return Err(PayloadError::Short {
            got: payload.len(),
            want: 8,
        });
    };
    let (status, size) = (head[0].get(), head[1].get());
    if status != 0 {
        return Err(PayloadError::Status(status));
    }
    if size as usize != REPORT_LEN {
        return Err(PayloadError::ReportSize(size));
    }
    let (rsp, _) = ReportRsp::ref_from_prefix(payload).map_err(|_| PayloadError::Short {
        got: payload.len(),
        want: size_of::<ReportRsp>(),
    })?;
    Ok(&rsp.report)
}

/// MSG_KEY_REQ: ROOT_KEY_SELECT (bit 0: 0 = VCEK, 1 = VMRK), GUEST_FIELD_SELECT (which guest
/// fields are mixed in), VMPL, GUEST_SVN, TCB_VERSION.
pub fn key_request(
    use_vmrk: bool,
    guest_field_select: u64,
    vmpl: u32,
    guest_svn: u32,
    tcb_version: u64,
) -> [u8; KEY_REQ_LEN] {
    let mut m = KeyReq::new_zeroed();
    m.root_key_select.set(u32::from(use_vmrk));
    m.guest_field_select.set(guest_field_select);
    m.vmpl.set(vmpl);
    m.guest_svn.set(guest_svn);
    m.tcb_version.set(tcb_version);
    let mut out = [0u8; KEY_REQ_LEN];
    out.copy_from_slice(m.as_bytes());
    out
}

/// MSG_KEY_RSP: STATUS, DERIVED_KEY.
pub fn key_response(payload: &[u8]) -> Result<[u8; 32], PayloadError> {
    let (rsp, _) = KeyRsp::ref_from_prefix(payload).map_err(|_| PayloadError::Short {
        got: payload.len(),
        want: KEY_RSP_LEN,
    })?;
    match rsp.status.get() {
        0 => Ok(rsp.derived_key),
        status => Err(PayloadError::Status(status)),
    }
}

/// VMPCK0 from the secrets page (4096 bytes).
pub fn vmpck0(secrets_page: &[u8]) -> Result<[u8; 32], PayloadError> {
    let page = SecretsPage::ref_from_bytes(secrets_page)
        .map_err(|_| PayloadError::SecretsPage(secrets_page.len()))?;
    let k = page.vmpck[0];
    if k == [0; 32] {
        return Err(PayloadError::EmptyVmpck);
    }
    Ok(k)
}
