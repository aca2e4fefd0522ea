//! SEV-SNP platform glue: the #VC handler.

use pupa_guest::trap::TrapFrame;

/// #VC handler (called from arch/trap.rs). Placeholder until the SNP backend lands: reports the
/// exception and exits.
pub fn handle_vc(frame: &mut TrapFrame) {
    crate::arch::interrupts::report_trap(29, frame)
}
