//! TDREPORT_STRUCT (Intel TDX Module ABI spec, §"TDREPORT_STRUCT": REPORTMACSTRUCT 256 bytes,
//! TEE_TCB_INFO 239 bytes, reserved 17, TDINFO_STRUCT 512 bytes) as written by TDG.MR.REPORT;
//! the layout is [`pupa_spec::tdx::report::TdReport`].

use core::mem::offset_of;

use pupa_spec::tdx::report::{TdInfo, TdReport as Layout};
use zerocopy::FromBytes;

/// Size of TDREPORT_STRUCT.
pub const TDREPORT_LEN: usize = pupa_spec::tdx::report::TDREPORT_LEN;
/// REPORTTYPE.TYPE of a TDX report.
pub const REPORT_TYPE_TDX: u8 = pupa_spec::tdx::report::REPORT_TYPE_TDX;
/// REPORTMACSTRUCT.REPORTDATA.
pub const REPORTDATA_OFFSET: usize = offset_of!(Layout, mac.report_data);
/// TDINFO_STRUCT.ATTRIBUTES.
pub const ATTRIBUTES_OFFSET: usize = offset_of!(Layout, td_info) + offset_of!(TdInfo, attributes);
/// TDINFO_STRUCT.MRTD.
pub const MRTD_OFFSET: usize = offset_of!(Layout, td_info) + offset_of!(TdInfo, mrtd);
/// TDINFO_STRUCT.RTMR[0]; RTMR[i] at + 48·i.
pub const RTMR_OFFSET: usize = offset_of!(Layout, td_info) + offset_of!(TdInfo, rtmr);

/// A malformed TDREPORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TdReportError {
    /// Wrong size.
    #[error("TDREPORT of {0} bytes, want 1024")]
    Size(usize),
    /// REPORTTYPE.TYPE is not TDX.
    #[error("REPORTTYPE {0:#x}, want 0x81 (TDX)")]
    Type(u8),
}

/// A checked view of a TDREPORT_STRUCT.
#[derive(Debug, Clone, Copy)]
pub struct TdReport<'a>(&'a Layout);

impl<'a> TdReport<'a> {
    /// Checks size and REPORTTYPE.
    pub fn parse(b: &'a [u8]) -> Result<Self, TdReportError> {
        let r = Layout::ref_from_bytes(b).map_err(|_| TdReportError::Size(b.len()))?;
        if r.mac.report_type != REPORT_TYPE_TDX {
            return Err(TdReportError::Type(r.mac.report_type));
        }
        Ok(Self(r))
    }

    /// REPORTDATA.
    pub fn report_data(&self) -> [u8; 64] {
        self.0.mac.report_data
    }

    /// TD ATTRIBUTES (bit 0: DEBUG).
    pub fn attributes(&self) -> u64 {
        self.0.attributes()
    }

    /// MRTD.
    pub fn mrtd(&self) -> [u8; 48] {
        self.0.td_info.mrtd
    }

    /// RTMR[i], i < 4.
    pub fn rtmr(&self, i: usize) -> Option<[u8; 48]> {
        self.0.td_info.rtmr.get(i).copied()
    }
}

/// The shared bit of a GPA for MapGPA / shared buffers: bit GPAW − 1, GPAW (48 or 52) from
/// TDG.VP.INFO RCX[5:0] (TDX Module ABI, TDG.VP.INFO). `None` for any other width.
pub fn shared_bit(vp_info_rcx: u64) -> Option<u64> {
    match vp_info_rcx & 0x3F {
        gpaw @ (48 | 52) => Some(1u64 << (gpaw - 1)),
        _ => None,
    }
}
