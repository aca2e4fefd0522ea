//! Memory conversion planning for a TD: accepting the unaccepted RAM the TD HOB lists
//! (TDG.MEM.PAGE.ACCEPT), and converting shared buffers with TDG.VP.VMCALL<MapGPA>.
//!
//! The TDCALLs themselves are closures here (the firmware passes thin wrappers from
//! `arch/tdcall.rs`; tests pass a mock TDX module), so the retry and fallback rules are tested.
//!
//! Acceptance (TDX Module ABI spec, "TDG.MEM.PAGE.ACCEPT"): 2 MiB where the GPA is 2 MiB
//! aligned and the whole 2 MiB lies in the range, 4 KiB otherwise. If the VMM mapped the 2 MiB
//! range with 4 KiB Secure-EPT entries the call fails with TDX_PAGE_SIZE_MISMATCH and the guest
//! accepts the 512 4 KiB pages one by one (as Linux `arch/x86/coco/tdx/tdx-shared.c` does).
//! TDX_PAGE_ALREADY_ACCEPTED is fatal: the TD HOB is host input, so a range it calls unaccepted
//! that the TDX module calls accepted means a lying HOB or a page the VMM removed and re-added;
//! the TDVF sections (BFV, TD_HOB, TEMP_MEM), which the VMM adds at launch, are never accepted
//! and a HOB that calls them unaccepted fails the boot ([`check_declared`]); the HOB's ranges
//! are disjoint (`memmap::parse_td_hob`), so pupa itself never accepts a page twice.
//! TDX_OPERAND_BUSY is retried a bounded number of times; anything else is an error naming the
//! GPA.
//!
//! MapGPA (GHCI 1.5 §3.2): R12 = start GPA with the shared bit set, R13 = size. The VMM may
//! stop early with TDG.VP.VMCALL_RETRY and R11 = the GPA to resume from; that GPA must lie in
//! the rest of the range and the VMM must make progress (at most [`MAP_GPA_MAX_STALLS`] answers
//! without progress, as Linux `tdx_map_gpa` allows) — otherwise a lying VMM could loop the guest
//! forever or make it believe memory it never converted is shared.

use super::tdcall::{status, vmcall_status, PageSize, TdcallStatus, VmcallError};
use alloc::vec::Vec;

use crate::memmap::{Region, RegionKind};

const PAGE_4K: u64 = 4096;
const PAGE_2M: u64 = 2 << 20;
/// TDX_OPERAND_BUSY retries per page before giving up.
pub const ACCEPT_BUSY_RETRIES: u32 = 16;
/// MapGPA RETRY answers without progress tolerated in a row.
pub const MAP_GPA_MAX_STALLS: u32 = 3;

/// Why memory could not be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The range is not 4 KiB aligned or is empty/inverted.
    #[error("cannot accept [{start:#x}, {end:#x}): not a 4 KiB-aligned range")]
    Unaligned {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// The TD HOB calls part of a TDVF metadata section (BFV, TD_HOB, TEMP_MEM) unaccepted.
    /// The VMM adds those pages before launch (TDH.MEM.PAGE.ADD) and the firmware runs on
    /// them: accepting them again would zero them under the running firmware if the VMM had
    /// removed and re-added them.
    #[error("the TD HOB marks [{start:#x}, {end:#x}) unaccepted, inside the declared TDVF section [{section_start:#x}, {section_end:#x})")]
    DeclaredUnaccepted {
        /// Start of the HOB's unaccepted range.
        start: u64,
        /// End of the HOB's unaccepted range.
        end: u64,
        /// Start of the TDVF section it overlaps.
        section_start: u64,
        /// End of that section.
        section_end: u64,
    },
    /// TDG.MEM.PAGE.ACCEPT answered TDX_PAGE_ALREADY_ACCEPTED for a page outside the declared
    /// sections that pupa never accepted: the page's contents are not what the firmware
    /// expects (the TD HOB lied, or the VMM re-added a page), so the boot stops.
    #[error("TDG.MEM.PAGE.ACCEPT of {size:?} at GPA {gpa:#x}: page already accepted (TDX_PAGE_ALREADY_ACCEPTED), though pupa never accepted it")]
    AlreadyAccepted {
        /// The page.
        gpa: u64,
        /// Its size.
        size: PageSize,
    },
    /// TDG.MEM.PAGE.ACCEPT failed.
    #[error("TDG.MEM.PAGE.ACCEPT of {size:?} at GPA {gpa:#x} failed with status {status:#x}")]
    Failed {
        /// The page.
        gpa: u64,
        /// Its size.
        size: PageSize,
        /// The TDCALL status.
        status: u64,
    },
}

