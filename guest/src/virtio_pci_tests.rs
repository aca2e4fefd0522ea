//! A fake PCI function (config space with BAR registers that decode a chosen number of address
//! bits) driven through the BAR placement, MSI-X and virtio capability logic, honest and
//! hostile.

use core::cell::RefCell;

use super::*;
use pupa_spec::virtio::VIRTIO_PCI_CAP_PCI_CFG;

const WINDOW: (u64, u64) = (0xC000_0000, 0xE000_0000);

/// Config space; BAR dwords keep `ro` bits and take writes only in `rw` bits.
struct Fake {
    cfg: RefCell<[u8; 256]>,
    bar_ro: [u32; 6],
    bar_rw: [u32; 6],
}

impl ConfigSpace for Fake {
    fn read32(&self, reg: u8) -> u32 {
        let c = self.cfg.borrow();
        let r = reg as usize;
        u32::from_le_bytes([c[r], c[r + 1], c[r + 2], c[r + 3]])
    }
    fn write32(&self, reg: u8, value: u32) {
        let v = match reg {
            0x10..=0x27 => {
                let i = (reg as usize - 0x10) / 4;
                (value & self.bar_rw[i]) | self.bar_ro[i]
            }
            _ => value,
        };
        self.cfg.borrow_mut()[reg as usize..reg as usize + 4].copy_from_slice(&v.to_le_bytes());
    }
}

impl Fake {
    fn new() -> Fake {
        let f = Fake {
            cfg: RefCell::new([0; 256]),
            bar_ro: [0; 6],
            bar_rw: [0; 6],
        };
        f.write32(REG_COMMAND, 1 << 20); // status: capability list
        f
    }
    /// A 32-bit memory BAR of `size` bytes in slot `i`.
    fn bar32(mut self, i: usize, size: u32) -> Fake {
        self.bar_rw[i] = !(size - 1) & !0xF;
        self
    }
    /// A 64-bit memory BAR in slots `i`, `i + 1` with the given writable address bits.
    fn bar64_bits(mut self, i: usize, rw: u64) -> Fake {
        self.bar_ro[i] = 0b100;
        self.bar_rw[i] = rw as u32 & !0xF;
        self.bar_rw[i + 1] = (rw >> 32) as u32;
        self.write32(0x10 + 4 * i as u8, 0);
        self
    }
    fn put(&self, at: u8, bytes: &[u8]) {
        self.cfg.borrow_mut()[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }
    /// Appends capabilities at the given offsets, chained in order.
    fn caps(self, list: &[(u8, Vec<u8>)]) -> Fake {
        self.put(0x34, &[list[0].0]);
        for (n, (at, body)) in list.iter().enumerate() {
            let next = list.get(n + 1).map_or(0, |c| c.0);
            self.put(*at, body);
            self.put(*at + 1, &[next]);
        }
        self
    }
    fn placed(&self) -> [Bar; 6] {
        let mut next = WINDOW.0;
        assign_bars(self, &mut next, WINDOW.1).expect("BARs placed")
    }
}

/// A virtio capability's bytes (`cap_len` 16, or 20 with the multiplier for notify).
fn vcap(cfg_type: u8, bar: u8, offset: u32, length: u32, mult: Option<u32>) -> Vec<u8> {
    let len = if mult.is_some() { 20 } else { 16 };
    let mut v = vec![PCI_CAP_ID_VNDR, 0, len, cfg_type, bar, 0, 0, 0];
    v.extend_from_slice(&offset.to_le_bytes());
    v.extend_from_slice(&length.to_le_bytes());
    if let Some(m) = mult {
        v.extend_from_slice(&m.to_le_bytes());
    }
    v
}

/// QEMU's layout: BAR4 (64-bit, 16 KiB) holds common 0x0, ISR 0x1000, device 0x2000, notify
/// 0x3000 (multiplier 4).
fn qemu_like(notify: Vec<u8>) -> Fake {
    Fake::new().bar32(1, 0x1000).bar64_bits(4, !0x3FFF).caps(&[
        (0x40, vec![0x11, 0, 0, 0, 0, 0, 0, 0]), // MSI-X stub (not virtio)
        (0x50, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 4, 0, 0x1000, None)),
        (0x60, vcap(VIRTIO_PCI_CAP_ISR_CFG, 4, 0x1000, 0x1000, None)),
        (
            0x70,
            vcap(VIRTIO_PCI_CAP_DEVICE_CFG, 4, 0x2000, 0x1000, None),
        ),
        (0x80, notify),
        (0x98, vcap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, None)),
    ])
}

