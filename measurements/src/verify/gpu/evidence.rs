//! The GPUs of one evidence message: how many, each report over its derived nonce
//! ([`super::verify_gpu_report`]), each report's measurements against NVIDIA's signed RIMs
//! (driver and VBIOS, [`super::rim::verify_rim`]), revocation, and the version policy. Every
//! check is its own line of the verdict, named `gpu{i} …`.
//!
//! The RIM comparison follows NVIDIA's verifier (nvtrust local_gpu_verifier, `verifier.py`):
//! the *active* golden measurements of the driver RIM and of the VBIOS RIM are merged (both
//! RIMs list every index, each active in one of them; an index active in both is an error), and
//! every active golden measurement must equal one of its alternatives in the report's block for
//! that index. RIM indices count from 0, SPDM measurement block indices from 1 (DSP0274 §10.11:
//! index 0 is reserved), so RIM index `i` is block `i + 1`: with this mapping all 64 blocks of
//! NVIDIA's 2023 sample equal its RIMs (tests/verify_gpu_evidence.rs). The RIM for a report is the one whose version equals
//! the version the report states in its signed opaque data.
//!
//! Revocation: an offline verifier cannot query NVIDIA's OCSP service, so the responses come as
//! collateral files (`--gpu-ocsp`, [`super::ocsp::check_chain_revocation`]): every certificate
//! of the GPU's chain below the root needs a current, properly signed *good* response. The RIM
//! signer chains are not covered by it (their certificates are not kept past the RIM check),
//! which the verdict states as a warning. Without responses the line fails, unless the caller
//! explicitly skips it, which shows as a warning.

use pupa_protocol::evidence::{Evidence, MAX_GPUS};
use time::OffsetDateTime;

use super::certs::parse_pem_chain;
use super::ocsp::{check_chain_revocation, GPU_CHAIN_FIRST_CHECKED};
use super::rim::{verify_rim, Rim, RimMeasurement};
use super::{verify_gpu_report, GpuReportSummary};
use crate::verify::Verdict;

/// NVIDIA's RIM signing root, pinned (nvtrust `verifier/certs/verifier_RIM_root.pem`; see
/// `roots/SOURCE`).
pub const RIM_ROOT_PEM: &[u8] = include_bytes!("../roots/nvidia_rim_root.pem");

/// RIM index of the NVDEC0 measurement, compared only while NVDEC0 is enabled (nvtrust
/// verifier: the report's opaque NVDEC0 status).
const NVDEC0_INDEX: u16 = 35;
/// Opaque-data NVDEC0 status "disabled".
const NVDEC0_DISABLED: u8 = 0x55;

/// What the GPUs must show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuPolicy {
    /// At least this many GPUs must be attested.
    pub require_gpus: u32,
    /// Allowed driver versions (lowercase, e.g. `545.00`); empty: any.
    pub driver_versions: Vec<String>,
    /// Allowed VBIOS versions (lowercase, e.g. `96.00.5e.00.01`); empty: any.
    pub vbios_versions: Vec<String>,
}

impl GpuPolicy {
    /// No GPU required, any version.
    pub const NONE: GpuPolicy = GpuPolicy {
        require_gpus: 0,
        driver_versions: Vec::new(),
        vbios_versions: Vec::new(),
    };
}

/// What GPU verification needs besides the evidence: the RIM files, the OCSP responses, and
/// whether revocation may go unchecked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuCollateral {
    /// Driver and VBIOS RIMs (SWID tag XML), in any order.
    pub rims: Vec<Vec<u8>>,
    /// DER OCSP responses (RFC 6960 `OCSPResponse`) for the GPU chain's certificates.
    pub ocsp: Vec<Vec<u8>>,
    /// Accept the certificates without a revocation check (a warning line); only used when no
    /// OCSP response is given.
    pub skip_revocation: bool,
}

impl GpuCollateral {
    /// No RIMs; revocation required.
    pub const NONE: GpuCollateral = GpuCollateral {
        rims: Vec::new(),
        ocsp: Vec::new(),
        skip_revocation: false,
    };
}

