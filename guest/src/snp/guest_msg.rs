//! SEV-SNP guest messages: the AES-256-GCM framing between the guest and the AMD secure
//! processor (SEV-SNP Firmware ABI spec 56860, §8.26 "SNP_GUEST_REQUEST" and §8 "Guest
//! Messages": Table 97 "Message Header Format", Table 98 "Message Type Encodings").
//!
//! A message is one 4 KiB page: a 0x60-byte header, then the encrypted payload.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 32 | AUTHTAG (AES-256-GCM: the first 16 bytes, the rest zero) |
//! | 0x20 | 8 | MSG_SEQNO |
//! | 0x28 | 8 | reserved |
//! | 0x30 | 1 | ALGO (1 = AES-256-GCM) |
//! | 0x31 | 1 | HDR_VERSION (1) |
//! | 0x32 | 2 | HDR_SIZE (0x60) |
//! | 0x34 | 1 | MSG_TYPE |
//! | 0x35 | 1 | MSG_VERSION |
//! | 0x36 | 2 | MSG_SIZE |
//! | 0x38 | 4 | reserved |
//! | 0x3C | 1 | MSG_VMPCK |
//! | 0x3D | 35 | reserved |
//!
//! The key is VMPCKn from the secrets page; the IV is MSG_SEQNO little-endian, zero-padded to 12
//! bytes; the AAD is header bytes [0x30, 0x60). Sequence numbers: a request carries the last
//! seen number + 1, its response must carry + 2. A number must never be used twice with a key:
//! after a failed exchange the state is unknown, so [`GuestMessenger`] refuses all further use.
//! No crate implements this on bare metal (virtee's `sev` is std-only); AES-GCM is RustCrypto.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};

/// Size of the message header.
pub const HEADER_LEN: usize = pupa_spec::snp::guest_msg::HEADER_LEN;
/// Size of a message page.
pub const PAGE_LEN: usize = 4096;
/// Largest payload in one page.
pub const MAX_PAYLOAD: usize = PAGE_LEN - HEADER_LEN;
/// ALGO value for AES-256-GCM.
pub const ALGO_AES_256_GCM: u8 = 1;
/// HDR_VERSION this module speaks.
pub const HDR_VERSION: u8 = 1;

/// Offsets in the header (Table 97), from the typed layout [`pupa_spec::snp::GuestMsgHeader`]
/// (whose offsets the spec crate asserts against the table).
pub mod offset {
    use core::mem::offset_of;
    use pupa_spec::snp::GuestMsgHeader as H;

    /// AUTHTAG.
    pub const AUTHTAG: usize = offset_of!(H, authtag);
    /// MSG_SEQNO.
    pub const SEQNO: usize = offset_of!(H, msg_seqno);
    /// ALGO; the AAD starts here.
    pub const ALGO: usize = offset_of!(H, algo);
    /// HDR_VERSION.
    pub const HDR_VERSION: usize = offset_of!(H, hdr_version);
    /// HDR_SIZE.
    pub const HDR_SIZE: usize = offset_of!(H, hdr_size);
    /// MSG_TYPE.
    pub const MSG_TYPE: usize = offset_of!(H, msg_type);
    /// MSG_VERSION.
    pub const MSG_VERSION: usize = offset_of!(H, msg_version);
    /// MSG_SIZE.
    pub const MSG_SIZE: usize = offset_of!(H, msg_size);
    /// MSG_VMPCK.
    pub const MSG_VMPCK: usize = offset_of!(H, msg_vmpck);
}

/// Message types (Table 98).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    /// CPUID request.
    CpuidReq = 1,
    /// CPUID response.
    CpuidRsp = 2,
    /// Derived key request.
    KeyReq = 3,
    /// Derived key response.
    KeyRsp = 4,
    /// Attestation report request.
    ReportReq = 5,
    /// Attestation report response.
    ReportRsp = 6,
}

