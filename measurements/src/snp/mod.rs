//! AMD SEV-SNP launch digest of an OVMF-format firmware.
//!
//! The digest is what the PSP accumulates over SNP_LAUNCH_UPDATE calls (SEV-SNP Firmware ABI
//! Specification, §8.17 "SNP_LAUNCH_UPDATE"), in the order QEMU issues them
//! (`target/i386/sev.c`):
//! 1. the firmware image as NORMAL pages from 4 GiB − size upwards;
//! 2. each `ASEV` metadata section in table order: SNP_SEC_MEM as ZERO pages (UNMEASURED on
//!    GCE), SECRETS and CPUID pages (EC2 issues CPUID pages after all other sections),
//!    SVSM_CAA as ZERO pages, SNP_KERNEL_HASHES as the NORMAL page holding the hashes table
//!    (or ZERO pages without direct boot);
//! 3. one VMSA page per vCPU (BSP at the reset vector, APs at the SEV-ES reset address).
//!
//! Checked against virtee/sev-snp-measure (published vectors in `tests/snp_vectors.rs`, the
//! installed tool in `tests/snp_oracle.rs`).

mod gctx;
pub mod hashes;
pub mod vmsa;

use core::fmt;
use core::str::FromStr;

pub use gctx::{LaunchDigest, PageType, VMSA_GPA};
pub use hashes::KernelHashes;

use crate::ovmf::{Firmware, SevSectionType};
use crate::Digest384;

/// Most vCPUs we will build VMSAs for (QEMU's x86 limit is far below).
pub const MAX_VCPUS: u32 = 65536;

/// Which hypervisor builds the VMSAs (their reset states differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum VmmType {
    /// QEMU/KVM.
    #[serde(rename = "QEMU")]
    Qemu,
    /// Amazon EC2.
    #[serde(rename = "ec2")]
    Ec2,
    /// Google Compute Engine.
    #[serde(rename = "gce")]
    Gce,
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmmType::Qemu => "QEMU",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
        })
    }
}

impl FromStr for VmmType {
    type Err = SnpError;
    fn from_str(s: &str) -> Result<Self, SnpError> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Ok(VmmType::Qemu),
            "ec2" => Ok(VmmType::Ec2),
            "gce" => Ok(VmmType::Gce),
            _ => Err(SnpError::UnknownVmm(s.to_owned())),
        }
    }
}

/// The AMD EPYC CPU models QEMU knows (`builtin_x86_defs`), by CPUID signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuType {
    /// EPYC (Naples) and its versions EPYC-v1..v4, EPYC-IBPB: family 23 model 1 stepping 2.
    Epyc,
    /// EPYC-Rome: family 23 model 49 stepping 0.
    Rome,
    /// EPYC-Milan: family 25 model 1 stepping 1.
    Milan,
    /// EPYC-Genoa: family 25 model 17 stepping 0.
    Genoa,
    /// EPYC-Turin: family 26 model 0 stepping 0.
    Turin,
}

impl CpuType {
    /// All types.
    pub const ALL: [CpuType; 5] = [
        CpuType::Epyc,
        CpuType::Rome,
        CpuType::Milan,
        CpuType::Genoa,
        CpuType::Turin,
    ];

    /// The CPUID(1).EAX signature.
    pub fn sig(self) -> u32 {
        match self {
            CpuType::Epyc => cpu_sig(23, 1, 2),
            CpuType::Rome => cpu_sig(23, 49, 0),
            CpuType::Milan => cpu_sig(25, 1, 1),
            CpuType::Genoa => cpu_sig(25, 17, 0),
            CpuType::Turin => cpu_sig(26, 0, 0),
        }
    }
}

impl fmt::Display for CpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuType::Epyc => "EPYC-v4",
            CpuType::Rome => "EPYC-Rome",
            CpuType::Milan => "EPYC-Milan",
            CpuType::Genoa => "EPYC-Genoa",
            CpuType::Turin => "EPYC-Turin",
        })
    }
}

impl FromStr for CpuType {
    type Err = SnpError;
    /// Accepts QEMU's names (`EPYC`, `EPYC-v4`, `EPYC-Milan-v2`, …) and the short names
    /// `Naples`, `Rome`, `Milan`, `Genoa`, `Turin`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, SnpError> {
        let l = s.to_ascii_lowercase();
        let t = match l.as_str() {
            "epyc" | "epyc-v1" | "epyc-v2" | "epyc-v3" | "epyc-v4" | "epyc-ibpb" | "naples" => {
                CpuType::Epyc
            }
            "epyc-rome" | "epyc-rome-v1" | "epyc-rome-v2" | "epyc-rome-v3" | "epyc-rome-v4"
            | "rome" => CpuType::Rome,
            "epyc-milan" | "epyc-milan-v1" | "epyc-milan-v2" | "epyc-milan-v3" | "milan" => {
                CpuType::Milan
            }
            "epyc-genoa" | "epyc-genoa-v1" | "epyc-genoa-v2" | "genoa" => CpuType::Genoa,
            "epyc-turin" | "epyc-turin-v1" | "turin" => CpuType::Turin,
            _ => return Err(SnpError::UnknownCpu(s.to_owned())),
        };
        Ok(t)
    }
}

