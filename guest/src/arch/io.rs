//! Port I/O, routed for the TEE the guest runs in.
//!
//! Plain VM: IN/OUT. TDX: IN/OUT would raise #VE, so the same accesses go to the VMM through
//! TDG.VP.VMCALL<Instruction.IO>. (SEV-SNP: IN/OUT raise #VC and are emulated through the GHCB;
//! that backend comes with the SNP support, see the evidence issue.)

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

static USE_TDVMCALL: AtomicBool = AtomicBool::new(false);

/// Route port I/O through TDVMCALL (call once, early, under TDX).
pub fn use_tdvmcall() {
    USE_TDVMCALL.store(true, Ordering::Relaxed);
}

macro_rules! port_fns {
    ($out:ident, $in:ident, $ty:ty, $size:expr, $reg:tt) => {
        /// Write to an I/O port.
        ///
        /// # Safety
        /// The caller must know what the device behind `port` does with the write.
        pub unsafe fn $out(port: u16, v: $ty) {
            if USE_TDVMCALL.load(Ordering::Relaxed) {
                let _ = super::tdcall::vmcall_io(port, $size, true, v as u32);
                return;
            }
            // SAFETY: guaranteed by the caller.
            unsafe { asm!(concat!("out dx, ", $reg), in("dx") port, in($reg) v, options(nomem, nostack, preserves_flags)) };
        }
        /// Read from an I/O port.
        #[allow(dead_code)]
        ///
        /// # Safety
        /// The caller must know what the device behind `port` does on a read.
        pub unsafe fn $in(port: u16) -> $ty {
            if USE_TDVMCALL.load(Ordering::Relaxed) {
                return super::tdcall::vmcall_io(port, $size, false, 0).unwrap_or(!0) as $ty;
            }
            let v: $ty;
            // SAFETY: guaranteed by the caller.
            unsafe { asm!(concat!("in ", $reg, ", dx"), in("dx") port, out($reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }
    };
}

port_fns!(outb, inb, u8, 1, "al");
port_fns!(outw, inw, u16, 2, "ax");
port_fns!(outl, inl, u32, 4, "eax");

/// Read a 32-bit PCI configuration register through the legacy 0xCF8/0xCFC mechanism
/// (PCI Local Bus spec 3.0 §3.2.2.3.2).
pub fn pci_config_read(bus: u8, dev: u8, func: u8, reg: u8) -> u32 {
    let addr = 0x8000_0000
        | (bus as u32) << 16
        | (dev as u32 & 0x1f) << 11
        | (func as u32 & 7) << 8
        | (reg as u32 & 0xfc);
    // SAFETY: CONFIG_ADDRESS/CONFIG_DATA only select and read a config register.
    unsafe {
        outl(0xCF8, addr);
        inl(0xCFC)
    }
}

/// Write a 32-bit PCI configuration register.
///
/// # Safety
/// Writing configuration space reprograms the device: the caller must know the register.
pub unsafe fn pci_config_write(bus: u8, dev: u8, func: u8, reg: u8, v: u32) {
    let addr = 0x8000_0000
        | (bus as u32) << 16
        | (dev as u32 & 0x1f) << 11
        | (func as u32 & 7) << 8
        | (reg as u32 & 0xfc);
    // SAFETY: guaranteed by the caller.
    unsafe {
        outl(0xCF8, addr);
        outl(0xCFC, v);
    }
}
