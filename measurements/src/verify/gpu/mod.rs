//! NVIDIA Hopper GPU attestation evidence, verified offline.
//!
//! The evidence of one GPU is the attestation report (an SPDM 1.1 GET_MEASUREMENTS request with
//! the verifier's nonce, and the GPU's signed MEASUREMENTS response: [`spdm`]) and the PEM chain
//! of the GPU's attestation key up to NVIDIA's device root ([`certs`]).
//! [`verify_gpu_report`] checks them, each check its own line of a [`GpuVerdict`]:
//!
//! | check | passes when |
//! |---|---|
//! | `gpu report parse` | the report parses strictly ([`spdm::parse_report`]) |
//! | `gpu cert chain` | 5 certificates, each signed by the next, ending at the pinned root |
//! | `gpu cert validity` | every certificate is valid at `now` |
//! | `gpu report signature` | ECDSA P-384/SHA-384 over request ‖ response-without-signature by the AK certificate |
//! | `gpu fwid` | the report's FWID (if it has one) equals the AK certificate's |
//! | `gpu nonce` | the request's nonce equals the expected one (constant-time compare) |
//! | `gpu mode` | the signed opaque data does not report a non-CC mode (see below) |
//! | `gpu versions` | the driver and VBIOS versions are present and well formed |
//!
//! CC and devtools mode: a Hopper report does not carry them as fields. NVIDIA's verifier reads
//! them from NVML at collection time (nvtrust `cc_admin.py`, `init_nvml`), which an offline
//! verifier cannot see; the signed opaque data carries only the feature flag (opaque-data version
//! ≥ 1: SPT, MPT or PPCIE). `gpu mode` therefore fails a PPCIE or unknown flag, passes SPT/MPT,
//! and when the flag is absent passes with a warning saying what was not checked. The debug
//! state is bound by the measurement blocks: NVIDIA's own verifier claims `dbgstat: disabled`
//! only when every active measurement matches the RIMs (nvtrust `utils/claims_utils.py`), so the
//! RIM step, which compares them, is what rules devtools out offline.
//!
//! The RIM comparison (driver and VBIOS reference manifests) is a separate step that takes
//! [`GpuVerdict::report`]'s versions and blocks.

pub mod certs;
pub mod evidence;
pub mod ocsp;
pub mod rim;
pub mod spdm;
mod xml_c14n;
mod xmldsig;
mod xmldsig_chain;

use super::Check;
use serde::Serialize;

/// The GPU nonce derivation is the protocol's (docs/PROTOCOL.md, "GPU evidence").
pub use pupa_protocol::evidence::{gpu_nonce, GPU_NONCE_DOMAIN};

/// What the report says, for the RIM and policy steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuReportSummary {
    /// Driver version from the opaque data, e.g. `545.00`.
    pub driver_version: Option<String>,
    /// VBIOS version from the opaque data, e.g. `96.00.5e.00.01`.
    pub vbios_version: Option<String>,
    /// The request's nonce, hex.
    pub nonce: String,
    /// Opaque-data layout version (0 when absent).
    pub opaque_data_version: u32,
    /// Feature flag: 0 SPT, 1 MPT, 2 PPCIE; `None` when absent.
    pub feature_flag: Option<u32>,
    /// NVDEC0 status byte (0xAA enabled, 0x55 disabled): decides whether measurement 35 counts.
    pub nvdec0_status: Option<u8>,
    /// The measurement blocks.
    pub measurements: Vec<GpuMeasurement>,
}

/// One measurement block of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuMeasurement {
    /// SPDM measurement index (1-based).
    pub index: u8,
    /// DMTFSpecMeasurementValueType.
    pub value_type: u8,
    /// The value (serialized as hex).
    #[serde(serialize_with = "ser_hex")]
    pub value: Vec<u8>,
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&hex::encode(v))
}

