//! Evidence verification: SEV-SNP reports, TDX quotes v4 and insecure development reports,
//! checked against a [`Policy`], offline.
//!
//! Every verifier returns a [`Verdict`]: the list of every check with pass/fail and the reason.
//! A verdict is acceptable only if all its checks pass ([`Verdict::ok`]). Input that cannot even
//! be parsed (wrong size, not a report, unreadable collateral) is a [`VerifyError`].
//!
//! What is used and what is written here:
//! - SNP: virtee's `sev` crate parses the report (generation-aware TCB layout) and checks the
//!   RSA-PSS chain ARK → ASK → VCEK; the report signature (ECDSA P-384, SHA-384) is checked here
//!   with RustCrypto's `p384` over the *raw* bytes [0, 0x2A0) — `sev` re-encodes the parsed
//!   report before checking, which would not see a flipped reserved bit. The VCEK's AMD
//!   extensions (TCB SPLs, hwID) are read here with `x509-cert`: no crate exposes them.
//! - TDX: Phala's `dcap-qvl` checks the quote signature, the QE report and its binding, the PCK
//!   chain to the pinned Intel SGX root, CRLs, TCB info and QE identity against "now".
//! - Dev: `pupa_protocol::evidence::verify_dev`.
//! - [`evidence`]: one `pupa_protocol::evidence::Evidence` message for any TEE, dispatched to
//!   the verifiers above with the REPORT_DATA binding of its keys and nonce.
//! - [`tdx_log`], [`tdx_linux`]: TDX's RTMR event log, and which payload the evidence shows when
//!   the policy comes from a manifest: the unikernel (its boot-configuration record) or the
//!   manifest's Linux payload (its RTMR\[1\]/RTMR\[2\]); SNP's Linux payload is a launch digest
//!   with kernel hashes ([`MeasurementPolicy::WithLinuxPayload`]).
//! - [`policy_file`]: the policy as a TOML file (`toml`, serde `deny_unknown_fields`) merged
//!   with command-line flags.

pub mod cli;
pub mod dev;
pub mod evidence;
pub mod gpu;
pub mod policy;
pub mod policy_file;
pub mod snp;
pub mod tdx;
pub mod tdx_linux;
pub mod tdx_log;

pub use evidence::Endorsements;
pub use policy::{
    LinuxPayloadTdx, MeasurementPolicy, Policy, SnpMinTcb, TdxBootPolicy, TdxTcbStatus,
};
pub use policy_file::{Pins, PolicyKnobs};

pub use pupa_spec::tee::TeeKind;
use serde::Serialize;

/// One named check of a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name, e.g. `"report signature"`.
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

fn serialize_tee<S: serde::Serializer>(tee: &TeeKind, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(tee)
}

/// The result of verifying one piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The kind of evidence verified (serialized as its name: `"snp"`, `"tdx"` or `"dev"`).
    #[serde(serialize_with = "serialize_tee")]
    pub tee: TeeKind,
    /// Every check, in the order performed.
    pub checks: Vec<Check>,
    /// Warnings that do not fail the verdict (e.g. insecure dev evidence accepted).
    pub warnings: Vec<String>,
}

impl Verdict {
    /// An empty verdict for `tee`.
    pub fn new(tee: TeeKind) -> Self {
        Self {
            tee,
            checks: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records a check.
    pub fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    /// Records a check from a result: `Ok(detail)` passes, `Err(reason)` fails.
    pub fn check_result(&mut self, name: &str, r: Result<String, String>) {
        match r {
            Ok(d) => self.check(name, true, d),
            Err(e) => self.check(name, false, e),
        }
    }

    /// True only if there is at least one check and every check passed.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The first failed check, if any.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.passed)
    }

    /// The check named `name`, if recorded.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Evidence that cannot be verified at all (malformed input, unusable collateral or policy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The SNP report is not a report.
    #[error("SNP report: {0}")]
    SnpReport(String),
    /// The VCEK certificate cannot be parsed.
    #[error("VCEK certificate: {0}")]
    Vcek(String),
    /// The TDX quote cannot be parsed.
    #[error("TDX quote: {0}")]
    TdxQuote(String),
    /// The TDX collateral cannot be parsed.
    #[error("TDX collateral: {0}")]
    Collateral(String),
    /// The evidence message cannot be decoded.
    #[error("evidence: {0}")]
    Evidence(String),
    /// The dev evidence cannot be decoded.
    #[error("dev evidence: {0}")]
    DevEvidence(String),
    /// The policy is malformed.
    #[error("policy: {0}")]
    Policy(String),
}
