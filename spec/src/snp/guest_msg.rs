//! SEV-SNP guest messages (SEV-SNP Firmware ABI spec 56860, §8.26 "SNP_GUEST_REQUEST": Table 97
//! "Message Header Format"; §7.2 Table 18 "MSG_KEY_REQ" and Table 20 "MSG_KEY_RSP"; §7.3
//! Table 21 "MSG_REPORT_REQ" and Table 25 "MSG_REPORT_RSP") and the secrets page (§8.14.2.5,
//! Table 71 "Secrets Page Format"). Linux: `struct snp_guest_msg_hdr`, `struct snp_report_req`,
//! `struct snp_derived_key_req`, `struct snp_secrets_page`.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::report::AttestationReport;

/// The header of a guest message page (Table 97). The AAD of the AES-256-GCM seal is the
/// header from ALGO (0x30) to the end (0x60).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct GuestMsgHeader {
    /// 0x00 AUTHTAG (AES-256-GCM: the first 16 bytes, the rest zero).
    pub authtag: [u8; 32],
    /// 0x20 MSG_SEQNO.
    pub msg_seqno: U64,
    /// 0x28 reserved.
    pub _reserved_28: [u8; 8],
    /// 0x30 ALGO (1: AES-256-GCM).
    pub algo: u8,
    /// 0x31 HDR_VERSION (1).
    pub hdr_version: u8,
    /// 0x32 HDR_SIZE (0x60).
    pub hdr_size: U16,
    /// 0x34 MSG_TYPE (Table 98).
    pub msg_type: u8,
    /// 0x35 MSG_VERSION.
    pub msg_version: u8,
    /// 0x36 MSG_SIZE (payload bytes).
    pub msg_size: U16,
    /// 0x38 reserved.
    pub _reserved_38: U32,
    /// 0x3C MSG_VMPCK (which VMPCK seals the message).
    pub msg_vmpck: u8,
    /// 0x3D reserved.
    pub _reserved_3d: [u8; 35],
}

/// Size of the message header.
pub const HEADER_LEN: usize = 0x60;
/// Where the AAD starts (ALGO).
pub const AAD_OFFSET: usize = core::mem::offset_of!(GuestMsgHeader, algo);

/// MSG_REPORT_REQ (Table 21).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ReportReq {
    /// 0x00 REPORT_DATA.
    pub report_data: [u8; 64],
    /// 0x40 VMPL.
    pub vmpl: U32,
    /// 0x44 KEY_SEL (bits 1:0; 0: the VLEK if installed, else the VCEK).
    pub key_sel: U32,
    /// 0x48 reserved.
    pub _reserved: [u8; 24],
}

/// MSG_REPORT_RSP (Table 25).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ReportRsp {
    /// 0x00 STATUS (0: success).
    pub status: U32,
    /// 0x04 REPORT_SIZE (1184).
    pub report_size: U32,
    /// 0x08 reserved.
    pub _reserved: [u8; 24],
    /// 0x20 REPORT.
    pub report: AttestationReport,
}

/// MSG_KEY_REQ (Table 18).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct KeyReq {
    /// 0x00 ROOT_KEY_SELECT (bit 0: 0 VCEK, 1 VMRK) and KEY_SEL (bits 2:1).
    pub root_key_select: U32,
    /// 0x04 reserved.
    pub _reserved: U32,
    /// 0x08 GUEST_FIELD_SELECT (bit 0 policy, 1 image ID, 2 family ID, 3 measurement, 4 guest
    /// SVN, 5 TCB version).
    pub guest_field_select: U64,
    /// 0x10 VMPL.
    pub vmpl: U32,
    /// 0x14 GUEST_SVN.
    pub guest_svn: U32,
    /// 0x18 TCB_VERSION.
    pub tcb_version: U64,
}

/// MSG_KEY_RSP (Table 20).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct KeyRsp {
    /// 0x00 STATUS (0: success).
    pub status: U32,
    /// 0x04 reserved.
    pub _reserved: [u8; 28],
    /// 0x20 DERIVED_KEY.
    pub derived_key: [u8; 32],
}

/// The secrets page (Table 71), as far as pupa reads it.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SecretsPage {
    /// 0x000 VERSION.
    pub version: U32,
    /// 0x004 IMI_EN (bit 0).
    pub imi_en: U32,
    /// 0x008 FMS (CPUID family, model, stepping).
    pub fms: U32,
    /// 0x00C reserved.
    pub _reserved_00c: U32,
    /// 0x010 GOSVW (guest OS-visible workarounds).
    pub gosvw: [u8; 16],
    /// 0x020 VMPCK0 .. VMPCK3.
    pub vmpck: [[u8; 32]; 4],
    /// 0x0A0 the guest OS area.
    pub os_area: [u8; 96],
    /// 0x100 VMSA tweak bitmap.
    pub vmsa_tweak_bitmap: [u8; 64],
    /// 0x140 reserved to the end of the page.
    pub _reserved_140: [u8; 4096 - 0x140],
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<GuestMsgHeader>() == HEADER_LEN);
    assert!(offset_of!(GuestMsgHeader, msg_seqno) == 0x20);
    assert!(offset_of!(GuestMsgHeader, algo) == 0x30);
    assert!(offset_of!(GuestMsgHeader, hdr_version) == 0x31);
    assert!(offset_of!(GuestMsgHeader, hdr_size) == 0x32);
    assert!(offset_of!(GuestMsgHeader, msg_type) == 0x34);
    assert!(offset_of!(GuestMsgHeader, msg_version) == 0x35);
    assert!(offset_of!(GuestMsgHeader, msg_size) == 0x36);
    assert!(offset_of!(GuestMsgHeader, msg_vmpck) == 0x3C);
    assert!(size_of::<ReportReq>() == 0x60);
    assert!(offset_of!(ReportReq, vmpl) == 0x40);
    assert!(offset_of!(ReportReq, key_sel) == 0x44);
    assert!(size_of::<ReportRsp>() == 0x20 + 1184);
    assert!(offset_of!(ReportRsp, report_size) == 0x04);
    assert!(offset_of!(ReportRsp, report) == 0x20);
    assert!(size_of::<KeyReq>() == 0x20);
    assert!(offset_of!(KeyReq, guest_field_select) == 0x08);
    assert!(offset_of!(KeyReq, vmpl) == 0x10);
    assert!(offset_of!(KeyReq, guest_svn) == 0x14);
    assert!(offset_of!(KeyReq, tcb_version) == 0x18);
    assert!(size_of::<KeyRsp>() == 0x40);
    assert!(offset_of!(KeyRsp, derived_key) == 0x20);
    assert!(size_of::<SecretsPage>() == 4096);
    assert!(offset_of!(SecretsPage, gosvw) == 0x10);
    assert!(offset_of!(SecretsPage, vmpck) == 0x20);
    assert!(offset_of!(SecretsPage, os_area) == 0xA0);
    assert!(offset_of!(SecretsPage, vmsa_tweak_bitmap) == 0x100);
};
