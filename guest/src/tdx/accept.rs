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

/// Accepts every [`RegionKind::Unaccepted`] region of the TD HOB inside `[lo, hi)` (clipped
/// to 4 KiB pages inwards), after [`check_declared`] found none of them inside a `declared`
/// TDVF section. `regions` must be disjoint (as `memmap::parse_td_hob` returns them), so no
/// page is accepted twice, and any TDX_PAGE_ALREADY_ACCEPTED is fatal.
pub fn accept_unaccepted(
    regions: &[Region],
    lo: u64,
    hi: u64,
    declared: &[(u64, u64)],
    accept: &mut impl FnMut(u64, PageSize) -> u64,
) -> Result<AcceptStats, AcceptError> {
    check_declared(regions, declared)?;
    let mut total = AcceptStats::default();
    for r in regions.iter().filter(|r| r.kind == RegionKind::Unaccepted) {
        let s = r.start.max(lo).div_ceil(PAGE_4K) * PAGE_4K;
        let e = r.end().min(hi) / PAGE_4K * PAGE_4K;
        if e > s {
            let st = accept_range(s, e, accept)?;
            total.accepted += st.accepted;
            total.fallbacks += st.fallbacks;
        }
    }
    Ok(total)
}

/// The memory map after [`accept_unaccepted`] over `[lo, hi)` succeeded: the parts it
/// accepted become [`RegionKind::Ram`], the rest stays as it was.
pub fn relabel_accepted(regions: &[Region], lo: u64, hi: u64) -> Vec<Region> {
    let mut out = Vec::with_capacity(regions.len() + 2);
    for r in regions {
        let s = r.start.max(lo).div_ceil(PAGE_4K) * PAGE_4K;
        let e = r.end().min(hi) / PAGE_4K * PAGE_4K;
        if r.kind != RegionKind::Unaccepted || e <= s {
            out.push(*r);
            continue;
        }
        let piece = |start: u64, end: u64, kind| Region {
            start,
            len: end - start,
            kind,
        };
        if s > r.start {
            out.push(piece(r.start, s, RegionKind::Unaccepted));
        }
        out.push(piece(s, e, RegionKind::Ram));
        if r.end() > e {
            out.push(piece(e, r.end(), RegionKind::Unaccepted));
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
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// A mock TDX module: 4 KiB pages pending or accepted, some 2 MiB ranges mapped with 4 KiB
    /// Secure-EPT entries; counts how often each 4 KiB page was accepted.
    struct MockModule {
        accepted_count: BTreeMap<u64, u32>,
        pre_accepted: Vec<u64>,
        mapped_4k: Vec<u64>,
        busy_once: Vec<u64>,
        calls: Vec<(u64, PageSize)>,
    }

    impl MockModule {
        fn new() -> Self {
            Self {
                accepted_count: BTreeMap::new(),
                pre_accepted: Vec::new(),
                mapped_4k: Vec::new(),
                busy_once: Vec::new(),
                calls: Vec::new(),
            }
        }
        fn accept(&mut self, gpa: u64, size: PageSize) -> u64 {
            self.calls.push((gpa, size));
            if !gpa.is_multiple_of(size.bytes()) {
                return 0xC000_0100_0000_0000; // OPERAND_INVALID
            }
            if let Some(i) = self.busy_once.iter().position(|&g| g == gpa) {
                self.busy_once.remove(i);
                return 0x8000_0200_0000_0000;
            }
            if size == PageSize::Size2M && self.mapped_4k.contains(&gpa) {
                return 0xC000_0B0B_0000_0000;
            }
            let pages = (gpa..gpa + size.bytes()).step_by(4096);
            if pages
                .clone()
                .any(|p| self.pre_accepted.contains(&p) || self.accepted_count.contains_key(&p))
            {
                return 0x0000_0B0A_0000_0000;
            }
            for p in pages {
                *self.accepted_count.entry(p).or_default() += 1;
            }
            0
        }
    }

    #[test]
    fn plan_uses_2m_where_aligned() {
        let ops: Vec<_> = plan(0x1F_F000, 0x60_1000).collect();
        assert_eq!(
            ops,
            alloc::vec![
                (0x1F_F000, PageSize::Size4K),
                (0x20_0000, PageSize::Size2M),
                (0x40_0000, PageSize::Size2M),
                (0x60_0000, PageSize::Size4K),
            ]
        );
        // A 2 MiB-aligned start without 2 MiB left uses 4 KiB pages.
        assert!(plan(0x20_0000, 0x20_2000).all(|(_, s)| s == PageSize::Size4K));
    }

    #[test]
    fn every_page_accepted_exactly_once_with_fallback() {
        let (start, end) = (0x1F_E000u64, 0x80_3000u64);
        let mut m = MockModule::new();
        m.mapped_4k.push(0x40_0000);
        m.busy_once.push(0x20_0000);
        let mut f = |g, s| m.accept(g, s);
        let st = accept_range(start, end, &mut f).unwrap();
        assert_eq!(st.accepted, end - start);
        assert_eq!(st.fallbacks, 1);
        for p in (start..end).step_by(4096) {
            assert_eq!(m.accepted_count.get(&p), Some(&1), "page {p:#x}");
        }
        assert_eq!(m.accepted_count.len() as u64, (end - start) / 4096);
        // 2 head pages + busy retry + 2 MiB + mismatch + 512 + 2 MiB + 3 tail pages.
        assert_eq!(m.calls.len(), 2 + 2 + 1 + 512 + 1 + 3);
    }

    #[test]
    fn errors_name_the_gpa() {
        let mut m = MockModule::new();
        assert_eq!(
            accept_range(0x4001, 0x7000, &mut |g, s| m.accept(g, s)),
            Err(AcceptError::Unaligned {
                start: 0x4001,
                end: 0x7000
            })
        );
        let mut fail_at = |g: u64, _| {
            if g == 0x9000 {
                0xC000_0101_0000_0000
            } else {
                0
            }
        };
        assert_eq!(
            accept_range(0x8000, 0xA000, &mut fail_at),
            Err(AcceptError::Failed {
                gpa: 0x9000,
                size: PageSize::Size4K,
                status: 0xC000_0101_0000_0000
            })
        );
        // A size mismatch on a 4 KiB page is an error, and endless BUSY gives up.
        let mut mismatch = |_, _| 0xC000_0B0B_0000_0000u64;
        assert!(matches!(
            accept_range(0, 0x1000, &mut mismatch),
            Err(AcceptError::Failed { gpa: 0, .. })
        ));
        let mut n = 0;
        let mut busy = |_, _| {
            n += 1;
            0x8000_0200_0000_0000u64
        };
        assert!(accept_range(0, 0x1000, &mut busy).is_err());
        assert_eq!(n, ACCEPT_BUSY_RETRIES + 1);
    }

    #[test]
    fn hob_unaccepted_regions_are_clipped() {
        let regions = [
            Region {
                start: 0,
                len: 0x80_0000,
                kind: RegionKind::Ram,
            },
            Region {
                start: 0x80_0000,
                len: 0x180_0000,
                kind: RegionKind::Unaccepted,
            },
            Region {
                start: 0x1_0000_0000,
                len: 0x1000_0000,
                kind: RegionKind::Unaccepted,
            },
        ];
        let mut m = MockModule::new();
        let st =
            accept_unaccepted(&regions, 0, 0x100_0000, &[], &mut |g, s| m.accept(g, s)).unwrap();
        assert_eq!(st.accepted, 0x80_0000);
        assert!(m
            .calls
            .iter()
            .all(|&(g, _)| (0x80_0000..0x100_0000).contains(&g)));
        let after = relabel_accepted(&regions, 0, 0x100_0000);
        let ram = |start, len| Region {
            start,
            len,
            kind: RegionKind::Ram,
        };
        let un = |start, len| Region {
            start,
            len,
            kind: RegionKind::Unaccepted,
        };
        assert_eq!(
            after,
            alloc::vec![
                ram(0, 0x80_0000),
                ram(0x80_0000, 0x80_0000),
                un(0x100_0000, 0x100_0000),
                regions[2]
            ]
        );
        // RAM bytes are conserved; what became RAM is exactly what was accepted.
        use crate::memmap::total;
        assert_eq!(
            total(&after, RegionKind::Ram) - total(&regions, RegionKind::Ram),
            st.accepted
        );
        assert_eq!(
            total(&after, RegionKind::Ram) + total(&after, RegionKind::Unaccepted),
            total(&regions, RegionKind::Ram) + total(&regions, RegionKind::Unaccepted)
        );
    }

    /// TEMP_MEM, TD_HOB and BFV as pupa declares them (guest/linker.ld).
    const DECLARED: [(u64, u64); 3] = [
        (0x10_0000, 0x50_0000),
        (0x1_0000, 0x3_0000),
        (0xFFF8_0000, 1 << 32),
    ];

    #[test]
    fn hob_marking_a_declared_section_unaccepted_fails_the_boot() {
        // T1: a HOB whose unaccepted range covers TEMP_MEM (where the firmware runs): no page
        // of it (nor anything else) may be accepted.
        let un = |start, len| Region {
            start,
            len,
            kind: RegionKind::Unaccepted,
        };
        for bad in [
            un(0x40_0000, 0x800_0000),  // overlaps the end of TEMP_MEM
            un(0x2_0000, 0x1000),       // inside the TD HOB
            un(0xFFF0_0000, 0x10_0000), // the image
        ] {
            let regions = [un(0x800_0000, 0x100_0000), bad];
            let mut m = MockModule::new();
            let r = accept_unaccepted(&regions, 0, 1 << 32, &DECLARED, &mut |g, s| {
                m.accept(g, s)
            });
            assert!(
                matches!(r, Err(AcceptError::DeclaredUnaccepted { start, .. }) if start == bad.start),
                "{bad:x?}: {r:?}"
            );
            assert!(m.calls.is_empty(), "accepted before refusing: {:x?}", m.calls);
        }
        // Touching a declared section is fine.
        let ok = [un(0x50_0000, 0x10_0000)];
        let mut m = MockModule::new();
        accept_unaccepted(&ok, 0, 1 << 32, &DECLARED, &mut |g, s| m.accept(g, s)).unwrap();
    }

    #[test]
    fn already_accepted_outside_declared_sections_is_fatal() {
        // T1: a page pupa never accepted that the TDX module calls accepted (4 KiB, and a
        // 2 MiB page) stops the boot.
        let mut m = MockModule::new();
        m.pre_accepted.push(0x5000);
        assert_eq!(
            accept_range(0x4000, 0x7000, &mut |g, s| m.accept(g, s)),
            Err(AcceptError::AlreadyAccepted {
                gpa: 0x5000,
                size: PageSize::Size4K
            })
        );
        let mut m = MockModule::new();
        m.pre_accepted.push(0x60_0000);
        assert_eq!(
            accept_range(0x40_0000, 0x80_0000, &mut |g, s| m.accept(g, s)),
            Err(AcceptError::AlreadyAccepted {
                gpa: 0x60_0000,
                size: PageSize::Size2M
            })
        );
    }

    const SHARED: u64 = 1 << 47;

    #[test]
    fn map_gpa_retry_protocol() {
        // The VMM converts at most 2 pages per call, once stalls without progress.
        let mut calls = Vec::new();
        let mut stalled = false;
        let mut vmm = |gpa: u64, size: u64| {
            calls.push((gpa, size));
            assert_ne!(gpa & SHARED, 0);
            if size <= 0x2000 {
                return (0, 0, 0);
            }
            if !stalled && gpa & !SHARED == 0x12000 {
                stalled = true;
                return (0, 1, gpa);
            }
            (0, 1, gpa + 0x2000)
        };
        map_gpa_shared(0x10000, 0x16000, SHARED, &mut vmm).unwrap();
        let starts: Vec<u64> = calls.iter().map(|c| c.0 & !SHARED).collect();
        assert_eq!(starts, alloc::vec![0x10000, 0x12000, 0x12000, 0x14000]);
        assert_eq!(calls[3].1, 0x2000);
    }

    #[test]
    fn map_gpa_lying_vmm() {
        let back = |_: u64, _: u64| (0, 1, 0x8000 | SHARED);
        assert_eq!(
            map_gpa_shared(0x10000, 0x20000, SHARED, &mut { back }),
            Err(MapGpaError::RetryOutOfRange {
                at: 0x10000,
                resume: 0x8000 | SHARED
            })
        );
        let past = |_: u64, _: u64| (0, 1, 0x20000 | SHARED);
        assert!(matches!(
            map_gpa_shared(0x10000, 0x20000, SHARED, &mut { past }),
            Err(MapGpaError::RetryOutOfRange { .. })
        ));
        let private = |_: u64, _: u64| (0, 1, 0x11000);
        assert!(matches!(
            map_gpa_shared(0x10000, 0x20000, SHARED, &mut { private }),
            Err(MapGpaError::RetryOutOfRange { .. })
        ));
        let mut n = 0;
        let mut stuck = |g: u64, _: u64| {
            n += 1;
            (0, 1, g)
        };
        assert_eq!(
            map_gpa_shared(0x10000, 0x20000, SHARED, &mut stuck),
            Err(MapGpaError::NoProgress(0x10000))
        );
        assert_eq!(n, MAP_GPA_MAX_STALLS + 1);
        let inuse = |_: u64, _: u64| (0, 0x8000_0000_0000_0001, 0);
        assert_eq!(
            map_gpa_shared(0x10000, 0x20000, SHARED, &mut { inuse }),
            Err(MapGpaError::Vmcall {
                gpa: 0x10000,
                err: VmcallError::GpaInUse
            })
        );
        assert!(matches!(
            map_gpa_shared(0x10000, 0x10800, SHARED, &mut |_, _| (0, 0, 0)),
            Err(MapGpaError::Range { .. })
        ));
    }
}
