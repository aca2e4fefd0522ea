//! Strict parser of an NVIDIA GPU attestation report: the SPDM 1.1 GET_MEASUREMENTS request
//! followed by the signed MEASUREMENTS response, as NVML's
//! `nvmlDeviceGetConfComputeGpuAttestationReport` returns it (and as NVIDIA's samples store it,
//! in hex).
//!
//! Layouts are DMTF DSP0274 (SPDM) 1.1, §10.11 (GET_MEASUREMENTS request and MEASUREMENTS
//! response): the tables of the request, the response, the measurement block and the DMTF
//! measurement field (named, not numbered). The opaque data is NVIDIA's list of little-endian
//! `type: u16, size: u16, value` entries; the type codes and value encodings below are those of
//! NVIDIA/nvtrust's local GPU verifier (`verifier/attestation/spdm_msrt_resp_msg.py`,
//! `OpaqueData.OPAQUE_DATA_TYPES`; `verifier/utils/__init__.py`, `format_vbios_version`).
//!
//! Every length and count is checked against the bytes that are there: the record must hold
//! exactly `NumberOfBlocks` blocks, each block exactly its DMTF measurement, the opaque list
//! exactly its entries, and the signature must be the last 96 bytes. Nothing here panics on any
//! input; the input is bounded by [`MAX_REPORT_LEN`].

use thiserror::Error;

/// SPDM version 1.1 (DSP0274 §10.11: `SPDMVersion` = 0x11), the version Hopper speaks.
pub const SPDM_VERSION_11: u8 = 0x11;
/// `RequestResponseCode` of GET_MEASUREMENTS (DSP0274 1.1 §10.1).
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// `RequestResponseCode` of MEASUREMENTS (DSP0274 1.1 §10.2).
pub const MEASUREMENTS: u8 = 0x60;
/// GET_MEASUREMENTS with a signature requested: 4 header bytes, 32-byte nonce, `SlotIDParam`.
pub const REQUEST_LEN: usize = 37;
/// ECDSA P-384 signature, raw `r || s` (DSP0274 1.1 §10.11: `Signature`, `SigLen` bytes;
/// NVIDIA's Hopper settings: `signature_length = 96`).
pub const SIGNATURE_LEN: usize = 96;
/// Largest report accepted: NVML's attestation-report buffer
/// (`NVML_CC_GPU_ATTESTATION_REPORT_SIZE`, 8 KiB).
pub const MAX_REPORT_LEN: usize = 0x2000;
/// `OpaqueLength` shall not exceed 1024 (DSP0274 1.1 §10.11, MEASUREMENTS; libspdm's
/// `SPDM_MAX_OPAQUE_DATA_SIZE`).
pub const MAX_OPAQUE_LEN: usize = 1024;
/// `MeasurementSpecification` bit 0: the DMTF measurement format (DSP0274 1.1 §10.11).
pub const MEAS_SPEC_DMTF: u8 = 0x01;
/// Param2 of GET_MEASUREMENTS: "all measurement blocks" (DSP0274 1.1 §10.11).
pub const ALL_MEASUREMENTS: u8 = 0xFF;
/// Param1 bit 0 of GET_MEASUREMENTS: signature requested (DSP0274 1.1 §10.11).
pub const SIGNATURE_REQUESTED: u8 = 0x01;

