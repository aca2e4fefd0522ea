//! The GetQuote shared buffer (GHCI spec 1.5, §3.3 TDG.VP.VMCALL<GetQuote>, Table 3-10):
//! `VERSION u64 (1) | STATUS u64 | IN_LEN u32 | OUT_LEN u32 | DATA`. The guest writes its
//! TDREPORT as DATA with STATUS 0; the host's quote service replaces DATA with the quote and sets
//! STATUS and OUT_LEN. The buffer is shared memory: everything in it is untrusted. The header's
//! layout is [`pupa_spec::tdx::get_quote::GetQuoteHeader`].

use pupa_spec::tdx::get_quote::{self as spec, GetQuoteHeader};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::report::TDREPORT_LEN;

/// Header size.
pub const HEADER_LEN: usize = spec::HEADER_LEN;
/// STATUS: success.
pub const STATUS_SUCCESS: u64 = spec::STATUS_SUCCESS;
/// STATUS: the request is still being processed.
pub const STATUS_IN_FLIGHT: u64 = spec::STATUS_IN_FLIGHT;

/// Why a GetQuote buffer is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuoteBufError {
    /// Buffer too small for header + TDREPORT.
    #[error("GetQuote buffer of {0} bytes is too small")]
    TooSmall(usize),
    /// The host's reply has a wrong version.
    #[error("GetQuote buffer version {0}, want 1")]
    Version(u64),
    /// The quote service is still working.
    #[error("GetQuote still in flight")]
    InFlight,
    /// The quote service failed (STATUS, e.g. 0x8000000000000000 error, ...01 unavailable).
    #[error("GetQuote failed with status {0:#x}")]
    Status(u64),
    /// OUT_LEN is zero or points past the buffer.
    #[error("GetQuote OUT_LEN {0} does not fit the buffer")]
    OutLen(u32),
}

/// Writes the request (header + TDREPORT) into the shared buffer.
pub fn write_request(td_report: &[u8; TDREPORT_LEN], buf: &mut [u8]) -> Result<(), QuoteBufError> {
    if buf.len() < HEADER_LEN + TDREPORT_LEN {
        return Err(QuoteBufError::TooSmall(buf.len()));
    }
    buf.fill(0);
    let mut h = GetQuoteHeader::new_zeroed();
    h.version.set(spec::VERSION);
    h.in_len.set(TDREPORT_LEN as u32);
    buf[..HEADER_LEN].copy_from_slice(h.as_bytes());
    buf[HEADER_LEN..HEADER_LEN + TDREPORT_LEN].copy_from_slice(td_report);
    Ok(())
}

/// Checks the reply header (VERSION, STATUS) and returns OUT_LEN (not yet checked against
/// any buffer). The firmware reads the header out of shared memory into a private copy first.
pub fn parse_header(hdr: &[u8; HEADER_LEN]) -> Result<u32, QuoteBufError> {
    let h = GetQuoteHeader::ref_from_bytes(hdr).map_err(|_| QuoteBufError::TooSmall(hdr.len()))?;
    let version = h.version.get();
    if version != spec::VERSION {
        return Err(QuoteBufError::Version(version));
    }
    match h.status.get() {
        STATUS_SUCCESS => {}
        STATUS_IN_FLIGHT => return Err(QuoteBufError::InFlight),
        s => return Err(QuoteBufError::Status(s)),
    }
    Ok(h.out_len.get())
}

/// Reads the host's reply: the quote bytes (to be copied out of shared memory before use).
pub fn read_response(buf: &[u8]) -> Result<&[u8], QuoteBufError> {
    let hdr: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(QuoteBufError::TooSmall(buf.len()))?;
    let out_len = parse_header(hdr)?;
    let end = HEADER_LEN
        .checked_add(out_len as usize)
        .filter(|&e| out_len > 0 && e <= buf.len());
    let end = end.ok_or(QuoteBufError::OutLen(out_len))?;
    Ok(&buf[HEADER_LEN..end])
}

