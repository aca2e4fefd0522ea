//! The firmware's memory layout, from the linker script (guest/linker.ld).

extern "C" {
    static __early_ram_start: u8;
    static __early_ram_end: u8;
    static __heap_start: u8;
    static __heap_end: u8;
    static __rom_size: u8;
    static __td_hob_start: u8;
    static __td_hob_end: u8;
}

fn addr(sym: *const u8) -> u64 {
    sym as u64
}

/// [start, end) of early RAM: declared in the SNP/TDX metadata, usable before acceptance.
pub fn early_ram() -> (u64, u64) {
    // Only the addresses of linker symbols are taken, never their contents.
    (
        addr(&raw const __early_ram_start),
        addr(&raw const __early_ram_end),
    )
}

/// [start, end) of the early heap (inside early RAM).
pub fn early_heap() -> (u64, u64) {
    (addr(&raw const __heap_start), addr(&raw const __heap_end))
}

/// [start, end) of the TDX TD_HOB section (the one definition is in guest/linker.ld; boot.s
/// declares it in the TDVF metadata from the same symbols).
pub fn td_hob() -> (u64, u64) {
    // Only the addresses of linker symbols are taken, never their contents.
    (
        addr(&raw const __td_hob_start),
        addr(&raw const __td_hob_end),
    )
}

/// [start, end) of every section the TDVF metadata declares (arch/boot.s): BFV (the image, up
/// to 4 GiB), TD_HOB and TEMP_MEM (early RAM). The VMM adds them (TDH.MEM.PAGE.ADD) before
/// launch: they are never unaccepted and never accepted by pupa.
pub fn tdvf_sections() -> [(u64, u64); 3] {
    let rom = (1u64 << 32) - addr(&raw const __rom_size);
    [(rom, 1 << 32), td_hob(), early_ram()]
}

/// The firmware image as mapped at the top of 4 GiB.
pub fn rom() -> &'static [u8] {
    // SAFETY: [__rom_start, 4 GiB) is the firmware ROM (or, under SNP/TDX, the measured private
    // copy of it), identity-mapped and not written while the slice is used (the boot hashes it
    // once; only later does TDX's `tdx_smp` write the AP mailbox page in it); __rom_size is an
    // absolute symbol.
    unsafe {
        // The ROM ends at 4 GiB. (Its start, 0xFFFxxxxx, is not reachable with the small code
        // model's sign-extended 32-bit absolute relocations, so it is computed from the size.)
        let size = addr(&raw const __rom_size);
        let start = (1u64 << 32) - size;
        core::slice::from_raw_parts(start as *const u8, size as usize)
    }
}
