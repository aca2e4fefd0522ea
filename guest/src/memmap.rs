//! The guest-physical memory map, as the VMM describes it.
//!
//! - Plain VMs and SEV-SNP under QEMU: the fw_cfg file `etc/e820`, an array of packed
//!   `{u64 addr, u64 len, u32 type}` entries (ACPI spec §15 "System Address Map Interfaces";
//!   QEMU `hw/i386/e820_memory_layout.h`).
//! - TDX: the TD HOB the VMM writes at the TD_HOB section (TDVF design guide §4.2; the HOB
//!   formats are UEFI PI spec Vol. 3 §5: generic header `{u16 type, u16 length, u32 reserved}`,
//!   resource descriptor HOBs of type 3, end of list 0xFFFF). Under TDX, RAM the guest has not
//!   accepted yet is reported as resource type 7 (`EFI_RESOURCE_MEMORY_UNACCEPTED`).
//!
//! Both parsers take untrusted bytes from the host: every length is checked, nothing panics.

use alloc::vec::Vec;

/// What a range of guest-physical memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Usable RAM (accepted/validated, or not needing it).
    Ram,
    /// RAM the guest must accept (TDX) before use.
    Unaccepted,
    /// Reserved, ACPI, MMIO or anything else: never used by the allocator.
    Reserved,
}

/// One range of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    pub kind: RegionKind,
}

impl Region {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// Why a memory map could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMapError {
    /// The E820 table's size is not a multiple of 20 bytes.
    E820Length(usize),
    /// A HOB's length is shorter than its header or runs past the buffer (offset of the HOB).
    HobLength(usize),
    /// The HOB list has no end-of-list HOB within the buffer.
    HobUnterminated,
    /// The first HOB is not the PHIT (handoff information table) HOB.
    HobNoPhit,
    /// An entry's address range overflows 64 bits.
    Overflow,
    /// Two entries cover the same address (`[start, end)` of each, in address order): the
    /// map is refused rather than merged, so no page is ever validated or accepted twice.
    Overlap {
        /// The entry that starts first.
        first: (u64, u64),
        /// The entry that starts inside it.
        second: (u64, u64),
    },
}

impl core::fmt::Display for MemMapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemMapError::E820Length(n) => write!(
                f,
                "E820 table of {n} bytes is not a whole number of 20-byte entries"
            ),
            MemMapError::HobLength(off) => write!(f, "HOB at offset {off:#x} has a bad length"),
            MemMapError::HobUnterminated => write!(f, "HOB list has no end-of-list HOB"),
            MemMapError::HobNoPhit => write!(f, "HOB list does not start with a PHIT HOB"),
            MemMapError::Overflow => write!(f, "memory range overflows the address space"),
            MemMapError::Overlap { first, second } => write!(
                f,
                "memory map entries [{:#x}, {:#x}) and [{:#x}, {:#x}) overlap",
                first.0, first.1, second.0, second.1
            ),
        }
    }
}

/// E820 entry types (ACPI spec table 15-374).
pub const E820_RAM: u32 = 1;

