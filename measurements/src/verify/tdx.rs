//! Intel TDX quote v4 (and v5) verification (Intel TDX DCAP Quote Generation Library and Quote
//! Verification Library API, Appendix "Quote Format" v4), offline.
//!
//! `dcap-qvl` does the cryptography and the collateral: ECDSA P-256 over header ‖ TD report body
//! (bytes [0, 632)) with the attestation key; the QE report signed by the PCK; QE REPORTDATA =
//! SHA-256(attestation key ‖ QE auth data); the PCK chain to the Intel SGX Root CA (pinned in
//! `dcap-qvl`, or a root given to [`verify_with_root`]); CRLs, TCB info and QE identity signed by
//! the TCB signing chain and valid at "now"; the TCB status. This module adds the structural
//! checks (exact size, version, TEE type) and the policy (MRTD, REPORTDATA, debug, TCB status).

use dcap_qvl::quote::Quote;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use pupa_spec::tdx::report as spec;

use super::policy::{Policy, TdxTcbStatus};
use super::{TeeKind, Verdict, VerifyError};

/// Quote header size (the layout: [`pupa_spec::tdx::report::QuoteHeader`]).
pub const HEADER_LEN: usize = spec::QUOTE_HEADER_LEN;
/// TD report body (TDX 1.0) size ([`pupa_spec::tdx::report::TdReportBody10`]).
pub const TD_REPORT_LEN: usize = spec::TD10_BODY_LEN;
/// Offset of the u32 signature-data length (= bytes covered by the quote signature).
pub const SIG_DATA_LEN_OFFSET: usize = HEADER_LEN + TD_REPORT_LEN;
/// Largest quote accepted (certification data included); real quotes are ~5 KiB.
pub const MAX_QUOTE_LEN: usize = 64 * 1024;
/// TEE type of TDX in the quote header.
pub const TEE_TYPE_TDX: u32 = spec::TEE_TYPE_TDX;
/// dcap-qvl's error when no TCB level matches the platform.
const NO_MATCHING_TCB_LEVEL: &str = "No matching TCB level found";
/// TD attributes bit 0: TUD.DEBUG.
pub const TD_ATTR_DEBUG: u64 = spec::TD_ATTR_DEBUG;

/// Parses the collateral file: the JSON form of `dcap_qvl::QuoteCollateralV3` (as written by
/// `dcap-qvl`'s collateral fetcher: issuer chains PEM, CRLs and signatures hex, TCB info and QE
/// identity as their signed JSON text).
pub fn parse_collateral(json: &[u8]) -> Result<QuoteCollateralV3, VerifyError> {
    serde_json::from_slice(json).map_err(|e| VerifyError::Collateral(e.to_string()))
}

/// Parses "now" as RFC 3339 into Unix seconds.
pub fn parse_now(s: &str) -> Result<u64, VerifyError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            VerifyError::Policy(format!(
                "--now {s:?}: {e} (want RFC 3339, e.g. 2025-07-01T00:00:00Z)"
            ))
        })?;
    u64::try_from(t.unix_timestamp())
        .map_err(|_| VerifyError::Policy(format!("--now {s:?} is before 1970")))
}

/// Where the signature-data length of a quote sits: v4 has the TD 1.0 body at 48; v5 has a
/// body descriptor (type u16, size u32) at 48 and the body at 54 (type 2 = TD 1.0, 584 bytes;
/// type 3 = TD 1.5, 648 bytes).
fn sig_len_offset(raw: &[u8], version: u16) -> Result<usize, String> {
    match version {
        4 => Ok(SIG_DATA_LEN_OFFSET),
        5 => {
            let ty = u16::from_le_bytes([raw[48], raw[49]]);
            let size = u32::from_le_bytes([raw[50], raw[51], raw[52], raw[53]]) as usize;
            match (ty, size) {
                (2, 584) | (3, 648) => Ok(54 + size),
                _ => Err(format!(
                    "v5 body type {ty} of {size} bytes (want TD 1.0 or TD 1.5)"
                )),
            }
        }
        v => Err(format!("version {v}, want 4 or 5")),
    }
}

