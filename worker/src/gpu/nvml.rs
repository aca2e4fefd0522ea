//! [`GpuAttestation`] on NVML through `nvml-wrapper` (feature `nvml`), which loads
//! `libnvidia-ml.so` at run time: the binary starts on machines without a driver, and
//! [`Nvml::load`] fails there with NVML's error.
//!
//! The calls: `nvmlSystemGetConfComputeSettings` (CC feature, devtools mode),
//! `nvmlDeviceGetCount_v2`, `nvmlDeviceGetConfComputeGpuAttestationReport` (with the 32-byte
//! nonce), `nvmlDeviceGetConfComputeGpuCertificate` (its attestation-key chain, PEM) and
//! `nvmlSystemSetConfComputeGpusReadyState`. Not executed on any machine of this project so
//! far (no NVIDIA GPU); the mock stands in for it in the tests.

use nvml_wrapper::Nvml as Lib;

use super::{CcState, GpuAttestation, GpuError};

/// NVML, loaded and initialised.
pub struct Nvml {
    lib: Lib,
}

impl Nvml {
    /// Loads `libnvidia-ml.so` and calls `nvmlInit_v2`.
    pub fn load() -> Result<Self, GpuError> {
        Lib::init()
            .map(|lib| Nvml { lib })
            .map_err(|e| GpuError::new("nvmlInit", e))
    }

    fn device(&self, index: u32, call: &'static str) -> Result<nvml_wrapper::Device<'_>, GpuError> {
        self.lib
            .device_by_index(index)
            .map_err(|e| GpuError::new(call, format!("nvmlDeviceGetHandleByIndex({index}): {e}")))
    }
}

impl GpuAttestation for Nvml {
    fn cc_state(&self) -> Result<CcState, GpuError> {
        // The settings are the system's; nvml-wrapper reaches them through a device handle.
        let d = self.device(0, "cc_state")?;
        let map = |e| GpuError::new("cc_state", format!("nvmlSystemGetConfComputeSettings: {e}"));
        Ok(CcState {
            cc_enabled: d.is_cc_enabled().map_err(map)?,
            devtools: d.is_cc_dev_mode_enabled().map_err(map)?,
        })
    }

    fn device_count(&self) -> Result<u32, GpuError> {
        self.lib
            .device_count()
            .map_err(|e| GpuError::new("device_count", e))
    }

    fn attestation_report(&self, index: u32, nonce: &[u8; 32]) -> Result<Vec<u8>, GpuError> {
        let d = self.device(index, "attestation_report")?;
        let r = d
            .confidential_compute_gpu_attestation_report(*nonce)
            .map_err(|e| {
                GpuError::new(
                    "attestation_report",
                    format!("nvmlDeviceGetConfComputeGpuAttestationReport({index}): {e}"),
                )
            })?;
        Ok(r.attestation_report)
    }

    fn certificate_chain(&self, index: u32) -> Result<Vec<u8>, GpuError> {
        let d = self.device(index, "certificate_chain")?;
        let c = d.confidential_compute_gpu_certificate().map_err(|e| {
            GpuError::new(
                "certificate_chain",
                format!("nvmlDeviceGetConfComputeGpuCertificate({index}): {e}"),
            )
        })?;
        // The attestation key's chain (NVIDIA's verifier reads this one, not the device's).
        Ok(c.attestation_cert_chain)
    }

    fn set_ready(&self, ready: bool) -> Result<(), GpuError> {
        let d = self.device(0, "set_ready")?;
        d.set_confidential_compute_state(ready).map_err(|e| {
            GpuError::new(
                "set_ready",
                format!("nvmlSystemSetConfComputeGpusReadyState: {e}"),
            )
        })
    }
}
