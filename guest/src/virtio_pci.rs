//! PCI and virtio-over-PCI decisions, host-tested: BAR sizing and placement (PCI Local Bus 3.0
//! §6.2.5.1), the capability list (§6.7), the MSI-X table (§6.8.2) and the virtio structure
//! capabilities (virtio 1.2 §4.1.4).
//!
//! Everything a device reports here is host-controlled: BAR size probes, capability pointers,
//! and each virtio capability's BAR index, offset and length and the notify multiplier. Every
//! such value is bounded before it becomes an address: a structure must lie inside the BAR it
//! names (Linux `vp_modern_map_capability`), a queue's notification address inside the notify
//! structure (Linux `vp_modern_map_vq_notify`), the MSI-X table inside its BAR, and a BAR
//! inside the firmware's MMIO window. The functions take a [`ConfigSpace`] so that the
//! firmware's `platform::pci` drives them with port I/O and the tests with a fake device.

use pupa_spec::virtio::{
    VirtioPciCap, VirtioPciNotifyCap, COMMON_CFG_MIN_LEN, PCI_CAP_ID_VNDR,
    VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_ISR_CFG,
    VIRTIO_PCI_CAP_NOTIFY_CFG,
};
use zerocopy::FromBytes;

/// Configuration space of one PCI function (256 bytes; dword accesses).
pub trait ConfigSpace {
    /// Reads the dword at `reg` (dword-aligned).
    fn read32(&self, reg: u8) -> u32;
    /// Writes the dword at `reg` (dword-aligned).
    fn write32(&self, reg: u8, value: u32);
    /// Reads the byte at `reg`.
    fn read8(&self, reg: u8) -> u8 {
        (self.read32(reg & !3) >> ((reg & 3) * 8)) as u8
    }
}

/// Bytes of a (conventional) PCI function's configuration space.
pub const CONFIG_SPACE_LEN: u16 = 256;
/// Command register (§6.2.2) and its bits: memory space, bus master, INTx disable.
pub const REG_COMMAND: u8 = 0x04;
pub const CMD_MEMORY: u32 = 1 << 1;
pub const CMD_BUS_MASTER: u32 = 1 << 2;
pub const CMD_INTX_DISABLE: u32 = 1 << 10;
/// Status register bit (upper half of the command dword): a capability list exists.
const STATUS_CAP_LIST: u32 = 1 << (16 + 4);
/// Capabilities pointer (§6.7).
const REG_CAP_PTR: u8 = 0x34;
/// First BAR register (§6.2.5.1).
const REG_BAR0: u8 = 0x10;
/// A capability list longer than this is a loop (48 = (256 − 64) / 4 dword-aligned slots).
const CAP_LIST_BUDGET: usize = 48;

/// `true` when an access of `size` bytes at `offset` lies inside `len` bytes (no overflow).
pub const fn within(offset: u64, size: u64, len: u64) -> bool {
    match offset.checked_add(size) {
        Some(end) => end <= len,
        None => false,
    }
}

/// One memory BAR as the firmware placed it. `size == 0`: absent, I/O, or not placed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bar {
    /// Guest-physical base.
    pub base: u64,
    /// Bytes the BAR decodes (a power of two).
    pub size: u64,
}

/// Why the BARs could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BarError {
    /// The BAR does not fit what is left of the firmware's MMIO window.
    #[error("BAR {index} of {size:#x} bytes does not fit the MMIO window (next free {next:#x}, end {end:#x})")]
    WindowExhausted {
        index: usize,
        size: u64,
        next: u64,
        end: u64,
    },
    /// The BAR does not hold the address the firmware wrote (upper bits hardwired to zero).
    #[error("BAR {index} cannot be placed at {base:#x}")]
    Unplaceable { index: usize, base: u64 },
    /// A 64-bit BAR in the last BAR slot has no upper half.
    #[error("64-bit BAR {0} has no upper register")]
    Truncated64(usize),
}

/// The size a memory BAR decodes, from the values read back after writing all ones to its low
/// (`probe_lo`) and, for a 64-bit BAR, high (`probe_hi`) register: the lowest address bit the
/// device implements (Linux `pci_size`). 0 when the BAR implements no address bits.
pub fn bar_size(probe_lo: u32, probe_hi: Option<u32>) -> u64 {
    let mask = match probe_hi {
        Some(hi) => (hi as u64) << 32 | (probe_lo & !0xF) as u64,
        None => (probe_lo & !0xF) as u64,
    };
    // lowest set bit: a device that reports non-contiguous address bits still decodes (at
    // least) this many bytes, and a power of two keeps the alignment arithmetic exact
    mask & mask.wrapping_neg()
}

