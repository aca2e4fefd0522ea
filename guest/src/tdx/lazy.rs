//! Lazy acceptance of a TD's unaccepted RAM: accept what the boot needs, the rest when the heap
//! runs out.
//!
//! **Why.** Upstream KVM maps a TD's private memory with 4 KiB Secure-EPT entries, so every
//! 2 MiB TDG.MEM.PAGE.ACCEPT fails with TDX_PAGE_SIZE_MISMATCH and falls back to 512 4 KiB
//! accepts (see [`super::accept`]): 513 TDCALLs per 2 MiB, about 525,000 for 2 GiB. Accepting
//! all of it before serving makes the boot time grow with the RAM size, although the guest may
//! never touch most of it. Linux does the same (`arch/x86/mm/unaccepted_memory.c`: memory is
//! accepted when the page allocator first hands it out).
//!
//! **How.** [`LazyAccept`] holds the unaccepted ranges left after the boot chunk, lowest address
//! first, in a fixed-size array (it is consulted from inside the allocator, which must not
//! allocate). [`LazyAccept::grow`] takes the next chunk (at least [`LAZY_CHUNK`] and at least
//! what the failed allocation needs, ending on a 2 MiB boundary so the next chunk can try
//! 2 MiB accepts), removes it from the list *before* accepting it, accepts it, and only then
//! returns it for the heap to claim. So no page is ever accepted twice (a failed chunk is not
//! retried: the error is fatal) and the heap never sees a page that is not accepted. The
//! firmware's allocator (`platform/heap.rs`) does the same in two steps, [`LazyAccept::take`]
//! under its list's lock and the acceptance with no lock held.

use alloc::vec::Vec;

use super::accept::{accept_range, unaccepted_ranges, AcceptError};
use super::tdcall::PageSize;
use crate::memmap::Region;

const PAGE_2M: u64 = 2 << 20;
/// Most unaccepted ranges [`LazyAccept`] holds: QEMU's TD HOB has one or two below 4 GiB.
pub const MAX_PENDING: usize = 32;
/// Smallest chunk accepted on demand: 32 MiB is 16 2 MiB pages, 8,208 TDCALLs with the 4 KiB
/// fallback.
pub const LAZY_CHUNK: u64 = 32 << 20;
/// What the boot accepts before the heap is handed its RAM: room for the shared DMA window and
/// the runtime's start-up allocations without an OOM round trip.
pub const BOOT_ACCEPT: u64 = 32 << 20;

/// Why lazy acceptance could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LazyError {
    /// More unaccepted ranges than [`MAX_PENDING`].
    #[error("the TD HOB lists more than {MAX_PENDING} unaccepted ranges")]
    TooManyRanges,
    /// The ranges are not sorted, disjoint, non-empty and 4 KiB aligned.
    #[error("unaccepted range [{0:#x}, {1:#x}) is unaligned, empty or out of order")]
    BadRange(u64, u64),
}

/// Unaccepted RAM not yet given to the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LazyAccept {
    ranges: [(u64, u64); MAX_PENDING],
    len: usize,
}

impl Default for LazyAccept {
    fn default() -> Self {
        Self::empty()
    }
}

impl LazyAccept {
    /// Nothing pending (a plain VM, SNP, or a TD whose RAM is all accepted).
    pub const fn empty() -> Self {
        Self {
            ranges: [(0, 0); MAX_PENDING],
            len: 0,
        }
    }

    /// The unaccepted ranges, sorted, disjoint and 4 KiB aligned (as
    /// `accept::unaccepted_ranges` returns them).
    pub fn new(ranges: &[(u64, u64)]) -> Result<Self, LazyError> {
        if ranges.len() > MAX_PENDING {
            return Err(LazyError::TooManyRanges);
        }
        let mut me = Self::empty();
        let mut prev_end = 0;
        for &(s, e) in ranges {
            if s >= e || s < prev_end || s % 4096 != 0 || e % 4096 != 0 {
                return Err(LazyError::BadRange(s, e));
            }
            prev_end = e;
            me.ranges[me.len] = (s, e);
            me.len += 1;
        }
        Ok(me)
    }

    /// Bytes still unaccepted (what the heap can still grow by).
    pub fn remaining(&self) -> u64 {
        self.ranges[..self.len].iter().map(|(s, e)| e - s).sum()
    }

    /// The ranges still unaccepted, lowest first.
    pub fn pending(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }

    /// Removes and returns the next chunk: from the lowest pending range, at least
    /// `max(min, LAZY_CHUNK)` bytes rounded up to end on a 2 MiB boundary, or the rest of that
    /// range if it is shorter. The caller accepts it (see [`Self::grow`]); the firmware's heap
    /// takes the chunk under its list's lock and accepts it after releasing that lock.
    pub fn take(&mut self, min: u64) -> Option<(u64, u64)> {
        if self.len == 0 {
            return None;
        }
        let (s, e) = self.ranges[0];
        let want = s.saturating_add(min.max(LAZY_CHUNK));
        let end = want.div_ceil(PAGE_2M).saturating_mul(PAGE_2M).min(e);
        if end == e {
            self.ranges.copy_within(1..self.len, 0);
            self.len -= 1;
        } else {
            self.ranges[0].0 = end;
        }
        Some((s, end))
    }

    /// Accepts the next chunk (at least `min` bytes unless the pending range is shorter) with
    /// `accept` (TDG.MEM.PAGE.ACCEPT, returning RAX) and returns it, accepted, for the heap;
    /// `Ok(None)` when nothing is left. The chunk leaves the list before it is accepted, so an
    /// error (fatal for the caller) never leads to a second acceptance.
    pub fn grow(
        &mut self,
        min: u64,
        accept: &mut impl FnMut(u64, PageSize) -> u64,
    ) -> Result<Option<(u64, u64)>, AcceptError> {
        let Some((s, e)) = self.take(min) else {
            return Ok(None);
        };
        accept_range(s, e, accept)?;
        Ok(Some((s, e)))
    }
}

/// Why the boot's acceptance failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BootAcceptError {
    /// The HOB's ranges could not be accepted.
    #[error("{0}")]
    Accept(#[from] AcceptError),
    /// They do not fit the pending list.
    #[error("{0}")]
    Lazy(#[from] LazyError),
}

/// The boot's share of the TD HOB's unaccepted RAM inside `[lo, hi)`: refuses a HOB that marks
/// a `declared` TDVF section unaccepted, accepts the first `boot_bytes` (rounded up to a 2 MiB
/// boundary) and returns those ranges, for the heap, with the rest pending in a
/// [`LazyAccept`] for the allocator to accept on demand.
pub fn accept_for_boot(
    regions: &[Region],
    lo: u64,
    hi: u64,
    declared: &[(u64, u64)],
    boot_bytes: u64,
    accept: &mut impl FnMut(u64, PageSize) -> u64,
) -> Result<(Vec<(u64, u64)>, LazyAccept), BootAcceptError> {
    let mut lazy = LazyAccept::new(&unaccepted_ranges(regions, lo, hi, declared)?)?;
    let mut boot = Vec::new();
    let mut got = 0;
    while got < boot_bytes {
        match lazy.grow(boot_bytes - got, accept)? {
            Some((s, e)) => {
                boot.push((s, e));
                got += e - s;
            }
            None => break,
        }
    }
    Ok((boot, lazy))
}

#[cfg(test)]
#[path = "lazy_tests.rs"]
mod tests;