#[cfg(test)]
mod tests {
    use super::super::report::{shared_bit, TdReport, TdReportError};
    use super::*;

    /// A real TDX quote v4 (Phala-Network/dcap-qvl sample/, see measurements/testdata/evidence/SOURCE).
    const QUOTE: &[u8] = include_bytes!("../../../measurements/testdata/evidence/tdx_quote");

    fn td_report() -> [u8; TDREPORT_LEN] {
        let mut r = [0u8; TDREPORT_LEN];
        r[0] = 0x81;
        r[128..192].fill(0xDA); // REPORTDATA
        r[512] = 1; // ATTRIBUTES.DEBUG
        r[528..576].fill(0x3D); // MRTD
        r[720 + 48 * 3..720 + 48 * 4].fill(0x33); // RTMR3
        r
    }

    #[test]
    fn request_then_host_reply_with_real_quote() {
        let mut buf = vec![0u8; 8192];
        write_request(&td_report(), &mut buf).unwrap();
        assert_eq!(buf[0..8], 1u64.to_le_bytes());
        assert_eq!(buf[16..20], 1024u32.to_le_bytes());
        assert_eq!(buf[24..1048], td_report());
        // What the host's quote service does.
        buf[8..16].fill(0);
        buf[20..24].copy_from_slice(&(QUOTE.len() as u32).to_le_bytes());
        buf[24..24 + QUOTE.len()].copy_from_slice(QUOTE);
        let q = read_response(&buf).unwrap();
        assert_eq!(q, QUOTE);
        // The quote's TD report body starts at 48 with version 4 / TEE type 0x81 in the header.
        assert_eq!(q[0..2], [4, 0]);
        assert_eq!(q[4], 0x81);
    }

    #[test]
    fn bad_replies_are_rejected() {
        let mut buf = vec![0u8; 2048];
        assert_eq!(
            write_request(&td_report(), &mut buf[..100]),
            Err(QuoteBufError::TooSmall(100))
        );
        write_request(&td_report(), &mut buf).unwrap();
        buf[20..24].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(read_response(&buf), Err(QuoteBufError::OutLen(4096)));
        buf[20..24].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(read_response(&buf), Err(QuoteBufError::OutLen(0)));
        buf[8..16].copy_from_slice(&STATUS_IN_FLIGHT.to_le_bytes());
        assert_eq!(read_response(&buf), Err(QuoteBufError::InFlight));
        buf[8..16].copy_from_slice(&0x8000_0000_0000_0001u64.to_le_bytes());
        assert_eq!(
            read_response(&buf),
            Err(QuoteBufError::Status(0x8000_0000_0000_0001))
        );
        buf[0] = 2;
        assert_eq!(read_response(&buf), Err(QuoteBufError::Version(2)));
        assert_eq!(read_response(&buf[..10]), Err(QuoteBufError::TooSmall(10)));
    }

    #[test]
    fn td_report_fields_and_shared_bit() {
        let r = td_report();
        let v = TdReport::parse(&r).unwrap();
        assert_eq!(v.report_data(), [0xDA; 64]);
        assert_eq!(v.attributes() & 1, 1);
        assert_eq!(v.mrtd(), [0x3D; 48]);
        assert_eq!(v.rtmr(3), Some([0x33; 48]));
        assert_eq!(v.rtmr(0), Some([0; 48]));
        assert_eq!(v.rtmr(4), None);
        assert_eq!(
            TdReport::parse(&r[..1000]).unwrap_err(),
            TdReportError::Size(1000)
        );
        let mut bad = r;
        bad[0] = 0;
        assert_eq!(TdReport::parse(&bad).unwrap_err(), TdReportError::Type(0));
        assert_eq!(shared_bit(48), Some(1 << 47));
        assert_eq!(shared_bit(0x40 | 52), Some(1 << 51));
        assert_eq!(shared_bit(39), None);
    }
}