/// Where a BAR of `size` bytes (a power of two, from [`bar_size`]) goes: the first suitably
/// aligned address at or after `next` whose end is at most `end`.
pub fn place_bar(index: usize, size: u64, next: u64, end: u64) -> Result<u64, BarError> {
    let err = BarError::WindowExhausted {
        index,
        size,
        next,
        end,
    };
    if !size.is_power_of_two() {
        return Err(err);
    }
    let base = next.checked_next_multiple_of(size).ok_or(err)?;
    match base.checked_add(size) {
        Some(e) if e <= end => Ok(base),
        _ => Err(err),
    }
}

/// Sizes and places every memory BAR of `cfg` in `[*next, end)`, advancing `*next`, then
/// enables memory decoding and bus mastering. I/O BARs, BARs of a reserved type and BARs that
/// implement no address bits are left unplaced (`size == 0`).
pub fn assign_bars(cfg: &impl ConfigSpace, next: &mut u64, end: u64) -> Result<[Bar; 6], BarError> {
    let mut bars = [Bar::default(); 6];
    // decoding off while BARs are sized (§6.2.5.1)
    let cmd = cfg.read32(REG_COMMAND);
    cfg.write32(REG_COMMAND, cmd & !0x7);
    let mut i = 0;
    while i < 6 {
        let reg = REG_BAR0 + 4 * i as u8;
        let orig = cfg.read32(reg);
        let kind = (orig >> 1) & 3; // 0: 32-bit, 2: 64-bit, 1 and 3 reserved
        if orig & 1 == 1 || kind & 1 == 1 {
            i += 1;
            continue;
        }
        let is64 = kind == 2;
        if is64 && i == 5 {
            return Err(BarError::Truncated64(i));
        }
        cfg.write32(reg, 0xFFFF_FFFF);
        let lo = cfg.read32(reg);
        let hi = is64.then(|| {
            cfg.write32(reg + 4, 0xFFFF_FFFF);
            cfg.read32(reg + 4)
        });
        let size = bar_size(lo, hi);
        if size != 0 {
            let base = place_bar(i, size, *next, end)?;
            *next = base + size; // no overflow: place_bar checked base + size <= end
            cfg.write32(reg, base as u32);
            if is64 {
                cfg.write32(reg + 4, (base >> 32) as u32);
            }
            // a BAR whose upper address bits are hardwired to zero cannot hold the base
            let back_lo = cfg.read32(reg) & !0xF;
            let back_hi = if is64 { cfg.read32(reg + 4) } else { 0 };
            if ((back_hi as u64) << 32 | back_lo as u64) != base {
                return Err(BarError::Unplaceable { index: i, base });
            }
            bars[i] = Bar { base, size };
        } else {
            cfg.write32(reg, orig);
        }
        i += if is64 { 2 } else { 1 };
    }
    cfg.write32(REG_COMMAND, cmd | CMD_MEMORY | CMD_BUS_MASTER);
    Ok(bars)
}

/// The capability list: yields (config offset, capability ID). Stops at a pointer into the
/// header (< 0x40) and after [`CAP_LIST_BUDGET`] entries (a device can make the list loop).
pub fn capabilities(cfg: &impl ConfigSpace) -> impl Iterator<Item = (u8, u8)> + '_ {
    let has_caps = cfg.read32(REG_COMMAND) & STATUS_CAP_LIST != 0;
    let mut ptr = if has_caps {
        cfg.read8(REG_CAP_PTR) & !3
    } else {
        0
    };
    let mut budget = CAP_LIST_BUDGET;
    core::iter::from_fn(move || {
        if ptr < 0x40 || budget == 0 {
            return None;
        }
        budget -= 1;
        let here = ptr;
        let id = cfg.read8(here);
        ptr = cfg.read8(here + 1) & !3; // here <= 0xFC: no overflow
        Some((here, id))
    })
}