/// What an acceptance run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcceptStats {
    /// Bytes newly accepted.
    pub accepted: u64,
    /// 2 MiB operations that fell back to 4 KiB.
    pub fallbacks: u64,
}

/// The operations for `[start, end)` before any fallback: 2 MiB where aligned, else 4 KiB.
pub fn plan(start: u64, end: u64) -> impl Iterator<Item = (u64, PageSize)> {
    let mut at = start;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let size = if at.is_multiple_of(PAGE_2M) && end - at >= PAGE_2M {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        let op = (at, size);
        at += size.bytes();
        Some(op)
    })
}

/// Accepts `[start, end)`. `accept(gpa, size)` performs TDG.MEM.PAGE.ACCEPT and returns RAX.
pub fn accept_range(
    start: u64,
    end: u64,
    accept: &mut impl FnMut(u64, PageSize) -> u64,
) -> Result<AcceptStats, AcceptError> {
    if !start.is_multiple_of(PAGE_4K) || !end.is_multiple_of(PAGE_4K) || start >= end {
        return Err(AcceptError::Unaligned { start, end });
    }
    let mut stats = AcceptStats::default();
    for (gpa, size) in plan(start, end) {
        match accept_one(gpa, size, accept)? {
            Outcome::Accepted => stats.accepted += size.bytes(),
            Outcome::SizeMismatch => {
                // Only 2 MiB operations can get here (see accept_one), and a 4 KiB one never
                // answers SizeMismatch.
                stats.fallbacks += 1;
                for p in (gpa..gpa + PAGE_2M).step_by(PAGE_4K as usize) {
                    accept_one(p, PageSize::Size4K, accept)?;
                    stats.accepted += PAGE_4K;
                }
            }
        }
    }
    Ok(stats)
}

/// Refuses a TD HOB that calls any part of a `declared` TDVF section (`[start, end)` of the
/// BFV, TD_HOB and TEMP_MEM sections) unaccepted: the VMM added those pages at launch and the
/// firmware is running on them ([`AcceptError::DeclaredUnaccepted`]).
pub fn check_declared(regions: &[Region], declared: &[(u64, u64)]) -> Result<(), AcceptError> {
    for r in regions.iter().filter(|r| r.kind == RegionKind::Unaccepted) {
        if let Some(&(ds, de)) = declared
            .iter()
            .find(|&&(ds, de)| r.start < de && ds < r.end())
        {
            return Err(AcceptError::DeclaredUnaccepted {
                start: r.start,
                end: r.end(),
                section_start: ds,
                section_end: de,
            });
        }
    }
    Ok(())
}