/// Structural checks of a TDX quote (v4, or v5 with a TD body): size, version, TEE type, the
/// signature-data length; trailing bytes after the quote must be zero padding. Returns the parse.
pub fn parse_quote(raw: &[u8]) -> Result<Quote, VerifyError> {
    let bad = |m: String| VerifyError::TdxQuote(m);
    if raw.len() < SIG_DATA_LEN_OFFSET + 4 {
        return Err(bad(format!(
            "{} bytes, shorter than header + TD report + length ({})",
            raw.len(),
            SIG_DATA_LEN_OFFSET + 4
        )));
    }
    if raw.len() > MAX_QUOTE_LEN {
        return Err(bad(format!(
            "{} bytes, more than the {MAX_QUOTE_LEN} accepted",
            raw.len()
        )));
    }
    let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
    let version = u16::from_le_bytes([raw[0], raw[1]]);
    if u32_at(4) != TEE_TYPE_TDX {
        return Err(bad(format!(
            "TEE type {:#x}, want {TEE_TYPE_TDX:#x} (TDX)",
            u32_at(4)
        )));
    }
    let off = sig_len_offset(raw, version).map_err(bad)?;
    if raw.len() < off + 4 {
        return Err(bad(format!(
            "{} bytes, truncated before the signature-data length",
            raw.len()
        )));
    }
    let end = off + 4 + u32_at(off) as usize;
    if raw.len() < end {
        return Err(bad(format!(
            "{} bytes, truncated: its signature-data length says {end}",
            raw.len()
        )));
    }
    if raw[end..].iter().any(|&b| b != 0) {
        return Err(bad(format!(
            "{} bytes after the quote's {end} that are not zero padding",
            raw.len() - end
        )));
    }
    Quote::parse(&raw[..end]).map_err(|e| bad(format!("{e:#}")))
}

/// Verifies a quote with the Intel SGX Root CA pinned in `dcap-qvl`.
pub fn verify(
    raw: &[u8],
    collateral: &QuoteCollateralV3,
    now_secs: u64,
    policy: &Policy,
) -> Result<Verdict, VerifyError> {
    verify_with_verifier(raw, collateral, now_secs, policy, QuoteVerifier::new_prod())
}

/// Verifies a quote against another root certificate (DER); tests use it to pin a wrong root.
pub fn verify_with_root(
    raw: &[u8],
    collateral: &QuoteCollateralV3,
    now_secs: u64,
    policy: &Policy,
    root_der: &[u8],
) -> Result<Verdict, VerifyError> {
    verify_with_verifier(
        raw,
        collateral,
        now_secs,
        policy,
        QuoteVerifier::new(root_der.to_vec()),
    )
}

fn verify_with_verifier(
    raw: &[u8],
    collateral: &QuoteCollateralV3,
    now_secs: u64,
    policy: &Policy,
    verifier: QuoteVerifier,
) -> Result<Verdict, VerifyError> {
    let quote = parse_quote(raw)?;
    let td = quote
        .report
        .as_td10()
        .ok_or_else(|| VerifyError::TdxQuote("body is not a TD report".into()))?;
    let mut v = Verdict::new(TeeKind::Tdx);
    v.check(
        "quote format",
        true,
        format!("v{} TDX quote, {} bytes", quote.header.version, raw.len()),
    );
    // Debug is decided by the policy below, so that the verdict names it.
    let result = verifier.allow_debug(true).verify(raw, collateral, now_secs);
    let status = match &result {
        Ok(r) => {
            v.check(
                "quote signature and chain",
                true,
                "ECDSA P-256 by the attestation key; QE report signed by the PCK and bound to the key; \
                 PCK ← Intel SGX Root CA; CRLs, TCB info, QE identity valid at \"now\"",
            );
            Ok(r.status.clone())
        }
        // dcap-qvl matches the platform TCB (its step 8) only after every signature, chain and
        // collateral check has passed: this error means the evidence is authentic but no TCB
        // level of the collateral covers the platform (Intel QVL: TCB_NOT_SUPPORTED).
        Err(e) if format!("{e:#}").contains(NO_MATCHING_TCB_LEVEL) => {
            v.check(
                "quote signature and chain",
                true,
                "signatures, PCK chain and collateral verified; TCB level matching failed",
            );
            Err(format!(
                "TcbNotSupported: no TCB level in the collateral's TCB info matches this platform's \
                 PCK CPUSVN/PCESVN and TEE_TCB_SVN ({e:#})"
            ))
        }
        Err(e) => {
            v.check("quote signature and chain", false, format!("{e:#}"));
            Err("not established: the quote did not verify".into())
        }
    };
    let advisories = result
        .as_ref()
        .map(|r| r.advisory_ids.join(","))
        .unwrap_or_default();
    v.check_result(
        "TCB status",
        match status {
            Err(why) => Err(why),
            Ok(s) => match s.parse::<TdxTcbStatus>() {
                Err(e) => Err(format!("{e}")),
                Ok(st) if st <= policy.tdx_min_status => {
                    Ok(format!("{st} (advisories: [{advisories}])"))
                }
                Ok(st) => Err(format!(
                    "{st} (advisories: [{advisories}]) is worse than the accepted {}",
                    policy.tdx_min_status
                )),
            },
        },
    );
    v.check_result(
        "measurement",
        policy
            .measurement
            .check(&td.mr_td)
            .map(|d| format!("MRTD {d}"))
            .map_err(|e| format!("MRTD {e}")),
    );
    v.check_result("REPORT_DATA", policy.check_report_data(&td.report_data));
    let attrs = u64::from_le_bytes(td.td_attributes);
    v.check_result(
        "debug",
        policy.check_debug(attrs & TD_ATTR_DEBUG != 0, "TD attributes bit 0 (DEBUG)"),
    );
    Ok(v)
}
