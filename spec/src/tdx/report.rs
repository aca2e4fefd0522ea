//! TDREPORT_STRUCT as TDG.MR.REPORT writes it (Intel TDX Module ABI spec, "TDREPORT_STRUCT":
//! REPORTMACSTRUCT, TEE_TCB_INFO, TDINFO_STRUCT; td-shim `tdx-tdcall/src/tdreport.rs`
//! `TdxReport`), and the TD report body
//! of a DCAP quote (Intel TDX DCAP Quote Generation Library and Quote Verification Library,
//! Appendix A.3 "Quote Format" v4: the 48-byte quote header and the 584-byte TD10 report body;
//! v5 adds the 648-byte TD15 body).
//!
//! Both are measured-state records the firmware checks against each other before it serves a
//! quote: the quote body's MRTD and REPORTDATA must be the TDREPORT's.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// REPORTMACSTRUCT (256 bytes): the MACed header of a TDREPORT.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ReportMacStruct {
    /// 0 REPORTTYPE.TYPE (0x81: TDX).
    pub report_type: u8,
    /// 1 REPORTTYPE.SUBTYPE.
    pub report_subtype: u8,
    /// 2 REPORTTYPE.VERSION (0: TDX 1.0, 1: TDX 1.5 with SERVTD_HASH).
    pub report_version: u8,
    /// 3 REPORTTYPE reserved.
    pub _reserved_3: u8,
    /// 4 reserved.
    pub _reserved_4: [u8; 12],
    /// 16 CPUSVN.
    pub cpusvn: [u8; 16],
    /// 32 TEE_TCB_INFO_HASH (SHA-384 of TEE_TCB_INFO).
    pub tee_tcb_info_hash: [u8; 48],
    /// 80 TEE_INFO_HASH (SHA-384 of TDINFO_STRUCT).
    pub tee_info_hash: [u8; 48],
    /// 128 REPORTDATA (the guest's 64 bytes).
    pub report_data: [u8; 64],
    /// 192 reserved.
    pub _reserved_192: [u8; 32],
    /// 224 MAC.
    pub mac: [u8; 32],
}

/// TEE_TCB_INFO (239 bytes): the TDX module's identity and TCB.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TeeTcbInfo {
    /// 0 VALID (which fields are valid).
    pub valid: [u8; 8],
    /// 8 TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// 24 MRSEAM.
    pub mrseam: [u8; 48],
    /// 72 MRSIGNERSEAM.
    pub mrsignerseam: [u8; 48],
    /// 120 ATTRIBUTES (of the TDX module).
    pub attributes: [u8; 8],
    /// 128 TEE_TCB_SVN2 (TDX 1.5).
    pub tee_tcb_svn2: [u8; 16],
    /// 144 reserved.
    pub _reserved: [u8; 95],
}

/// TDINFO_STRUCT (512 bytes): the TD's measurements and attributes.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TdInfo {
    /// 0 ATTRIBUTES (TD attributes; bit 0 TUD.DEBUG).
    pub attributes: [u8; 8],
    /// 8 XFAM.
    pub xfam: [u8; 8],
    /// 16 MRTD.
    pub mrtd: [u8; 48],
    /// 64 MRCONFIGID.
    pub mrconfigid: [u8; 48],
    /// 112 MROWNER.
    pub mrowner: [u8; 48],
    /// 160 MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// 208 RTMR[0..4].
    pub rtmr: [[u8; 48]; 4],
    /// 400 SERVTD_HASH (TDX 1.5).
    pub servtd_hash: [u8; 48],
    /// 448 reserved.
    pub _reserved: [u8; 64],
}

/// TDREPORT_STRUCT (1024 bytes).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TdReport {
    /// 0 REPORTMACSTRUCT.
    pub mac: ReportMacStruct,
    /// 256 TEE_TCB_INFO.
    pub tee_tcb_info: TeeTcbInfo,
    /// 495 reserved.
    pub _reserved: [u8; 17],
    /// 512 TDINFO_STRUCT.
    pub td_info: TdInfo,
}

/// Size of TDREPORT_STRUCT.
pub const TDREPORT_LEN: usize = 1024;
/// REPORTTYPE.TYPE of a TDX report.
pub const REPORT_TYPE_TDX: u8 = 0x81;
/// TD ATTRIBUTES bit 0: TUD.DEBUG.
pub const TD_ATTR_DEBUG: u64 = 1;

impl TdReport {
    /// TD ATTRIBUTES as a number.
    pub fn attributes(&self) -> u64 {
        u64::from_le_bytes(self.td_info.attributes)
    }
}

