//! AMD SEV-SNP guest side: the logic around the SNP instructions, testable on the host.
//!
//! - [`guest_msg`]: AES-256-GCM guest-message framing with VMPCK0 and sequence numbers
//!   (Firmware ABI spec §8, Table 97);
//! - [`messages`]: MSG_REPORT_REQ / MSG_KEY_REQ payloads and their responses, VMPCK0 from the
//!   secrets page.
//!
//! - [`ghcb`]: the GHCB MSR protocol and the GHCB page layout;
//! - [`ghcb_slots`]: one GHCB page per vCPU, found by the vCPU's GHCB MSR;
//! - [`cpuid`]: the SNP CPUID page and CPUID lookup;
//! - [`vc`]: #VC decode/emulation (CPUID, IN/OUT, RDMSR/WRMSR) around the VMGEXIT;
//! - [`psc`]: page-state change requests and the PVALIDATE plan;
//! - [`backend`]: [`backend::SnpTee`], the `pupa_runtime::Tee` over SNP guest requests;
//! - [`ap`]: application-processor creation with guest-built VMSAs (GHCB spec §4.1.9).
//!
//! The instructions themselves (VMGEXIT, PVALIDATE, RMPADJUST, the GHCB MSR) live in the firmware binary
//! (`arch/snp.rs`, `platform/snp.rs`), which drives these modules.

pub mod ap;
pub mod backend;
pub mod cpuid;
pub mod ghcb;
pub mod ghcb_slots;
pub mod guest_msg;
pub mod messages;
pub mod psc;
pub mod vc;

#[cfg(test)]
mod tests;
