//! The `"measurements"` object of `manifest.json`, and `pupa-measure check`.
//!
//! `pupa-image build` writes `manifest.json` as
//! `{"image": {"sha384": HEX, "size": N, …}, "measurements": ExpectedMeasurements, …}`;
//! [`check`] recomputes every entry from the firmware file and reports which differ.

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::hexfmt;
use crate::ovmf::{Firmware, OvmfError};
use crate::snp::{self, CpuType, SnpConfig, SnpError, VmmType};
use crate::tdx::{self, Order, TdxError};

/// vCPU counts of the default SNP launch profiles.
pub const DEFAULT_VCPUS: [u32; 4] = [1, 2, 4, 8];
/// CPU types of the default SNP launch profiles.
pub const DEFAULT_CPUS: [CpuType; 3] = [CpuType::Epyc, CpuType::Milan, CpuType::Genoa];
/// Guest features (SEV_FEATURES) of the default SNP launch profiles: SNP active only.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;
/// The TDX MRTD orderings a manifest publishes: `single`, the flow of upstream QEMU ≥ 10.1 on
/// Linux ≥ 6.16, and `twopass`, that of the older QEMU/KVM stacks (see [`crate::tdx`]). None
/// is published for cloud-hypervisor: its TDX support targets the out-of-tree KVM TDX
/// interface and runs on no upstream host (qemu/README.md), so no MRTD is vouched for it.
pub const PUBLISHED_TDX_ORDERS: [Order; 2] = [Order::Single, Order::TwoPass];

/// Expected launch measurements of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedMeasurements {
    /// SNP launch digests, one per profile.
    pub snp: Vec<SnpMeasurement>,
    /// TDX MRTDs, one per ordering of [`PUBLISHED_TDX_ORDERS`] (QEMU stacks; none for
    /// cloud-hypervisor).
    pub tdx: Vec<TdxMeasurement>,
}

/// One SNP launch profile and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpMeasurement {
    /// vCPU count.
    pub vcpus: u32,
    /// CPU model name (informational; `vcpu_sig` is what is measured).
    pub vcpu_type: Option<String>,
    /// CPUID signature placed in the VMSAs.
    pub vcpu_sig: u64,
    /// Hypervisor.
    pub vmm_type: VmmType,
    /// SEV_FEATURES.
    pub guest_features: u64,
    /// Launch digest, 96 lowercase hex characters.
    pub digest: String,
}

/// One TDX ordering and its MRTD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxMeasurement {
    /// PAGE.ADD/MR.EXTEND ordering.
    pub order: Order,
    /// MRTD, 96 lowercase hex characters.
    pub mrtd: String,
}

/// Why expected measurements cannot be computed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The firmware does not parse.
    #[error("firmware: {0}")]
    Ovmf(#[from] OvmfError),
    /// SNP digest failed.
    #[error("SNP: {0}")]
    Snp(#[from] SnpError),
    /// MRTD failed.
    #[error("TDX: {0}")]
    Tdx(#[from] TdxError),
    /// Neither SEV nor TDX metadata.
    #[error("firmware carries neither SEV nor TDX metadata: nothing to measure")]
    NothingToMeasure,
    /// The manifest is not valid JSON or lacks a field.
    #[error("manifest: {0}")]
    Format(String),
}

/// The SNP launch digests of the default profiles (1/2/4/8 vCPUs × EPYC-v4/Milan/Genoa on
/// QEMU, guest features 0x1), with `kernel_hashes` for a measured direct boot (the Linux
/// payload's manifest) or without.
pub fn snp_profiles(
    fw: &Firmware,
    kernel_hashes: Option<&snp::KernelHashes>,
) -> Result<Vec<SnpMeasurement>, snp::SnpError> {
    let mut out = Vec::new();
    for cpu in DEFAULT_CPUS {
        for vcpus in DEFAULT_VCPUS {
            let cfg = SnpConfig {
                guest_features: DEFAULT_GUEST_FEATURES,
                kernel_hashes: kernel_hashes.cloned(),
                ..SnpConfig::new(vcpus, cpu)
            };
            out.push(SnpMeasurement {
                vcpus,
                vcpu_type: Some(cpu.to_string()),
                vcpu_sig: u64::from(cpu.sig()),
                vmm_type: VmmType::Qemu,
                guest_features: DEFAULT_GUEST_FEATURES,
                digest: hexfmt::encode(&snp::launch_digest(fw, &cfg)?),
            });
        }
    }
    Ok(out)
}

/// Computes the default launch profiles: SNP 1/2/4/8 vCPUs × EPYC-v4/Milan/Genoa on QEMU with
/// guest features 0x1 (when the image has SEV metadata), and TDX MRTD in the
/// [`PUBLISHED_TDX_ORDERS`] (when it has TDVF metadata).
pub fn expected_measurements(fw: &Firmware) -> Result<ExpectedMeasurements, ManifestError> {
    let mut out = ExpectedMeasurements {
        snp: Vec::new(),
        tdx: Vec::new(),
    };
    if fw.sev_sections().is_some() {
        out.snp = snp_profiles(fw, None)?;
    }
    if fw.tdvf_sections().is_some() {
        for order in PUBLISHED_TDX_ORDERS {
            out.tdx.push(TdxMeasurement {
                order,
                mrtd: hexfmt::encode(&tdx::mrtd(fw, order)?),
            });
        }
    }
    if out.snp.is_empty() && out.tdx.is_empty() {
        return Err(ManifestError::NothingToMeasure);
    }
    Ok(out)
}

/// One line of a check report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// What was checked.
    pub what: String,
    /// Value in the manifest.
    pub expected: String,
    /// Value recomputed from the firmware.
    pub actual: String,
    /// Whether they are equal.
    pub matches: bool,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// One row per checked value.
    pub rows: Vec<CheckRow>,
}

impl CheckReport {
    /// True when every row matches.
    pub fn all_match(&self) -> bool {
        self.rows.iter().all(|r| r.matches)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
        for r in &self.rows {
            let verdict = if r.matches { "match" } else { "DIFFERS" };
            writeln!(f, "{:<w$}  {:<7}  {}", r.what, verdict, r.actual)?;
            if !r.matches {
                writeln!(f, "{:<w$}  {:<7}  {} (manifest)", "", "", r.expected)?;
            }
        }
        let bad = self.rows.iter().filter(|r| !r.matches).count();
        if bad == 0 {
            writeln!(f, "all {} values match", self.rows.len())
        } else {
            writeln!(f, "{bad} of {} values DIFFER", self.rows.len())
        }
    }
}

fn field<'a>(
    v: &'a serde_json::Value,
    path: &[&str],
) -> Result<&'a serde_json::Value, ManifestError> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .ok_or_else(|| ManifestError::Format(format!("missing field {}", path.join("."))))?;
    }
    Ok(cur)
}