/// Adds the GPU lines for `ev` to `v`: `gpu count` when GPUs are present or required, then for
/// each GPU `i` its report lines and [`check_one`]'s.
pub fn check_evidence(
    v: &mut Verdict,
    ev: &Evidence,
    policy: &GpuPolicy,
    coll: &GpuCollateral,
    now: OffsetDateTime,
) {
    let n = ev.gpus.len();
    if n == 0 && policy.require_gpus == 0 {
        return;
    }
    v.check_result("gpu count", count(n, policy.require_gpus));
    let rims = load_rims(&coll.rims, now);
    for (i, g) in ev.gpus.iter().enumerate().take(MAX_GPUS) {
        let nonce = ev.expected_gpu_nonce(i as u32);
        check_one(
            v,
            &format!("gpu{i}"),
            &g.report,
            &g.cert_chain,
            &nonce,
            &rims,
            policy,
            coll,
            now,
        );
    }
}

fn count(n: usize, required: u32) -> Result<String, String> {
    if n > MAX_GPUS {
        return Err(format!("{n} GPU reports, more than {MAX_GPUS}"));
    }
    if (n as u64) < u64::from(required) {
        return Err(format!("{n} GPU report(s); the policy requires {required}"));
    }
    Ok(format!("{n} GPU report(s) (policy: at least {required})"))
}

/// The RIM files, each verified (signature, chain to the pinned root at `now`) or with why not.
pub fn load_rims(files: &[Vec<u8>], now: OffsetDateTime) -> Vec<Result<Rim, String>> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| verify_rim(f, RIM_ROOT_PEM, now).map_err(|e| format!("RIM #{}: {e}", i + 1)))
        .collect()
}

/// One GPU: its report lines (prefixed `name`), its RIMs, the measurements, revocation and the
/// version policy.
#[allow(clippy::too_many_arguments)]
pub fn check_one(
    v: &mut Verdict,
    name: &str,
    report: &[u8],
    chain: &[u8],
    nonce: &[u8; 32],
    rims: &[Result<Rim, String>],
    policy: &GpuPolicy,
    coll: &GpuCollateral,
    now: OffsetDateTime,
) {
    let g = verify_gpu_report(report, chain, nonce, now);
    for c in &g.checks {
        let short = c.name.strip_prefix("gpu ").unwrap_or(&c.name);
        v.check(&format!("{name} {short}"), c.passed, c.detail.clone());
    }
    v.warnings
        .extend(g.warnings.iter().map(|w| format!("{name}: {w}")));
    let Some(r) = &g.report else {
        v.check(
            &format!("{name} rims"),
            false,
            "not checked: the report does not parse",
        );
        return;
    };
    let driver = pick(rims, r.driver_version.as_deref(), "driver");
    let vbios = pick(rims, r.vbios_version.as_deref(), "VBIOS");
    v.check_result(
        &format!("{name} driver rim"),
        driver.as_ref().map(|d| d.1.clone()).map_err(Clone::clone),
    );
    v.check_result(
        &format!("{name} vbios rim"),
        vbios.as_ref().map(|d| d.1.clone()).map_err(Clone::clone),
    );
    let golden = match (driver, vbios) {
        (Ok((d, _)), Ok((b, _))) => compare(r, d, b),
        _ => Err("not checked: no verified RIM for the report's versions".into()),
    };
    v.check_result(&format!("{name} measurements"), golden);
    revocation(v, name, chain, coll, now);
    v.check_result(&format!("{name} version policy"), version_policy(r, policy));
}

