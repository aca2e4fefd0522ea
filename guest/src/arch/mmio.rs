//! Device MMIO, routed for the TEE the guest runs in (the MMIO counterpart of `io.rs`).
//!
//! Plain VM: volatile loads and stores. Under TDX and SEV-SNP a load or store to an emulated
//! device would trap (#VE: EPT violation on a shared GPA; #VC: NPF with the reserved-bit MMIO
//! pattern) and the handler would have to decode the instruction. pupa's drivers know when they
//! touch a device, so they ask the VMM directly instead:
//! - TDX: TDG.VP.VMCALL<#VE.RequestMMIO> (GHCI 1.5 §3.7: R11 = 48, R12 = size, R13 = direction
//!   (0 read, 1 write), R14 = GPA with the shared bit, R15 = value; R11 returns the value read);
//! - SNP: the GHCB's MMIO_READ/MMIO_WRITE exits (GHCB spec 56421 §4.1.5), in platform/snp.rs.
//!
//! The device registers are host-controlled in every case: drivers validate what they read.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const ROUTE_PLAIN: u8 = 0;
const ROUTE_TDX: u8 = 1;
const ROUTE_SNP: u8 = 2;

static ROUTE: AtomicU8 = AtomicU8::new(ROUTE_PLAIN);
static TDX_SHARED_BIT: AtomicU64 = AtomicU64::new(0);

/// Route MMIO through TDG.VP.VMCALL; `shared_bit` is the GPA shared bit (1 << (GPAW-1)).
pub fn use_tdvmcall(shared_bit: u64) {
    TDX_SHARED_BIT.store(shared_bit, Ordering::Relaxed);
    ROUTE.store(ROUTE_TDX, Ordering::Relaxed);
}

/// Route MMIO through the GHCB (call once the GHCB is registered).
pub fn use_ghcb() {
    ROUTE.store(ROUTE_SNP, Ordering::Relaxed);
}

/// GHCI §3.7: the exit reason of #VE.RequestMMIO (EPT violation).
const VMCALL_MMIO: u64 = 48;
/// TDCALL leaf TDG.VP.VMCALL, exposing R10..R15 to the VMM (see tdcall.rs).
const TDG_VP_VMCALL: u64 = 0;
const EXPOSE_R10_R15: u64 = 0xFC00;

fn tdvmcall_mmio(gpa: u64, size: u64, write: bool, value: u64) -> u64 {
    let status: u64;
    let data: u64;
    // SAFETY: TDCALL(TDG.VP.VMCALL) exchanges only the exposed registers; the VMM emulates the
    // device access and touches no private memory. Only reached under TDX (route set by the
    // TDX init), where TDCALL exists.
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc", // tdcall
            inout("rax") TDG_VP_VMCALL => _,
            inout("rcx") EXPOSE_R10_R15 => _,
            inout("r10") 0u64 => status,
            inout("r11") VMCALL_MMIO => data,
            inout("r12") size => _,
            inout("r13") write as u64 => _,
            inout("r14") gpa => _,
            inout("r15") value => _,
            options(nostack),
        );
    }
    // A failed read returns all ones, as a missing device does.
    if status == 0 {
        data
    } else {
        !0
    }
}

/// One MMIO access of `size` bytes (1, 2, 4) at `addr`; returns the value read (0 for writes).
///
/// # Safety
/// `addr` must be a device register the caller knows the effect of accessing.
unsafe fn access(addr: u64, size: u64, write: bool, value: u64) -> u64 {
    match ROUTE.load(Ordering::Relaxed) {
        ROUTE_TDX => {
            let gpa = addr | TDX_SHARED_BIT.load(Ordering::Relaxed);
            tdvmcall_mmio(gpa, size, write, value)
        }
        ROUTE_SNP => crate::platform::snp_mmio::access(addr, size, write, value),
        // SAFETY (all arms): guaranteed by the caller; the window is mapped UC.
        _ => unsafe {
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
        },
    }
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
