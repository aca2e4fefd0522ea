//! AMD SEV-SNP attestation report verification (SEV-SNP Firmware ABI spec 56860, §7.3 Table 23
//! "ATTESTATION_REPORT structure"; VCEK spec 57230 §3 for the certificate extensions).
//!
//! The report's layout is [`pupa_spec::snp::AttestationReport`], the type the firmware uses;
//! virtee's `AttestationReport` is used only to decode the TCB_VERSION fields, whose byte
//! layout depends on the processor generation.
//!
//! - the report is 1184 bytes (version 2 and later); its ECDSA P-384/SHA-384 signature covers
//!   bytes [0, 0x2A0) and sits at 0x2A0 as R and S, each 72 bytes little-endian (§7.3, Table 139
//!   "ECDSA signature format");
//! - the VCEK chains VCEK ← ASK ← ARK with RSA-PSS SHA-384; ARK and ASK of Milan, Genoa and Turin
//!   are pinned in this binary (`roots/`), the ARK is never taken from the input;
//! - the VCEK must be valid (notBefore ≤ now ≤ notAfter) at the verification time;
//! - the VCEK's extensions state the chip (hwID, 64 bytes) and the TCB (bl/tee/snp/ucode SPL) it
//!   was derived for: they must equal the report's CHIP_ID and REPORTED_TCB.

use core::mem::offset_of;

use p384::ecdsa::signature::Verifier as _;
use pupa_spec::snp::report as spec_report;
use pupa_spec::snp::AttestationReport as Layout;
use sev::certs::snp::{ca, Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use x509_cert::der::Decode;
use zerocopy::FromBytes;

use super::policy::{Policy, SnpMinTcb};
use super::{TeeKind, Verdict, VerifyError};
use crate::hexfmt;

/// Size of an attestation report (versions 2 to 5).
pub const REPORT_LEN: usize = spec_report::REPORT_LEN;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = spec_report::SIGNED_LEN;
/// Offset of the signature (R, then S at +0x48).
pub const SIGNATURE_OFFSET: usize = offset_of!(Layout, signature);
/// Offset of the POLICY field.
pub const POLICY_OFFSET: usize = offset_of!(Layout, policy);
/// POLICY bit 19: DEBUG allowed.
pub const POLICY_DEBUG_BIT: u64 = spec_report::POLICY_DEBUG;
/// POLICY bit 18: MIGRATE_MA allowed.
pub const POLICY_MIGRATE_MA_BIT: u64 = spec_report::POLICY_MIGRATE_MA;

/// A pinned AMD root: the product's ARK and ASK certificates (PEM).
#[derive(Debug, Clone, Copy)]
pub struct AmdRoots {
    /// Product name as in the KDS URL (`Milan`, `Genoa`, `Turin`).
    pub product: &'static str,
    /// ARK certificate, PEM.
    pub ark_pem: &'static [u8],
    /// ASK certificate, PEM.
    pub ask_pem: &'static [u8],
}

/// The AMD roots pinned in this binary (see `roots/SOURCE`).
pub const PINNED_ROOTS: [AmdRoots; 3] = [
    AmdRoots {
        product: "Milan",
        ark_pem: include_bytes!("roots/milan_ark.pem"),
        ask_pem: include_bytes!("roots/milan_ask.pem"),
    },
    AmdRoots {
        product: "Genoa",
        ark_pem: include_bytes!("roots/genoa_ark.pem"),
        ask_pem: include_bytes!("roots/genoa_ask.pem"),
    },
    AmdRoots {
        product: "Turin",
        ark_pem: include_bytes!("roots/turin_ark.pem"),
        ask_pem: include_bytes!("roots/turin_ask.pem"),
    },
];

/// Reads a report file: 1184 raw bytes, or the same as hex text (whitespace ignored).
pub fn load_report(file: &[u8]) -> Result<Vec<u8>, VerifyError> {
    if file.len() != REPORT_LEN
        && !file.is_empty()
        && file
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
    {
        let text: String = file
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|&b| b as char)
            .collect();
        return hexfmt::decode(&text)
            .map_err(|e| VerifyError::SnpReport(format!("hex report: {e}")));
    }
    Ok(file.to_vec())
}

/// Parses a raw report (exactly [`REPORT_LEN`] bytes, version ≥ 2).
pub fn parse_report(raw: &[u8]) -> Result<AttestationReport, VerifyError> {
    let version = layout(raw)?.version.get();
    if version < 2 {
        return Err(VerifyError::SnpReport(format!(
            "version {version}, want 2 or later"
        )));
    }
    AttestationReport::from_bytes(raw).map_err(|e| VerifyError::SnpReport(e.to_string()))
}

/// The report as its spec layout (exactly [`REPORT_LEN`] bytes).
fn layout(raw: &[u8]) -> Result<&Layout, VerifyError> {
    Layout::ref_from_bytes(raw).map_err(|_| {
        VerifyError::SnpReport(format!(
            "{} bytes, an attestation report has {REPORT_LEN}",
            raw.len()
        ))
    })
}