/// Checks a manifest (JSON text) against a firmware image: its SHA-384 and size, and every
/// listed measurement, recomputed with the profile the manifest states.
pub fn check(manifest_json: &str, firmware: &[u8]) -> Result<CheckReport, ManifestError> {
    let v: serde_json::Value = serde_json::from_str(manifest_json)
        .map_err(|e| ManifestError::Format(format!("not JSON: {e}")))?;
    let want_sha = field(&v, &["image", "sha384"])?
        .as_str()
        .ok_or_else(|| ManifestError::Format("image.sha384 is not a string".into()))?;
    let meas: ExpectedMeasurements = serde_json::from_value(field(&v, &["measurements"])?.clone())
        .map_err(|e| ManifestError::Format(format!("measurements: {e}")))?;
    let mut rows = Vec::new();
    let sha = hexfmt::encode(&Sha384::digest(firmware));
    rows.push(CheckRow {
        what: "image sha384".into(),
        expected: want_sha.to_ascii_lowercase(),
        matches: sha == want_sha.to_ascii_lowercase(),
        actual: sha,
    });
    if let Some(size) = v.get("image").and_then(|i| i.get("size")) {
        let want = size
            .as_u64()
            .ok_or_else(|| ManifestError::Format("image.size is not a number".into()))?;
        rows.push(CheckRow {
            what: "image size".into(),
            expected: want.to_string(),
            actual: firmware.len().to_string(),
            matches: want == firmware.len() as u64,
        });
    }
    let fw = Firmware::parse(firmware)?;
    for m in &meas.snp {
        let cfg = SnpConfig {
            vcpus: m.vcpus,
            vcpu_sig: Some(m.vcpu_sig),
            vmm: m.vmm_type,
            guest_features: m.guest_features,
            kernel_hashes: None,
            ovmf_hash: None,
        };
        let actual = hexfmt::encode(&snp::launch_digest(&fw, &cfg)?);
        let label = m
            .vcpu_type
            .clone()
            .unwrap_or_else(|| format!("sig {:#x}", m.vcpu_sig));
        rows.push(CheckRow {
            what: format!(
                "SNP {} vCPU {} {} features {:#x}",
                m.vcpus, label, m.vmm_type, m.guest_features
            ),
            matches: actual == m.digest.to_ascii_lowercase(),
            expected: m.digest.clone(),
            actual,
        });
    }
    for m in &meas.tdx {
        let actual = hexfmt::encode(&tdx::mrtd(&fw, m.order)?);
        rows.push(CheckRow {
            what: format!("TDX MRTD {}", m.order),
            matches: actual == m.mrtd.to_ascii_lowercase(),
            expected: m.mrtd.clone(),
            actual,
        });
    }
    Ok(CheckReport { rows })
}
