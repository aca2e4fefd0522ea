//! Page-state change and PVALIDATE logic against mock hypervisors and a mock RMP.

use std::collections::BTreeMap;

use super::*;

const SCRATCH: u64 = 0x20_0800;

/// The mock hypervisor reads the descriptor as raw bytes at the GHCB spec's offsets (§4.1.6:
/// CUR_ENTRY at 0, END_ENTRY at 2, entry i at 8 + 8·i), independently of the typed layout.
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn entry_at(b: &[u8], i: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[8 + 8 * i..16 + 8 * i]);
    u64::from_le_bytes(v)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Misbehave {
    None,
    ChangeEnd,
    CurPastEnd,
    Error,
    RewriteGfn,
    ResetCurPageOnSecondExit,
}

/// A hypervisor that processes at most `budget` 4 KiB pages per exit, recording how often each
/// 4 KiB page was converted.
struct MockHv {
    budget: usize,
    state: BTreeMap<u64, (PageOp, u32)>,
    exits: usize,
    misbehave: Misbehave,
}

impl MockHv {
    fn new(budget: usize) -> Self {
        Self {
            budget,
            state: BTreeMap::new(),
            exits: 0,
            misbehave: Misbehave::None,
        }
    }

    fn exit(&mut self, g: &mut Ghcb<'_>) {
        self.exits += 1;
        assert_eq!(g.get(Field::SwExitCode), Ok(0x8000_0010));
        assert_eq!(g.get(Field::SwScratch), Ok(SCRATCH));
        let buf = g.shared_buffer();
        let (mut cur, end) = (u16_at(buf, 0) as usize, u16_at(buf, 2) as usize);
        let mut budget = self.budget;
        while cur <= end && budget > 0 {
            let e = entry_at(buf, cur);
            let (gfn, op, big) = ((e >> 12) & ((1 << 40) - 1), (e >> 52) & 0xF, e >> 56 & 1);
            let op = if op == 1 {
                PageOp::Private
            } else {
                PageOp::Shared
            };
            let pages = if big == 1 { 512 } else { 1 };
            let mut page = e & 0xFFF;
            while page < pages && budget > 0 {
                let s = self.state.entry(gfn + page).or_insert((op, 0));
                *s = (op, s.1 + 1);
                page += 1;
                budget -= 1;
            }
            buf[8 + 8 * cur..16 + 8 * cur].copy_from_slice(&((e & !0xFFF) | page).to_le_bytes());
            if page == pages {
                cur += 1;
            }
        }
        buf[0..2].copy_from_slice(&(cur as u16).to_le_bytes());
        match self.misbehave {
            Misbehave::ChangeEnd => buf[2..4].copy_from_slice(&((end + 1) as u16).to_le_bytes()),
            Misbehave::CurPastEnd => buf[0..2].copy_from_slice(&((end + 2) as u16).to_le_bytes()),
            Misbehave::RewriteGfn => buf[8 + 8 * cur + 2] ^= 1,
            Misbehave::ResetCurPageOnSecondExit if self.exits == 2 => {
                buf[8..10].copy_from_slice(&0u16.to_le_bytes())
            }
            _ => {}
        }
        g.set(Field::SwExitInfo1, 0);
        let info2 = if self.misbehave == Misbehave::Error {
            0x1_0000_0000
        } else {
            0
        };
        g.set(Field::SwExitInfo2, info2);
    }
}

fn run(hv: &mut MockHv, start: u64, end: u64, op: PageOp) -> Result<(), PscError> {
    let mut page = [0u8; 4096];
    let mut g = Ghcb::new(&mut page);
    change_state(&mut g, SCRATCH, start, end, op, &mut |g| hv.exit(g))
}

#[test]
fn plan_uses_2m_entries_where_aligned_and_linux_bit_layout() {
    let p: Vec<_> = plan(0x1F_F000, 0x60_1000, PageOp::Shared)
        .unwrap()
        .collect();
    let v: Vec<_> = p.iter().map(|e| (e.gfn << 12, e.size_2m)).collect();
    assert_eq!(
        v,
        [
            (0x1F_F000, false),
            (0x20_0000, true),
            (0x40_0000, true),
            (0x60_0000, false)
        ]
    );
    // struct psc_entry (Linux sev-common.h): cur_page:12, gfn:40, operation:4, pagesize:1.
    assert_eq!(p[1].encode(), 0x0120_0000_0020_0000);
    assert_eq!(
        PscEntry {
            gfn: 0x1FF,
            op: PageOp::Private,
            size_2m: false,
            cur_page: 0
        }
        .encode(),
        0x0010_0000_001F_F000
    );
    // A 2 MiB-aligned start with less than 2 MiB left uses 4 KiB pages.
    assert_eq!(
        plan(0x20_0000, 0x20_2000, PageOp::Shared).unwrap().count(),
        2
    );
    assert_eq!(plan(0x1000, 0x1000, PageOp::Shared).unwrap().count(), 0);
    assert_eq!(
        plan(0x1001, 0x2000, PageOp::Shared).unwrap_err(),
        PscError::BadRange {
            start: 0x1001,
            end: 0x2000
        }
    );
    assert!(plan(0x3000, 0x2000, PageOp::Shared).is_err());
}

