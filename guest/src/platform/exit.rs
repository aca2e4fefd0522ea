//! Leaving the VM: ACPI S5 power-off for a clean exit; QEMU's isa-debug-exit first for a
//! failure, so that a test harness sees a non-zero status.

use crate::arch::cpu::halt_forever;
use crate::arch::io::{outl, outw, pci_config_read, pci_config_write};

/// QEMU isa-debug-exit (tests add `-device isa-debug-exit,iobase=0xf4,iosize=4`).
const ISA_DEBUG_EXIT: u16 = 0xF4;
/// ICH9 LPC bridge at 00:1f.0 (QEMU q35): PMBASE at 0x40, ACPI_CNTL at 0x44 (ICH9 datasheet
/// §13.8.3.1/.2).
const ICH9_LPC_ID: u32 = 0x2918_8086;
const PMBASE: u16 = 0x600;
/// PM1a_CNT = PMBASE + 4: SLP_EN (bit 13) with SLP_TYP 0, which QEMU treats as S5 soft-off.
const PM1_CNT_SLP_EN: u16 = 1 << 13;
/// cloud-hypervisor's ACPI shutdown device: port 0x600, value S5 (5 << 2) | SLP_EN (1 << 5).
const CH_SHUTDOWN_PORT: u16 = 0x600;
const CH_S5: u32 = (5 << 2) | (1 << 5);

/// Power the VM off (exit status 0 under QEMU).
pub fn power_off() -> ! {
    if pci_config_read(0, 0x1f, 0, 0) == ICH9_LPC_ID {
        // SAFETY: programs the ICH9 PM I/O base and enables ACPI decoding, then requests S5:
        // the documented shutdown sequence of the q35 chipset.
        unsafe {
            pci_config_write(0, 0x1f, 0, 0x40, PMBASE as u32 | 1);
            let cntl = pci_config_read(0, 0x1f, 0, 0x44);
            pci_config_write(0, 0x1f, 0, 0x44, cntl | 0x80);
            outw(PMBASE + 4, PM1_CNT_SLP_EN);
        }
    } else {
        // SAFETY: cloud-hypervisor's shutdown register; on other machines an unclaimed port.
        unsafe { outl(CH_SHUTDOWN_PORT, CH_S5) };
    }
    halt_forever()
}

/// Exit with a failure `code` (QEMU exits with `code << 1 | 1` when isa-debug-exit is present);
/// otherwise power off.
pub fn fail(code: u32) -> ! {
    // SAFETY: isa-debug-exit terminates QEMU; where no device claims the port the write is
    // ignored.
    unsafe { outl(ISA_DEBUG_EXIT, code) };
    power_off()
}
