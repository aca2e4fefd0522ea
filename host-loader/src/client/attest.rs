//! Evidence verification in the client: what the client accepts ([`EvidencePolicy`]) and the
//! check of a worker's `Evidence` against it ([`verify_evidence`]), run on every evidence
//! message the client receives, before anything is sealed to the worker's keys.
//!
//! - Development evidence: refused unless `allow_insecure_dev`; then its signature and key
//!   binding (`pupa_protocol::evidence::verify_dev`) and, if the policy names measurements,
//!   the image hash.
//! - SEV-SNP and TDX evidence: `pupa_measurements::verify::evidence::verify`, with the policy
//!   resolved for that TEE (measurements from the manifest, debug, TCB, VMPL, migration), the
//!   VCEK / TDX collateral / "now" of the policy, and REPORT_DATA required to be
//!   `SHA-512("pupa/evidence/v1" ‖ hpke_pk ‖ receipt_pk ‖ our nonce)`: the report vouches for
//!   exactly the keys the job will be sealed to, and is fresh.
//! - GPUs (either kind): every GPU report in the evidence over its nonce derived from that
//!   REPORT_DATA, its RIMs, and the policy's `require_gpus`: a worker whose policy asks for a
//!   GPU and whose evidence has none is refused.

use std::path::Path;

use pupa_measurements::verify::gpu::evidence as gpu_evidence;
use pupa_measurements::verify::{evidence, snp, tdx, Endorsements, PolicyKnobs, Verdict};
use pupa_protocol::evidence::{report_data, verify_dev, Evidence, TeeEvidence, TeeKind};

use super::{ClientError, VerifiedWorker};

/// What evidence the client accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidencePolicy {
    /// Accept the insecure development report (no TEE, no confidentiality).
    pub allow_insecure_dev: bool,
    /// What SNP / TDX evidence must show (`pupa-measure verify`'s policy knobs: `expect`
    /// manifest or measurements, debug, TCB, VMPL, migration agent; `hpke_pk` / `receipt_pk`
    /// pin the worker's keys). Without a measurement choice SNP and TDX evidence are refused.
    /// `report_data` and `nonce` are refused: the client binds REPORT_DATA to its own nonce.
    pub knobs: PolicyKnobs,
    /// The SNP VCEK (else the one inside the evidence), the TDX collateral, the time.
    pub endorsements: Endorsements,
}

impl EvidencePolicy {
    /// Strict: no dev evidence; SNP / TDX refused until measurements are configured.
    pub const STRICT: EvidencePolicy = EvidencePolicy {
        allow_insecure_dev: false,
        knobs: PolicyKnobs::NONE,
        endorsements: Endorsements::NONE,
    };

    /// [`Self::STRICT`] but accepting insecure development evidence (tests, demos).
    pub const fn insecure_dev() -> Self {
        EvidencePolicy {
            allow_insecure_dev: true,
            knobs: PolicyKnobs::NONE,
            endorsements: Endorsements::NONE,
        }
    }

    /// The policy of `pupa-client`'s flags: the policy file (TOML, as `pupa-measure verify
    /// --policy`), then `--expect` (overrides the file's measurement choice), the VCEK and
    /// collateral files, `--now` (RFC 3339). `allow_insecure_dev` is the flag or the file's.
    pub fn load(
        allow_insecure_dev: bool,
        policy_file: Option<&Path>,
        expect: Option<&Path>,
        vcek: Option<&Path>,
        collateral: Option<&Path>,
        now: Option<&str>,
    ) -> Result<Self, ClientError> {
        let file = match policy_file {
            Some(f) => PolicyKnobs::load(f).map_err(|e| ClientError::Policy(e.to_string()))?,
            None => PolicyKnobs::NONE,
        };
        let knobs = file.overridden_by(&PolicyKnobs {
            expect: expect.map(Path::to_path_buf),
            ..PolicyKnobs::NONE
        });
        let p = EvidencePolicy {
            allow_insecure_dev: allow_insecure_dev || knobs.allow_insecure_dev == Some(true),
            endorsements: Endorsements::load(vcek, collateral, now)
                .and_then(|e| e.with_gpu_knobs(&knobs))
                .map_err(ClientError::Unverifiable)?,
            knobs,
        };
        p.check_knobs()?;
        p.check_complete()?;
        Ok(p)
    }

