//! Lazy acceptance against the mock TDX module of `accept_tests.rs`, and the TDCALL counts of
//! eager and lazy acceptance for 2 GiB and 16 GiB TDs.

use super::*;
use crate::memmap::{Region, RegionKind};
use crate::tdx::accept::tests::MockModule;
use crate::tdx::accept::{relabel_accepted, unaccepted_ranges};
use alloc::vec::Vec;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A mock whose every 2 MiB range is mapped with 4 KiB Secure-EPT entries (upstream KVM).
fn kvm_mock(ranges: &[(u64, u64)]) -> MockModule {
    let mut m = MockModule::new();
    for &(s, e) in ranges {
        m.mapped_4k
            .extend((s.div_ceil(PAGE_2M) * PAGE_2M..e).step_by(PAGE_2M as usize));
    }
    m
}

#[test]
fn grow_hands_out_only_accepted_memory_each_page_once() {
    let ranges = [(0x50_0000, 0x1000_0000), (0x2000_0000, 0x2100_3000)];
    let mut lazy = LazyAccept::new(&ranges).unwrap();
    let total = lazy.remaining();
    let mut m = kvm_mock(&ranges);
    let mut chunks = Vec::new();
    // Mixed demands: small ones get LAZY_CHUNK, a big one gets what it asks for.
    for min in [1u64, 100 * MIB, 4096, 1, 1, 1, 1, 1, 1, 1, 1, 1] {
        let before = lazy.remaining();
        let Some((s, e)) = lazy.grow(min, &mut |g, sz| m.accept(g, sz)).unwrap() else {
            break;
        };
        // Accepted before it is returned: every page of the chunk exactly once by now.
        for p in (s..e).step_by(4096) {
            assert_eq!(m.accepted_count.get(&p), Some(&1), "page {p:#x}");
        }
        assert_eq!(lazy.remaining(), before - (e - s));
        assert!(
            e - s >= min.min(before),
            "chunk {s:#x}..{e:#x} for {min:#x}"
        );
        assert!(
            e % PAGE_2M == 0 || ranges.iter().any(|r| r.1 == e),
            "{e:#x}"
        );
        chunks.push((s, e));
    }
    assert_eq!(lazy.grow(1, &mut |g, sz| m.accept(g, sz)), Ok(None));
    // The chunks tile the ranges exactly: nothing unaccepted left, nothing accepted twice.
    assert_eq!(chunks.iter().map(|(s, e)| e - s).sum::<u64>(), total);
    assert_eq!(m.accepted_count.len() as u64, total / 4096);
    assert!(m.accepted_count.values().all(|&n| n == 1));
    assert_eq!(chunks[0], (0x50_0000, 0x50_0000 + LAZY_CHUNK + MIB));
    assert_eq!(chunks[1].1 - chunks[1].0, 100 * MIB);
}

#[test]
fn a_failed_chunk_is_never_accepted_again() {
    let mut lazy = LazyAccept::new(&[(0, 0x800_0000)]).unwrap();
    let mut m = MockModule::new();
    m.pre_accepted.push(0x10_0000); // the host re-added a page behind our back
    assert!(matches!(
        lazy.grow(1, &mut |g, s| m.accept(g, s)),
        Err(AcceptError::AlreadyAccepted { .. })
    ));
    // The failed chunk is gone: the next one starts after it.
    assert_eq!(lazy.pending(), &[(LAZY_CHUNK, 0x800_0000)]);
    let (s, _) = lazy.grow(1, &mut |g, s| m.accept(g, s)).unwrap().unwrap();
    assert_eq!(s, LAZY_CHUNK);
}

#[test]
fn bad_ranges_are_refused() {
    assert_eq!(
        LazyAccept::new(&[(0x2000, 0x1000)]),
        Err(LazyError::BadRange(0x2000, 0x1000))
    );
    assert_eq!(
        LazyAccept::new(&[(0, 0x3000), (0x2000, 0x5000)]),
        Err(LazyError::BadRange(0x2000, 0x5000))
    );
    assert_eq!(
        LazyAccept::new(&[(0x800, 0x3000)]),
        Err(LazyError::BadRange(0x800, 0x3000))
    );
    let many: Vec<_> = (0..=MAX_PENDING as u64)
        .map(|i| (i * 0x2000, i * 0x2000 + 0x1000))
        .collect();
    assert_eq!(LazyAccept::new(&many), Err(LazyError::TooManyRanges));
    assert_eq!(
        LazyAccept::new(&many[..MAX_PENDING]).unwrap().remaining(),
        0x20000
    );
}

