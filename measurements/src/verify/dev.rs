//! Insecure development evidence (`pupa_protocol::evidence`, TeeEvidence::Dev): refused unless
//! the policy allows insecure dev evidence; then accepted with a warning.

use pupa_protocol::evidence::{verify_dev, Evidence, TeeEvidence};

use super::policy::Policy;
use super::{TeeKind, Verdict, VerifyError};

/// Largest evidence file accepted (a dev evidence message is ~300 bytes; SNP/TDX ones ~6 KiB).
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;

/// The warning printed whenever dev evidence is accepted.
pub const DEV_WARNING: &str =
    "INSECURE development evidence accepted: no TEE vouches for it, anyone can forge it; \
     never send it secrets";

/// Decodes the postcard bytes of an `Evidence` message (the whole file, nothing after it).
pub fn decode_evidence(bytes: &[u8]) -> Result<Evidence, VerifyError> {
    super::evidence::decode(bytes).map_err(|e| match e {
        VerifyError::Evidence(m) => VerifyError::DevEvidence(m),
        other => other,
    })
}

/// Verifies dev evidence against `policy`: refused (a failed check) unless
/// `policy.allow_insecure_dev`; otherwise the signature, the key binding, the image hash
/// (against the measurement policy) and REPORT_DATA are checked, and a warning is added.
pub fn verify(ev: &Evidence, policy: &Policy) -> Result<Verdict, VerifyError> {
    let TeeEvidence::Dev(report) = &ev.tee else {
        return Err(VerifyError::DevEvidence(
            "the evidence is SNP or TDX evidence, not a dev report".into(),
        ));
    };
    let mut v = Verdict::new(TeeKind::Dev);
    if policy.allow_insecure_dev {
        v.check(
            "insecure dev evidence",
            true,
            "allowed by --allow-insecure-dev",
        );
        v.warnings.push(DEV_WARNING.into());
    } else {
        v.check(
            "insecure dev evidence",
            false,
            "refused: development evidence proves nothing (pass --allow-insecure-dev to accept it)",
        );
    }
    v.check_result(
        "dev signature and key binding",
        verify_dev(ev)
            .map(|_| {
                "Ed25519 under the image's dev key; REPORT_DATA binds hpke_pk, receipt_pk, nonce"
                    .into()
            })
            .map_err(|e| e.to_string()),
    );
    v.check_result(
        "measurement",
        policy
            .measurement
            .check(&report.image_sha384)
            .map(|d| format!("image SHA-384 {d}"))
            .map_err(|e| format!("image SHA-384 {e}")),
    );
    v.check_result("REPORT_DATA", policy.check_report_data(&report.report_data));
    Ok(v)
}
