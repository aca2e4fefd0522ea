//! The firmware's table of per-vCPU GHCB pages under SNP (`pupa_guest::snp::ghcb_slots`): slot 0
//! is the boot CPU's page (`snp::init`), slot i AP i's (a page of the shared window, set by the
//! boot CPU before it creates the AP, registered by the AP first thing in its entry).

use pupa_guest::snp::ghcb::{self, MsrProtocolError};
use pupa_guest::snp::ghcb_slots::{self, Slot};

use super::smp::MAX_CPUS;
use crate::arch::snp::{ghcb_msr_read, msr_protocol};

static SLOTS: [Slot; MAX_CPUS as usize] = [const { Slot::new() }; MAX_CPUS as usize];

/// Records vCPU `index`'s GHCB page (4 KiB aligned, shared). Returns false if `index` is out
/// of range.
pub fn set(index: usize, gpa: u64) -> bool {
    ghcb_slots::set(&SLOTS, index, gpa)
}

/// Why a vCPU could not register its GHCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The boot CPU set no page for this index.
    #[error("no GHCB page for vCPU {0}")]
    NoPage(usize),
    /// The hypervisor's answer.
    #[error("GHCB registration: {0}")]
    Msr(#[from] MsrProtocolError),
}

/// Registers slot `index`'s page as this vCPU's GHCB (MSR protocol 0x012/0x013). Issues only
/// WRMSR/RDMSR of the GHCB MSR and VMGEXIT: safe before any #VC can be handled.
pub fn register_self(index: usize) -> Result<(), RegisterError> {
    let gpa = ghcb_slots::page_of(&SLOTS, index).ok_or(RegisterError::NoPage(index))?;
    let request = ghcb::register_ghcb_request(gpa)?;
    Ok(ghcb::register_ghcb_response(msr_protocol(request), gpa)?)
}

/// This vCPU's slot, by the GPA in its GHCB MSR; None before it registered one.
pub fn current() -> Option<&'static Slot> {
    ghcb_slots::find(&SLOTS, ghcb_msr_read())
}
