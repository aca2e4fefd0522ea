//! PCI on bus 0 through the legacy configuration mechanism: find a device, place its memory
//! BARs (the firmware is the only software that runs before us, so nobody else did), and
//! program its MSI-X table (PCI Local Bus spec 3.0 §6.2.5 BARs, §6.7 capabilities, §6.8.2
//! MSI-X). The decisions (BAR sizes, capability walk, bounds) are `pupa_guest::virtio_pci`'s,
//! host-tested; this module does the port I/O and MMIO.

use pupa_guest::idle::MsiMessage;
use pupa_guest::virtio_pci::{
    self as logic, ConfigSpace, CMD_INTX_DISABLE, MSIX_ENTRY_SIZE, REG_COMMAND,
};
pub use pupa_guest::virtio_pci::{Bar, BarError, MsixError};

use crate::arch::io::{pci_config_read, pci_config_write};
use crate::arch::mmio::Mmio;

/// Message Control bits in the capability's first dword (§6.8.2.3): MSI-X Enable, Function
/// Mask.
const MSIX_CTL_ENABLE: u32 = 1 << 31;
const MSIX_CTL_FUNCTION_MASK: u32 = 1 << 30;
/// MSI-X table entry fields (§6.8.2.6–6.8.2.9): address low, address high, data, vector
/// control.
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

impl ConfigSpace for Device {
    fn read32(&self, reg: u8) -> u32 {
        pci_config_read(0, self.dev, 0, reg)
    }
    fn write32(&self, reg: u8, v: u32) {
        // SAFETY: only the BAR, command and MSI-X control registers of a device this driver
        // owns are written (by this module and `pupa_guest::virtio_pci::assign_bars`).
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

/// Sizes and places every memory BAR of `d` in the MMIO window from `*next` on, then enables
/// memory decoding and bus mastering (`pupa_guest::virtio_pci::assign_bars`).
pub fn assign_bars(d: &Device, next: &mut u64) -> Result<[Bar; 6], BarError> {
    logic::assign_bars(d, next, MMIO_WINDOW.1)
}

/// A device's MSI-X table, located inside its BAR.
pub struct Msix {
    cap: u8,
    table: Mmio,
    entries: u16,
}

impl Msix {
    /// Finds the MSI-X capability of `d` and its table in `bars` (from [`assign_bars`], whose
    /// window [`map_uncached`](crate::arch::paging::map_uncached) must already cover).
    pub fn find(d: &Device, bars: &[Bar; 6]) -> Result<Msix, MsixError> {
        let t = logic::find_msix(d, bars)?;
        // SAFETY: the table lies inside a BAR of `d` placed by `assign_bars` in the MMIO window
        // (bounded by `find_msix`), mapped uncached by the caller.
        let table = unsafe { Mmio::new(t.addr, t.entries as u64 * MSIX_ENTRY_SIZE) };
        Ok(Msix {
            cap: t.cap,
            table,
            entries: t.entries,
        })
    }

    /// Writes `msg` into table entry `entry` and unmasks it. Entries are written masked first,
    /// so the device never sends a half-written message (§6.8.2.9).
    pub fn set_entry(&self, entry: u16, msg: MsiMessage) -> Result<(), MsixError> {
        let no_entry = MsixError::NoSuchEntry {
            entry,
            size: self.entries,
        };
        let e = self
            .table
            .sub(entry as u64 * MSIX_ENTRY_SIZE, MSIX_ENTRY_SIZE)
            .map_err(|_| no_entry)?;
        // in bounds and aligned: `e` is a whole 16-byte entry of a 16-byte-aligned table
        [
            (MSIX_ENTRY_VECTOR_CTL, MSIX_VECTOR_MASKED),
            (MSIX_ENTRY_ADDR_LO, msg.address as u32),
            (MSIX_ENTRY_ADDR_HI, (msg.address >> 32) as u32),
            (MSIX_ENTRY_DATA, msg.data),
            (MSIX_ENTRY_VECTOR_CTL, 0),
        ]
        .into_iter()
        .try_for_each(|(off, v)| e.write32(off, v))
        .map_err(|_| no_entry)
    }

    /// Enables MSI-X (function unmasked) and disables the legacy INTx pin of `d`.
    pub fn enable(&self, d: &Device) {
        let ctl = d.read32(self.cap);
        d.write32(self.cap, (ctl | MSIX_CTL_ENABLE) & !MSIX_CTL_FUNCTION_MASK);
        d.write32(
            REG_COMMAND,
            d.read32(REG_COMMAND) & 0xFFFF | CMD_INTX_DISABLE,
        );
    }
}

/// The first address of the MMIO window.
pub fn mmio_window_start() -> u64 {
    MMIO_WINDOW.0
}

/// The ICH9 LPC bridge of QEMU's q35 machine (00:1f.0, 8086:2918), whose ACPI power-management
/// I/O block the firmware places (Intel ICH9 datasheet §13.8.1: PMBASE at config offset 0x40,
/// ACPI_CNTL at 0x44 with ACPI_EN in bit 7), as SeaBIOS and OVMF do. QEMU builds the FADT from
/// this register when the firmware first reads its ACPI tables, so it must be set before then.
const ICH9_LPC: (u8, u16, u16) = (0x1f, 0x8086, 0x2918);
const ICH9_LPC_PMBASE: u8 = 0x40;
const ICH9_LPC_ACPI_CNTL: u8 = 0x44;
const ICH9_LPC_ACPI_EN: u32 = 1 << 7;
/// Where the PM block goes (QEMU's and SeaBIOS's `PORT_ACPI_PM_BASE`).
pub const ACPI_PM_BASE: u16 = 0x600;

/// Places and enables the q35 ACPI PM I/O block; returns false when there is no ICH9 LPC
/// bridge (another machine type: its FADT is left as QEMU builds it).
pub fn enable_acpi_pm() -> bool {
    let (dev, vendor, device) = ICH9_LPC;
    let id = pci_config_read(0, dev, 0, 0);
    if id != u32::from(vendor) | u32::from(device) << 16 {
        return false;
    }
    let cntl = pci_config_read(0, dev, 0, ICH9_LPC_ACPI_CNTL);
    // SAFETY: PMBASE and ACPI_CNTL of the ICH9 LPC bridge only place and enable the ACPI PM
    // I/O block at a fixed port range no other device of the machine uses; bit 0 of PMBASE
    // is the read-only I/O-space indicator.
    unsafe {
        pci_config_write(0, dev, 0, ICH9_LPC_PMBASE, u32::from(ACPI_PM_BASE) | 1);
        pci_config_write(0, dev, 0, ICH9_LPC_ACPI_CNTL, cntl | ICH9_LPC_ACPI_EN);
    }
    true
}