/// NVIDIA opaque-data type codes (nvtrust `OpaqueData.OPAQUE_DATA_TYPES`).
pub mod opaque_type {
    /// ASCII, NUL-terminated driver version, e.g. `545.00`.
    pub const DRIVER_VERSION: u16 = 3;
    /// GPU information (8 bytes on Hopper).
    pub const GPU_INFO: u16 = 4;
    /// VBIOS version, 8 bytes, shown as `xx.xx.xx.xx.xx`.
    pub const VBIOS_VERSION: u16 = 6;
    /// NVDEC0 status: 0xAA enabled, 0x55 disabled (nvtrust `NVDEC_STATUS`).
    pub const NVDEC0_STATUS: u16 = 11;
    /// Per-index measurement counts, little-endian u32 each.
    pub const MSRSCNT: u16 = 12;
    /// Board id.
    pub const BOARD_ID: u16 = 14;
    /// Chip SKU (ASCII), part of the VBIOS RIM's name.
    pub const CHIP_SKU: u16 = 15;
    /// Project (ASCII), part of the VBIOS RIM's name.
    pub const PROJECT: u16 = 17;
    /// Project SKU (ASCII), part of the VBIOS RIM's name.
    pub const PROJECT_SKU: u16 = 18;
    /// Firmware id: compared with the attestation-key certificate's FWID extension.
    pub const FWID: u16 = 20;
    /// Protected PCIe status.
    pub const PROTECTED_PCIE_STATUS: u16 = 21;
    /// Version of the opaque-data layout (absent on the older Hopper firmware: version 0).
    pub const OPAQUE_DATA_VERSION: u16 = 34;
    /// Chip name (Blackwell and later).
    pub const CHIP_INFO: u16 = 35;
    /// Feature flag: 0 SPT (single GPU passthrough), 1 MPT (multi GPU passthrough), 2 PPCIE.
    pub const FEATURE_FLAG: u16 = 36;
}

/// Why a report is not a well-formed GET_MEASUREMENTS request + MEASUREMENTS response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpdmError {
    /// The input is larger than any report NVML returns.
    #[error("report of {0} bytes exceeds the {MAX_REPORT_LEN}-byte maximum")]
    TooLarge(usize),
    /// The hex text has a character that is not a hex digit at this offset.
    #[error("hex text: byte {0} is not a hex digit")]
    BadHex(usize),
    /// The hex text has an odd number of digits.
    #[error("hex text: odd number of digits")]
    OddHex,
    /// A field runs past the end of the data.
    #[error("{field}: needs {need} bytes at offset {at}, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Its offset in the report.
        at: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A field has a value this verifier does not accept.
    #[error("{field}: {found:#04x}, expected {expected}")]
    Unexpected {
        /// The field.
        field: &'static str,
        /// What was found.
        found: u32,
        /// What is accepted.
        expected: &'static str,
    },
    /// The response does not speak the request's SPDM version.
    #[error("response SPDM version {response:#04x} differs from the request's {request:#04x}")]
    VersionMismatch {
        /// Request `SPDMVersion`.
        request: u8,
        /// Response `SPDMVersion`.
        response: u8,
    },
    /// `NumberOfBlocks` is zero.
    #[error("the response has no measurement blocks")]
    NoBlocks,
    /// A measurement block's sizes disagree.
    #[error("measurement block {index}: MeasurementSize {size} != 3 + DMTF value size {value}")]
    BlockSize {
        /// Block index.
        index: u8,
        /// Its `MeasurementSize`.
        size: u16,
        /// Its `DMTFSpecMeasurementValueSize`.
        value: u16,
    },
    /// Two blocks share an index, or an index is reserved.
    #[error("measurement block index {0}: {1}")]
    BlockIndex(u8, &'static str),
    /// The measurement record holds bytes after its last block.
    #[error("measurement record: {0} bytes after block {1}")]
    RecordTrailing(usize, u8),
    /// `OpaqueLength` above the spec's maximum.
    #[error("OpaqueLength {0} exceeds {MAX_OPAQUE_LEN} (DSP0274 1.1 §10.11)")]
    OpaqueTooLong(usize),
    /// An opaque-data entry is malformed.
    #[error("opaque data type {kind}: {reason}")]
    Opaque {
        /// Its type code.
        kind: u16,
        /// What is wrong.
        reason: String,
    },
    /// Bytes follow the signature, or the signature is not 96 bytes.
    #[error("{0} bytes left for the signature, which has {SIGNATURE_LEN}")]
    SignatureLength(usize),
}