#[test]
fn honest_device_is_placed_and_located() {
    let f = qemu_like(vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, 4, 0x3000, 0x1000, Some(4)));
    let bars = f.placed();
    assert_eq!(
        bars[1],
        Bar {
            base: 0xC000_0000,
            size: 0x1000
        }
    );
    assert_eq!(
        bars[4],
        Bar {
            base: 0xC000_4000,
            size: 0x4000
        }
    );
    assert_eq!(f.read32(REG_COMMAND) & 0x7, (CMD_MEMORY | CMD_BUS_MASTER));
    let r = find_virtio_regions(&f, &bars).unwrap();
    let at = |off: u64, len: u64| Region {
        addr: 0xC000_4000 + off,
        len,
    };
    assert_eq!(r.common, at(0, 0x1000));
    assert_eq!(r.isr, Some(at(0x1000, 0x1000)));
    assert_eq!(r.device, Some(at(0x2000, 0x1000)));
    assert_eq!((r.notify, r.notify_off_multiplier), (at(0x3000, 0x1000), 4));
    assert_eq!(notify_offset(1, 4, r.notify.len), Ok(4));
}

#[test]
fn structure_beyond_its_bar_is_rejected() {
    // the common configuration's last bytes lie past the 16 KiB BAR
    let f = Fake::new().bar64_bits(4, !0x3FFF).caps(&[
        (0x40, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 4, 0x3FF0, 0x38, None)),
        (
            0x50,
            vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, 4, 0x3000, 0x10, Some(0)),
        ),
    ]);
    let e = find_virtio_regions(&f, &f.placed()).unwrap_err();
    assert!(
        matches!(
            e,
            CapError::OutsideBar {
                cfg_type: 1,
                offset: 0x3FF0,
                ..
            }
        ),
        "{e:?}"
    );
    // offset + length overflowing 32 bits
    let f = Fake::new().bar64_bits(4, !0x3FFF).caps(&[
        (0x40, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 4, 0, 0x38, None)),
        (
            0x50,
            vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, 4, 0xFFFF_FFF0, 0x20, Some(0)),
        ),
    ]);
    let e = find_virtio_regions(&f, &f.placed()).unwrap_err();
    assert!(
        matches!(e, CapError::OutsideBar { cfg_type: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn short_misplaced_or_misaligned_structures_are_rejected() {
    let bars = qemu_like(vec![0; 16]).placed();
    let cap = |cfg_type: u8, bar: u8, offset: u32, length: u32| VirtioPciCap {
        cfg_type,
        bar,
        offset: offset.into(),
        length: length.into(),
        ..Default::default()
    };
    assert!(matches!(
        locate(&cap(1, 4, 0, 0x20), &bars, COMMON_CFG_MIN_LEN as u64, 4),
        Err(CapError::TooShort { length: 0x20, .. })
    ));
    assert!(matches!(
        locate(&cap(1, 4, 2, 0x100), &bars, COMMON_CFG_MIN_LEN as u64, 4),
        Err(CapError::Misaligned { offset: 2, .. })
    ));
    // BAR 0 implements no address bits, BAR 2 is the upper half of nothing, BAR 5 absent
    for bar in [0, 2, 5, 6, 0xFF] {
        assert!(matches!(
            locate(&cap(1, bar, 0, 0x100), &bars, 0, 1),
            Err(CapError::BarUnassigned { .. })
        ));
    }
}

#[test]
fn notify_offset_is_bounded_by_the_notify_structure() {
    // §4.1.4.4: queue_notify_off × notify_off_multiplier + 2 must fit the structure
    assert_eq!(notify_offset(0, 0, 2), Ok(0));
    assert_eq!(notify_offset(3, 4, 14), Ok(12));
    assert!(notify_offset(3, 4, 13).is_err());
    assert!(notify_offset(1, 0x1000, 0x1000).is_err());
    // a product that a 32-bit computation would wrap to a small offset
    assert!(notify_offset(0x8000, 0x2_0000, 0x1000).is_err());
    assert!(notify_offset(0xFFFF, 0xFFFF_FFFF, 0x1000).is_err());
    // odd offsets cannot take a 16-bit notification
    assert!(notify_offset(1, 3, 0x1000).is_err());
}

#[test]
fn capability_past_config_space_is_rejected() {
    // a notify capability at 0xF0 whose multiplier (at 0x100) lies past config space
    let f = Fake::new().bar64_bits(4, !0x3FFF).caps(&[
        (0x40, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 4, 0, 0x38, None)),
        (0xF0, vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, 4, 0x3000, 0x10, None)),
    ]);
    f.put(0xF2, &[20]); // claims the 20-byte notify layout
    assert_eq!(
        read_virtio_cap(&f, 0xF0),
        Err(CapError::OutsideConfigSpace { at: 0xF0 })
    );
    // a notify capability whose cap_len has no room for the multiplier
    assert!(matches!(read_virtio_cap(&f, 0x40), Ok((_, 0))));
    f.put(0xF2, &[16]);
    assert!(matches!(
        read_virtio_cap(&f, 0xF0),
        Err(CapError::CapLenTooShort { cap_len: 16, .. })
    ));
}

#[test]
fn first_usable_capability_wins_and_missing_ones_are_reported() {
    let f = Fake::new().bar64_bits(4, !0x3FFF).caps(&[
        (0x40, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 4, 0x4000, 0x38, None)), // beyond the BAR
        (0x50, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 9, 0, 0x38, None)),      // reserved BAR index
        (0x60, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 4, 0x100, 0x38, None)),
        (0x70, vcap(VIRTIO_PCI_CAP_DEVICE_CFG, 4, 0x4000, 8, None)), // bad, optional
        (0x80, vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, 4, 0x200, 2, Some(0))),
    ]);
    let r = find_virtio_regions(&f, &f.placed()).unwrap();
    assert_eq!(r.common.addr, 0xC000_0100);
    assert_eq!(r.device, None);
    let f = Fake::new()
        .bar64_bits(4, !0x3FFF)
        .caps(&[(0x40, vcap(1, 4, 0, 0x38, None))]);
    assert_eq!(
        find_virtio_regions(&f, &f.placed()),
        Err(CapError::Missing("notification"))
    );
}