/// Parse QEMU's `etc/e820` fw_cfg file.
pub fn parse_e820(bytes: &[u8]) -> Result<Vec<Region>, MemMapError> {
    if !bytes.len().is_multiple_of(20) {
        return Err(MemMapError::E820Length(bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 20);
    for e in bytes.chunks_exact(20) {
        let start = u64::from_le_bytes(e[0..8].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(e[8..16].try_into().unwrap_or_default());
        let ty = u32::from_le_bytes(e[16..20].try_into().unwrap_or_default());
        start.checked_add(len).ok_or(MemMapError::Overflow)?;
        let kind = if ty == E820_RAM {
            RegionKind::Ram
        } else {
            RegionKind::Reserved
        };
        out.push(Region { start, len, kind });
    }
    sorted_disjoint(out)
}

/// Sorts the entries by address, drops empty ones and refuses any two that share an address
/// ([`MemMapError::Overlap`]). A host that lists a range twice (or RAM inside another range)
/// would otherwise have it validated (SNP: PVALIDATE) or accepted (TDX) twice: between the
/// two, it could reset the page's RMP entry / remove and re-add it, and the heap would hand
/// out the same memory twice (Linux `e820__update_table` resolves overlaps by type priority;
/// pupa has no reason to trust either entry and refuses the map).
fn sorted_disjoint(mut regions: Vec<Region>) -> Result<Vec<Region>, MemMapError> {
    regions.retain(|r| r.len != 0);
    regions.sort_unstable_by_key(|r| (r.start, r.len));
    // Sorted by start: if entries i < j overlap, so do i and i + 1.
    for w in regions.windows(2) {
        if w[0].end() > w[1].start {
            return Err(MemMapError::Overlap {
                first: (w[0].start, w[0].end()),
                second: (w[1].start, w[1].end()),
            });
        }
    }
    Ok(regions)
}

/// HOB types (PI spec Vol. 3 §5.2).
pub const HOB_TYPE_HANDOFF: u16 = 0x0001;
pub const HOB_TYPE_RESOURCE_DESCRIPTOR: u16 = 0x0003;
pub const HOB_TYPE_END_OF_HOB_LIST: u16 = 0xFFFF;
/// Resource types (PI spec Vol. 3 §5.5; 7 from the UEFI 2.9 unaccepted-memory extension).
pub const RESOURCE_SYSTEM_MEMORY: u32 = 0;
pub const RESOURCE_MEMORY_UNACCEPTED: u32 = 7;

/// Parse a TD HOB list (as QEMU writes it for a TD) into memory regions.
pub fn parse_td_hob(bytes: &[u8]) -> Result<Vec<Region>, MemMapError> {
    parse_td_hob_list(bytes).map(|(regions, _)| regions)
}

/// [`parse_td_hob`], also returning the length of the list in bytes (from the PHIT HOB through
/// the end-of-list HOB): `bytes` is the whole TD_HOB section, the list is what gets measured.
pub fn parse_td_hob_list(bytes: &[u8]) -> Result<(Vec<Region>, usize), MemMapError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    let mut first = true;
    loop {
        let hdr = bytes
            .get(off..off + 8)
            .ok_or(MemMapError::HobUnterminated)?;
        let ty = u16::from_le_bytes([hdr[0], hdr[1]]);
        let len = u16::from_le_bytes([hdr[2], hdr[3]]) as usize;
        if first && ty != HOB_TYPE_HANDOFF {
            return Err(MemMapError::HobNoPhit);
        }
        first = false;
        if ty == HOB_TYPE_END_OF_HOB_LIST {
            return Ok((sorted_disjoint(out)?, off + 8));
        }
        if len < 8 || off + len > bytes.len() {
            return Err(MemMapError::HobLength(off));
        }
        if ty == HOB_TYPE_RESOURCE_DESCRIPTOR {
            // header(8) ‖ owner GUID(16) ‖ u32 type ‖ u32 attributes ‖ u64 start ‖ u64 length
            let body = bytes
                .get(off..off + 48)
                .filter(|_| len >= 48)
                .ok_or(MemMapError::HobLength(off))?;
            let rtype = u32::from_le_bytes(body[24..28].try_into().unwrap_or_default());
            let start = u64::from_le_bytes(body[32..40].try_into().unwrap_or_default());
            let rlen = u64::from_le_bytes(body[40..48].try_into().unwrap_or_default());
            start.checked_add(rlen).ok_or(MemMapError::Overflow)?;
            let kind = match rtype {
                RESOURCE_SYSTEM_MEMORY => RegionKind::Ram,
                RESOURCE_MEMORY_UNACCEPTED => RegionKind::Unaccepted,
                _ => RegionKind::Reserved,
            };
            out.push(Region {
                start,
                len: rlen,
                kind,
            });
        }
        off += len;
    }
}

/// Total bytes of the given kind.
pub fn total(regions: &[Region], kind: RegionKind) -> u64 {
    regions
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.len)
        .fold(0, u64::saturating_add)
}

/// The parts of the `Ram` regions inside `[lo, hi)` that avoid every range in `exclude`,
/// page-aligned inwards: the memory the allocator may take. Sorted and disjoint (overlapping
/// or touching pieces are merged) whatever `regions` holds, so that no page is validated,
/// accepted or given to the allocator twice.
pub fn usable_ram(regions: &[Region], lo: u64, hi: u64, exclude: &[(u64, u64)]) -> Vec<(u64, u64)> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    for r in regions.iter().filter(|r| r.kind == RegionKind::Ram) {
        let mut pieces = alloc::vec![(r.start.max(lo), r.end().min(hi))];
        for &(xs, xe) in exclude {
            let mut next = Vec::new();
            for (s, e) in pieces {
                if xe <= s || xs >= e {
                    next.push((s, e));
                    continue;
                }
                if s < xs {
                    next.push((s, xs));
                }
                if xe < e {
                    next.push((xe, e));
                }
            }
            pieces = next;
        }
        for (s, e) in pieces {
            let s = s.div_ceil(PAGE) * PAGE;
            let e = e / PAGE * PAGE;
            if e > s {
                out.push((s, e));
            }
        }
    }
    out.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.len());
    for (s, e) in out {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e820(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        for &(a, l, t) in entries {
            v.extend_from_slice(&a.to_le_bytes());
            v.extend_from_slice(&l.to_le_bytes());
            v.extend_from_slice(&t.to_le_bytes());
        }
        v
    }

    #[test]
    fn e820_like_qemu_q35_256m() {
        // What QEMU 7.2+ gives a q35 VM with -m 256: low RAM, then a reserved range.
        let b = e820(&[
            (0, 0x9fc00, 1),
            (0x100000, 0xff00000, 1),
            (0xfeffc000, 0x4000, 2),
        ]);
        let m = parse_e820(&b).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(total(&m, RegionKind::Ram), 0x9fc00 + 0xff00000);
        assert_eq!(m[2].kind, RegionKind::Reserved);
    }

    #[test]
    fn e820_bad_length_and_overflow() {
        assert_eq!(parse_e820(&[0u8; 21]), Err(MemMapError::E820Length(21)));
        let b = e820(&[(u64::MAX, 2, 1)]);
        assert_eq!(parse_e820(&b), Err(MemMapError::Overflow));
    }

    fn ram(start: u64, len: u64) -> Region {
        Region {
            start,
            len,
            kind: RegionKind::Ram,
        }
    }

    #[test]
    fn e820_overlap_is_rejected_and_entries_sorted() {
        // S1: a duplicated RAM entry (and a RAM entry overlapping a reserved one) must not reach
        // the validator twice: the table is refused.
        let dup = e820(&[(0x100000, 0x1000_0000, 1), (0x100000, 0x1000_0000, 1)]);
        assert_eq!(
            parse_e820(&dup),
            Err(MemMapError::Overlap {
                first: (0x100000, 0x1010_0000),
                second: (0x100000, 0x1010_0000)
            })
        );
        let inner = e820(&[(0x100000, 0x1000_0000, 1), (0x20_0000, 0x1000, 2)]);
        assert!(matches!(
            parse_e820(&inner),
            Err(MemMapError::Overlap { .. })
        ));
        // Out of order but disjoint (and touching) is fine, and comes back sorted; empty
        // entries are dropped.
        let shuffled = e820(&[(0x100000, 0xff00000, 1), (0, 0x9fc00, 1), (0x5000, 0, 1)]);
        let m = parse_e820(&shuffled).unwrap();
        assert_eq!(m, alloc::vec![ram(0, 0x9fc00), ram(0x100000, 0xff00000)]);
        let touching = e820(&[(0x100000, 0x100000, 1), (0x200000, 0x100000, 1)]);
        assert_eq!(parse_e820(&touching).unwrap().len(), 2);
    }

    #[test]
    fn usable_ram_is_sorted_and_disjoint_whatever_the_input() {
        // S1: even a map that skipped the parsers' check (duplicates, overlaps, out of order)
        // yields every usable page at most once, in ascending order.
        let m = [
            ram(0x800000, 0x400000),
            ram(0x100000, 0x800000),
            ram(0x100000, 0x800000),
            ram(0x300000, 0x100000),
        ];
        let u = usable_ram(&m, 0, 1 << 32, &[(0x400000, 0x500000)]);
        assert_eq!(u, alloc::vec![(0x100000, 0x400000), (0x500000, 0xC00000)]);
        for w in u.windows(2) {
            assert!(w[0].1 < w[1].0, "{u:x?} not disjoint and sorted");
        }
    }

    #[test]
    fn usable_ram_excludes_and_aligns() {
        let m = [Region {
            start: 0x100000,
            len: 0x1000_0000,
            kind: RegionKind::Ram,
        }];
        let u = usable_ram(
            &m,
            0,
            1 << 32,
            &[(0x100000, 0x500000), (0x800123, 0x900000)],
        );
        assert_eq!(
            u,
            alloc::vec![(0x500000, 0x800000), (0x900000, 0x1010_0000)]
        );
        assert!(usable_ram(&m, 0, 0x100000, &[]).is_empty());
    }

    fn hob(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&((8 + body.len()) as u16).to_le_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(body);
        v
    }

    fn resource(rtype: u32, start: u64, len: u64) -> Vec<u8> {
        let mut b = alloc::vec![0u8; 16]; // owner GUID
        b.extend_from_slice(&rtype.to_le_bytes());
        b.extend_from_slice(&0x7u32.to_le_bytes());
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        hob(HOB_TYPE_RESOURCE_DESCRIPTOR, &b)
    }

    #[test]
    fn td_hob_resources() {
        let mut list = hob(HOB_TYPE_HANDOFF, &[0u8; 48]);
        list.extend(resource(RESOURCE_SYSTEM_MEMORY, 0, 0x80000));
        list.extend(resource(RESOURCE_MEMORY_UNACCEPTED, 0x800000, 0x7800000));
        list.extend(resource(5, 0xfee00000, 0x1000));
        list.extend(hob(HOB_TYPE_END_OF_HOB_LIST, &[]));
        let m = parse_td_hob(&list).unwrap();
        // The list length counts through the end-of-list header, not the section's tail.
        let mut section = list.clone();
        section.resize(128 << 10, 0);
        assert_eq!(
            parse_td_hob_list(&section).unwrap(),
            (m.clone(), list.len())
        );
        assert_eq!(m.len(), 3);
        assert_eq!(total(&m, RegionKind::Unaccepted), 0x7800000);
        assert_eq!(m[2].kind, RegionKind::Reserved);
    }

    #[test]
    fn td_hob_overlap_is_rejected() {
        // S1 for TDX: an unaccepted range listed twice (or inside a RAM range) would be
        // accepted twice; the HOB is refused.
        let mut list = hob(HOB_TYPE_HANDOFF, &[0u8; 48]);
        list.extend(resource(RESOURCE_MEMORY_UNACCEPTED, 0x800000, 0x7800000));
        list.extend(resource(RESOURCE_SYSTEM_MEMORY, 0, 0x80000));
        list.extend(resource(RESOURCE_MEMORY_UNACCEPTED, 0x1000000, 0x200000));
        list.extend(hob(HOB_TYPE_END_OF_HOB_LIST, &[]));
        assert_eq!(
            parse_td_hob(&list),
            Err(MemMapError::Overlap {
                first: (0x800000, 0x8000000),
                second: (0x1000000, 0x1200000)
            })
        );
    }

    #[test]
    fn td_hob_malformed() {
        assert_eq!(parse_td_hob(&[]), Err(MemMapError::HobUnterminated));
        assert_eq!(
            parse_td_hob(&hob(HOB_TYPE_RESOURCE_DESCRIPTOR, &[0; 40])),
            Err(MemMapError::HobNoPhit)
        );
        let mut list = hob(HOB_TYPE_HANDOFF, &[0u8; 48]);
        assert_eq!(parse_td_hob(&list), Err(MemMapError::HobUnterminated));
        // a zero-length HOB would loop forever: rejected
        list.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_td_hob(&list), Err(MemMapError::HobLength(56)));
        // a resource HOB too short for its body
        let mut list = hob(HOB_TYPE_HANDOFF, &[0u8; 48]);
        list.extend(hob(HOB_TYPE_RESOURCE_DESCRIPTOR, &[0; 8]));
        list.extend(hob(HOB_TYPE_END_OF_HOB_LIST, &[]));
        assert_eq!(parse_td_hob(&list), Err(MemMapError::HobLength(56)));
        // every truncation of a valid list is an error, never a panic
        let mut good = hob(HOB_TYPE_HANDOFF, &[0u8; 48]);
        good.extend(resource(0, 0, 4096));
        good.extend(hob(HOB_TYPE_END_OF_HOB_LIST, &[]));
        for n in 0..good.len() {
            assert!(parse_td_hob(&good[..n]).is_err(), "truncated at {n}");
        }
    }
}