/// The GET_MEASUREMENTS request (DSP0274 1.1 §10.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdmRequest {
    /// `SPDMVersion`.
    pub version: u8,
    /// Param1: request attributes (bit 0: signature requested).
    pub attributes: u8,
    /// Param2: measurement operation (0xFF: all blocks).
    pub operation: u8,
    /// The requester's nonce: the one the verifier chose (pupa: [`super::gpu_nonce`]).
    pub nonce: [u8; 32],
    /// `SlotIDParam`: the certificate slot whose key signs (bits 3:0).
    pub slot_id: u8,
}

/// One measurement block in the DMTF format (DSP0274 1.1 §10.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// `Index` (1..=0xFE).
    pub index: u8,
    /// `MeasurementSpecification` (always [`MEAS_SPEC_DMTF`] here).
    pub spec: u8,
    /// `DMTFSpecMeasurementValueType`: bits 6:0 the kind, bit 7 raw bit stream (not a digest).
    pub value_type: u8,
    /// `DMTFSpecMeasurementValue`.
    pub value: Vec<u8>,
}

/// One entry of NVIDIA's opaque data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueField {
    /// Type code (see [`opaque_type`]).
    pub kind: u16,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// The MEASUREMENTS response (DSP0274 1.1 §10.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdmResponse {
    /// `SPDMVersion`.
    pub version: u8,
    /// Param1 (reserved when all blocks were requested).
    pub param1: u8,
    /// Param2 (reserved in 1.1).
    pub param2: u8,
    /// The measurement blocks, in the order sent.
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce (chosen by the GPU; the freshness check uses the request's).
    pub nonce: [u8; 32],
    /// The opaque data entries, in the order sent.
    pub opaque: Vec<OpaqueField>,
    /// ECDSA P-384 signature, `r || s`, big-endian.
    pub signature: [u8; SIGNATURE_LEN],
}

/// A parsed attestation report: request, response and the bytes the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuReport {
    /// The GET_MEASUREMENTS request.
    pub request: SpdmRequest,
    /// The MEASUREMENTS response.
    pub response: SpdmResponse,
    raw: Vec<u8>,
}

