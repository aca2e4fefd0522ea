//! One GHCB page per vCPU under SNP (GHCB spec 56421 §2.3.2: each vCPU registers its own GHCB
//! GPA with MSR protocol 0x012 before using it; Linux `snp_register_per_cpu_ghcb`). Slot 0 is
//! the boot CPU's page (`snp::init`), slot i AP i's (a page of the shared window, set by the
//! boot CPU before it creates the AP, registered by the AP first thing in its entry).
//!
//! A vCPU finds its own slot by the GHCB MSR: once registered it holds the page's GPA (bits
//! 63:12; the MSR protocol leaves a response code in bits 11:0), and reading it raises no #VC.
//! Each slot has its own busy flag: a #VC on one vCPU never waits for another's exchange. If
//! the hypervisor rewrote the MSR (it can, at a VMGEXIT), the lookup finds no slot or another
//! vCPU's, whose busy flag still serialises the page: the worst it gets is a termination.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pupa_guest::snp::ghcb::{self, MsrProtocolError};

use super::smp::MAX_CPUS;
use crate::arch::snp::{ghcb_msr_read, msr_protocol};

/// A vCPU's GHCB page: its GPA (0 = none yet) and whether an exchange is using it.
pub struct Slot {
    gpa: AtomicU64,
    busy: AtomicBool,
}

static SLOTS: [Slot; MAX_CPUS as usize] = [const {
    Slot {
        gpa: AtomicU64::new(0),
        busy: AtomicBool::new(false),
    }
}; MAX_CPUS as usize];

/// The GHCB MSR's GPA bits.
const GPA_MASK: u64 = !0xFFF;

/// Records vCPU `index`'s GHCB page (4 KiB aligned, shared). Returns false if `index` is out
/// of range.
pub fn set(index: usize, gpa: u64) -> bool {
    match SLOTS.get(index) {
        Some(s) => {
            s.gpa.store(gpa & GPA_MASK, Ordering::Release);
            true
        }
        None => false,
    }
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
    let gpa = SLOTS
        .get(index)
        .map_or(0, |s| s.gpa.load(Ordering::Acquire));
    if gpa == 0 {
        return Err(RegisterError::NoPage(index));
    }
    let request = ghcb::register_ghcb_request(gpa)?;
    Ok(ghcb::register_ghcb_response(msr_protocol(request), gpa)?)
}

/// This vCPU's slot, by the GPA in its GHCB MSR; None before it registered one.
pub fn current() -> Option<&'static Slot> {
    let gpa = ghcb_msr_read() & GPA_MASK;
    if gpa == 0 {
        return None;
    }
    SLOTS.iter().find(|s| s.gpa.load(Ordering::Acquire) == gpa)
}

impl Slot {
    /// Takes the page for one exchange; None if it is in use (a #VC inside an exchange).
    pub fn try_lock(&'static self) -> Option<Locked> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        Some(Locked(self))
    }
}

/// A slot taken by [`Slot::try_lock`]; released when dropped.
pub struct Locked(&'static Slot);

impl Locked {
    /// The GHCB page's GPA.
    pub fn gpa(&self) -> u64 {
        self.0.gpa.load(Ordering::Acquire)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}