/// The [`RegionKind::Unaccepted`] ranges of the TD HOB inside `[lo, hi)`, clipped to 4 KiB
/// pages inwards, sorted, after [`check_declared`] found none of them inside a `declared` TDVF
/// section. `regions` must be disjoint (as `memmap::parse_td_hob` returns them): so are these.
pub fn unaccepted_ranges(
    regions: &[Region],
    lo: u64,
    hi: u64,
    declared: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>, AcceptError> {
    check_declared(regions, declared)?;
    let mut out: Vec<(u64, u64)> = regions
        .iter()
        .filter(|r| r.kind == RegionKind::Unaccepted)
        .map(|r| {
            (
                r.start.max(lo).div_ceil(PAGE_4K) * PAGE_4K,
                r.end().min(hi) / PAGE_4K * PAGE_4K,
            )
        })
        .filter(|(s, e)| e > s)
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Accepts all of [`unaccepted_ranges`] at once (the eager way; the firmware accepts lazily,
/// see [`super::lazy`]). No page is accepted twice, and any TDX_PAGE_ALREADY_ACCEPTED is fatal.
pub fn accept_unaccepted(
    regions: &[Region],
    lo: u64,
    hi: u64,
    declared: &[(u64, u64)],
    accept: &mut impl FnMut(u64, PageSize) -> u64,
) -> Result<AcceptStats, AcceptError> {
    let mut total = AcceptStats::default();
    for (s, e) in unaccepted_ranges(regions, lo, hi, declared)? {
        let st = accept_range(s, e, accept)?;
        total.accepted += st.accepted;
        total.fallbacks += st.fallbacks;
    }
    Ok(total)
}

/// The memory map with the `accepted` ranges (sorted, disjoint, each inside an unaccepted
/// region) relabelled [`RegionKind::Ram`]; everything else stays as it was.
pub fn relabel_accepted(regions: &[Region], accepted: &[(u64, u64)]) -> Vec<Region> {
    let piece = |start: u64, end: u64, kind| Region {
        start,
        len: end - start,
        kind,
    };
    let mut out = Vec::with_capacity(regions.len() + 2 * accepted.len());
    for r in regions {
        if r.kind != RegionKind::Unaccepted {
            out.push(*r);
            continue;
        }
        let mut at = r.start;
        for &(s, e) in accepted {
            let (s, e) = (s.max(r.start), e.min(r.end()));
            if s >= e {
                continue;
            }
            if at < s {
                out.push(piece(at, s, RegionKind::Unaccepted));
            }
            out.push(piece(s, e, RegionKind::Ram));
            at = e;
        }
        if at < r.end() {
            out.push(piece(at, r.end(), RegionKind::Unaccepted));
        }
    }
    out
}

enum Outcome {
    Accepted,
    SizeMismatch,
}

fn accept_one(
    gpa: u64,
    size: PageSize,
    accept: &mut impl FnMut(u64, PageSize) -> u64,
) -> Result<Outcome, AcceptError> {
    let mut busy = 0;
    loop {
        let rax = accept(gpa, size);
        let st = TdcallStatus(rax);
        match st.code() {
            status::SUCCESS => return Ok(Outcome::Accepted),
            // pupa accepts each page once and never a declared one: the page was accepted
            // behind its back (TDX module ABI, TDG.MEM.PAGE.ACCEPT: TDX_PAGE_ALREADY_ACCEPTED).
            status::PAGE_ALREADY_ACCEPTED => {
                return Err(AcceptError::AlreadyAccepted { gpa, size })
            }
            status::PAGE_SIZE_MISMATCH if size == PageSize::Size2M => {
                return Ok(Outcome::SizeMismatch)
            }
            status::OPERAND_BUSY if busy < ACCEPT_BUSY_RETRIES => busy += 1,
            _ => {
                return Err(AcceptError::Failed {
                    gpa,
                    size,
                    status: rax,
                })
            }
        }
    }
}

/// Why a MapGPA conversion failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapGpaError {
    /// The range is not 4 KiB aligned, empty, or has the shared bit set already.
    #[error("MapGPA of [{start:#x}, {end:#x}): bad range")]
    Range {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// The VMM failed the call.
    #[error("MapGPA at {gpa:#x} failed: {err}")]
    Vmcall {
        /// Where the failing call started.
        gpa: u64,
        /// The error.
        err: VmcallError,
    },
    /// RETRY with a resume GPA outside the remaining range or not page aligned.
    #[error("MapGPA RETRY resume GPA {resume:#x} outside the remaining range from {at:#x}")]
    RetryOutOfRange {
        /// Where the call started.
        at: u64,
        /// The VMM's resume GPA.
        resume: u64,
    },
    /// RETRY without progress too many times.
    #[error("MapGPA makes no progress at {0:#x}")]
    NoProgress(u64),
}

/// Converts `[start, end)` (private GPAs, no shared bit) to shared. `map_gpa(gpa, size)` performs
/// TDG.VP.VMCALL<MapGPA> and returns `(tdcall RAX, R10, R11)`.
pub fn map_gpa_shared(
    start: u64,
    end: u64,
    shared_bit: u64,
    map_gpa: &mut impl FnMut(u64, u64) -> (u64, u64, u64),
) -> Result<(), MapGpaError> {
    if !start.is_multiple_of(PAGE_4K)
        || !end.is_multiple_of(PAGE_4K)
        || start >= end
        || end > shared_bit
    {
        return Err(MapGpaError::Range { start, end });
    }
    let mut at = start;
    let mut stalls = 0;
    loop {
        let (rax, r10, r11) = map_gpa(at | shared_bit, end - at);
        if rax == 0 && r10 == vmcall_status::RETRY {
            let resume = r11 & !shared_bit;
            if r11 & shared_bit == 0
                || resume < at
                || resume >= end
                || !resume.is_multiple_of(PAGE_4K)
            {
                return Err(MapGpaError::RetryOutOfRange { at, resume: r11 });
            }
            if resume == at {
                stalls += 1;
                if stalls > MAP_GPA_MAX_STALLS {
                    return Err(MapGpaError::NoProgress(at));
                }
            } else {
                stalls = 0;
                at = resume;
            }
            continue;
        }
        return super::tdcall::vmcall_result(rax, r10)
            .map_err(|err| MapGpaError::Vmcall { gpa: at, err });
    }
}

#[cfg(test)]
#[path = "accept_tests.rs"]
pub(crate) mod tests;
