//! One evidence message for any TEE: the postcard bytes of `pupa_protocol::evidence::Evidence`
//! as the guest serves them (its keys, the nonce, and `TeeEvidence::{Dev, Snp, Tdx}`),
//! dispatched to the dev, SNP or TDX verifier.
//!
//! The REPORT_DATA the report must carry is given by the caller: the binding of the evidence's
//! own keys and nonce ([`Evidence::expected_report_data`], what `pupa-measure verify
//! --evidence` uses), or the binding to a nonce the caller chose (`pupa-client`).

use std::path::{Path, PathBuf};

use dcap_qvl::QuoteCollateralV3;
use pupa_protocol::evidence::{Evidence, TeeEvidence, TeeKind};

use super::gpu::evidence::{check_evidence, GpuCollateral};
use super::policy::Policy;
use super::policy_file::{Pins, PolicyKnobs};
use super::{dev, snp, tdx, tdx_log, Verdict, VerifyError};
use crate::hexfmt;

/// What verification needs besides the evidence and the policy: the SNP VCEK (when the evidence
/// carries none, or to use instead of the one it carries), the TDX collateral, the time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endorsements {
    /// SNP: the VCEK certificate (DER or PEM); overrides a VCEK inside the evidence.
    pub vcek: Option<Vec<u8>>,
    /// TDX: the collateral (TCB info, QE identity, CRLs, issuer chains).
    pub tdx_collateral: Option<QuoteCollateralV3>,
    /// The verification time, Unix seconds; `None`: the system clock when verifying.
    pub now: Option<u64>,
    /// GPUs: the driver and VBIOS RIMs, and whether revocation may go unchecked.
    pub gpu: GpuCollateral,
}

impl Endorsements {
    /// No VCEK, no collateral, the system clock.
    pub const NONE: Endorsements = Endorsements {
        vcek: None,
        tdx_collateral: None,
        now: None,
        gpu: GpuCollateral::NONE,
    };

