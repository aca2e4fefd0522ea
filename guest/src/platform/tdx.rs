//! Intel TDX platform glue: the #VE handler.

use pupa_guest::trap::TrapFrame;

/// #VE handler (called from arch/trap.rs). Placeholder until the TDX backend lands: reports the
/// exception and exits.
pub fn handle_ve(frame: &mut TrapFrame) {
    crate::arch::interrupts::report_trap(20, frame)
}
