//! Tests of TDG.MEM.PAGE.ACCEPT planning and MapGPA against a mock TDX module.

use super::*;
use alloc::collections::BTreeMap;

/// A mock TDX module: 4 KiB pages pending or accepted, some 2 MiB ranges mapped with 4 KiB
/// Secure-EPT entries; counts how often each 4 KiB page was accepted.
pub(crate) struct MockModule {
    pub(crate) accepted_count: BTreeMap<u64, u32>,
    pub(crate) pre_accepted: Vec<u64>,
    pub(crate) mapped_4k: Vec<u64>,
    pub(crate) busy_once: Vec<u64>,
    pub(crate) calls: Vec<(u64, PageSize)>,
}

impl MockModule {
    pub(crate) fn new() -> Self {
        Self {
            accepted_count: BTreeMap::new(),
            pre_accepted: Vec::new(),
            mapped_4k: Vec::new(),
            busy_once: Vec::new(),
            calls: Vec::new(),
        }
    }
    pub(crate) fn accept(&mut self, gpa: u64, size: PageSize) -> u64 {
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
    let st = accept_unaccepted(&regions, 0, 0x100_0000, &[], &mut |g, s| m.accept(g, s)).unwrap();
    assert_eq!(st.accepted, 0x80_0000);
    assert!(m
        .calls
        .iter()
        .all(|&(g, _)| (0x80_0000..0x100_0000).contains(&g)));
    let after = relabel_accepted(&regions, &[(0x80_0000, 0x100_0000)]);
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
        let r = accept_unaccepted(&regions, 0, 1 << 32, &DECLARED, &mut |g, s| m.accept(g, s));
        assert!(
            matches!(r, Err(AcceptError::DeclaredUnaccepted { start, .. }) if start == bad.start),
            "{bad:x?}: {r:?}"
        );
        assert!(
            m.calls.is_empty(),
            "accepted before refusing: {:x?}",
            m.calls
        );
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