/// Reads `N` bytes of config space at `at` (dword-aligned), or `None` past its end.
fn read_config<const N: usize>(cfg: &impl ConfigSpace, at: u8) -> Option<[u8; N]> {
    if at as u16 + N as u16 > CONFIG_SPACE_LEN {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in out.chunks_mut(4).enumerate() {
        let v = cfg.read32(at + 4 * i as u8).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    Some(out)
}

/// Why a device's MSI-X table cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsixError {
    /// The device has no MSI-X capability.
    #[error("no MSI-X capability")]
    NoCapability,
    /// The capability runs past the end of configuration space.
    #[error("MSI-X capability at {0:#x} runs past configuration space")]
    CapOutsideConfigSpace(u8),
    /// The table lives in a BAR that was not placed (absent, I/O, or reserved index).
    #[error("MSI-X table in unassigned BAR {0}")]
    TableBarUnassigned(u8),
    /// The table does not fit in its BAR.
    #[error(
        "MSI-X table ({entries} entries at {offset:#x}) beyond its BAR of {bar_size:#x} bytes"
    )]
    TableOutsideBar {
        offset: u32,
        entries: u16,
        bar_size: u64,
    },
    /// The requested entry is beyond the table.
    #[error("MSI-X entry {entry} beyond the table's {size}")]
    NoSuchEntry { entry: u16, size: u16 },
}

/// MSI-X capability ID (§6.8.2).
const CAP_ID_MSIX: u8 = 0x11;
/// Message Control (upper half of the first dword): Table Size − 1 (§6.8.2.3).
const MSIX_CTL_TABLE_SIZE: u32 = 0x7FF;
/// Table Offset/BIR (§6.8.2.4): BIR in bits 2:0, QWORD-aligned offset above.
const MSIX_TABLE_BIR: u32 = 0x7;
/// Bytes per MSI-X table entry (§6.8.2.6–6.8.2.9).
pub const MSIX_ENTRY_SIZE: u64 = 16;

/// A device's MSI-X table, located and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixTable {
    /// Config offset of the capability (for enabling it).
    pub cap: u8,
    /// Guest-physical address of entry 0.
    pub addr: u64,
    /// Number of entries; all of them lie inside the BAR.
    pub entries: u16,
}

/// Finds the MSI-X capability of `cfg` and its table in `bars`.
pub fn find_msix(cfg: &impl ConfigSpace, bars: &[Bar; 6]) -> Result<MsixTable, MsixError> {
    let (cap, _) = capabilities(cfg)
        .find(|&(_, id)| id == CAP_ID_MSIX)
        .ok_or(MsixError::NoCapability)?;
    let raw: [u8; 8] = read_config(cfg, cap).ok_or(MsixError::CapOutsideConfigSpace(cap))?;
    let ctl = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let t = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let entries = ((ctl >> 16) & MSIX_CTL_TABLE_SIZE) as u16 + 1;
    let bir = (t & MSIX_TABLE_BIR) as u8;
    let bar = bars
        .get(bir as usize)
        .filter(|b| b.size != 0)
        .ok_or(MsixError::TableBarUnassigned(bir))?;
    let offset = t & !MSIX_TABLE_BIR;
    if !within(offset as u64, entries as u64 * MSIX_ENTRY_SIZE, bar.size) {
        return Err(MsixError::TableOutsideBar {
            offset,
            entries,
            bar_size: bar.size,
        });
    }
    Ok(MsixTable {
        cap,
        addr: bar.base + offset as u64,
        entries,
    })
}

/// A device structure located in a BAR: `len` bytes at guest-physical `addr`, all inside the
/// BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Guest-physical address.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
}

/// Why a virtio structure capability was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The capability runs past the end of configuration space.
    #[error("virtio capability at {at:#x} runs past configuration space")]
    OutsideConfigSpace { at: u8 },
    /// `cap_len` is shorter than the structure of its type.
    #[error("virtio capability type {cfg_type} at {at:#x}: cap_len {cap_len} too short")]
    CapLenTooShort { at: u8, cfg_type: u8, cap_len: u8 },
    /// `bar` names a BAR the firmware did not place.
    #[error("virtio structure type {cfg_type} in unassigned BAR {bar}")]
    BarUnassigned { cfg_type: u8, bar: u8 },
    /// `offset + length` reaches beyond the BAR.
    #[error("virtio structure type {cfg_type} ({length:#x} bytes at {offset:#x}) beyond its BAR of {bar_size:#x} bytes")]
    OutsideBar {
        cfg_type: u8,
        offset: u32,
        length: u32,
        bar_size: u64,
    },
    /// `length` is shorter than the structure the driver needs.
    #[error("virtio structure type {cfg_type}: length {length:#x} below the required {min:#x}")]
    TooShort { cfg_type: u8, length: u32, min: u64 },
    /// `offset` is not aligned as the structure's fields need.
    #[error("virtio structure type {cfg_type}: offset {offset:#x} not {align}-byte aligned")]
    Misaligned {
        cfg_type: u8,
        offset: u32,
        align: u32,
    },
    /// No usable capability of a required type.
    #[error("the device lacks a usable virtio {0} capability")]
    Missing(&'static str),
}

