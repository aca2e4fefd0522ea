//! One GHCB page per vCPU (GHCB spec 56421 §2.3.2: each vCPU registers its own GHCB GPA with
//! MSR protocol 0x012 before using it; Linux `snp_register_per_cpu_ghcb`): the table of pages,
//! the lookup of a vCPU's own page by the value of its GHCB MSR, and a busy flag per page.
//!
//! Once registered, a vCPU's GHCB MSR holds its page's GPA in bits 63:12 (the MSR protocol
//! leaves a response code in bits 11:0), and reading the MSR raises no #VC: that is how the
//! #VC handler finds the page without per-CPU data. If the hypervisor rewrote the MSR (it can,
//! at a VMGEXIT), the lookup finds no page or another vCPU's, whose busy flag still serialises
//! that page: the worst it gets is a termination. The firmware's table is
//! `platform/snp_ghcb.rs`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The GHCB MSR's GPA bits.
pub const GPA_MASK: u64 = !0xFFF;

/// A vCPU's GHCB page: its GPA (0 = none yet) and whether an exchange is using it.
pub struct Slot {
    gpa: AtomicU64,
    busy: AtomicBool,
}

impl Slot {
    /// An empty slot.
    pub const fn new() -> Self {
        Self {
            gpa: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }

    /// The page's GPA (0 = none).
    pub fn gpa(&self) -> u64 {
        self.gpa.load(Ordering::Acquire)
    }

    /// Takes the page for one exchange; None if it is in use (a #VC inside an exchange).
    pub fn try_lock(&self) -> Option<Locked<'_>> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        Some(Locked(self))
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}

/// A slot taken by [`Slot::try_lock`]; released when dropped.
pub struct Locked<'a>(&'a Slot);

impl Locked<'_> {
    /// The GHCB page's GPA.
    pub fn gpa(&self) -> u64 {
        self.0.gpa()
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Records vCPU `index`'s GHCB page (4 KiB aligned, shared). Returns false if `index` is out
/// of range.
pub fn set(slots: &[Slot], index: usize, gpa: u64) -> bool {
    match slots.get(index) {
        Some(s) => {
            s.gpa.store(gpa & GPA_MASK, Ordering::Release);
            true
        }
        None => false,
    }
}

/// The GPA vCPU `index` must register, if one was set.
pub fn page_of(slots: &[Slot], index: usize) -> Option<u64> {
    slots.get(index).map(Slot::gpa).filter(|&g| g != 0)
}

/// The slot whose page is the GPA in `ghcb_msr` (bits 63:12); None for none or GPA 0.
pub fn find(slots: &[Slot], ghcb_msr: u64) -> Option<&Slot> {
    let gpa = ghcb_msr & GPA_MASK;
    if gpa == 0 {
        return None;
    }
    slots.iter().find(|s| s.gpa() == gpa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vcpu_finds_its_own_page_by_the_ghcb_msr() {
        let slots: [Slot; 4] = Default::default();
        assert!(set(&slots, 0, 0x60_0000));
        assert!(set(&slots, 2, 0x60_5000));
        assert!(!set(&slots, 4, 0x60_6000), "out of range");
        // After registration the MSR holds GPA | 0x013; after a GHCB exit the GPA alone.
        assert_eq!(find(&slots, 0x60_5013).map(Slot::gpa), Some(0x60_5000));
        assert_eq!(find(&slots, 0x60_0000).map(Slot::gpa), Some(0x60_0000));
        // Before registration: 0, or another MSR-protocol response; unset slots never match.
        assert!(find(&slots, 0).is_none());
        assert!(find(&slots, 0x13).is_none());
        assert!(find(&slots, 0x0000_0001_0000_0015).is_none());
        assert_eq!(page_of(&slots, 2), Some(0x60_5000));
        assert_eq!(page_of(&slots, 1), None);
        assert_eq!(page_of(&slots, 9), None);
    }

    #[test]
    fn each_page_has_its_own_busy_flag() {
        let slots: [Slot; 2] = Default::default();
        set(&slots, 0, 0x60_0000);
        set(&slots, 1, 0x60_4000);
        let bsp = slots[0].try_lock().unwrap();
        assert!(slots[0].try_lock().is_none(), "a #VC inside an exchange");
        let ap = slots[1].try_lock().expect("another vCPU is not blocked");
        assert_eq!((bsp.gpa(), ap.gpa()), (0x60_0000, 0x60_4000));
        drop(bsp);
        assert!(slots[0].try_lock().is_some(), "released on drop");
    }
}