/// CPUID Fn0000_0001_EAX from family, model and stepping (AMD CPUID Specification,
/// publication 25481, "CPUID Fn0000_0001_EAX Family, Model, Stepping Identifiers").
pub fn cpu_sig(family: u32, model: u32, stepping: u32) -> u32 {
    let (fam_lo, fam_hi) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (fam_hi << 20)
        | (((model >> 4) & 0xf) << 16)
        | (fam_lo << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

/// What to measure: the launch profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpConfig {
    /// Number of vCPUs (one VMSA each).
    pub vcpus: u32,
    /// CPUID signature placed in RDX of every VMSA (required for QEMU; EC2/GCE use 0x600).
    pub vcpu_sig: Option<u64>,
    /// The hypervisor.
    pub vmm: VmmType,
    /// SEV_FEATURES in the VMSAs (0x1 = SNP active).
    pub guest_features: u64,
    /// Direct-boot hashes, for firmware with a SNP_KERNEL_HASHES section.
    pub kernel_hashes: Option<KernelHashes>,
    /// A precomputed digest of the firmware pages to start from (sev-snp-measure's
    /// `--snp-ovmf-hash`); the image's own pages are then not hashed.
    pub ovmf_hash: Option<Digest384>,
}

impl SnpConfig {
    /// QEMU, guest features 0x1, no direct boot.
    pub fn new(vcpus: u32, cpu: CpuType) -> Self {
        Self {
            vcpus,
            vcpu_sig: Some(u64::from(cpu.sig())),
            vmm: VmmType::Qemu,
            guest_features: 0x1,
            kernel_hashes: None,
            ovmf_hash: None,
        }
    }
}

/// Why a launch digest cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// Unknown `--vmm-type`.
    #[error("unknown VMM type {0:?} (want QEMU, ec2 or gce)")]
    UnknownVmm(String),
    /// Unknown `--vcpu-type`.
    #[error("unknown vCPU type {0:?} (want EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin, …)")]
    UnknownCpu(String),
    /// The image has no SEV metadata.
    #[error(
        "firmware has no SEV metadata (OVMF table entry {})",
        crate::guid::SEV_METADATA
    )]
    NoSevMetadata,
    /// The image has no SEV-ES reset block.
    #[error(
        "firmware has no SEV-ES reset block (OVMF table entry {})",
        crate::guid::SEV_ES_RESET_BLOCK
    )]
    NoResetBlock,
    /// More than one vCPU but the AP reset address is 0.
    #[error("SEV-ES reset block gives AP reset address 0: cannot build VMSAs for {0} vCPUs")]
    NoApResetAddress(u32),
    /// Bad vCPU count.
    #[error("vCPU count {0} out of range 1..={MAX_VCPUS}")]
    BadVcpus(u32),
    /// QEMU needs a CPUID signature.
    #[error("VMM QEMU needs a vCPU signature: give --vcpu-type or --vcpu-sig")]
    MissingVcpuSig,
    /// Direct-boot hashes given but the image has nowhere to put them.
    #[error("kernel hashes given but the firmware has no SNP_KERNEL_HASHES metadata section")]
    NoKernelHashesSection,
    /// Hashes section present but no table location.
    #[error(
        "firmware has a SNP_KERNEL_HASHES section but no SEV hash table entry ({})",
        crate::guid::SEV_HASH_TABLE_RV
    )]
    NoHashTableEntry,
    /// The hashes section must be one page holding the table.
    #[error("SNP_KERNEL_HASHES section is {size:#x} bytes and the table sits at page offset {offset:#x}: the 176-byte table must fit in one 4 KiB section")]
    HashTableLayout {
        /// Section size.
        size: u32,
        /// Table offset within its page.
        offset: u32,
    },
}

/// sev-snp-measure's `snp:ovmf-hash`: the launch digest after the firmware pages only.
pub fn ovmf_hash(fw: &Firmware) -> Digest384 {
    let mut ld = LaunchDigest::new([0; 48]);
    ld.normal_pages(fw.load_gpa(), fw.data());
    ld.digest()
}

/// The SNP launch digest for `cfg`.
pub fn launch_digest(fw: &Firmware, cfg: &SnpConfig) -> Result<Digest384, SnpError> {
    launch_digest_with_vmsas(fw, cfg).map(|(d, _)| d)
}

/// One 4 KiB VMSA page.
pub type VmsaPage = Box<[u8; 4096]>;

