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