impl GpuReport {
    /// The signed message: request || response without its signature (DSP0274 1.1 §10.11:
    /// the signature covers L1/L2, the concatenation of the GET_MEASUREMENTS request and the
    /// MEASUREMENTS response up to the signature; nvtrust `AttestationReport.concatenate`).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..self.raw.len() - SIGNATURE_LEN]
    }

    /// The report's binary bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The value of opaque entry `kind`, if present.
    pub fn opaque(&self, kind: u16) -> Option<&[u8]> {
        self.response
            .opaque
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.value.as_slice())
    }

    /// The driver version (opaque type 3), without its NUL terminator.
    pub fn driver_version(&self) -> Option<String> {
        self.opaque(opaque_type::DRIVER_VERSION).map(ascii_field)
    }

    /// The VBIOS version (opaque type 6) as NVIDIA writes it, e.g. `96.00.5e.00.01`.
    pub fn vbios_version(&self) -> Option<String> {
        self.opaque(opaque_type::VBIOS_VERSION)
            .and_then(vbios_string)
    }

    /// The opaque-data layout version (type 34); 0 when absent, as nvtrust assumes.
    pub fn opaque_data_version(&self) -> u32 {
        self.opaque(opaque_type::OPAQUE_DATA_VERSION)
            .and_then(le_uint)
            .unwrap_or(0)
    }

    /// The feature flag (type 36): 0 SPT, 1 MPT, 2 PPCIE; `None` if absent.
    pub fn feature_flag(&self) -> Option<u32> {
        self.opaque(opaque_type::FEATURE_FLAG).and_then(le_uint)
    }

    /// NVDEC0 status (type 11): 0xAA enabled, 0x55 disabled.
    pub fn nvdec0_status(&self) -> Option<u8> {
        match self.opaque(opaque_type::NVDEC0_STATUS) {
            Some([b]) => Some(*b),
            _ => None,
        }
    }

    /// The firmware id (type 20), present on newer firmware.
    pub fn fwid(&self) -> Option<&[u8]> {
        self.opaque(opaque_type::FWID)
    }

    /// The measurement counts (type 12), one little-endian u32 per index.
    pub fn measurement_counts(&self) -> Option<Vec<u32>> {
        self.opaque(opaque_type::MSRSCNT).map(|v| {
            v.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
}

/// ASCII text up to its first NUL (lossy for anything else).
fn ascii_field(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// A little-endian unsigned integer of 1 to 4 bytes.
fn le_uint(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 4 {
        return None;
    }
    Some(
        v.iter()
            .rev()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)),
    )
}

/// NVIDIA's VBIOS version rendering (nvtrust `format_vbios_version`): of the 8 little-endian
/// bytes `b0..b7`, the dotted hex of `b3 b2 b1 b0 b4` (`00 5e 00 96 01 …` → `96.00.5e.00.01`).
fn vbios_string(v: &[u8]) -> Option<String> {
    let b: &[u8; 8] = v.try_into().ok()?;
    let parts = [b[3], b[2], b[1], b[0], b[4]].map(|x| format!("{x:02x}"));
    Some(parts.join("."))
}

/// Decodes the report: hex text (as in NVIDIA's sample files; surrounding ASCII whitespace
/// ignored) or the binary report as NVML returns it (it starts with 0x11, never a hex digit).
pub fn decode(input: &[u8]) -> Result<Vec<u8>, SpdmError> {
    if input.first() == Some(&SPDM_VERSION_11) {
        if input.len() > MAX_REPORT_LEN {
            return Err(SpdmError::TooLarge(input.len()));
        }
        return Ok(input.to_vec());
    }
    let text = input.trim_ascii();
    if text.len() > 2 * MAX_REPORT_LEN {
        return Err(SpdmError::TooLarge(text.len() / 2));
    }
    if !text.len().is_multiple_of(2) {
        return Err(SpdmError::OddHex);
    }
    let digit = |i: usize| -> Result<u8, SpdmError> {
        match text[i] {
            c @ b'0'..=b'9' => Ok(c - b'0'),
            c @ b'a'..=b'f' => Ok(c - b'a' + 10),
            c @ b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(SpdmError::BadHex(i)),
        }
    };
    (0..text.len() / 2)
        .map(|i| Ok(digit(2 * i)? << 4 | digit(2 * i + 1)?))
        .collect()
}

/// A bounds-checked cursor over the report.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, need: usize, field: &'static str) -> Result<&'a [u8], SpdmError> {
        let have = self.buf.len() - self.pos;
        if need > have {
            return Err(SpdmError::Truncated {
                field,
                at: self.pos,
                need,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + need];
        self.pos += need;
        Ok(s)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, SpdmError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, SpdmError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u24(&mut self, field: &'static str) -> Result<usize, SpdmError> {
        let b = self.take(3, field)?;
        Ok(usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16)
    }

    fn array32(&mut self, field: &'static str) -> Result<[u8; 32], SpdmError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, field)?);
        Ok(a)
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
}

fn expect(
    field: &'static str,
    found: u8,
    want: u8,
    expected: &'static str,
) -> Result<(), SpdmError> {
    if found == want {
        Ok(())
    } else {
        Err(SpdmError::Unexpected {
            field,
            found: found.into(),
            expected,
        })
    }
}

/// Parses a report given as hex text or binary ([`decode`]), then [`parse`].
pub fn parse_report(input: &[u8]) -> Result<GpuReport, SpdmError> {
    parse(decode(input)?)
}

/// Parses the binary report: request, response, exact length.
pub fn parse(raw: Vec<u8>) -> Result<GpuReport, SpdmError> {
    if raw.len() > MAX_REPORT_LEN {
        return Err(SpdmError::TooLarge(raw.len()));
    }
    let mut c = Cursor { buf: &raw, pos: 0 };
    let request = parse_request(&mut c)?;
    let response = parse_response(&mut c, request.version)?;
    Ok(GpuReport {
        request,
        response,
        raw,
    })
}

/// GET_MEASUREMENTS (DSP0274 1.1 §10.11, request and attributes). pupa asks for every block with a
/// signature, from a slot 0..=7, as NVIDIA's driver does; anything else is refused.
fn parse_request(c: &mut Cursor<'_>) -> Result<SpdmRequest, SpdmError> {
    let version = c.u8("request SPDMVersion")?;
    expect(
        "request SPDMVersion",
        version,
        SPDM_VERSION_11,
        "0x11 (SPDM 1.1)",
    )?;
    let code = c.u8("request RequestResponseCode")?;
    expect(
        "request RequestResponseCode",
        code,
        GET_MEASUREMENTS,
        "0xe0 (GET_MEASUREMENTS)",
    )?;
    let attributes = c.u8("request Param1")?;
    expect(
        "request Param1",
        attributes,
        SIGNATURE_REQUESTED,
        "0x01 (signature requested)",
    )?;
    let operation = c.u8("request Param2")?;
    expect(
        "request Param2",
        operation,
        ALL_MEASUREMENTS,
        "0xff (all measurement blocks)",
    )?;
    let nonce = c.array32("request Nonce")?;
    let slot_id = c.u8("request SlotIDParam")?;
    if slot_id > 7 {
        return Err(SpdmError::Unexpected {
            field: "request SlotIDParam",
            found: slot_id.into(),
            expected: "a slot 0..=7, reserved bits clear",
        });
    }
    Ok(SpdmRequest {
        version,
        attributes,
        operation,
        nonce,
        slot_id,
    })
}

/// MEASUREMENTS (DSP0274 1.1 §10.11): header, record of exactly `NumberOfBlocks`
/// blocks in `MeasurementRecordLength` bytes, nonce, opaque data, and the signature as the
/// last [`SIGNATURE_LEN`] bytes.
fn parse_response(c: &mut Cursor<'_>, req_version: u8) -> Result<SpdmResponse, SpdmError> {
    let version = c.u8("response SPDMVersion")?;
    if version != req_version {
        return Err(SpdmError::VersionMismatch {
            request: req_version,
            response: version,
        });
    }
    let code = c.u8("response RequestResponseCode")?;
    expect(
        "response RequestResponseCode",
        code,
        MEASUREMENTS,
        "0x60 (MEASUREMENTS)",
    )?;
    let param1 = c.u8("response Param1")?;
    let param2 = c.u8("response Param2")?;
    let count = c.u8("response NumberOfBlocks")?;
    if count == 0 {
        return Err(SpdmError::NoBlocks);
    }
    let record_len = c.u24("response MeasurementRecordLength")?;
    let record = c.take(record_len, "response MeasurementRecord")?;
    let blocks = parse_record(record, count)?;
    let nonce = c.array32("response Nonce")?;
    let opaque_len = usize::from(c.u16("response OpaqueLength")?);
    if opaque_len > MAX_OPAQUE_LEN {
        return Err(SpdmError::OpaqueTooLong(opaque_len));
    }
    let opaque = parse_opaque(c.take(opaque_len, "response OpaqueData")?)?;
    if c.left() != SIGNATURE_LEN {
        return Err(SpdmError::SignatureLength(c.left()));
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(c.take(SIGNATURE_LEN, "response Signature")?);
    Ok(SpdmResponse {
        version,
        param1,
        param2,
        blocks,
        nonce,
        opaque,
        signature,
    })
}

/// The measurement record: `count` blocks (DSP0274 1.1 §10.11), each a DMTF measurement
/// whose `MeasurementSize` is exactly 3 + its value size; indices unique and in
/// 1..=0xFE (0 and 0xFF are operations, not block indices in GET_MEASUREMENTS); no trailing bytes.
fn parse_record(record: &[u8], count: u8) -> Result<Vec<MeasurementBlock>, SpdmError> {
    let mut c = Cursor {
        buf: record,
        pos: 0,
    };
    let mut seen = [false; 256];
    let mut blocks = Vec::with_capacity(count.into());
    for _ in 0..count {
        let index = c.u8("measurement block Index")?;
        if index == 0 || index == 0xFF {
            return Err(SpdmError::BlockIndex(index, "reserved"));
        }
        if std::mem::replace(&mut seen[usize::from(index)], true) {
            return Err(SpdmError::BlockIndex(index, "appears twice"));
        }
        let spec = c.u8("measurement block MeasurementSpecification")?;
        expect(
            "MeasurementSpecification",
            spec,
            MEAS_SPEC_DMTF,
            "0x01 (DMTF)",
        )?;
        let size = c.u16("measurement block MeasurementSize")?;
        let value_type = c.u8("DMTFSpecMeasurementValueType")?;
        let value_size = c.u16("DMTFSpecMeasurementValueSize")?;
        if u32::from(size) != 3 + u32::from(value_size) {
            return Err(SpdmError::BlockSize {
                index,
                size,
                value: value_size,
            });
        }
        let value = c
            .take(value_size.into(), "DMTFSpecMeasurementValue")?
            .to_vec();
        blocks.push(MeasurementBlock {
            index,
            spec,
            value_type,
            value,
        });
    }
    if c.left() != 0 {
        let last = blocks.last().map_or(0, |b| b.index);
        return Err(SpdmError::RecordTrailing(c.left(), last));
    }
    Ok(blocks)
}

/// NVIDIA's opaque data: `type u16 LE, size u16 LE, value` entries filling the field exactly.
/// A type may appear once; the entries nvtrust decodes are checked for their encoding
/// ([`check_opaque_value`]); others are kept as bytes.
fn parse_opaque(data: &[u8]) -> Result<Vec<OpaqueField>, SpdmError> {
    let mut c = Cursor { buf: data, pos: 0 };
    let mut fields: Vec<OpaqueField> = Vec::new();
    while c.left() > 0 {
        let kind = c.u16("opaque data type")?;
        let size = c.u16("opaque data size")?;
        let value = c.take(size.into(), "opaque data value")?;
        if fields.iter().any(|f| f.kind == kind) {
            return Err(SpdmError::Opaque {
                kind,
                reason: "appears twice".into(),
            });
        }
        check_opaque_value(kind, value).map_err(|reason| SpdmError::Opaque { kind, reason })?;
        fields.push(OpaqueField {
            kind,
            value: value.to_vec(),
        });
    }
    Ok(fields)
}

/// The encodings nvtrust relies on: versions as text / 8 bytes, counts as u32s, one-byte
/// statuses, integers of 1..=4 bytes.
fn check_opaque_value(kind: u16, v: &[u8]) -> Result<(), String> {
    use opaque_type as t;
    match kind {
        t::DRIVER_VERSION => {
            let text = &v[..v.iter().position(|&b| b == 0).unwrap_or(v.len())];
            if text.is_empty() || !text.iter().all(|b| b.is_ascii_graphic()) {
                return Err("driver version is not printable ASCII".into());
            }
        }
        t::VBIOS_VERSION if v.len() != 8 => {
            return Err(format!("VBIOS version has {} bytes, not 8", v.len()))
        }
        t::MSRSCNT if !v.len().is_multiple_of(4) => {
            return Err(format!("{} bytes of u32 counts", v.len()))
        }
        t::NVDEC0_STATUS | t::PROTECTED_PCIE_STATUS if v.len() != 1 => {
            return Err(format!("status of {} bytes, not 1", v.len()))
        }
        t::OPAQUE_DATA_VERSION | t::FEATURE_FLAG if le_uint(v).is_none() => {
            return Err(format!("integer of {} bytes", v.len()))
        }
        _ => {}
    }
    Ok(())
}
