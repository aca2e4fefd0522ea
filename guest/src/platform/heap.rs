//! The heap: talc over the early heap (declared memory), extended with the RAM the platform
//! makes usable at boot, and (TDX) grown on demand from RAM not accepted yet.
//!
//! Lazy growth (TDX T5, `pupa_guest::tdx::lazy`): when an allocation finds no room,
//! [`Heap::grow`] takes the next chunk off the pending list (a short critical section), accepts
//! it with **no lock held**, then claims it (or extends the previous lazily-grown heap when the
//! chunk continues it) and the allocation is retried. Accepting a page is a TDCALL that may
//! exit to the VMM (an EPT violation while KVM maps the page), and the host may keep a vCPU out
//! as long as it likes: holding the allocator's lock across it would stall every vCPU that
//! allocates. Two vCPUs that grow at once take different chunks. The heap never sees a page
//! that is not accepted, and no chunk is handed out twice.

use core::alloc::{GlobalAlloc, Layout};

use pupa_guest::tdx::lazy::LazyAccept;
use talc::{OomHandler, Span, Talc, Talck};

/// Accepts `[start, end)` (unaccepted RAM taken off the pending list) or stops the VM: the
/// allocation cannot be served with memory of unknown contents. Runs with no lock held; it
/// must not allocate.
pub type AcceptFn = fn(start: u64, end: u64);

/// talc's out-of-memory handler: fails (growth happens in [`Heap::grow`], outside talc's lock),
/// and remembers the heap the last lazily-accepted chunk went into.
pub struct LastChunk(Option<Span>);

impl OomHandler for LastChunk {
    fn handle_oom(_: &mut Talc<Self>, _: Layout) -> Result<(), ()> {
        Err(())
    }
}

/// The RAM the heap may still grow by, and how to accept it.
struct Pending {
    ranges: LazyAccept,
    accept: Option<AcceptFn>,
}

/// The global allocator: talc, grown lazily from [`Pending`].
pub struct Heap {
    talc: Talck<spin::Mutex<()>, LastChunk>,
    pending: spin::Mutex<Pending>,
}

/// talc's bookkeeping per claimed heap, with room to spare.
const HEAP_OVERHEAD: u64 = 4096;

impl Heap {
    /// Grows the heap by one chunk big enough for `layout`; false when nothing is pending.
    fn grow(&self, layout: Layout) -> bool {
        // Room for the allocation at any alignment, plus a heap's overhead.
        let min = (layout.size() as u64)
            .saturating_add(layout.align() as u64)
            .saturating_add(HEAP_OVERHEAD);
        let (chunk, accept) = {
            let mut p = self.pending.lock();
            let Some(accept) = p.accept else {
                return false;
            };
            (p.ranges.take(min), accept)
        };
        let Some((start, end)) = chunk else {
            return false;
        };
        accept(start, end);
        let mut talc = self.talc.lock();
        let continues = talc
            .oom_handler
            .0
            .and_then(|l| l.get_base_acme())
            .filter(|&(_, acme)| acme as u64 == start);
        let heap = match (talc.oom_handler.0, continues) {
            // SAFETY: `[start, end)` was just accepted, is RAM nothing else uses (it was
            // unaccepted until now and is taken off the list once), identity-mapped below
            // 4 GiB, and it directly follows `last`, a heap of this allocator.
            (Some(last), Some((base, _))) => unsafe {
                talc.extend(last, Span::new(base, end as *mut u8))
            },
            // SAFETY: as above; the chunk overlaps no other heap.
            _ => match unsafe { talc.claim(Span::new(start as *mut u8, end as *mut u8)) } {
                Ok(heap) => heap,
                // Too small for talc's bookkeeping: lost, but the list still shrank.
                Err(()) => return true,
            },
        };
        talc.oom_handler.0 = Some(heap);
        true
    }
}

// SAFETY: every method is talc's, which upholds GlobalAlloc's contract; a failed attempt is
// retried only after `grow` gave talc more memory, and `grow` fails once the pending list is
// empty, so each loop ends.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        loop {
            // SAFETY: the caller's contract, passed on.
            let p = unsafe { self.talc.alloc(layout) };
            if !p.is_null() || !self.grow(layout) {
                return p;
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.talc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        loop {
            // SAFETY: the caller's contract, passed on; on failure `ptr` is still allocated.
            let p = unsafe { self.talc.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                return p;
            }
            // SAFETY: `new_size` with `layout`'s alignment is valid (the caller's contract).
            let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            if !self.grow(new) {
                return p;
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Heap = Heap {
    talc: Talc::new(LastChunk(None)).lock(),
    pending: spin::Mutex::new(Pending {
        ranges: LazyAccept::empty(),
        accept: None,
    }),
};

/// Give `[start, end)` to the allocator; returns the bytes it took.
///
/// # Safety
/// The range must be RAM that nothing else uses, identity-mapped, for the rest of the boot.
pub unsafe fn claim(start: u64, end: u64) -> u64 {
    let span = Span::new(start as *mut u8, end as *mut u8);
    // SAFETY: guaranteed by the caller.
    match unsafe { ALLOCATOR.talc.lock().claim(span) } {
        Ok(s) => s.size() as u64,
        Err(()) => 0,
    }
}

/// From now on, an allocation that finds no room grows the heap from `pending`, each chunk
/// accepted by `accept`. Call once, after the boot's RAM is claimed.
pub fn grow_lazily(pending: LazyAccept, accept: AcceptFn) {
    *ALLOCATOR.pending.lock() = Pending {
        ranges: pending,
        accept: Some(accept),
    };
}

/// Takes the pending RAM away from the heap (which stops growing): for a hand-over that
/// accepts it all itself.
pub fn take_pending() -> LazyAccept {
    let mut p = ALLOCATOR.pending.lock();
    p.accept = None;
    core::mem::take(&mut p.ranges)
}

/// Bytes the heap can still grow by (RAM not accepted yet); 0 without lazy growth. The heap's
/// size for budgeting is what it holds plus this.
pub fn pending_bytes() -> u64 {
    ALLOCATOR.pending.lock().ranges.remaining()
}
