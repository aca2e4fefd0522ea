//! `Policy`: what evidence the client accepts (`pupa_host::client::EvidencePolicy`), and which
//! TEE it must come from.

use std::path::PathBuf;

use pupa_host::client::{ClientError, EvidencePolicy, VerifiedWorker};
use pupa_protocol::evidence::TeeKind;
use pyo3::prelude::*;

use crate::errors;

/// What evidence a client accepts. Build one with `Policy.dev(...)`, `Policy.snp(...)` or
/// `Policy.tdx(...)`; each accepts evidence of its TEE only.
///
/// Measurements come from `expect` (the `manifest.json` of `pupa-image build`) or
/// `measurements` (96 hex characters each: the dev image SHA-384, the SNP MEASUREMENT or the
/// TDX MRTD); `policy_file` is a TOML policy as `pupa-measure verify --policy` reads
/// (TCB minimums, debug, VMPL, migration agent, pinned keys). `now` (RFC 3339) fixes the time
/// VCEK validity and TDX collateral are checked at.
#[pyclass(frozen, module = "pupa")]
pub struct Policy {
    pub inner: EvidencePolicy,
    pub tee: TeeKind,
}

fn paths(p: Option<PathBuf>) -> Option<PathBuf> {
    p.filter(|p| !p.as_os_str().is_empty())
}

struct Spec {
    tee: TeeKind,
    expect: Option<PathBuf>,
    measurements: Option<Vec<String>>,
    policy_file: Option<PathBuf>,
    vcek: Option<PathBuf>,
    collateral: Option<PathBuf>,
    now: Option<String>,
}

impl Spec {
    fn build(self, py: Python<'_>) -> PyResult<Policy> {
        let mut inner = EvidencePolicy::load(
            self.tee == TeeKind::Dev,
            paths(self.policy_file).as_deref(),
            paths(self.expect).as_deref(),
            paths(self.vcek).as_deref(),
            paths(self.collateral).as_deref(),
            self.now.as_deref(),
        )
        .map_err(|e| errors::to_py(py, e))?;
        if let Some(m) = self.measurements {
            inner.knobs.measurements = Some(m);
            // The listed measurements are the choice, not the manifest's.
            inner.knobs.expect = None;
            inner.knobs.any_measurement = None;
            inner
                .knobs
                .measurement(self.tee)
                .map_err(|e| errors::to_py(py, ClientError::Policy(e.to_string())))?;
        }
        Ok(Policy {
            inner,
            tee: self.tee,
        })
    }
}

/// The name `VerifiedWorker::tee` gives a TEE kind.
pub fn tee_name(t: TeeKind) -> &'static str {
    match t {
        TeeKind::Dev => "insecure-dev",
        TeeKind::Snp => "SEV-SNP",
        TeeKind::Tdx => "TDX",
    }
}

impl Policy {
    /// Refuses a worker whose (verified) evidence is of another TEE than the policy's.
    pub fn check_tee(&self, w: &VerifiedWorker) -> Result<(), ClientError> {
        let want = tee_name(self.tee);
        if w.tee == want {
            return Ok(());
        }
        Err(ClientError::EvidenceRejected {
            tee: w.tee,
            check: "TEE kind".into(),
            reason: format!("the policy requires {want} evidence"),
            verdict: None,
        })
    }
}

#[pymethods]
impl Policy {
    /// INSECURE development evidence (a guest without a TEE: no confidentiality, for tests
    /// and demos); optionally pinned to image measurements.
    #[staticmethod]
    #[pyo3(signature = (expect=None, measurements=None, policy_file=None))]
    fn dev(
        py: Python<'_>,
        expect: Option<PathBuf>,
        measurements: Option<Vec<String>>,
        policy_file: Option<PathBuf>,
    ) -> PyResult<Policy> {
        Spec {
            tee: TeeKind::Dev,
            expect,
            measurements,
            policy_file,
            vcek: None,
            collateral: None,
            now: None,
        }
        .build(py)
    }