/// Why a guest message could not be built or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuestMsgError {
    /// The payload does not fit in one page.
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD} of a message page")]
    PayloadTooLarge(usize),
    /// The buffer is not a full message page.
    #[error("message buffer of {0} bytes, want {PAGE_LEN}")]
    BadBuffer(usize),
    /// A header field has an unexpected value.
    #[error("response header field {field} is {got}, want {want}")]
    BadHeader {
        /// Field name.
        field: &'static str,
        /// Value found.
        got: u64,
        /// Value expected.
        want: u64,
    },
    /// The response's sequence number is not request + 1 (replayed or reordered).
    #[error("response sequence number {got}, want {want} (replay or reorder)")]
    BadSeqno {
        /// Found.
        got: u64,
        /// Expected.
        want: u64,
    },
    /// The authentication tag does not verify.
    #[error("response authentication tag does not verify")]
    BadTag,
    /// The sequence numbers are exhausted (would wrap).
    #[error("message sequence numbers exhausted")]
    SeqnoExhausted,
    /// An earlier exchange failed: the key must not be used again (IV reuse risk).
    #[error("VMPCK disabled after a failed exchange")]
    Disabled,
    /// A request was already sealed and its response not yet opened.
    #[error("a request is already in flight")]
    InFlight,
    /// No request is in flight.
    #[error("no request in flight")]
    NoRequest,
}

/// Builds one message page: header + AES-256-GCM(payload) (the low-level framing; callers use
/// [`GuestMessenger`], tests use this to craft responses).
pub fn seal(
    key: &[u8; 32],
    seqno: u64,
    msg_type: u8,
    msg_version: u8,
    vmpck_id: u8,
    payload: &[u8],
    page: &mut [u8],
) -> Result<(), GuestMsgError> {
    if page.len() != PAGE_LEN {
        return Err(GuestMsgError::BadBuffer(page.len()));
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(GuestMsgError::PayloadTooLarge(payload.len()));
    }
    page.fill(0);
    page[offset::SEQNO..offset::SEQNO + 8].copy_from_slice(&seqno.to_le_bytes());
    page[offset::ALGO] = ALGO_AES_256_GCM;
    page[offset::HDR_VERSION] = HDR_VERSION;
    page[offset::HDR_SIZE..offset::HDR_SIZE + 2]
        .copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    page[offset::MSG_TYPE] = msg_type;
    page[offset::MSG_VERSION] = msg_version;
    page[offset::MSG_SIZE..offset::MSG_SIZE + 2]
        .copy_from_slice(&(payload.len() as u16).to_le_bytes());
    page[offset::MSG_VMPCK] = vmpck_id;
    let (header, body) = page.split_at_mut(HEADER_LEN);
    let body = &mut body[..payload.len()];
    body.copy_from_slice(payload);
    let tag = Aes256Gcm::new(key.into())
        .encrypt_in_place_detached(&iv(seqno), &header[offset::ALGO..HEADER_LEN], body)
        .map_err(|_| GuestMsgError::PayloadTooLarge(payload.len()))?;
    header[offset::AUTHTAG..offset::AUTHTAG + 16].copy_from_slice(&tag);
    Ok(())
}

/// IV = MSG_SEQNO little-endian, zero-padded to 96 bits.
fn iv(seqno: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&seqno.to_le_bytes());
    iv.into()
}

/// What a response header must carry: the request's sequence number + 1, its type + 1, the
/// request's MSG_VERSION (SNP ABI 56860 §8.26, Table 99; Linux `verify_and_dec_payload`) and
/// the VMPCK it was sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// MSG_SEQNO.
    pub seqno: u64,
    /// MSG_TYPE.
    pub msg_type: u8,
    /// MSG_VERSION (the request's).
    pub msg_version: u8,
    /// MSG_VMPCK.
    pub vmpck_id: u8,
}

