//! Payloads of the SNP guest messages pupa sends (SEV-SNP Firmware ABI spec 56860, §7.3
//! Table 21 "MSG_REPORT_REQ", Table 25 "MSG_REPORT_RSP", §7.2 Table 18 "MSG_KEY_REQ",
//! Table 20 "MSG_KEY_RSP"), and the secrets page (§8.14.2.5, Table 71).

/// Size of MSG_REPORT_REQ.
pub const REPORT_REQ_LEN: usize = 0x60;
/// Size of the attestation report in MSG_REPORT_RSP.
pub const REPORT_LEN: usize = 1184;
/// Offset of the report in MSG_REPORT_RSP.
pub const REPORT_RSP_REPORT_OFFSET: usize = 0x20;
/// Size of MSG_KEY_REQ.
pub const KEY_REQ_LEN: usize = 0x20;
/// Size of MSG_KEY_RSP.
pub const KEY_RSP_LEN: usize = 0x40;
/// Offset of VMPCK0 in the secrets page.
pub const SECRETS_VMPCK0_OFFSET: usize = 0x20;

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

/// MSG_REPORT_REQ: REPORT_DATA (0x00, 64), VMPL (0x40, u32), KEY_SEL (0x44, u32: 0 = VLEK if
/// installed else VCEK), reserved to 0x60.
pub fn report_request(report_data: &[u8; 64], vmpl: u32) -> [u8; REPORT_REQ_LEN] {
    let mut m = [0u8; REPORT_REQ_LEN];
    m[..64].copy_from_slice(report_data);
    m[0x40..0x44].copy_from_slice(&vmpl.to_le_bytes());
    m
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn need(b: &[u8], want: usize) -> Result<(), PayloadError> {
    if b.len() < want {
        return Err(PayloadError::Short { got: b.len(), want });
    }
    Ok(())
}

/// MSG_REPORT_RSP: STATUS (0x00), REPORT_SIZE (0x04), reserved, REPORT (0x20, 1184 bytes).
pub fn report_response(payload: &[u8]) -> Result<&[u8], PayloadError> {
    need(payload, 8)?;
    let status = u32_at(payload, 0);
    if status != 0 {
        return Err(PayloadError::Status(status));
    }
    let size = u32_at(payload, 4);
    if size as usize != REPORT_LEN {
        return Err(PayloadError::ReportSize(size));
    }
    need(payload, REPORT_RSP_REPORT_OFFSET + REPORT_LEN)?;
    Ok(&payload[REPORT_RSP_REPORT_OFFSET..REPORT_RSP_REPORT_OFFSET + REPORT_LEN])
}

/// MSG_KEY_REQ: ROOT_KEY_SELECT (0x00; bit 0: 0 = VCEK, 1 = VMRK), reserved, GUEST_FIELD_SELECT
/// (0x08, u64: which guest fields are mixed in), VMPL (0x10), GUEST_SVN (0x14), TCB_VERSION (0x18).
pub fn key_request(
    use_vmrk: bool,
    guest_field_select: u64,
    vmpl: u32,
    guest_svn: u32,
    tcb_version: u64,
) -> [u8; KEY_REQ_LEN] {
    let mut m = [0u8; KEY_REQ_LEN];
    m[0..4].copy_from_slice(&u32::from(use_vmrk).to_le_bytes());
    m[0x08..0x10].copy_from_slice(&guest_field_select.to_le_bytes());
    m[0x10..0x14].copy_from_slice(&vmpl.to_le_bytes());
    m[0x14..0x18].copy_from_slice(&guest_svn.to_le_bytes());
    m[0x18..0x20].copy_from_slice(&tcb_version.to_le_bytes());
    m
}

/// MSG_KEY_RSP: STATUS (0x00), reserved, DERIVED_KEY (0x20, 32 bytes).
pub fn key_response(payload: &[u8]) -> Result<[u8; 32], PayloadError> {
    need(payload, KEY_RSP_LEN)?;
    let status = u32_at(payload, 0);
    if status != 0 {
        return Err(PayloadError::Status(status));
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&payload[0x20..0x40]);
    Ok(k)
}

/// VMPCK0 from the secrets page (4096 bytes).
pub fn vmpck0(secrets_page: &[u8]) -> Result<[u8; 32], PayloadError> {
    if secrets_page.len() != 4096 {
        return Err(PayloadError::SecretsPage(secrets_page.len()));
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&secrets_page[SECRETS_VMPCK0_OFFSET..SECRETS_VMPCK0_OFFSET + 32]);
    if k == [0; 32] {
        return Err(PayloadError::EmptyVmpck);
    }
    Ok(k)
}