/// The result of verifying one GPU's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuVerdict {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// What was not checked and why; does not fail the verdict.
    pub warnings: Vec<String>,
    /// The parsed report, if it parsed.
    pub report: Option<GpuReportSummary>,
}

impl GpuVerdict {
    fn check(&mut self, name: &str, r: Result<String, String>) {
        let (passed, detail) = match r {
            Ok(d) => (true, d),
            Err(e) => (false, e),
        };
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail,
        });
    }

    /// True only if there is at least one check and every check passed.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The check named `name`.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// Check names.
pub mod check {
    /// The report parses.
    pub const PARSE: &str = "gpu report parse";
    /// The chain to the pinned root.
    pub const CHAIN: &str = "gpu cert chain";
    /// Every certificate valid at `now`.
    pub const VALIDITY: &str = "gpu cert validity";
    /// The report signature.
    pub const SIGNATURE: &str = "gpu report signature";
    /// FWID of report and AK certificate.
    pub const FWID: &str = "gpu fwid";
    /// The request nonce.
    pub const NONCE: &str = "gpu nonce";
    /// CC/devtools/feature mode.
    pub const MODE: &str = "gpu mode";
    /// Driver and VBIOS versions.
    pub const VERSIONS: &str = "gpu versions";
}

const NOT_PARSED: &str = "not checked: the report does not parse";

/// Verifies one GPU's report (hex text as NVIDIA stores it, or binary as NVML returns it) and its
/// PEM chain against the pinned NVIDIA device root, the nonce pupa expects
/// ([`gpu_nonce`]) and the time `now`. Never panics; every check is a line of the verdict.
pub fn verify_gpu_report(
    report: &[u8],
    chain_pem: &[u8],
    expected_nonce: &[u8; 32],
    now: time::OffsetDateTime,
) -> GpuVerdict {
    let mut v = GpuVerdict {
        checks: Vec::new(),
        warnings: Vec::new(),
        report: None,
    };
    let parsed = spdm::parse_report(report);
    v.check(
        check::PARSE,
        match &parsed {
            Ok(r) => Ok(format!(
                "SPDM 1.1 GET_MEASUREMENTS + MEASUREMENTS, {} measurement blocks, {} opaque fields",
                r.response.blocks.len(),
                r.response.opaque.len()
            )),
            Err(e) => Err(e.to_string()),
        },
    );
    let chain = certs::parse_pem_chain(chain_pem);
    let root = certs::device_root();
    v.check(
        check::CHAIN,
        match (&chain, &root) {
            (Ok(c), Ok(root)) => certs::check_chain(c, root),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        },
    );
    v.check(
        check::VALIDITY,
        chain
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| certs::check_validity(c, now)),
    );
    let leaf = chain.as_ref().ok().and_then(|c| c.first());
    match &parsed {
        Ok(r) => check_report(&mut v, r, leaf, expected_nonce),
        Err(_) => {
            for name in [
                check::SIGNATURE,
                check::FWID,
                check::NONCE,
                check::MODE,
                check::VERSIONS,
            ] {
                v.check(name, Err(NOT_PARSED.into()));
            }
        }
    }
    v
}

/// The checks that need the parsed report.
fn check_report(
    v: &mut GpuVerdict,
    r: &spdm::GpuReport,
    leaf: Option<&certs::ChainCert>,
    expected_nonce: &[u8; 32],
) {
    let no_leaf = || Err("not checked: no certificate chain".to_string());
    v.check(
        check::SIGNATURE,
        leaf.map_or_else(no_leaf, |l| {
            certs::check_report_signature(l, r.signed_bytes(), &r.response.signature)
        }),
    );
    v.check(check::FWID, leaf.map_or_else(no_leaf, |l| check_fwid(r, l)));
    v.check(check::NONCE, check_nonce(&r.request.nonce, expected_nonce));
    let mode = check_mode(r);
    if let Ok(d) = &mode {
        if r.feature_flag().is_none() {
            v.warnings.push(format!("gpu mode: {d}"));
        }
    }
    v.check(check::MODE, mode);
    v.check(check::VERSIONS, check_versions(r));
    v.report = Some(summary(r));
}