/// The DCAP quote header (v4 and v5, 48 bytes).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct QuoteHeader {
    /// 0 version (4 or 5).
    pub version: U16,
    /// 2 attestation key type (2: ECDSA P-256).
    pub att_key_type: U16,
    /// 4 TEE type (0x81: TDX).
    pub tee_type: U32,
    /// 8 reserved (QE SVN in SGX quotes).
    pub _reserved_8: [u8; 4],
    /// 12 QE vendor ID.
    pub qe_vendor_id: [u8; 16],
    /// 28 user data.
    pub user_data: [u8; 20],
}

/// The quote header's TEE type of TDX.
pub const TEE_TYPE_TDX: u32 = 0x81;

/// The TD report body of a quote (TD10, 584 bytes: TDX 1.0).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TdReportBody10 {
    /// 0 TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// 16 MRSEAM.
    pub mrseam: [u8; 48],
    /// 64 MRSIGNERSEAM.
    pub mrsignerseam: [u8; 48],
    /// 112 SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// 120 TDATTRIBUTES.
    pub td_attributes: [u8; 8],
    /// 128 XFAM.
    pub xfam: [u8; 8],
    /// 136 MRTD.
    pub mrtd: [u8; 48],
    /// 184 MRCONFIGID.
    pub mrconfigid: [u8; 48],
    /// 232 MROWNER.
    pub mrowner: [u8; 48],
    /// 280 MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// 328 RTMR[0..4].
    pub rtmr: [[u8; 48]; 4],
    /// 520 REPORTDATA.
    pub report_data: [u8; 64],
}

/// The TD15 report body (v5 quotes, body type 3): TD10 then TEE_TCB_SVN2 and MRSERVICETD.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TdReportBody15 {
    /// 0 the TD10 fields.
    pub td10: TdReportBody10,
    /// 584 TEE_TCB_SVN2.
    pub tee_tcb_svn2: [u8; 16],
    /// 600 MRSERVICETD.
    pub mr_servicetd: [u8; 48],
}

/// Size of a v4 quote header.
pub const QUOTE_HEADER_LEN: usize = 48;
/// Size of a TD10 report body.
pub const TD10_BODY_LEN: usize = 584;
/// Size of a TD15 report body.
pub const TD15_BODY_LEN: usize = 648;

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<ReportMacStruct>() == 256);
    assert!(offset_of!(ReportMacStruct, cpusvn) == 16);
    assert!(offset_of!(ReportMacStruct, tee_tcb_info_hash) == 32);
    assert!(offset_of!(ReportMacStruct, tee_info_hash) == 80);
    assert!(offset_of!(ReportMacStruct, report_data) == 128);
    assert!(offset_of!(ReportMacStruct, mac) == 224);
    assert!(size_of::<TeeTcbInfo>() == 239);
    assert!(offset_of!(TeeTcbInfo, tee_tcb_svn) == 8);
    assert!(offset_of!(TeeTcbInfo, mrseam) == 24);
    assert!(offset_of!(TeeTcbInfo, mrsignerseam) == 72);
    assert!(offset_of!(TeeTcbInfo, attributes) == 120);
    assert!(offset_of!(TeeTcbInfo, tee_tcb_svn2) == 128);
    assert!(size_of::<TdInfo>() == 512);
    assert!(offset_of!(TdInfo, xfam) == 8);
    assert!(offset_of!(TdInfo, mrtd) == 16);
    assert!(offset_of!(TdInfo, mrconfigid) == 64);
    assert!(offset_of!(TdInfo, mrowner) == 112);
    assert!(offset_of!(TdInfo, mrownerconfig) == 160);
    assert!(offset_of!(TdInfo, rtmr) == 208);
    assert!(offset_of!(TdInfo, servtd_hash) == 400);
    assert!(size_of::<TdReport>() == TDREPORT_LEN);
    assert!(offset_of!(TdReport, tee_tcb_info) == 256);
    assert!(offset_of!(TdReport, td_info) == 512);
    assert!(size_of::<QuoteHeader>() == QUOTE_HEADER_LEN);
    assert!(offset_of!(QuoteHeader, tee_type) == 4);
    assert!(offset_of!(QuoteHeader, qe_vendor_id) == 12);
    assert!(offset_of!(QuoteHeader, user_data) == 28);
    assert!(size_of::<TdReportBody10>() == TD10_BODY_LEN);
    assert!(offset_of!(TdReportBody10, seam_attributes) == 112);
    assert!(offset_of!(TdReportBody10, td_attributes) == 120);
    assert!(offset_of!(TdReportBody10, mrtd) == 136);
    assert!(offset_of!(TdReportBody10, rtmr) == 328);
    assert!(offset_of!(TdReportBody10, report_data) == 520);
    assert!(size_of::<TdReportBody15>() == TD15_BODY_LEN);
    assert!(offset_of!(TdReportBody15, mr_servicetd) == 600);
};
