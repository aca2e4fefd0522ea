//! GPU evidence: NVIDIA confidential-computing attestation through NVML.
//!
//! [`GpuAttestation`] is the part of NVML the worker uses; [`nvml`] (feature `nvml`) implements
//! it on `nvml-wrapper`, which loads `libnvidia-ml.so` at run time, and [`mock`] serves files
//! (NVIDIA's real samples in the tests) and records the calls.
//!
//! The policy, in NVIDIA's required order:
//! 1. at startup ([`check_startup`]): CC mode on and devtools mode off, else the worker refuses
//!    to start; at most [`MAX_GPUS`] GPUs;
//! 2. for every evidence ([`GpuTee::gpu_evidence`]): GPU `i`'s attestation report is requested
//!    with `gpu_nonce(REPORT_DATA, i)` and its certificate chain read;
//! 3. only after step 2 succeeded for every GPU (the boot evidence) is the GPU set made ready
//!    for work (`nvmlSystemSetConfComputeGpusReadyState(1)`), once.

pub mod mock;
#[cfg(feature = "nvml")]
pub mod nvml;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;

use pupa_protocol::evidence::{gpu_nonce, GpuEvidence, TeeEvidence, MAX_GPUS};
use pupa_protocol::job::{Job, JobShape};
use pupa_runtime::{Compute, ComputeError, Tee, TeeFailure};

/// The system's confidential-computing settings (`nvmlSystemGetConfComputeSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcState {
    /// The CC feature is enabled.
    pub cc_enabled: bool,
    /// Devtools mode is on (the GPU's memory is readable by debuggers: not confidential).
    pub devtools: bool,
}

/// An NVML call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {detail}")]
pub struct GpuError {
    /// The NVML function (or mock step) that failed.
    pub call: &'static str,
    /// What it said.
    pub detail: String,
}

impl GpuError {
    /// An error of `call`.
    pub fn new(call: &'static str, detail: impl ToString) -> Self {
        GpuError {
            call,
            detail: detail.to_string(),
        }
    }
}

/// What the worker needs of NVML.
pub trait GpuAttestation {
    /// The system's CC feature and devtools mode.
    fn cc_state(&self) -> Result<CcState, GpuError>;
    /// How many GPUs NVML sees.
    fn device_count(&self) -> Result<u32, GpuError>;
    /// GPU `index`'s attestation report (SPDM GET_MEASUREMENTS request ‖ response) over `nonce`.
    fn attestation_report(&self, index: u32, nonce: &[u8; 32]) -> Result<Vec<u8>, GpuError>;
    /// GPU `index`'s attestation-key certificate chain (PEM, leaf first).
    fn certificate_chain(&self, index: u32) -> Result<Vec<u8>, GpuError>;
    /// Sets whether the GPU set accepts work.
    fn set_ready(&self, ready: bool) -> Result<(), GpuError>;
}

/// `--gpus`: where GPU evidence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuChoice {
    /// No GPU evidence.
    None,
    /// NVML if it loads and sees GPUs; no GPUs otherwise (said in the log).
    Auto,
    /// NVML, required.
    Nvml,
    /// The test mock serving the files of a directory ([`mock::MockNvml::from_dir`]).
    Mock(PathBuf),
}

impl FromStr for GpuChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(GpuChoice::None),
            "auto" => Ok(GpuChoice::Auto),
            "nvml" => Ok(GpuChoice::Nvml),
            _ => match s.strip_prefix("mock:") {
                Some(d) if !d.is_empty() => Ok(GpuChoice::Mock(d.into())),
                _ => Err(format!("{s:?}: expected auto, none, nvml or mock:DIR")),
            },
        }
    }
}

/// Why the GPUs keep the worker from starting.
#[derive(Debug, thiserror::Error)]
pub enum GpuStartError {
    /// `--gpus nvml` but NVML did not load or failed.
    #[error("--gpus: NVML: {0}")]
    Nvml(GpuError),
    /// `--gpus nvml` in a build without the `nvml` feature.
    #[error("--gpus nvml: this pupa-worker was built without the nvml feature")]
    NotBuilt,
    /// The mock's directory is unusable.
    #[error("--gpus mock: {0}")]
    Mock(String),
    /// CC mode is off.
    #[error("GPU confidential-computing mode is off: refusing to start (enable CC mode on every GPU, or --gpus none)")]
    CcOff,
    /// Devtools mode is on.
    #[error("GPU devtools mode is on: its memory is not confidential; refusing to start")]
    DevTools,
    /// More GPUs than evidence may carry.
    #[error("{0} GPUs: evidence carries at most {MAX_GPUS}")]
    TooMany(u32),
    /// A GPU was asked for and none is there.
    #[error("--gpus {0}: NVML sees no GPU")]
    NoGpu(&'static str),
}

/// What [`open`] found.
pub enum Opened {
    /// GPUs that passed [`check_startup`], and how many.
    Gpus(Box<dyn GpuAttestation>, u32),
    /// No GPU evidence, and why (for the log).
    NoGpus(String),
}

/// Opens the GPUs `choice` names and checks the startup policy.
pub fn open(choice: &GpuChoice) -> Result<Opened, GpuStartError> {
    let (gpus, required): (Box<dyn GpuAttestation>, _) = match choice {
        GpuChoice::None => return Ok(Opened::NoGpus("--gpus none: no GPU evidence".into())),
        GpuChoice::Mock(dir) => (
            Box::new(mock::MockNvml::from_dir(dir).map_err(GpuStartError::Mock)?),
            "mock",
        ),
        GpuChoice::Nvml => (load_nvml().map_err(GpuStartError::Nvml)?, "nvml"),
        GpuChoice::Auto => match load_nvml() {
            Ok(g) => (g, ""),
            Err(e) => {
                return Ok(Opened::NoGpus(format!(
                    "--gpus auto: no NVML ({e}): no GPU evidence"
                )))
            }
        },
    };
    let n = gpus.device_count().map_err(GpuStartError::Nvml)?;
    if n == 0 {
        if required.is_empty() {
            return Ok(Opened::NoGpus(
                "--gpus auto: NVML sees no GPU: no GPU evidence".into(),
            ));
        }
        return Err(GpuStartError::NoGpu(required));
    }
    let n = check_startup(&*gpus)?;
    tracing::info!(
        gpus = n,
        "GPUs in CC mode, devtools off: GPU evidence with every report"
    );
    Ok(Opened::Gpus(gpus, n))
}

/// The compute backend, opened after the worker's boot evidence when there are GPUs: on a
/// GPU in CC mode CUDA accepts work only once the GPUs are set ready, which the boot
/// evidence does ([`GpuTee`]). `run` fills it before serving.
pub struct LateCompute<K>(pub Rc<RefCell<Option<K>>>);

impl<K: Compute> Compute for LateCompute<K> {
    fn name(&self) -> &'static str {
        self.0.borrow().as_ref().map_or("unopened", K::name)
    }

