//! PCI on bus 0 through the legacy configuration mechanism: find a device, assign its memory
//! BARs (the firmware is the only software that runs before us, so nobody else did), enable it,
//! walk its capability list and program its MSI-X table (PCI Local Bus spec 3.0 §6.2.5 BARs,
//! §6.7 capabilities, §6.8.2 MSI-X).

use pupa_guest::idle::MsiMessage;

use crate::arch::io::{pci_config_read, pci_config_write};
use crate::arch::mmio;

/// Command register bits (§6.2.2): memory space, bus master, interrupt (INTx) disable.
const CMD_MEMORY: u32 = 1 << 1;
const CMD_BUS_MASTER: u32 = 1 << 2;
const CMD_INTX_DISABLE: u32 = 1 << 10;

/// MSI-X capability ID (§6.8.2).
const CAP_MSIX: u8 = 0x11;
/// Message Control (upper half of the capability's first dword): MSI-X Enable, Function Mask,
/// Table Size − 1 (§6.8.2.3).
const MSIX_CTL_ENABLE: u32 = 1 << 15;
const MSIX_CTL_FUNCTION_MASK: u32 = 1 << 14;
const MSIX_CTL_TABLE_SIZE: u32 = 0x7FF;
/// Table Offset/BIR register (§6.8.2.4): BIR in bits 2:0, QWORD-aligned offset above.
const MSIX_TABLE_BIR: u32 = 0x7;
/// MSI-X table entry (§6.8.2.6–6.8.2.9): address low, address high, data, vector control.
const MSIX_ENTRY_SIZE: u64 = 16;
const MSIX_ENTRY_ADDR_LO: u64 = 0;
const MSIX_ENTRY_ADDR_HI: u64 = 4;
const MSIX_ENTRY_DATA: u64 = 8;
const MSIX_ENTRY_VECTOR_CTL: u64 = 12;
/// Vector Control bit 0: the entry is masked.
const MSIX_VECTOR_MASKED: u32 = 1;

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
        // SAFETY: only BAR, command and MSI-X control registers of a device this driver owns
        // are written.
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
    d.write(0x04, cmd | CMD_MEMORY | CMD_BUS_MASTER);
    Ok(bases)
}

/// Why a device's MSI-X could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixError {
    /// The device has no MSI-X capability.
    NoCapability,
    /// The table lives in a BAR that was not assigned (absent, or an I/O BAR).
    TableBarUnassigned(u8),
    /// The requested entry is beyond the table.
    NoSuchEntry { entry: u16, size: u16 },
}

impl core::fmt::Display for MsixError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MsixError::NoCapability => write!(f, "no MSI-X capability"),
            MsixError::TableBarUnassigned(b) => write!(f, "MSI-X table in unassigned BAR {b}"),
            MsixError::NoSuchEntry { entry, size } => {
                write!(f, "MSI-X entry {entry} beyond the table's {size}")
            }
        }
    }
}

/// A device's MSI-X table, located.
pub struct Msix {
    cap: u8,
    table: u64,
    size: u16,
}

impl Msix {
    /// Finds the MSI-X capability of `d` and its table in `bars` (from [`assign_bars`], whose
    /// window [`map_uncached`](crate::arch::paging::map_uncached) must already cover).
    pub fn find(d: &Device, bars: &[u64; 6]) -> Result<Msix, MsixError> {
        let (cap, _) = capabilities(d)
            .find(|&(_, id)| id == CAP_MSIX)
            .ok_or(MsixError::NoCapability)?;
        let size = ((d.read(cap) >> 16) & MSIX_CTL_TABLE_SIZE) as u16 + 1;
        let t = d.read(cap + 4);
        let bir = (t & MSIX_TABLE_BIR) as u8;
        let base = *bars
            .get(bir as usize)
            .filter(|&&b| b != 0)
            .ok_or(MsixError::TableBarUnassigned(bir))?;
        Ok(Msix {
            cap,
            table: base + (t & !MSIX_TABLE_BIR) as u64,
            size,
        })
    }

    /// Writes `msg` into table entry `entry` and unmasks it.
    pub fn set_entry(&self, entry: u16, msg: MsiMessage) -> Result<(), MsixError> {
        if entry >= self.size {
            return Err(MsixError::NoSuchEntry {
                entry,
                size: self.size,
            });
        }
        let e = self.table + entry as u64 * MSIX_ENTRY_SIZE;
        // SAFETY: the entry lies inside the device's MSI-X table (entry < size), in a BAR
        // placed by `assign_bars` and mapped uncached; entries are written masked first, so
        // the device never sends a half-written message (§6.8.2.9).
        unsafe {
            mmio::write32(e + MSIX_ENTRY_VECTOR_CTL, MSIX_VECTOR_MASKED);
            mmio::write32(e + MSIX_ENTRY_ADDR_LO, msg.address as u32);
            mmio::write32(e + MSIX_ENTRY_ADDR_HI, (msg.address >> 32) as u32);
            mmio::write32(e + MSIX_ENTRY_DATA, msg.data);
            mmio::write32(e + MSIX_ENTRY_VECTOR_CTL, 0);
        }
        Ok(())
    }

    /// Enables MSI-X (function unmasked) and disables the legacy INTx pin of `d`.
    pub fn enable(&self, d: &Device) {
        let ctl = d.read(self.cap);
        let v = (ctl | MSIX_CTL_ENABLE << 16) & !(MSIX_CTL_FUNCTION_MASK << 16);
        d.write(self.cap, v);
        d.write(0x04, d.read(0x04) & 0xFFFF | CMD_INTX_DISABLE);
    }
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
