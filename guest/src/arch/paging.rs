//! Adjusting the boot stub's identity map (arch/boot.s: PML4 → PDPT → four page directories
//! of 2 MiB pages covering 0..4 GiB, contiguous from `__pt_start + 0x2000`).

use core::arch::asm;

extern "C" {
    static __pt_start: u8;
}

const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;
const PAGE_2M: u64 = 2 << 20;

/// Map `[start, end)` (below 4 GiB) uncacheable (PCD|PWT), for device MMIO (SDM Vol. 3A
/// §11.12.3: with the default PAT, PCD=1 PWT=1 selects UC).
pub fn map_uncached(start: u64, end: u64) {
    let pds = (&raw const __pt_start) as u64 + 0x2000;
    let mut a = start & !(PAGE_2M - 1);
    while a < end.min(1 << 32) {
        let entry = (pds + (a >> 21) * 8) as *mut u64;
        // SAFETY: `entry` is the page-directory entry mapping `a` inside the boot page tables
        // (early RAM, ours alone); setting cache-control bits keeps the mapping identical
        // otherwise. The TLB entry is flushed right after.
        unsafe {
            entry.write_volatile(entry.read_volatile() | PTE_PCD | PTE_PWT);
            asm!("invlpg [{}]", in(reg) a, options(nostack, preserves_flags));
        }
        a += PAGE_2M;
    }
}
