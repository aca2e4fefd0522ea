//! Device MMIO. Drivers call [`read32`], [`write16`] and friends; each access goes to the
//! platform chosen at boot ([`Platform::mmio`](crate::platform::Platform::mmio)):
//! - plain VM: volatile loads and stores ([`raw_access`]);
//! - TDX: TDG.VP.VMCALL<#VE.RequestMMIO> (`tdcall::vmcall_mmio`; GHCI 1.5 §3.7: R12 = size,
//!   R13 = direction (0 read, 1 write), R14 = GPA with the shared bit, R15 = value; R11 returns
//!   the value read);
//! - SNP: the GHCB's MMIO_READ/MMIO_WRITE exits (GHCB spec 56421 §4.1.5), in platform/snp.rs.
//!
//! Under TDX and SEV-SNP a load or store to an emulated device would trap (#VE: EPT violation
//! on a shared GPA; #VC: NPF with the reserved-bit MMIO pattern) and the handler would have to
//! decode the instruction. pupa's drivers know when they touch a device, so they ask the VMM
//! directly instead. The device registers are host-controlled in every case: drivers validate
//! what they read.

use crate::platform::current;

/// One volatile access of `size` bytes (1, 2, 4) at `addr`; returns the value read (0 for
/// writes).
///
/// # Safety
/// `addr` must be a device register, mapped uncached, whose access has the effect the caller
/// intends.
pub unsafe fn raw_access(addr: u64, size: u8, write: bool, value: u64) -> u64 {
    // SAFETY: guaranteed by the caller (all arms).
    unsafe {
        match (size, write) {
            (1, false) => (addr as *const u8).read_volatile() as u64,
            (2, false) => (addr as *const u16).read_volatile() as u64,
            (4, false) => (addr as *const u32).read_volatile() as u64,
            (1, true) => {
                (addr as *mut u8).write_volatile(value as u8);
                0
            }
            (2, true) => {
                (addr as *mut u16).write_volatile(value as u16);
                0
            }
            _ => {
                (addr as *mut u32).write_volatile(value as u32);
                0
            }
        }
    }
}

/// One MMIO access of `size` bytes through the platform.
///
/// # Safety
/// As [`raw_access`].
unsafe fn access(addr: u64, size: u8, write: bool, value: u64) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { current().mmio(addr, size, write, value) }
}

/// Reads a byte register.
///
/// # Safety
/// As [`access`].
pub unsafe fn read8(addr: u64) -> u8 {
    // SAFETY: forwarded.
    unsafe { access(addr, 1, false, 0) as u8 }
}
/// Reads a 16-bit register.
///
/// # Safety
/// As [`access`].
pub unsafe fn read16(addr: u64) -> u16 {
    // SAFETY: forwarded.
    unsafe { access(addr, 2, false, 0) as u16 }
}
/// Reads a 32-bit register.
///
/// # Safety
/// As [`access`].
pub unsafe fn read32(addr: u64) -> u32 {
    // SAFETY: forwarded.
    unsafe { access(addr, 4, false, 0) as u32 }
}
/// Writes a byte register.
///
/// # Safety
/// As [`access`].
pub unsafe fn write8(addr: u64, v: u8) {
    // SAFETY: forwarded.
    unsafe { access(addr, 1, true, v as u64) };
}
/// Writes a 16-bit register.
///
/// # Safety
/// As [`access`].
pub unsafe fn write16(addr: u64, v: u16) {
    // SAFETY: forwarded.
    unsafe { access(addr, 2, true, v as u64) };
}
/// Writes a 32-bit register.
///
/// # Safety
/// As [`access`].
pub unsafe fn write32(addr: u64, v: u32) {
    // SAFETY: forwarded.
    unsafe { access(addr, 4, true, v as u64) };
}

/// A window of device registers: `len` bytes at guest-physical `base`. Every access is checked
/// against the window and for natural alignment (virtio 1.2 §4.1.3.1), so an offset a device
/// reported cannot reach past the structure it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    base: u64,
    len: u64,
}

/// An access an [`Mmio`] window refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// `offset + size` is beyond the window's `len` bytes.
    OutOfWindow { offset: u64, size: u64, len: u64 },
    /// The register address is not a multiple of the access size.
    Misaligned { offset: u64, size: u64 },
}

impl core::fmt::Display for MmioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            MmioError::OutOfWindow { offset, size, len } => {
                write!(
                    f,
                    "{size}-byte MMIO access at {offset:#x} beyond a {len:#x}-byte window"
                )
            }
            MmioError::Misaligned { offset, size } => {
                write!(f, "misaligned {size}-byte MMIO access at {offset:#x}")
            }
        }
    }
}

impl Mmio {
    /// The window `[base, base + len)`.
    ///
    /// # Safety
    /// The whole window must be registers of one device that the caller drives, mapped
    /// uncached (or routed to the VMM by the platform), so that no access inside it touches
    /// memory the firmware uses.
    pub const unsafe fn new(base: u64, len: u64) -> Mmio {
        Mmio { base, len }
    }

    /// Bytes in the window.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The sub-window of `len` bytes at `offset`, if it lies inside this one.
    pub fn sub(&self, offset: u64, len: u64) -> Result<Mmio, MmioError> {
        if !pupa_guest::virtio_pci::within(offset, len, self.len) {
            return Err(MmioError::OutOfWindow {
                offset,
                size: len,
                len: self.len,
            });
        }
        Ok(Mmio {
            base: self.base + offset,
            len,
        })
    }

    /// The address of a `size`-byte register at `offset`, if inside the window and aligned.
    fn reg(&self, offset: u64, size: u64) -> Result<u64, MmioError> {
        if !pupa_guest::virtio_pci::within(offset, size, self.len) {
            return Err(MmioError::OutOfWindow {
                offset,
                size,
                len: self.len,
            });
        }
        let addr = self.base + offset;
        if !addr.is_multiple_of(size) {
            return Err(MmioError::Misaligned { offset, size });
        }
        Ok(addr)
    }

    /// Reads the byte register at `offset`.
    pub fn read8(&self, offset: u64) -> Result<u8, MmioError> {
        let a = self.reg(offset, 1)?;
        // SAFETY: `a` lies inside the window (checked by `reg`), which `new`'s contract makes
        // the caller's device registers.
        Ok(unsafe { read8(a) })
    }
    /// Reads the 16-bit register at `offset`.
    pub fn read16(&self, offset: u64) -> Result<u16, MmioError> {
        let a = self.reg(offset, 2)?;
        // SAFETY: as in `read8`.
        Ok(unsafe { read16(a) })
    }
    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: u64) -> Result<u32, MmioError> {
        let a = self.reg(offset, 4)?;
        // SAFETY: as in `read8`.
        Ok(unsafe { read32(a) })
    }
    /// Writes the byte register at `offset`.
    pub fn write8(&self, offset: u64, v: u8) -> Result<(), MmioError> {
        let a = self.reg(offset, 1)?;
        // SAFETY: as in `read8`.
        unsafe { write8(a, v) };
        Ok(())
    }
    /// Writes the 16-bit register at `offset`.
    pub fn write16(&self, offset: u64, v: u16) -> Result<(), MmioError> {
        let a = self.reg(offset, 2)?;
        // SAFETY: as in `read8`.
        unsafe { write16(a, v) };
        Ok(())
    }
    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: u64, v: u32) -> Result<(), MmioError> {
        let a = self.reg(offset, 4)?;
        // SAFETY: as in `read8`.
        unsafe { write32(a, v) };
        Ok(())
    }
}
