//! The heap: talc over the early heap (declared memory), extended with E820 RAM on plain VMs.

use talc::{ErrOnOom, Span, Talc, Talck};

#[global_allocator]
static ALLOCATOR: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Give `[start, end)` to the allocator; returns the bytes it took.
///
/// # Safety
/// The range must be RAM that nothing else uses, identity-mapped, for the rest of the boot.
pub unsafe fn claim(start: u64, end: u64) -> u64 {
    let span = Span::new(start as *mut u8, end as *mut u8);
    // SAFETY: guaranteed by the caller.
    match unsafe { ALLOCATOR.lock().claim(span) } {
        Ok(s) => s.size() as u64,
        Err(()) => 0,
    }
}