/// Parses a VCEK certificate, DER or PEM.
pub fn parse_vcek(file: &[u8]) -> Result<Certificate, VerifyError> {
    let r = if file.starts_with(b"-----BEGIN") {
        Certificate::from_pem(file)
    } else {
        Certificate::from_der(file)
    };
    r.map_err(|e| VerifyError::Vcek(e.to_string()))
}

/// Verifies a report against the pinned AMD roots and `policy`, at `now_secs` (Unix seconds).
pub fn verify(
    report: &[u8],
    vcek: Option<&[u8]>,
    now_secs: u64,
    policy: &Policy,
) -> Result<Verdict, VerifyError> {
    verify_with_roots(report, vcek, now_secs, policy, &PINNED_ROOTS)
}

/// Verifies a report against the given roots (tests use this to pin a different root).
pub fn verify_with_roots(
    raw: &[u8],
    vcek: Option<&[u8]>,
    now_secs: u64,
    policy: &Policy,
    roots: &[AmdRoots],
) -> Result<Verdict, VerifyError> {
    let report = parse_report(raw)?;
    let fields = layout(raw)?;
    let vcek = vcek.map(parse_vcek).transpose()?;
    let mut v = Verdict::new(TeeKind::Snp);

    let signing_key = fields.signing_key();
    let sig_algo = fields.signature_algo.get();
    v.check_result(
        "report format",
        if sig_algo != spec_report::SIG_ALGO_ECDSA_P384_SHA384 {
            Err(format!("signature algorithm {sig_algo} (want 1 = ECDSA P-384 with SHA-384)"))
        } else if signing_key != 0 {
            Err(format!("signed by key {signing_key} (1 = VLEK, 7 = none); only VCEK-signed reports are supported"))
        } else {
            Ok(format!("version {}, ECDSA P-384/SHA-384, signed by the VCEK", fields.version.get()))
        },
    );

    match &vcek {
        None => {
            let why = format!(
                "no VCEK given (--vcek FILE; AMD KDS: /vcek/v1/{{product}}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={})",
                hexfmt::encode(&fields.chip_id),
                report.reported_tcb.bootloader,
                report.reported_tcb.tee,
                report.reported_tcb.snp,
                report.reported_tcb.microcode
            );
            v.check("VCEK chain", false, why.clone());
            v.check("VCEK validity", false, why.clone());
            v.check("report signature", false, why.clone());
            v.check("VCEK matches chip and TCB", false, why);
        }
        Some(vcek) => {
            v.check_result("VCEK chain", check_chain(vcek, roots));
            v.check_result("VCEK validity", check_validity(vcek, now_secs));
            v.check_result("report signature", check_signature(fields, vcek));
            v.check_result(
                "VCEK matches chip and TCB",
                check_vcek_binding(fields, &report, vcek),
            );
        }
    }

    v.check_result("measurement", policy.measurement.check(&fields.measurement));
    v.check_result("REPORT_DATA", policy.check_report_data(&fields.report_data));
    let raw_policy = fields.policy.get();
    v.check_result(
        "debug",
        policy.check_debug(raw_policy & POLICY_DEBUG_BIT != 0, "policy bit 19 (DEBUG)"),
    );
    v.check_result(
        "VMPL",
        match fields.vmpl.get() {
            vmpl if vmpl == policy.snp_vmpl => Ok(format!("{vmpl}")),
            vmpl => Err(format!(
                "report made at VMPL {vmpl}, policy wants {}",
                policy.snp_vmpl
            )),
        },
    );
    v.check_result(
        "migration agent",
        match (
            raw_policy & POLICY_MIGRATE_MA_BIT != 0,
            policy.allow_migration_agent,
        ) {
            (false, _) => Ok("policy bit 18 (MIGRATE_MA) clear".into()),
            (true, true) => Ok("policy bit 18 (MIGRATE_MA) set, allowed".into()),
            (true, false) => {
                Err("policy bit 18 (MIGRATE_MA) set: a migration agent may export the guest".into())
            }
        },
    );
    let t = &report.reported_tcb;
    let got = SnpMinTcb {
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
    };
    v.check_result(
        "minimum TCB",
        match policy.snp_min_tcb {
            None => Ok(format!("reported TCB {got} (no --min-tcb)")),
            Some(min)
                if got.bootloader >= min.bootloader
                    && got.tee >= min.tee
                    && got.snp >= min.snp
                    && got.microcode >= min.microcode =>
            {
                Ok(format!("reported TCB {got} ≥ {min}"))
            }
            Some(min) => Err(format!("reported TCB {got} is below the minimum {min}")),
        },
    );
    Ok(v)
}