    fn execute(
        &mut self,
        job: &mut Job,
        shape: &JobShape,
        expired: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, ComputeError> {
        match self.0.borrow_mut().as_mut() {
            Some(k) => k.execute(job, shape, expired),
            // Not reached: `run` opens the backend before it serves.
            None => Err(ComputeError::Inconsistent),
        }
    }
}

#[cfg(feature = "nvml")]
fn load_nvml() -> Result<Box<dyn GpuAttestation>, GpuError> {
    Ok(Box::new(nvml::Nvml::load()?))
}

#[cfg(not(feature = "nvml"))]
fn load_nvml() -> Result<Box<dyn GpuAttestation>, GpuError> {
    Err(GpuError::new(
        "nvml",
        "this pupa-worker was built without the nvml feature",
    ))
}

/// The startup policy: CC on, devtools off, 1..=[`MAX_GPUS`] GPUs.
pub fn check_startup(gpus: &dyn GpuAttestation) -> Result<u32, GpuStartError> {
    let st = gpus.cc_state().map_err(GpuStartError::Nvml)?;
    if !st.cc_enabled {
        return Err(GpuStartError::CcOff);
    }
    if st.devtools {
        return Err(GpuStartError::DevTools);
    }
    let n = gpus.device_count().map_err(GpuStartError::Nvml)?;
    if n as usize > MAX_GPUS {
        return Err(GpuStartError::TooMany(n));
    }
    if n == 0 {
        return Err(GpuStartError::NoGpu("nvml"));
    }
    Ok(n)
}

/// A CPU TEE with the GPUs' evidence beside it.
pub struct GpuTee {
    cpu: Box<dyn Tee>,
    gpus: Box<dyn GpuAttestation>,
    ready: bool,
}

impl GpuTee {
    /// The CPU TEE `cpu` and the GPUs `gpus` (which passed [`check_startup`]).
    pub fn new(cpu: Box<dyn Tee>, gpus: Box<dyn GpuAttestation>) -> Self {
        GpuTee {
            cpu,
            gpus,
            ready: false,
        }
    }

    fn collect(&mut self, report_data: &[u8; 64]) -> Result<Vec<GpuEvidence>, GpuError> {
        let n = self.gpus.device_count()?;
        if n as usize > MAX_GPUS {
            return Err(GpuError::new("device_count", format!("{n} GPUs")));
        }
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let nonce = gpu_nonce(report_data, i);
            let report = self.gpus.attestation_report(i, &nonce)?;
            let cert_chain = self.gpus.certificate_chain(i)?;
            out.push(GpuEvidence { report, cert_chain });
        }
        if !self.ready {
            // NVIDIA's order: every GPU attested (report with the nonce, chain read) first.
            self.gpus.set_ready(true)?;
            self.ready = true;
            tracing::info!(gpus = n, "GPUs attested, set ready for work");
        }
        Ok(out)
    }
}

impl Tee for GpuTee {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeFailure> {
        self.cpu.evidence(report_data)
    }

    fn gpu_evidence(&mut self, report_data: &[u8; 64]) -> Result<Vec<GpuEvidence>, TeeFailure> {
        self.collect(report_data).map_err(|e| {
            tracing::error!("GPU evidence failed: {e}");
            TeeFailure(category(e.call))
        })
    }
}

/// A fixed description for the runtime's `TeeFailure` (the full error is logged).
fn category(call: &str) -> &'static str {
    match call {
        "attestation_report" => "GPU: attestation report failed",
        "certificate_chain" => "GPU: certificate chain failed",
        "set_ready" => "GPU: setting the GPUs ready failed",
        "device_count" => "GPU: device count failed",
        _ => "GPU: NVML failed",
    }
}