/// The `{name} revocation` line: the GPU chain against the OCSP responses; without any, a failure
/// unless explicitly skipped (then a warning).
fn revocation(
    v: &mut Verdict,
    name: &str,
    chain: &[u8],
    coll: &GpuCollateral,
    now: OffsetDateTime,
) {
    let line = format!("{name} revocation");
    if !coll.ocsp.is_empty() {
        let r = parse_pem_chain(chain)
            .map_err(|e| format!("not checked: {e}"))
            .and_then(|c| check_chain_revocation(&c, GPU_CHAIN_FIRST_CHECKED, &coll.ocsp, now))
            .map(|s| format!("GPU chain: {s}"));
        v.check_result(&line, r);
        v.warnings.push(format!(
            "{name}: certificate revocation (OCSP) of the RIM signer chains was not checked \
             (only the GPU chain's)"
        ));
    } else if coll.skip_revocation {
        v.check(&line, true, "SKIPPED (--gpu-skip-revocation)");
        v.warnings.push(format!(
            "{name}: certificate revocation (OCSP) of the GPU and RIM chains was not checked"
        ));
    } else {
        v.check(
            &line,
            false,
            "no OCSP response for the GPU chain: pass them with --gpu-ocsp FILE, or \
             --gpu-skip-revocation to accept the chain unchecked (reported as a warning)",
        );
    }
}

/// The verified RIM whose version equals `version`, and a line saying so.
fn pick<'a>(
    rims: &'a [Result<Rim, String>],
    version: Option<&str>,
    what: &str,
) -> Result<(&'a Rim, String), String> {
    let version = version.ok_or_else(|| format!("the report states no {what} version"))?;
    let want = version.to_ascii_lowercase();
    if let Some(r) = rims.iter().flatten().find(|r| r.version == want) {
        return Ok((
            r,
            format!("{what} RIM {want}: signature and chain to the RIM root verified"),
        ));
    }
    let seen: Vec<String> = rims
        .iter()
        .map(|r| match r {
            Ok(r) => format!("verified RIM {}", r.version),
            Err(e) => e.clone(),
        })
        .collect();
    Err(format!(
        "no verified {what} RIM of version {want} (given: {})",
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join("; ")
        }
    ))
}

/// Every active golden measurement of the two RIMs equals one alternative of the report's block
/// for its index (RIM index `i` = SPDM block `i + 1`).
fn compare(r: &GpuReportSummary, driver: &Rim, vbios: &Rim) -> Result<String, String> {
    let mut golden: Vec<&RimMeasurement> = Vec::new();
    for m in driver.measurements.iter().chain(&vbios.measurements) {
        if !m.active {
            continue;
        }
        if golden.iter().any(|g| g.index == m.index) {
            return Err(format!(
                "index {} is active in both the driver and the VBIOS RIM",
                m.index
            ));
        }
        golden.push(m);
    }
    let nvdec0_off = r.nvdec0_status == Some(NVDEC0_DISABLED);
    let (mut compared, mut bad) = (0usize, Vec::new());
    for g in golden {
        if nvdec0_off && g.index == NVDEC0_INDEX {
            continue;
        }
        let block = u32::from(g.index) + 1;
        let got = r.measurements.iter().find(|b| u32::from(b.index) == block);
        match got {
            Some(b) if g.alternatives.contains(&b.value) => compared += 1,
            Some(_) => bad.push(format!(
                "{} (block {}): value differs",
                g.index,
                g.index + 1
            )),
            None => bad.push(format!(
                "{} (block {}): not in the report",
                g.index,
                g.index + 1
            )),
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "{} of {} active golden measurements do not match (index {})",
            bad.len(),
            compared + bad.len(),
            bad.join(", ")
        ));
    }
    let skipped = if nvdec0_off {
        " (index 35 not compared: NVDEC0 disabled)"
    } else {
        ""
    };
    Ok(format!(
        "all {compared} active golden measurements (driver {}, VBIOS {}) match the report{skipped}",
        driver.version, vbios.version
    ))
}

fn version_policy(r: &GpuReportSummary, p: &GpuPolicy) -> Result<String, String> {
    let allowed = |list: &[String], got: Option<&str>, what: &str| match got {
        _ if list.is_empty() => Ok(format!("{what} any")),
        Some(v) if list.iter().any(|a| a.eq_ignore_ascii_case(v)) => {
            Ok(format!("{what} {v} allowed"))
        }
        got => Err(format!(
            "{what} {} not in {}",
            got.unwrap_or("(none)"),
            list.join(", ")
        )),
    };
    let d = allowed(&p.driver_versions, r.driver_version.as_deref(), "driver")?;
    let b = allowed(&p.vbios_versions, r.vbios_version.as_deref(), "VBIOS")?;
    Ok(format!("{d}; {b}"))
}