/// ARK self-signed, ARK → ASK, ASK → VCEK, for the first pinned product whose ASK signs the VCEK.
fn check_chain(vcek: &Certificate, roots: &[AmdRoots]) -> Result<String, String> {
    let mut tried = Vec::new();
    for r in roots {
        let ark = Certificate::from_pem(r.ark_pem)
            .map_err(|e| format!("pinned {} ARK: {e}", r.product))?;
        let ask = Certificate::from_pem(r.ask_pem)
            .map_err(|e| format!("pinned {} ASK: {e}", r.product))?;
        let chain = ca::Chain { ark, ask };
        let ask = (&chain)
            .verify()
            .map_err(|e| format!("pinned {} ARK/ASK: {e}", r.product))?;
        if (ask, vcek).verify().is_ok() {
            return Ok(format!("VCEK ← ASK-{0} ← ARK-{0} (pinned)", r.product));
        }
        tried.push(r.product);
    }
    Err(format!(
        "VCEK is not signed by the pinned ASK of {}",
        tried.join(", ")
    ))
}

/// notBefore ≤ now ≤ notAfter (RFC 5280 §4.1.2.5: both bounds inclusive).
fn check_validity(vcek: &Certificate, now_secs: u64) -> Result<String, String> {
    let cert: x509_cert::Certificate = vcek.clone().into();
    let validity = cert.tbs_certificate.validity;
    let (from, until) = (validity.not_before, validity.not_after);
    let (from_s, until_s) = (
        from.to_unix_duration().as_secs(),
        until.to_unix_duration().as_secs(),
    );
    let window = format!("valid from {from} until {until}");
    let now = rfc3339(now_secs);
    if now_secs < from_s {
        Err(format!("{window}: not yet valid at {now}"))
    } else if now_secs > until_s {
        Err(format!("{window}: expired at {now}"))
    } else {
        Ok(format!("{window}; verified at {now}"))
    }
}

/// `secs` since the Unix epoch as RFC 3339 (UTC), or the number if out of range.
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the Unix epoch"))
}

/// ECDSA P-384 / SHA-384 over raw[0, 0x2A0) with the VCEK's key (§7.3, Table 139).
fn check_signature(report: &Layout, vcek: &Certificate) -> Result<String, String> {
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(vcek.public_key_sec1())
        .map_err(|e| format!("VCEK key is not a P-384 point: {e}"))?;
    let le_scalar = |field: &[u8; 72]| -> Result<[u8; 48], String> {
        if field[48..].iter().any(|&b| b != 0) {
            return Err("signature component wider than 384 bits".into());
        }
        let mut be = [0u8; 48];
        be.copy_from_slice(&field[..48]);
        be.reverse();
        Ok(be)
    };
    let r = le_scalar(&report.signature.r)?;
    let s = le_scalar(&report.signature.s)?;
    let sig = p384::ecdsa::Signature::from_scalars(
        p384::FieldBytes::clone_from_slice(&r),
        p384::FieldBytes::clone_from_slice(&s),
    )
    .map_err(|e| format!("malformed signature: {e}"))?;
    let raw = zerocopy::IntoBytes::as_bytes(report);
    key.verify(&raw[..SIGNED_LEN], &sig).map_err(|_| {
        "ECDSA P-384 signature over bytes [0, 0x2A0) does not verify with the VCEK".to_string()
    })?;
    Ok("ECDSA P-384/SHA-384 by the VCEK".into())
}

// VCEK extension OIDs (VCEK spec 57230, §3 Table 8).
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// The VCEK's hwID and SPL extensions must equal CHIP_ID and REPORTED_TCB (decoded by virtee for
/// the report's processor generation).
fn check_vcek_binding(
    fields: &Layout,
    report: &AttestationReport,
    vcek: &Certificate,
) -> Result<String, String> {
    let cert: x509_cert::Certificate = vcek.clone().into();
    let exts = cert.tbs_certificate.extensions.unwrap_or_default();
    let ext = |oid: &str| {
        exts.iter()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
            .ok_or_else(|| format!("VCEK lacks extension {oid}"))
    };
    let spl = |oid: &str| -> Result<u8, String> {
        let bytes = ext(oid)?;
        u8::from_der(&bytes).map_err(|e| format!("VCEK extension {oid}: {e}"))
    };
    let t = &report.reported_tcb;
    for (name, oid, want) in [
        ("blSPL", OID_BL_SPL, t.bootloader),
        ("teeSPL", OID_TEE_SPL, t.tee),
        ("snpSPL", OID_SNP_SPL, t.snp),
        ("ucodeSPL", OID_UCODE_SPL, t.microcode),
    ] {
        let got = spl(oid)?;
        if got != want {
            return Err(format!(
                "VCEK {name} = {got}, report's REPORTED_TCB has {want}"
            ));
        }
    }
    if fields.mask_chip_key() {
        return Ok("TCB matches; CHIP_ID masked by the guest (MASK_CHIP_ID)".into());
    }
    let hwid = ext(OID_HWID)?;
    // Some KDS certificates wrap hwID in an OCTET STRING, some store the 64 bytes directly.
    let hwid = match hwid.len() {
        64 => hwid,
        _ => x509_cert::der::asn1::OctetString::from_der(&hwid)
            .map_err(|e| format!("VCEK hwID: {e}"))?
            .into_bytes(),
    };
    if hwid != fields.chip_id {
        return Err(
            "VCEK hwID differs from the report's CHIP_ID: the VCEK is another chip's".into(),
        );
    }
    Ok("hwID = CHIP_ID, SPLs = REPORTED_TCB".into())
}