impl CapError {
    /// The `cfg_type` of the rejected capability, where it was read.
    pub fn cfg_type(&self) -> Option<u8> {
        match *self {
            CapError::OutsideConfigSpace { .. } | CapError::Missing(_) => None,
            CapError::CapLenTooShort { cfg_type, .. }
            | CapError::BarUnassigned { cfg_type, .. }
            | CapError::OutsideBar { cfg_type, .. }
            | CapError::TooShort { cfg_type, .. }
            | CapError::Misaligned { cfg_type, .. } => Some(cfg_type),
        }
    }
}

/// Why a queue's notification address was rejected (§4.1.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue_notify_off {queue_notify_off} × multiplier {multiplier} beyond the {notify_len:#x}-byte notify structure")]
pub struct NotifyError {
    pub queue_notify_off: u16,
    pub multiplier: u32,
    pub notify_len: u64,
}

/// Minimum length and alignment of each structure the driver uses (Linux
/// `vp_modern_probe`/`vp_modern_map_capability`: common 4-aligned and complete, notify
/// 2-aligned with room for one 16-bit notification, ISR one byte, device config 4-aligned).
fn requirements(cfg_type: u8) -> Option<(u64, u32)> {
    match cfg_type {
        VIRTIO_PCI_CAP_COMMON_CFG => Some((COMMON_CFG_MIN_LEN as u64, 4)),
        VIRTIO_PCI_CAP_NOTIFY_CFG => Some((2, 2)),
        VIRTIO_PCI_CAP_ISR_CFG => Some((1, 1)),
        VIRTIO_PCI_CAP_DEVICE_CFG => Some((0, 4)),
        _ => None,
    }
}

/// Locates the structure `cap` describes in `bars`, bounded by its BAR; `min_len` and `align`
/// are what the driver needs of it.
pub fn locate(
    cap: &VirtioPciCap,
    bars: &[Bar; 6],
    min_len: u64,
    align: u32,
) -> Result<Region, CapError> {
    let (cfg_type, offset, length) = (cap.cfg_type, cap.offset.get(), cap.length.get());
    let bar =
        bars.get(cap.bar as usize)
            .filter(|b| b.size != 0)
            .ok_or(CapError::BarUnassigned {
                cfg_type,
                bar: cap.bar,
            })?;
    if !within(offset as u64, length as u64, bar.size) {
        return Err(CapError::OutsideBar {
            cfg_type,
            offset,
            length,
            bar_size: bar.size,
        });
    }
    if (length as u64) < min_len {
        return Err(CapError::TooShort {
            cfg_type,
            length,
            min: min_len,
        });
    }
    if !offset.is_multiple_of(align) {
        return Err(CapError::Misaligned {
            cfg_type,
            offset,
            align,
        });
    }
    Ok(Region {
        addr: bar.base + offset as u64,
        len: length as u64,
    })
}

/// The virtio structures of a device, each inside its BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioRegions {
    /// `struct virtio_pci_common_cfg` (at least [`COMMON_CFG_MIN_LEN`] bytes).
    pub common: Region,
    /// The notification structure (at least 2 bytes).
    pub notify: Region,
    /// The notify capability's `notify_off_multiplier`.
    pub notify_off_multiplier: u32,
    /// The ISR status byte, if presented.
    pub isr: Option<Region>,
    /// Device-specific configuration, if presented.
    pub device: Option<Region>,
}

