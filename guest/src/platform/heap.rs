//! The heap: talc over the early heap (declared memory), extended with the RAM the platform
//! makes usable at boot, and (TDX) grown on demand from RAM not accepted yet.
//!
//! Lazy growth (TDX T5, `pupa_guest::tdx::lazy`): when an allocation finds no room, talc calls
//! [`GrowOnOom::handle_oom`], which asks the platform's grow function for the next accepted
//! chunk and claims it (or extends the previous lazily-grown heap when the chunk continues it).
//! The grow function accepts the chunk before returning it, so the allocator never hands out a
//! page that is not accepted; it never returns a chunk twice.

use core::alloc::Layout;

use pupa_guest::tdx::lazy::LazyAccept;
use talc::{OomHandler, Span, Talc, Talck};

/// Accepts and returns the next chunk of at least `min` bytes from `pending` (`None`: nothing
/// left). Runs with the allocator locked: it must not allocate, and on an acceptance error it
/// must not return (the platform reports the error and stops the VM).
pub type GrowFn = fn(pending: &mut LazyAccept, min: u64) -> Option<(u64, u64)>;

/// The allocator's out-of-memory handler: grows the heap from `pending` through `grow`.
pub struct GrowOnOom {
    pending: LazyAccept,
    grow: Option<GrowFn>,
    /// The heap the last lazily-accepted chunk went into (extended when the next one follows it).
    last: Option<Span>,
}

/// talc's bookkeeping per claimed heap, with room to spare.
const HEAP_OVERHEAD: u64 = 4096;

impl OomHandler for GrowOnOom {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        let grow = talc.oom_handler.grow.ok_or(())?;
        // Room for the allocation at any alignment, plus a heap's overhead.
        let min = (layout.size() as u64)
            .saturating_add(layout.align() as u64)
            .saturating_add(HEAP_OVERHEAD);
        let (start, end) = grow(&mut talc.oom_handler.pending, min).ok_or(())?;
        let continues = talc
            .oom_handler
            .last
            .and_then(|l| l.get_base_acme())
            .filter(|&(_, acme)| acme as u64 == start);
        let heap = match (talc.oom_handler.last, continues) {
            // SAFETY: `[start, end)` was just accepted, is RAM nothing else uses (it was
            // unaccepted until now and is handed out once), identity-mapped below 4 GiB, and it
            // directly follows `last`, a heap of this allocator.
            (Some(last), Some((base, _))) => unsafe {
                talc.extend(last, Span::new(base, end as *mut u8))
            },
            // SAFETY: as above; the chunk overlaps no other heap.
            _ => unsafe { talc.claim(Span::new(start as *mut u8, end as *mut u8))? },
        };
        talc.oom_handler.last = Some(heap);
        Ok(())
    }
}

#[global_allocator]
static ALLOCATOR: Talck<spin::Mutex<()>, GrowOnOom> = Talc::new(GrowOnOom {
    pending: LazyAccept::empty(),
    grow: None,
    last: None,
})
.lock();

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

/// From now on, an allocation that finds no room grows the heap from `pending` through `grow`.
/// Call once, after the boot's RAM is claimed.
pub fn grow_lazily(pending: LazyAccept, grow: GrowFn) {
    let mut talc = ALLOCATOR.lock();
    talc.oom_handler.pending = pending;
    talc.oom_handler.grow = Some(grow);
}

/// Takes the pending RAM away from the heap (which stops growing): for a hand-over that
/// accepts it all itself.
pub fn take_pending() -> LazyAccept {
    let mut talc = ALLOCATOR.lock();
    talc.oom_handler.grow = None;
    core::mem::take(&mut talc.oom_handler.pending)
}

/// Bytes the heap can still grow by (RAM not accepted yet); 0 without lazy growth. The heap's
/// size for budgeting is what it holds plus this.
pub fn pending_bytes() -> u64 {
    ALLOCATOR.lock().oom_handler.pending.remaining()
}