/// QEMU's TD HOB for a q35 TD of `ram` bytes: RAM below 2 GiB (q35 puts at most 2 GiB below
/// 4 GiB once the guest has more than 2.75 GiB) and the rest from 4 GiB, all unaccepted but
/// the TD_HOB and TEMP_MEM sections (accepted at launch: RAM).
fn qemu_hob(ram: u64) -> Vec<Region> {
    let r = |start, end, kind| Region {
        start,
        len: end - start,
        kind,
    };
    let low = ram.min(2 * GIB);
    let mut m = alloc::vec![
        r(0, 0x1_0000, RegionKind::Unaccepted),
        r(0x1_0000, 0x3_0000, RegionKind::Ram),
        r(0x3_0000, 0x10_0000, RegionKind::Unaccepted),
        r(0x10_0000, 0x50_0000, RegionKind::Ram),
        r(0x50_0000, low, RegionKind::Unaccepted),
    ];
    if ram > low {
        m.push(r(4 * GIB, 4 * GIB + ram - low, RegionKind::Unaccepted));
    }
    m
}

/// TDCALLs (TDG.MEM.PAGE.ACCEPT, 2 MiB tries included) for `[s, e)` on upstream KVM.
fn calls_4k_fallback(s: u64, e: u64) -> u64 {
    let mut n = 0u64;
    let mut count = |_: u64, size: PageSize| {
        n += 1;
        match size {
            PageSize::Size2M => 0xC000_0B0B_0000_0000, // TDX_PAGE_SIZE_MISMATCH
            PageSize::Size4K => 0,
        }
    };
    accept_range(s, e, &mut count).unwrap();
    n
}

#[test]
fn tdcall_counts_eager_vs_lazy_for_2_and_16_gib() {
    const DECLARED: [(u64, u64); 3] = [
        (0x10_0000, 0x50_0000),
        (0x1_0000, 0x3_0000),
        (0xFFF8_0000, 1 << 32),
    ];
    let mut rows = Vec::new();
    for ram in [2 * GIB, 16 * GIB] {
        let hob = qemu_hob(ram);
        // What pupa may accept: RAM from 1 MiB to 4 GiB (its identity map).
        let ranges = unaccepted_ranges(&hob, 0x10_0000, 1 << 32, &DECLARED).unwrap();
        let eager: u64 = ranges.iter().map(|&(s, e)| calls_4k_fallback(s, e)).sum();
        // Everything the TD has, were it all mapped and accepted at boot.
        let everything = unaccepted_ranges(&hob, 0, u64::MAX, &DECLARED).unwrap();
        let eager_all: u64 = everything
            .iter()
            .map(|&(s, e)| calls_4k_fallback(s, e))
            .sum();
        // Lazy: the boot chunk only; the rest LAZY_CHUNK at a time when the heap needs it.
        let mut lazy = LazyAccept::new(&ranges).unwrap();
        let mut boot_calls = 0;
        let mut boot = Vec::new();
        let mut counted = |_, s| {
            boot_calls += 1;
            match s {
                PageSize::Size2M => 0xC000_0B0B_0000_0000,
                PageSize::Size4K => 0,
            }
        };
        let mut got = 0;
        while got < BOOT_ACCEPT {
            let (s, e) = lazy.grow(BOOT_ACCEPT - got, &mut counted).unwrap().unwrap();
            boot.push((s, e));
            got += e - s;
        }
        let per_chunk = calls_4k_fallback(64 * MIB, 64 * MIB + LAZY_CHUNK);
        // The heap sees the boot chunk as RAM, the rest still unaccepted.
        let map = relabel_accepted(&hob, &boot);
        assert_eq!(
            crate::memmap::total(&map, RegionKind::Ram),
            4 * MIB + 0x2_0000 + got
        );
        rows.push((
            ram,
            eager,
            eager_all,
            boot_calls,
            got,
            per_chunk,
            lazy.remaining(),
        ));
    }
    for (ram, eager, all, boot, got, chunk, left) in &rows {
        std::println!(
            "{} GiB TD: eager below 4 GiB {eager} TDCALLs (all RAM: {all}); lazy at boot {boot} \
             TDCALLs for {} MiB, then {chunk} per {} MiB chunk on demand ({} MiB pending)",
            ram / GIB,
            got / MIB,
            LAZY_CHUNK / MIB,
            left / MIB
        );
    }
    // 2 GiB: [5 MiB, 2 GiB): 256 4 KiB pages to the 6 MiB boundary, then 1021 2 MiB pages of
    // 513 TDCALLs each (one refused 2 MiB try + 512 4 KiB accepts).
    assert_eq!(rows[0].1, 256 + 1021 * 513);
    // 16 GiB: the same below 4 GiB; all of it would add the 224 4 KiB pages below 1 MiB and
    // the 7,168 2 MiB pages from 4 GiB.
    assert_eq!(rows[1].1, rows[0].1);
    assert_eq!(rows[1].2, rows[0].1 + 224 + 7168 * 513);
    // Lazy: [5 MiB, 38 MiB) at boot (ends on a 2 MiB boundary): 256 + 16 × 513.
    assert_eq!((rows[0].3, rows[0].4), (256 + 16 * 513, 33 * MIB));
    assert_eq!(rows[1].3, rows[0].3);
    assert_eq!(rows[0].5, 16 * 513);
}