/// Reads the virtio capability at `at` (whose ID is [`PCI_CAP_ID_VNDR`]), with the notify
/// multiplier when it is the notify capability.
pub fn read_virtio_cap(cfg: &impl ConfigSpace, at: u8) -> Result<(VirtioPciCap, u32), CapError> {
    let raw: [u8; 16] = read_config(cfg, at).ok_or(CapError::OutsideConfigSpace { at })?;
    let cap =
        VirtioPciCap::read_from_bytes(&raw).map_err(|_| CapError::OutsideConfigSpace { at })?;
    let needed = if cap.cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
        size_of::<VirtioPciNotifyCap>()
    } else {
        size_of::<VirtioPciCap>()
    };
    if (cap.cap_len as usize) < needed {
        return Err(CapError::CapLenTooShort {
            at,
            cfg_type: cap.cfg_type,
            cap_len: cap.cap_len,
        });
    }
    if cap.cfg_type != VIRTIO_PCI_CAP_NOTIFY_CFG {
        return Ok((cap, 0));
    }
    let raw: [u8; 20] = read_config(cfg, at).ok_or(CapError::OutsideConfigSpace { at })?;
    let n = VirtioPciNotifyCap::read_from_bytes(&raw)
        .map_err(|_| CapError::OutsideConfigSpace { at })?;
    Ok((cap, n.notify_off_multiplier.get()))
}

/// Walks the capability list of `cfg` and locates the common, notify, ISR and device
/// structures in `bars`. Of each type the first capability the driver can use wins (§4.1.4.1);
/// capabilities with a reserved BAR index (> 5) are ignored (§4.1.4). If no capability of a
/// required type (common, notify) is usable, the first rejection is reported.
pub fn find_virtio_regions(
    cfg: &impl ConfigSpace,
    bars: &[Bar; 6],
) -> Result<VirtioRegions, CapError> {
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    let mut first_error: [Option<CapError>; 3] = [None; 3]; // common, notify, unknown type
    for (at, id) in capabilities(cfg) {
        if id != PCI_CAP_ID_VNDR {
            continue;
        }
        let found = read_virtio_cap(cfg, at).and_then(|(cap, mult)| {
            let Some((min, align)) = requirements(cap.cfg_type).filter(|_| cap.bar <= 5) else {
                return Ok(None);
            };
            locate(&cap, bars, min, align).map(|r| Some((cap.cfg_type, r, mult)))
        });
        match found {
            Ok(Some((VIRTIO_PCI_CAP_COMMON_CFG, r, _))) => _ = common.get_or_insert(r),
            Ok(Some((VIRTIO_PCI_CAP_NOTIFY_CFG, r, m))) => _ = notify.get_or_insert((r, m)),
            Ok(Some((VIRTIO_PCI_CAP_ISR_CFG, r, _))) => _ = isr.get_or_insert(r),
            Ok(Some((_, r, _))) => _ = device.get_or_insert(r),
            Ok(None) => {}
            Err(e) => {
                let slot = match e.cfg_type() {
                    Some(VIRTIO_PCI_CAP_COMMON_CFG) => 0,
                    Some(VIRTIO_PCI_CAP_NOTIFY_CFG) => 1,
                    Some(_) => continue, // an optional structure: ignored
                    None => 2,
                };
                _ = first_error[slot].get_or_insert(e);
            }
        }
    }
    let fail = |slot: usize, what| {
        first_error[slot]
            .or(first_error[2])
            .unwrap_or(CapError::Missing(what))
    };
    let common = common.ok_or_else(|| fail(0, "common configuration"))?;
    let (notify, notify_off_multiplier) = notify.ok_or_else(|| fail(1, "notification"))?;
    Ok(VirtioRegions {
        common,
        notify,
        notify_off_multiplier,
        isr,
        device,
    })
}

/// Offset of a queue's 16-bit notification register inside the notify structure:
/// `queue_notify_off × notify_off_multiplier` (§4.1.4.4), which must leave room for the 2-byte
/// write inside the structure's `notify_len` bytes and be 2-byte aligned.
pub fn notify_offset(
    queue_notify_off: u16,
    multiplier: u32,
    notify_len: u64,
) -> Result<u64, NotifyError> {
    // 16 × 32 bits: no overflow in u64
    let off = queue_notify_off as u64 * multiplier as u64;
    if within(off, 2, notify_len) && off.is_multiple_of(2) {
        Ok(off)
    } else {
        Err(NotifyError {
            queue_notify_off,
            multiplier,
            notify_len,
        })
    }
}

#[cfg(test)]
#[path = "virtio_pci_tests.rs"]
mod tests;
