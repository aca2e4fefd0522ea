//! AMD SEV-SNP guest side: the logic around the SNP instructions, testable on the host.
//!
//! - [`guest_msg`]: AES-256-GCM guest-message framing with VMPCK0 and sequence numbers
//!   (Firmware ABI spec §8, Table 97);
//! - [`messages`]: MSG_REPORT_REQ / MSG_KEY_REQ payloads and their responses, VMPCK0 from the
//!   secrets page.
//!
//! Not here yet (see the report of issue 4): the #VC handler, the GHCB MSR protocol and GHCB
//! page, PVALIDATE and page-state changes; the VMGEXIT(SNP_GUEST_REQUEST) wrapper that carries
//! these pages belongs to the firmware binary's platform layer.

pub mod guest_msg;
pub mod messages;

#[cfg(test)]
mod tests;