#[test]
fn looping_capability_list_ends() {
    let f = Fake::new().caps(&[(0x40, vec![0x09, 0x40])]);
    f.put(0x41, &[0x40]);
    assert_eq!(capabilities(&f).count(), CAP_LIST_BUDGET);
}

#[test]
fn bar_sizes_follow_the_lowest_implemented_bit() {
    assert_eq!(bar_size(0xFFFF_F000, None), 0x1000);
    assert_eq!(bar_size(0, None), 0);
    assert_eq!(bar_size(0xF, None), 0); // type bits only
    assert_eq!(bar_size(0, Some(0xFFFF_FFFE)), 1 << 33);
    // upper address bits hardwired to zero (a device limited to low addresses): still 16 bytes
    assert_eq!(bar_size(0xFFFF_FFF0, Some(0x7FFF_FFFF)), 0x10);
}

#[test]
fn hostile_bar_sizes_cannot_escape_the_window() {
    // a 64-bit BAR whose size probe reads 0x7FFF_FFFF_FFFF_FFF0: (!mask + 1) is
    // 0x8000_0000_0000_0010, which rounds `next` up to that and wraps `base + size` to 0x20
    let f = Fake::new()
        .bar64_bits(0, 0x7FFF_FFFF_FFFF_FFF0)
        .bar32(2, 0x1000);
    let mut next = WINDOW.0;
    let bars = assign_bars(&f, &mut next, WINDOW.1).unwrap();
    for b in bars.iter().filter(|b| b.size != 0) {
        assert!(b.base >= WINDOW.0 && b.base + b.size <= WINDOW.1, "{b:x?}");
    }
    assert!((WINDOW.0..=WINDOW.1).contains(&next), "{next:#x}");
    // BARs larger than the window, or above 4 GiB only, are refused
    let f = Fake::new().bar64_bits(0, !((1 << 33) - 1));
    let mut next = WINDOW.0;
    assert!(matches!(
        assign_bars(&f, &mut next, WINDOW.1),
        Err(BarError::WindowExhausted {
            index: 0,
            size: 0x2_0000_0000,
            ..
        })
    ));
    assert_eq!(
        place_bar(0, 1 << 63, WINDOW.0, WINDOW.1).map_err(|_| ()),
        Err(())
    );
    assert_eq!(place_bar(0, 0, WINDOW.0, WINDOW.1).map_err(|_| ()), Err(()));
    // a BAR that implements only address bits below the window cannot take its base
    let f = Fake::new().bar32(0, 0x10);
    let mut f = f;
    f.bar_rw[0] = 0x0000_FFF0;
    let mut next = WINDOW.0;
    assert!(matches!(
        assign_bars(&f, &mut next, WINDOW.1),
        Err(BarError::Unplaceable { index: 0, .. })
    ));
}