    /// AMD SEV-SNP evidence: the report signed by the VCEK (the one in the evidence, or
    /// `vcek`, a DER or PEM file), chained to AMD's roots, with the expected measurement and
    /// REPORT_DATA binding the worker's keys to this client's nonce.
    #[staticmethod]
    #[pyo3(signature = (expect=None, measurements=None, policy_file=None, vcek=None, now=None))]
    fn snp(
        py: Python<'_>,
        expect: Option<PathBuf>,
        measurements: Option<Vec<String>>,
        policy_file: Option<PathBuf>,
        vcek: Option<PathBuf>,
        now: Option<String>,
    ) -> PyResult<Policy> {
        Spec {
            tee: TeeKind::Snp,
            expect,
            measurements,
            policy_file,
            vcek,
            collateral: None,
            now,
        }
        .build(py)
    }

    /// Intel TDX evidence: the quote checked against `collateral` (the TDX collateral JSON:
    /// TCB info, QE identity, CRLs, issuer chains), with the expected MRTD and REPORT_DATA
    /// binding the worker's keys to this client's nonce.
    #[staticmethod]
    #[pyo3(signature = (expect=None, measurements=None, policy_file=None, collateral=None, now=None))]
    fn tdx(
        py: Python<'_>,
        expect: Option<PathBuf>,
        measurements: Option<Vec<String>>,
        policy_file: Option<PathBuf>,
        collateral: Option<PathBuf>,
        now: Option<String>,
    ) -> PyResult<Policy> {
        Spec {
            tee: TeeKind::Tdx,
            expect,
            measurements,
            policy_file,
            vcek: None,
            collateral,
            now,
        }
        .build(py)
    }

    /// This policy, also requiring at least `require` attested NVIDIA GPUs in the evidence:
    /// each GPU report over the nonce derived from this session's REPORT_DATA, chained to
    /// NVIDIA's device root, its measurements equal to the driver and VBIOS `rims` (signed
    /// SWID tag files), versions among `driver_versions` / `vbios_versions` when given.
    /// Certificate revocation: the DER OCSP responses in `ocsp` (files) are checked for the GPU
    /// chain; without them it fails unless `skip_revocation=True`, reported as a warning.
    #[pyo3(signature = (require=1, rims=Vec::new(), skip_revocation=false, driver_versions=None, vbios_versions=None, ocsp=Vec::new()))]
    // One Rust argument per Python keyword argument.
    #[allow(clippy::too_many_arguments)]
    fn with_gpus(
        &self,
        py: Python<'_>,
        require: u32,
        rims: Vec<PathBuf>,
        skip_revocation: bool,
        driver_versions: Option<Vec<String>>,
        vbios_versions: Option<Vec<String>>,
        ocsp: Vec<PathBuf>,
    ) -> PyResult<Policy> {
        let mut inner = self.inner.clone();
        inner.knobs.require_gpus = Some(require);
        inner.knobs.gpu_driver_versions = driver_versions;
        inner.knobs.gpu_vbios_versions = vbios_versions;
        inner.endorsements = inner
            .endorsements
            .with_gpu(&rims, skip_revocation)
            .and_then(|e| e.with_gpu_ocsp(&ocsp))
            .map_err(|e| errors::to_py(py, ClientError::Unverifiable(e)))?;
        Ok(Policy {
            inner,
            tee: self.tee,
        })
    }

    /// `"dev"`, `"snp"` or `"tdx"`.
    #[getter]
    fn tee(&self) -> &'static str {
        self.tee.name()
    }

    fn __repr__(&self) -> String {
        let k = &self.inner.knobs;
        let what = if let Some(e) = &k.expect {
            format!("expect={}", e.display())
        } else if let Some(m) = &k.measurements {
            format!("measurements={m:?}")
        } else {
            "any measurement".into()
        };
        let gpus = match k.require_gpus {
            Some(n) if n > 0 => format!(".with_gpus({n})"),
            _ => String::new(),
        };
        format!("Policy.{}({what}){gpus}", self.tee.name())
    }
}
