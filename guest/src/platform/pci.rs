//! PCI on bus 0 through the legacy configuration mechanism: find a device, assign its memory
//! BARs (the firmware is the only software that runs before us, so nobody else did), enable it,
//! and walk its capability list (PCI Local Bus spec 3.0 §6.2.5 BARs, §6.7 capabilities).

use crate::arch::io::{pci_config_read, pci_config_write};

/// Where the firmware places memory BARs: above q35's MMCONFIG window [0xB000_0000, 0xC000_0000)
/// and below the IOAPIC/LAPIC/flash area, inside QEMU's 32-bit PCI hole.
const MMIO_WINDOW: (u64, u64) = (0xC000_0000, 0xE000_0000);

/// A function on bus 0.
#[derive(Clone, Copy, Debug)]
pub struct Device {
    pub dev: u8,
    pub vendor: u16,
    pub device: u16,
}

impl Device {
    pub fn read(&self, reg: u8) -> u32 {
        pci_config_read(0, self.dev, 0, reg)
    }
    pub fn read8(&self, reg: u8) -> u8 {
        (self.read(reg & !3) >> ((reg & 3) * 8)) as u8
    }
    pub fn write(&self, reg: u8, v: u32) {
        // SAFETY: only BAR and command registers of a device this driver owns are written.
        unsafe { pci_config_write(0, self.dev, 0, reg, v) }
    }
}

/// Find the first device with one of `ids` (vendor, device) on bus 0.
pub fn find(ids: &[(u16, u16)]) -> Option<Device> {
    (0..32u8).find_map(|dev| {
        let id = pci_config_read(0, dev, 0, 0);
        let (vendor, device) = (id as u16, (id >> 16) as u16);
        ids.contains(&(vendor, device)).then_some(Device {
            dev,
            vendor,
            device,
        })
    })
}

/// Size and place every memory BAR, then enable memory decoding and bus mastering.
/// Returns the base address of each BAR (0 for absent or I/O BARs).
pub fn assign_bars(d: &Device, next: &mut u64) -> Result<[u64; 6], &'static str> {
    let mut bases = [0u64; 6];
    // decoding off while BARs are sized (§6.2.5.1)
    let cmd = d.read(0x04);
    d.write(0x04, cmd & !0x7);
    let mut i = 0;
    while i < 6 {
        let reg = 0x10 + 4 * i as u8;
        let orig = d.read(reg);
        if orig & 1 == 1 {
            i += 1; // I/O BAR: unused
            continue;
        }
        let is64 = (orig >> 1) & 3 == 2;
        d.write(reg, 0xFFFF_FFFF);
        let lo = d.read(reg) & !0xF;
        let mut mask = lo as u64 | 0xFFFF_FFFF_0000_0000;
        if is64 {
            d.write(reg + 4, 0xFFFF_FFFF);
            mask = (d.read(reg + 4) as u64) << 32 | lo as u64;
        }
        let size = (!mask).wrapping_add(1);
        if lo == 0 || size == 0 {
            i += if is64 { 2 } else { 1 };
            continue;
        }
        let base = next.div_ceil(size) * size;
        if base + size > MMIO_WINDOW.1 {
            return Err("PCI MMIO window exhausted");
        }
        *next = base + size;
        d.write(reg, base as u32);
        if is64 {
            d.write(reg + 4, (base >> 32) as u32);
        }
        bases[i] = base;
        i += if is64 { 2 } else { 1 };
    }
    d.write(0x04, cmd | 0x6); // memory space + bus master
    Ok(bases)
}

/// The first address of the MMIO window.
pub fn mmio_window_start() -> u64 {
    MMIO_WINDOW.0
}

/// Iterate the capability list: yields (config offset, capability id).
pub fn capabilities(d: &Device) -> impl Iterator<Item = (u8, u8)> + '_ {
    let has_caps = d.read(0x04) >> 16 & (1 << 4) != 0;
    let mut ptr = if has_caps { d.read8(0x34) & !3 } else { 0 };
    let mut budget = 48; // a malicious device could make the list loop
    core::iter::from_fn(move || {
        if ptr < 0x40 || budget == 0 {
            return None;
        }
        budget -= 1;
        let here = ptr;
        let id = d.read8(here);
        ptr = d.read8(here + 1) & !3;
        Some((here, id))
    })
}
