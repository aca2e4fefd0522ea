//! Launch measurements of OVMF-format firmware, recomputed offline.
//!
//! - [`ovmf`]: the OVMF GUIDed footer table, SEV metadata (`ASEV`) and the TDVF descriptor.
//! - [`snp`]: the AMD SEV-SNP launch digest (PAGE_INFO chain, VMSAs, kernel-hashes table).
//! - [`tdx`]: the Intel TDX MRTD (MEM.PAGE.ADD / MR.EXTEND records), both orderings.
//! - [`eventlog`]: RTMR replay from a CCEL / TCG crypto-agile event log.
//! - [`manifest`]: the `"measurements"` object of `manifest.json` and its checker.
//! - [`verify`]: SNP report / TDX quote / dev evidence verification against a policy.
//!
//! Every parser here takes untrusted bytes and returns a specific error instead of panicking.

pub mod eventlog;
pub mod guid;
pub mod hexfmt;
pub mod linux;
pub mod manifest;
pub mod ovmf;
pub mod snp;
pub mod tdx;
pub mod tee_arg;
pub mod verify;

pub use guid::Guid;
pub use ovmf::{Firmware, OvmfError};

/// A SHA-384 digest (launch digest, MRTD, RTMR).
pub type Digest384 = [u8; 48];