    /// Everything the policy names is readable and well-formed (the `expect` manifest, TCB
    /// strings, measurement lists), for at least one kind of evidence: checked before the client
    /// connects, so that a broken policy file is reported before any network traffic.
    fn check_complete(&self) -> Result<(), ClientError> {
        let mut k = self.knobs.clone();
        if !k.chooses_measurement() {
            // The measurement choice is checked when evidence arrives (dev evidence needs none).
            k.any_measurement = Some(true);
        }
        let mut first = None;
        for tee in TeeKind::ALL {
            match k.policy_without_report_data(tee) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(ClientError::Policy(
            first.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    /// Refuses knobs the client cannot honour (see [`Self::knobs`]).
    fn check_knobs(&self) -> Result<(), ClientError> {
        if self.knobs.report_data.is_some() || self.knobs.nonce.is_some() {
            return Err(ClientError::Policy(
                "report_data / nonce cannot be set: the client requires REPORT_DATA to bind the \
                 worker's keys to the client's own fresh nonce"
                    .into(),
            ));
        }
        self.knobs
            .pins()
            .map(|_| ())
            .map_err(|e| ClientError::Policy(e.to_string()))
    }
}

/// Verifies `ev` under `policy`, expecting it over `nonce`.
pub fn verify_evidence(
    ev: &Evidence,
    policy: &EvidencePolicy,
    nonce: &[u8; 32],
) -> Result<VerifiedWorker, ClientError> {
    if &ev.nonce != nonce {
        return Err(ClientError::NonceMismatch);
    }
    match &ev.tee {
        TeeEvidence::Dev(_) => {
            if !policy.allow_insecure_dev {
                return Err(ClientError::InsecureDevRefused);
            }
            let image = verify_dev(ev)?;
            check_gpus(ev, policy)?;
            if policy.knobs.chooses_measurement() {
                let m = policy
                    .knobs
                    .measurement(TeeKind::Dev)
                    .map_err(|e| ClientError::Policy(e.to_string()))?;
                m.check(&image)
                    .map_err(|reason| ClientError::EvidenceRejected {
                        tee: "insecure-dev",
                        check: "measurement".into(),
                        reason: format!("image SHA-384 {reason}"),
                        verdict: None,
                    })?;
            }
            Ok(VerifiedWorker {
                hpke_pk: ev.hpke_pk,
                receipt_pk: ev.receipt_pk,
                tee: "insecure-dev",
                image_sha384: Some(image),
                measurement: Some(image),
            })
        }
        TeeEvidence::Snp { .. } | TeeEvidence::Tdx { .. } => {
            let binding = report_data(&ev.hpke_pk, &ev.receipt_pk, nonce);
            verify_tee(ev, &binding, policy)
        }
    }
}

/// The GPU lines of the verifier (`pupa_measurements::verify::gpu::evidence`) for dev evidence,
/// whose CPU part the client checks itself (SNP and TDX evidence get them from
/// `evidence::verify`): a policy that requires GPUs refuses evidence without them, and every GPU
/// report present is verified.
fn check_gpus(ev: &Evidence, policy: &EvidencePolicy) -> Result<(), ClientError> {
    let mut v = Verdict::new(ev.tee.kind());
    let now = policy
        .endorsements
        .now_datetime()
        .map_err(ClientError::Unverifiable)?;
    gpu_evidence::check_evidence(
        &mut v,
        ev,
        &policy.knobs.gpu_policy(),
        &policy.endorsements.gpu,
        now,
    );
    match v.first_failure() {
        Some(c) => Err(ClientError::EvidenceRejected {
            tee: "insecure-dev",
            check: c.name.clone(),
            reason: c.detail.clone(),
            verdict: Some(Box::new(v.clone())),
        }),
        None => Ok(()),
    }
}

/// SNP / TDX evidence with REPORT_DATA required to be `report_data`.
fn verify_tee(
    ev: &Evidence,
    report_data: &[u8; 64],
    policy: &EvidencePolicy,
) -> Result<VerifiedWorker, ClientError> {
    policy.check_knobs()?;
    let kind = ev.tee.kind();
    let name = match kind {
        TeeKind::Snp => "SEV-SNP",
        TeeKind::Tdx => "TDX",
        TeeKind::Dev => "insecure-dev",
    };
    if !policy.knobs.chooses_measurement() {
        return Err(ClientError::Policy(format!(
            "{name} evidence needs the expected measurements: --expect manifest.json (or a \
             --policy file naming them)"
        )));
    }
    let p = policy
        .knobs
        .policy_without_report_data(kind)
        .map_err(|e| ClientError::Policy(format!("{name}: {e}")))?;
    let pins = policy
        .knobs
        .pins()
        .map_err(|e| ClientError::Policy(e.to_string()))?;
    let mut v = evidence::verify(ev, report_data, &p, &policy.endorsements)
        .map_err(ClientError::Unverifiable)?;
    evidence::check_pins(&mut v, ev, &pins);
    if let Some(c) = v.first_failure() {
        return Err(ClientError::EvidenceRejected {
            tee: name,
            check: c.name.clone(),
            reason: c.detail.clone(),
            verdict: Some(Box::new(v)),
        });
    }
    Ok(VerifiedWorker {
        hpke_pk: ev.hpke_pk,
        receipt_pk: ev.receipt_pk,
        tee: name,
        image_sha384: None,
        measurement: measurement_of(ev),
    })
}

/// The launch measurement of verified SNP (MEASUREMENT) or TDX (MRTD) evidence.
fn measurement_of(ev: &Evidence) -> Option<[u8; 48]> {
    match &ev.tee {
        TeeEvidence::Snp { report, .. } => snp::parse_report(report).ok().map(|r| r.measurement),
        TeeEvidence::Tdx { quote, .. } => tdx::parse_quote(quote)
            .ok()
            .and_then(|q| q.report.as_td10().map(|td| td.mr_td)),
        TeeEvidence::Dev(_) => None,
    }
}

/// The verdict behind an [`ClientError::EvidenceRejected`], if any.
pub fn rejected_verdict(e: &ClientError) -> Option<&Verdict> {
    match e {
        ClientError::EvidenceRejected { verdict, .. } => verdict.as_deref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
