//! Port I/O. Drivers call [`outb`], [`inl`] and friends; each access goes to the platform
//! chosen at boot ([`Platform::port_read`]/[`Platform::port_write`]), which executes the
//! IN/OUT instruction ([`raw_in`]/[`raw_out`]: plain VM; under SEV-SNP the #VC handler
//! emulates it through the GHCB) or asks the VMM directly (TDX: TDG.VP.VMCALL<Instruction.IO>,
//! since IN/OUT would raise #VE).

use core::arch::asm;

use crate::platform::{current, Width};

/// Executes `OUT` of `width` bytes.
///
/// # Safety
/// The caller must know what the device behind `port` does with the write.
pub unsafe fn raw_out(port: u16, width: Width, v: u32) {
    // SAFETY: guaranteed by the caller (all arms).
    unsafe {
        match width {
            Width::Byte => {
                asm!("out dx, al", in("dx") port, in("al") v as u8, options(nomem, nostack, preserves_flags))
            }
            Width::Word => {
                asm!("out dx, ax", in("dx") port, in("ax") v as u16, options(nomem, nostack, preserves_flags))
            }
            Width::Dword => {
                asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
            }
        }
    }
}

/// Executes `IN` of `width` bytes (zero-extended).
///
/// # Safety
/// The caller must know what the device behind `port` does on a read.
pub unsafe fn raw_in(port: u16, width: Width) -> u32 {
    // SAFETY: guaranteed by the caller (all arms).
    unsafe {
        match width {
            Width::Byte => {
                let v: u8;
                asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags));
                v as u32
            }
            Width::Word => {
                let v: u16;
                asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags));
                v as u32
            }
            Width::Dword => {
                let v: u32;
                asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags));
                v
            }
        }
    }
}

macro_rules! port_fns {
    ($out:ident, $in:ident, $ty:ty, $width:expr) => {
        /// Write to an I/O port (through the platform).
        ///
        /// # Safety
        /// The caller must know what the device behind `port` does with the write.
        pub unsafe fn $out(port: u16, v: $ty) {
            // SAFETY: forwarded from the caller.
            unsafe { current().port_write(port, $width, v as u32) }
        }
        /// Read from an I/O port (through the platform).
        ///
        /// # Safety
        /// The caller must know what the device behind `port` does on a read.
        #[allow(dead_code)]
        pub unsafe fn $in(port: u16) -> $ty {
            // SAFETY: forwarded from the caller.
            unsafe { current().port_read(port, $width) as $ty }
        }
    };
}

port_fns!(outb, inb, u8, Width::Byte);
port_fns!(outw, inw, u16, Width::Word);
port_fns!(outl, inl, u32, Width::Dword);

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