/// The launch digest and the VMSA pages that went into it (one per vCPU), for `--dump-vmsa`.
pub fn launch_digest_with_vmsas(
    fw: &Firmware,
    cfg: &SnpConfig,
) -> Result<(Digest384, Vec<VmsaPage>), SnpError> {
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(SnpError::BadVcpus(cfg.vcpus));
    }
    let sections = fw.sev_sections().ok_or(SnpError::NoSevMetadata)?;
    let ap_eip = fw.sev_es_reset_eip().ok_or(SnpError::NoResetBlock)?;
    if ap_eip == 0 && cfg.vcpus > 1 {
        return Err(SnpError::NoApResetAddress(cfg.vcpus));
    }
    let sig = match (cfg.vmm, cfg.vcpu_sig) {
        (VmmType::Qemu, None) => return Err(SnpError::MissingVcpuSig),
        (_, s) => s.unwrap_or(0),
    };
    let has_hash_section = sections
        .iter()
        .any(|s| s.kind == SevSectionType::KernelHashes);
    if cfg.kernel_hashes.is_some() && !has_hash_section {
        return Err(SnpError::NoKernelHashesSection);
    }

    // 1. Firmware pages (or a precomputed digest of them).
    let mut ld = match cfg.ovmf_hash {
        Some(seed) => LaunchDigest::new(seed),
        None => {
            let mut ld = LaunchDigest::new([0; 48]);
            ld.normal_pages(fw.load_gpa(), fw.data());
            ld
        }
    };

    // 2. Metadata sections in table order.
    for s in sections {
        let (gpa, size) = (u64::from(s.gpa), u64::from(s.size));
        match s.kind {
            SevSectionType::SnpSecMem if cfg.vmm == VmmType::Gce => {
                ld.empty_pages(PageType::Unmeasured, gpa, size)
            }
            SevSectionType::SnpSecMem | SevSectionType::SvsmCaa => {
                ld.empty_pages(PageType::Zero, gpa, size)
            }
            SevSectionType::Secrets => ld.empty_pages(PageType::Secrets, gpa, 4096),
            SevSectionType::Cpuid if cfg.vmm != VmmType::Ec2 => {
                ld.empty_pages(PageType::Cpuid, gpa, 4096)
            }
            SevSectionType::Cpuid => {}
            SevSectionType::KernelHashes => match &cfg.kernel_hashes {
                None => ld.empty_pages(PageType::Zero, gpa, size),
                Some(kh) => {
                    let table = fw.sev_hash_table().ok_or(SnpError::NoHashTableEntry)?;
                    let offset = table.gpa & 0xfff;
                    let layout = SnpError::HashTableLayout {
                        size: s.size,
                        offset,
                    };
                    if size != 4096 {
                        return Err(layout);
                    }
                    let page = kh.page(offset as usize).ok_or(layout)?;
                    ld.normal_pages(gpa, &page);
                }
            },
        }
    }
    if cfg.vmm == VmmType::Ec2 {
        for s in sections.iter().filter(|s| s.kind == SevSectionType::Cpuid) {
            ld.empty_pages(PageType::Cpuid, u64::from(s.gpa), 4096);
        }
    }

    // 3. VMSAs: the BSP starts at the reset vector, APs at the SEV-ES reset address.
    let bsp = vmsa::build(vmsa::BSP_EIP, cfg.guest_features, sig, cfg.vmm);
    let ap = (cfg.vcpus > 1).then(|| vmsa::build(ap_eip, cfg.guest_features, sig, cfg.vmm));
    let mut pages = Vec::with_capacity(cfg.vcpus as usize);
    for i in 0..cfg.vcpus {
        let page = if i == 0 {
            &bsp
        } else {
            ap.as_ref().expect("built when vcpus > 1")
        };
        ld.vmsa_page(page);
        pages.push(page.clone());
    }
    Ok((ld.digest(), pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_signatures_match_published_values() {
        // Values listed in sev-snp-measure's README / VECTORS.md.
        assert_eq!(CpuType::Epyc.sig(), 0x800F12);
        assert_eq!(CpuType::Milan.sig(), 0xA00F11);
        assert_eq!(CpuType::Genoa.sig(), 0xA10F10);
        assert_eq!(CpuType::Turin.sig(), 0xB00F00);
        assert_eq!(CpuType::Rome.sig(), 0x830F10);
        assert_eq!("EPYC-Milan-v2".parse::<CpuType>().unwrap(), CpuType::Milan);
        assert_eq!("genoa".parse::<CpuType>().unwrap(), CpuType::Genoa);
        assert!("EPYC-Foo".parse::<CpuType>().is_err());
        assert_eq!("EC2".parse::<VmmType>().unwrap(), VmmType::Ec2);
        assert!("kvm".parse::<VmmType>().is_err());
    }
}