    /// Reads the VCEK file (DER or PEM, checked to parse), the collateral JSON file and parses
    /// "now" (RFC 3339).
    pub fn load(
        vcek: Option<&Path>,
        collateral: Option<&Path>,
        now: Option<&str>,
    ) -> Result<Self, VerifyError> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let vcek = vcek
            .map(|p| {
                let bytes = read(p).map_err(VerifyError::Vcek)?;
                snp::parse_vcek(&bytes)?;
                Ok::<_, VerifyError>(bytes)
            })
            .transpose()?;
        let tdx_collateral = collateral
            .map(|p| tdx::parse_collateral(&read(p).map_err(VerifyError::Collateral)?))
            .transpose()?;
        let now = now.map(tdx::parse_now).transpose()?;
        Ok(Self {
            vcek,
            tdx_collateral,
            now,
            gpu: GpuCollateral::NONE,
        })
    }

    /// Adds the GPU collateral: the RIM files (driver and VBIOS, any order) and whether
    /// revocation may go unchecked.
    pub fn with_gpu(
        mut self,
        rims: &[PathBuf],
        skip_revocation: bool,
    ) -> Result<Self, VerifyError> {
        let rims = rims
            .iter()
            .map(|p| {
                std::fs::read(p).map_err(|e| {
                    VerifyError::Policy(format!("cannot read RIM {}: {e}", p.display()))
                })
            })
            .collect::<Result<_, _>>()?;
        self.gpu = GpuCollateral {
            rims,
            ocsp: std::mem::take(&mut self.gpu.ocsp),
            skip_revocation,
        };
        Ok(self)
    }

    /// Adds the GPU OCSP responses (DER `OCSPResponse` files, RFC 6960), read here and parsed
    /// when the revocation line is checked.
    pub fn with_gpu_ocsp(mut self, files: &[PathBuf]) -> Result<Self, VerifyError> {
        self.gpu.ocsp = files
            .iter()
            .map(|p| {
                std::fs::read(p).map_err(|e| {
                    VerifyError::Policy(format!("cannot read OCSP response {}: {e}", p.display()))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// [`Self::with_gpu`] and [`Self::with_gpu_ocsp`] with the policy's `gpu_rims`,
    /// `gpu_skip_revocation` and `gpu_ocsp`.
    pub fn with_gpu_knobs(self, k: &PolicyKnobs) -> Result<Self, VerifyError> {
        let rims = k.gpu_rims.clone().unwrap_or_default();
        let ocsp = k.gpu_ocsp.clone().unwrap_or_default();
        self.with_gpu(&rims, k.gpu_skip_revocation == Some(true))?
            .with_gpu_ocsp(&ocsp)
    }

    /// The verification time as a date (for certificate validity).
    pub fn now_datetime(&self) -> Result<time::OffsetDateTime, VerifyError> {
        let secs = i64::try_from(self.now_secs()?)
            .map_err(|_| VerifyError::Policy("time out of range".into()))?;
        time::OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| VerifyError::Policy(format!("time out of range: {e}")))
    }

    /// The verification time: `now`, or the system clock.
    pub fn now_secs(&self) -> Result<u64, VerifyError> {
        match self.now {
            Some(t) => Ok(t),
            None => system_now(),
        }
    }
}

/// The system clock in Unix seconds.
pub fn system_now() -> Result<u64, VerifyError> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|e| VerifyError::Policy(format!("system clock before 1970: {e}")))
}

/// Decodes the postcard bytes of an `Evidence` message (the whole input, nothing after it).
pub fn decode(bytes: &[u8]) -> Result<Evidence, VerifyError> {
    if bytes.len() > dev::MAX_EVIDENCE_LEN {
        return Err(VerifyError::Evidence(format!(
            "{} bytes, more than {}",
            bytes.len(),
            dev::MAX_EVIDENCE_LEN
        )));
    }
    let (ev, rest) = postcard::take_from_bytes::<Evidence>(bytes)
        .map_err(|e| VerifyError::Evidence(format!("not a postcard Evidence message: {e}")))?;
    if !rest.is_empty() {
        return Err(VerifyError::Evidence(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(ev)
}

/// The kind of the evidence (`TeeEvidence::kind`).
pub fn tee_of(ev: &Evidence) -> TeeKind {
    ev.tee.kind()
}

/// Verifies `ev` under `policy`, requiring `report_data` in the report (whatever
/// `policy.report_data` says): dev evidence with [`dev::verify`]; SNP with [`snp::verify`]
/// (the VCEK of `endorsements`, else the one in the evidence); TDX with [`tdx::verify`] (the
/// collateral of `endorsements`, required). Both at `endorsements.now_secs()`.
pub fn verify(
    ev: &Evidence,
    report_data: &[u8; 64],
    policy: &Policy,
    endorsements: &Endorsements,
) -> Result<Verdict, VerifyError> {
    let p = Policy {
        report_data: Some(*report_data),
        ..policy.clone()
    };
    let mut v = match &ev.tee {
        TeeEvidence::Dev(_) => dev::verify(ev, &p)?,
        TeeEvidence::Snp { report, vcek } => {
            let vcek = endorsements
                .vcek
                .as_deref()
                .or(vcek.as_ref().map(|b| b.as_slice()));
            snp::verify(report, vcek, endorsements.now_secs()?, &p)?
        }
        TeeEvidence::Tdx { quote, event_log } => {
            let coll = endorsements.tdx_collateral.as_ref().ok_or_else(|| {
                VerifyError::Collateral(
                    "TDX evidence needs the collateral (TCB info, QE identity, CRLs): \
                     --collateral FILE"
                        .into(),
                )
            })?;
            let mut v = tdx::verify(quote, coll, endorsements.now_secs()?, &p)?;
            tdx_log::check(
                &mut v,
                quote,
                event_log.as_deref().map(|b| b.as_slice()),
                &p.tdx_boot,
            );
            v
        }
    };
    check_evidence(
        &mut v,
        ev,
        &p.gpu,
        &endorsements.gpu,
        endorsements.now_datetime()?,
    );
    if *report_data == ev.expected_report_data() {
        if let Some(c) = v.checks.iter_mut().find(|c| c.name == "REPORT_DATA") {
            c.detail.push_str(
                " (the binding SHA-512(\"pupa/evidence/v1\" ‖ hpke_pk ‖ receipt_pk ‖ nonce) \
                 of the evidence's keys and nonce)",
            );
        }
    }
    Ok(v)
}

/// Checks the guest's RTMR event log (CCEL/TCG2, SHA-384) against the quote: every digest is
/// the SHA-384 of its data, and the replay gives all four quoted RTMRs exactly
/// ([`tdx_log::replay_log`]; the boot configuration is decoded by [`tdx_log::check`]). (The
/// quote's signature and body are `tdx::verify`'s; this only reads its TD report's fields.)
pub fn check_rtmr_log(quote: &[u8], log: &[u8]) -> Result<String, String> {
    let td = tdx_log::QuotedTd::from_quote(quote)?;
    tdx_log::replay_log(&td, log).map(|(_, detail)| detail)
}

/// Adds a check for each key or nonce the policy pins: the evidence must carry exactly it
/// (`"nonce"`: freshness; `"keys"`: the expected worker).
pub fn check_pins(v: &mut Verdict, ev: &Evidence, pins: &Pins) {
    if let Some(n) = pins.nonce {
        v.check_result(
            "nonce",
            if n == ev.nonce {
                Ok(format!("{} (as required)", hexfmt::encode(&n)))
            } else {
                Err(format!(
                    "evidence answers nonce {}, not the required {} (stale or replayed)",
                    hexfmt::encode(&ev.nonce),
                    hexfmt::encode(&n)
                ))
            },
        );
    }
    for (name, want, got) in [
        ("hpke_pk", pins.hpke_pk, ev.hpke_pk),
        ("receipt_pk", pins.receipt_pk, ev.receipt_pk),
    ] {
        if let Some(want) = want {
            v.check_result(
                "keys",
                if want == got {
                    Ok(format!("{name} {} (as required)", hexfmt::encode(&got)))
                } else {
                    Err(format!(
                        "evidence carries {name} {}, not the required {}",
                        hexfmt::encode(&got),
                        hexfmt::encode(&want)
                    ))
                },
            );
        }
    }
}