#[test]
fn bar_of_size_zero_is_left_unplaced() {
    let f = Fake::new().bar32(3, 0x1000);
    let bars = f.placed();
    assert_eq!(bars[0], Bar::default());
    assert_eq!(bars[3].size, 0x1000);
}

#[test]
fn msix_table_is_bounded_by_its_bar() {
    // table of 4 entries (64 bytes) at 0xFF0 of a 4 KiB BAR 1
    let msix = |table: u32| [vec![0x11, 0, 3, 0], table.to_le_bytes().to_vec()].concat();
    let f = Fake::new()
        .bar32(1, 0x1000)
        .caps(&[(0x40, msix(0xFF0 | 1))]);
    let e = find_msix(&f, &f.placed()).unwrap_err();
    assert_eq!(
        e,
        MsixError::TableOutsideBar {
            offset: 0xFF0,
            entries: 4,
            bar_size: 0x1000
        }
    );
    let f = Fake::new()
        .bar32(1, 0x1000)
        .caps(&[(0x40, msix(0xFC0 | 1))]);
    let t = find_msix(&f, &f.placed()).unwrap();
    assert_eq!(
        t,
        MsixTable {
            cap: 0x40,
            addr: 0xC000_0FC0,
            entries: 4
        }
    );
    let f = Fake::new().bar32(1, 0x1000).caps(&[(0x40, msix(7))]);
    assert_eq!(
        find_msix(&f, &f.placed()),
        Err(MsixError::TableBarUnassigned(7))
    );
    // the capability's second dword would lie past config space
    let f = Fake::new().caps(&[(0xFC, vec![0x11, 0, 3, 0])]);
    assert_eq!(
        find_msix(&f, &[Bar::default(); 6]),
        Err(MsixError::CapOutsideConfigSpace(0xFC))
    );
}

#[test]
fn within_checks_overflow() {
    assert!(within(0, 4, 4));
    assert!(!within(1, 4, 4));
    assert!(!within(u64::MAX, 2, u64::MAX));
}
