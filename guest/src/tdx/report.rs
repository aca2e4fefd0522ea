//! TDREPORT_STRUCT (Intel TDX Module ABI spec, §"TDREPORT_STRUCT": REPORTMACSTRUCT 256 bytes,
//! TEE_TCB_INFO 239 bytes, reserved 17, TDINFO_STRUCT 512 bytes) as written by TDG.MR.REPORT.

/// Size of TDREPORT_STRUCT.
pub const TDREPORT_LEN: usize = 1024;
/// REPORTTYPE.TYPE of a TDX report.
pub const REPORT_TYPE_TDX: u8 = 0x81;
/// REPORTMACSTRUCT.REPORTDATA.
pub const REPORTDATA_OFFSET: usize = 128;
/// TDINFO_STRUCT.ATTRIBUTES.
pub const ATTRIBUTES_OFFSET: usize = 512;
/// TDINFO_STRUCT.MRTD.
pub const MRTD_OFFSET: usize = 528;
/// TDINFO_STRUCT.RTMR[0]; RTMR[i] at + 48·i.
pub const RTMR_OFFSET: usize = 720;

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
pub struct TdReport<'a>(&'a [u8]);

impl<'a> TdReport<'a> {
    /// Checks size and REPORTTYPE.
    pub fn parse(b: &'a [u8]) -> Result<Self, TdReportError> {
        if b.len() != TDREPORT_LEN {
            return Err(TdReportError::Size(b.len()));
        }
        if b[0] != REPORT_TYPE_TDX {
            return Err(TdReportError::Type(b[0]));
        }
        Ok(Self(b))
    }

    fn arr<const N: usize>(&self, o: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.0[o..o + N]);
        a
    }

    /// REPORTDATA.
    pub fn report_data(&self) -> [u8; 64] {
        self.arr(REPORTDATA_OFFSET)
    }

    /// TD ATTRIBUTES (bit 0: DEBUG).
    pub fn attributes(&self) -> u64 {
        u64::from_le_bytes(self.arr(ATTRIBUTES_OFFSET))
    }

    /// MRTD.
    pub fn mrtd(&self) -> [u8; 48] {
        self.arr(MRTD_OFFSET)
    }

    /// RTMR[i], i < 4.
    pub fn rtmr(&self, i: usize) -> Option<[u8; 48]> {
        (i < 4).then(|| self.arr(RTMR_OFFSET + 48 * i))
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