#[test]
fn more_than_253_entries_take_several_descriptors() {
    let mut hv = MockHv::new(usize::MAX);
    // 0x1000..0x12D000: 300 4 KiB entries (no aligned 2 MiB page inside).
    run(&mut hv, 0x1000, 0x12_D000, PageOp::Shared).unwrap();
    assert_eq!(hv.exits, 2);
    assert_eq!(hv.state.len(), 300);
    assert!(hv.state.values().all(|&s| s == (PageOp::Shared, 1)));
    assert_eq!(*hv.state.keys().next().unwrap(), 1);
}

#[test]
fn partial_progress_is_resumed_without_redoing_pages() {
    let mut hv = MockHv::new(100);
    // 4 KiB, two 2 MiB entries, 4 KiB: 1026 pages, 100 per exit → 11 exits, each 2 MiB entry
    // split across exits (CUR_PAGE inside the entry).
    run(&mut hv, 0x1F_F000, 0x60_1000, PageOp::Private).unwrap();
    assert_eq!(hv.exits, 11);
    assert_eq!(hv.state.len(), 1026);
    assert!(hv.state.values().all(|&s| s == (PageOp::Private, 1)));
}

#[test]
fn hypervisor_misbehaviour_is_detected() {
    for (m, budget, want) in [
        (
            Misbehave::ChangeEnd,
            1,
            PscError::Inconsistent("END_ENTRY changed"),
        ),
        (
            Misbehave::CurPastEnd,
            1,
            PscError::Inconsistent("CUR_ENTRY past END_ENTRY"),
        ),
        (Misbehave::Error, 1, PscError::Hypervisor(0x1_0000_0000)),
        (
            Misbehave::RewriteGfn,
            1,
            PscError::Inconsistent("entry rewritten"),
        ),
        (
            Misbehave::ResetCurPageOnSecondExit,
            100,
            PscError::Inconsistent("CUR_PAGE went backwards"),
        ),
        (Misbehave::None, 0, PscError::NoProgress),
    ] {
        let mut hv = MockHv::new(budget);
        hv.misbehave = m;
        assert_eq!(
            run(&mut hv, 0x20_0000, 0x40_2000, PageOp::Shared),
            Err(want)
        );
    }
    // SW_EXITINFO1 = 2 (malformed) is reported as such.
    let mut page = [0u8; 4096];
    let mut g = Ghcb::new(&mut page);
    let r = change_state(&mut g, SCRATCH, 0, 0x1000, PageOp::Shared, &mut |g| {
        g.set(Field::SwExitInfo1, 2);
        g.set(Field::SwExitInfo2, 1);
    });
    assert_eq!(r, Err(PscError::Ghcb(GhcbError::MalformedInput(1))));
}

/// A mock RMP: which 4 KiB pages are validated, and which 2 MiB regions are held as 4 KiB.
struct Rmp {
    validated: BTreeMap<u64, bool>,
    split_2m: Vec<u64>,
    calls: Vec<(u64, bool)>,
}

impl Rmp {
    fn pvalidate(&mut self, addr: u64, big: bool, validate: bool) -> (u32, bool) {
        self.calls.push((addr, big));
        if !addr.is_multiple_of(if big { PAGE_2M } else { PAGE_4K }) {
            return (pvalidate_rc::FAIL_INPUT, false);
        }
        if big && self.split_2m.contains(&addr) {
            return (pvalidate_rc::FAIL_SIZEMISMATCH, false);
        }
        let pages = if big { 512 } else { 1 };
        let first = addr >> 12;
        if (first..first + pages).any(|p| *self.validated.get(&p).unwrap_or(&false) == validate) {
            return (0, true);
        }
        for p in first..first + pages {
            self.validated.insert(p, validate);
        }
        (0, false)
    }
}

#[test]
fn pvalidate_retries_size_mismatch_as_4k_and_refuses_double_validation() {
    let mut rmp = Rmp {
        validated: BTreeMap::new(),
        split_2m: vec![0x40_0000],
        calls: vec![],
    };
    let mut pv = |a, b, v| rmp.pvalidate(a, b, v);
    pvalidate_range(0x1F_F000, 0x60_0000, true, &mut pv).unwrap();
    assert_eq!(rmp.validated.len(), 1 + 512 * 2);
    assert!(rmp.validated.values().all(|&v| v));
    // 4K, 2M ok, 2M mismatch → 512 × 4K.
    assert_eq!(rmp.calls.len(), 1 + 1 + 1 + 512);
    assert_eq!(rmp.calls[2], (0x40_0000, true));
    assert_eq!(rmp.calls[3], (0x40_0000, false));
    assert_eq!(rmp.calls[514], (0x5F_F000, false));
    // Validating again: CF = 1, the page was not changed → error naming it.
    let mut pv = |a, b, v| rmp.pvalidate(a, b, v);
    assert_eq!(
        pvalidate_range(0x1F_F000, 0x20_0000, true, &mut pv),
        Err(PscError::PvalidateNoUpdate(0x1F_F000))
    );
    // Rescinding works, and other error codes are reported with the page.
    pvalidate_range(0x20_0000, 0x40_0000, false, &mut pv).unwrap();
    let mut bad = |_, _, _| (pvalidate_rc::FAIL_INPUT, false);
    assert_eq!(
        pvalidate_range(0x1000, 0x2000, true, &mut bad),
        Err(PscError::PvalidateInput(0x1000))
    );
    let mut bad = |_, _, _| (pvalidate_rc::FAIL_SIZEMISMATCH, false);
    assert_eq!(
        pvalidate_range(0x1000, 0x2000, true, &mut bad),
        Err(PscError::Pvalidate {
            rc: 6,
            addr: 0x1000
        })
    );
}