/// The report's FWID (opaque type 20) equals the AK certificate's (nvtrust
/// `verify_gpu_certificate_chain`); a report without one (older firmware) is not compared.
fn check_fwid(r: &spdm::GpuReport, leaf: &certs::ChainCert) -> Result<String, String> {
    let Some(report_fwid) = r.fwid() else {
        return Ok("the report carries no FWID (older firmware): nothing to compare".into());
    };
    match certs::leaf_fwid(leaf)? {
        Some(cert_fwid) if cert_fwid == report_fwid => Ok(format!(
            "report FWID {} equals the AK certificate's",
            hex::encode(report_fwid)
        )),
        Some(cert_fwid) => Err(format!(
            "report FWID {} differs from the AK certificate's {}",
            hex::encode(report_fwid),
            hex::encode(cert_fwid)
        )),
        None => Err("the report has an FWID but the AK certificate has none".into()),
    }
}

/// The nonce the GPU signed (in the request) equals the expected one; compared in constant time.
fn check_nonce(got: &[u8; 32], want: &[u8; 32]) -> Result<String, String> {
    let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 {
        Ok(format!("request nonce {} as expected", hex::encode(got)))
    } else {
        Err(format!(
            "request nonce {} is not the expected {}",
            hex::encode(got),
            hex::encode(want)
        ))
    }
}

/// The feature flag (opaque type 36, nvtrust `parse_feature_flag`): SPT and MPT are CC
/// passthrough modes; PPCIE (protected PCIe, not CC) and unknown values fail.
fn check_mode(r: &spdm::GpuReport) -> Result<String, String> {
    let version = r.opaque_data_version();
    match r.feature_flag() {
        Some(0) => Ok("feature flag SPT (single-GPU passthrough, CC)".into()),
        Some(1) => Ok("feature flag MPT (multi-GPU passthrough, CC)".into()),
        Some(2) => Err("feature flag PPCIE: protected-PCIe mode, not CC mode".into()),
        Some(f) => Err(format!("unknown feature flag {f}")),
        None => Ok(format!(
            "opaque data version {version} has no feature flag; the report does not state CC or \
             devtools mode (NVIDIA reads them from NVML): the RIM measurement match rules devtools \
             out"
        )),
    }
}

/// Driver and VBIOS versions present and well formed (their values are policy's and the RIMs').
fn check_versions(r: &spdm::GpuReport) -> Result<String, String> {
    match (r.driver_version(), r.vbios_version()) {
        (Some(d), Some(b)) => Ok(format!("driver {d}, VBIOS {b}")),
        (None, _) => Err("the report has no driver version (opaque type 3)".into()),
        (_, None) => Err("the report has no VBIOS version (opaque type 6)".into()),
    }
}

fn summary(r: &spdm::GpuReport) -> GpuReportSummary {
    GpuReportSummary {
        driver_version: r.driver_version(),
        vbios_version: r.vbios_version(),
        nonce: hex::encode(r.request.nonce),
        opaque_data_version: r.opaque_data_version(),
        feature_flag: r.feature_flag(),
        nvdec0_status: r.nvdec0_status(),
        measurements: r
            .response
            .blocks
            .iter()
            .map(|b| GpuMeasurement {
                index: b.index,
                value_type: b.value_type,
                value: b.value.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn nonce_derivation_is_domain_separated_and_per_gpu() {
        let rd = [7u8; 64];
        let mut h = Sha256::new();
        h.update(b"pupa/gpu-nonce/v1\0");
        h.update(rd);
        h.update(1u32.to_le_bytes());
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(gpu_nonce(&rd, 1), want);
        assert_ne!(gpu_nonce(&rd, 0), gpu_nonce(&rd, 1));
    }
}
