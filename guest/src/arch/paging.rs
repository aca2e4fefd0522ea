//! Adjusting the boot stub's identity map (arch/boot.s: PML4 → PDPT → four page directories
//! of 2 MiB pages covering 0..4 GiB, contiguous from `__pt_start + 0x2000`).
//!
//! Confidential VMs mark each mapping private or shared with a physical-address bit: SEV-SNP's
//! C-bit (set = private, AMD APM Vol. 2 §15.34.4; the boot stub sets it on every entry) and TDX's
//! shared bit (GPA bit GPAW-1; set = shared, TDX Module spec "GPA space"). [`map_shared`] flips a
//! range to shared; the TEE backend must first convert the pages (SNP page-state change, TDX
//! MapGPA) — the mapping alone grants the host nothing.

use core::arch::asm;

extern "C" {
    static __pt_start: u8;
}

const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;
/// Granularity of the boot map.
pub const PAGE_2M: u64 = 2 << 20;

fn update(start: u64, end: u64, f: impl Fn(u64) -> u64) {
    let pds = (&raw const __pt_start) as u64 + 0x2000;
    let mut a = start & !(PAGE_2M - 1);
    while a < end.min(1 << 32) {
        let entry = (pds + (a >> 21) * 8) as *mut u64;
        // SAFETY: `entry` is the page-directory entry mapping `a` inside the boot page tables
        // (early RAM, ours alone); `f` changes attribute/encryption bits, never the frame. The
        // TLB entry is flushed right after.
        unsafe {
            entry.write_volatile(f(entry.read_volatile()));
            asm!("invlpg [{}]", in(reg) a, options(nostack, preserves_flags));
        }
        a += PAGE_2M;
    }
}

/// Map `[start, end)` (below 4 GiB) uncacheable (PCD|PWT), for device MMIO (SDM Vol. 3A
/// §11.12.3: with the default PAT, PCD=1 PWT=1 selects UC).
pub fn map_uncached(start: u64, end: u64) {
    update(start, end, |e| e | PTE_PCD | PTE_PWT);
}

/// Map the 2 MiB-aligned range `[start, end)` (below 4 GiB) shared with the host, by clearing
/// `private_bits` (SNP: the C-bit) and setting `shared_bits` (TDX: the shared bit) in its
/// entries. Nothing else may live in these 2 MiB pages: everything in them becomes visible to
/// the host.
///
/// # Safety
/// The pages must already be shared on the TEE's side (SNP page-state change to shared, TDX
/// MapGPA); their previous contents are lost to the guest.
pub unsafe fn map_shared(start: u64, end: u64, private_bits: u64, shared_bits: u64) {
    debug_assert!(start.is_multiple_of(PAGE_2M) && end.is_multiple_of(PAGE_2M));
    update(start, end, |e| (e & !private_bits) | shared_bits);
}
