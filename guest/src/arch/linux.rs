//! The hand-over to a Linux kernel's 64-bit entry (Linux `Documentation/arch/x86/boot.rst`,
//! "64-bit Boot Protocol"): long mode with the boot stub's identity map of 0..4 GiB, a GDT with
//! flat 64-bit code at `__BOOT_CS` (0x10) and flat data at `__BOOT_DS` (0x18), CS = 0x10,
//! DS = ES = SS = 0x18, interrupts disabled, RSI = the zero page.

use core::arch::asm;

use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// null, null, `__BOOT_CS` (64-bit code, execute/read), `__BOOT_DS` (flat read/write data);
/// Accessed bits preset so that the CPU never writes the table.
static LINUX_GDT: [u64; 4] = [0, 0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];

/// Jumps to `entry` (the kernel's `startup_64`) with RSI = `boot_params`. Never returns.
///
/// # Safety
/// `entry` must be a loaded kernel's 64-bit entry point and `boot_params` its zero page, both
/// identity-mapped with everything the zero page names (kernel `init_size`, command line,
/// initrd); nothing of the firmware may run afterwards.
pub unsafe fn enter_linux64(entry: u64, boot_params: u64) -> ! {
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of_val(&LINUX_GDT) - 1) as u16,
        base: VirtAddr::new(LINUX_GDT.as_ptr() as u64),
    };
    // SAFETY: interrupts go off first; the GDT is a static that stays in early RAM (reported
    // reserved to Linux) until the kernel loads its own; the far return reloads CS with the
    // 64-bit code descriptor, then the data selectors; the caller vouches for `entry` and
    // `boot_params`. RAX is scratch (nothing returns).
    unsafe {
        asm!(
            "cli",
            "lgdt [rdx]",
            "push 0x10",
            "lea rax, [rip + 2f]",
            "push rax",
            "retfq",
            "2:",
            "mov eax, 0x18",
            "mov ds, eax",
            "mov es, eax",
            "mov ss, eax",
            "mov fs, eax",
            "mov gs, eax",
            "xor ebp, ebp",
            "jmp rcx",
            in("rdx") &ptr,
            in("rcx") entry,
            in("rsi") boot_params,
            options(noreturn),
        )
    }
}