#[test]
fn the_boot_accepts_only_its_chunk() {
    // T5: a 2 GiB TD under upstream KVM (4 KiB Secure-EPT mappings). The boot accepts
    // BOOT_ACCEPT (to a 2 MiB boundary), not the 2 GiB: 8,464 TDCALLs instead of 524,029.
    let hob = qemu_hob(2 * GIB);
    let declared = [(0x10_0000, 0x50_0000), (0x1_0000, 0x3_0000)];
    let ranges = unaccepted_ranges(&hob, 0x10_0000, 1 << 32, &declared).unwrap();
    let mut m = kvm_mock(&ranges);
    let (boot, lazy) = accept_for_boot(
        &hob,
        0x10_0000,
        1 << 32,
        &declared,
        BOOT_ACCEPT,
        &mut |g, s| m.accept(g, s),
    )
    .unwrap();
    assert_eq!(boot, alloc::vec![(0x50_0000, 0x260_0000)]);
    assert_eq!(m.calls.len(), 256 + 16 * 513);
    assert_eq!(
        m.accepted_count.len() as u64,
        (0x260_0000 - 0x50_0000) / 4096
    );
    assert_eq!(lazy.pending(), &[(0x260_0000, 2 * GIB)]);
    // A HOB smaller than the boot chunk is accepted whole, nothing pending.
    let small = [Region {
        start: 0x50_0000,
        len: 0x10_0000,
        kind: RegionKind::Unaccepted,
    }];
    let mut m = MockModule::new();
    let (boot, lazy) = accept_for_boot(
        &small,
        0x10_0000,
        1 << 32,
        &declared,
        BOOT_ACCEPT,
        &mut |g, s| m.accept(g, s),
    )
    .unwrap();
    assert_eq!(
        (boot, lazy.remaining()),
        (alloc::vec![(0x50_0000, 0x60_0000)], 0)
    );
    // The declared-section check still comes first.
    let bad = [Region {
        start: 0x40_0000,
        len: 0x20_0000,
        kind: RegionKind::Unaccepted,
    }];
    assert!(matches!(
        accept_for_boot(&bad, 0, 1 << 32, &declared, BOOT_ACCEPT, &mut |_, _| 0),
        Err(BootAcceptError::Accept(
            AcceptError::DeclaredUnaccepted { .. }
        ))
    ));
}

/// The firmware's heap takes chunks under its list's lock and accepts them after releasing it:
/// two vCPUs that take before either accepts get disjoint chunks, and accepting both (in either
/// order) accepts every page of them once.
#[test]
fn interleaved_takes_are_disjoint_and_accept_once() {
    let ranges = [(0x50_0000, 0x1000_0000)];
    let mut lazy = LazyAccept::new(&ranges).unwrap();
    let mut m = kvm_mock(&ranges);
    let a = lazy.take(1).unwrap();
    let b = lazy.take(64 * MIB).unwrap();
    assert!(a.1 <= b.0, "{a:x?} {b:x?}");
    for (s, e) in [b, a] {
        accept_range(s, e, &mut |g, sz| m.accept(g, sz)).unwrap();
    }
    for p in (a.0..a.1).chain(b.0..b.1).step_by(4096) {
        assert_eq!(m.accepted_count.get(&p), Some(&1), "page {p:#x}");
    }
    assert_eq!(
        lazy.remaining(),
        0x1000_0000 - 0x50_0000 - (a.1 - a.0) - (b.1 - b.0)
    );
}