/// Checks a response page's header against `want` and decrypts its payload in place; returns
/// the payload length (payload at `page[HEADER_LEN..HEADER_LEN + len]`).
pub fn open(key: &[u8; 32], want: Expected, page: &mut [u8]) -> Result<usize, GuestMsgError> {
    if page.len() != PAGE_LEN {
        return Err(GuestMsgError::BadBuffer(page.len()));
    }
    let field = |field, got: u64, want: u64| {
        if got == want {
            Ok(())
        } else {
            Err(GuestMsgError::BadHeader { field, got, want })
        }
    };
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([page[o], page[o + 1]]));
    field("ALGO", page[offset::ALGO].into(), ALGO_AES_256_GCM.into())?;
    field(
        "HDR_VERSION",
        page[offset::HDR_VERSION].into(),
        HDR_VERSION.into(),
    )?;
    field("HDR_SIZE", u16_at(offset::HDR_SIZE), HEADER_LEN as u64)?;
    field(
        "MSG_TYPE",
        page[offset::MSG_TYPE].into(),
        want.msg_type.into(),
    )?;
    field(
        "MSG_VERSION",
        page[offset::MSG_VERSION].into(),
        want.msg_version.into(),
    )?;
    field(
        "MSG_VMPCK",
        page[offset::MSG_VMPCK].into(),
        want.vmpck_id.into(),
    )?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&page[offset::SEQNO..offset::SEQNO + 8]);
    let got = u64::from_le_bytes(seq);
    if got != want.seqno {
        return Err(GuestMsgError::BadSeqno {
            got,
            want: want.seqno,
        });
    }
    let len = u16_at(offset::MSG_SIZE) as usize;
    if len > MAX_PAYLOAD {
        return Err(GuestMsgError::PayloadTooLarge(len));
    }
    let (header, body) = page.split_at_mut(HEADER_LEN);
    let tag = Tag::clone_from_slice(&header[offset::AUTHTAG..offset::AUTHTAG + 16]);
    Aes256Gcm::new(key.into())
        .decrypt_in_place_detached(
            &iv(got),
            &header[offset::ALGO..HEADER_LEN],
            &mut body[..len],
            &tag,
        )
        .map_err(|_| GuestMsgError::BadTag)?;
    Ok(len)
}

/// The guest's side of the channel for one VMPCK: sequence numbers and the fail-closed rule.
pub struct GuestMessenger {
    key: [u8; 32],
    vmpck_id: u8,
    /// Last sequence number used (a response's).
    seqno: u64,
    /// The request sealed and not yet answered: (its sequence number, its type, its version).
    in_flight: Option<(u64, u8, u8)>,
    disabled: bool,
}

impl GuestMessenger {
    /// A messenger for VMPCK `vmpck_id` (0 for VMPL 0) whose last used sequence number is
    /// `last_seqno` (0 right after launch).
    pub fn new(key: [u8; 32], vmpck_id: u8, last_seqno: u64) -> Self {
        Self {
            key,
            vmpck_id,
            seqno: last_seqno,
            in_flight: None,
            disabled: false,
        }
    }

    /// The last sequence number used.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// Seals a request with sequence number last + 1 into `page`.
    pub fn seal_request(
        &mut self,
        t: MsgType,
        version: u8,
        payload: &[u8],
        page: &mut [u8],
    ) -> Result<(), GuestMsgError> {
        if self.disabled {
            return Err(GuestMsgError::Disabled);
        }
        if self.in_flight.is_some() {
            return Err(GuestMsgError::InFlight);
        }
        let req = self
            .seqno
            .checked_add(1)
            .filter(|s| s.checked_add(1).is_some())
            .ok_or(GuestMsgError::SeqnoExhausted)?;
        seal(
            &self.key,
            req,
            t as u8,
            version,
            self.vmpck_id,
            payload,
            page,
        )?;
        self.in_flight = Some((req, t as u8, version));
        Ok(())
    }

    /// Retires the key for good: after an exchange whose outcome is unknown (the transport
    /// failed after the request left the guest), the secure processor may have consumed the
    /// sequence number, and a different message under it would reuse the IV.
    pub fn disable(&mut self) {
        self.disabled = true;
        self.in_flight = None;
        self.key = [0; 32];
    }

    /// Whether the key was retired.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Opens the response to the request in flight (type = request type + 1, sequence number =
    /// request + 1, MSG_VERSION = the request's). Any failure disables the messenger for good.
    pub fn open_response(&mut self, page: &mut [u8]) -> Result<usize, GuestMsgError> {
        if self.disabled {
            return Err(GuestMsgError::Disabled);
        }
        let (req, req_type, version) = self.in_flight.take().ok_or(GuestMsgError::NoRequest)?;
        let want = Expected {
            seqno: req + 1,
            msg_type: req_type + 1,
            msg_version: version,
            vmpck_id: self.vmpck_id,
        };
        match open(&self.key, want, page) {
            Ok(len) => {
                self.seqno = req + 1;
                Ok(len)
            }
            Err(e) => {
                self.disabled = true;
                self.key = [0; 32];
                Err(e)
            }
        }
    }
}
