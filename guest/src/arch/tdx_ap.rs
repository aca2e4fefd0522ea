//! The TDX application processors' way into Rust: the mailbox they park on (`__ap_mailbox`
//! in `boot.s`, the ACPI Multiprocessor Wakeup mailbox `pupa_guest::tdx::mailbox`) and the
//! wakeup vector (`tdx_ap.s`) that gives each woken AP the boot CPU's control registers and
//! XCR0, a stack, and calls the Rust entry, as the plain VMs' trampoline does (`arch::smp`).
//!
//! What the park loop (`boot.s` `ap_park64`) asks the VMM for, and why:
//! - its x2APIC ID, the mailbox's key: not the vCPU index (TDG.VP.INFO), because Linux writes
//!   the MADT's APIC IDs and the two differ when the VMM sets the topology (KVM passes QEMU's
//!   APIC ID to TDH.VP.INIT). The TDX module does not virtualise reads of the x2APIC ID MSR
//!   (0x802): a RDMSR raises #VE and the VMM answers, so the AP, which has no IDT, asks by
//!   TDG.VP.VMCALL<Instruction.RDMSR> directly (what a #VE handler, Linux's included, does).
//!   A VMM that lies can keep APs parked or give two the same ID (both then take one
//!   request): the wakeup vector parks arrivals beyond the stacks it has.
//! - SVR = APIC software enable | vector 0xFF, by TDG.VP.VMCALL<Instruction.WRMSR>: under TDX
//!   the VMM emulates SVR writes, and KVM drops fixed interrupts to an APIC whose SVR still has
//!   its reset value, so without it the waker's IPI would not end the AP's halt. The LVT
//!   entries stay masked from reset; a failure only means that the waker reports the AP.

use core::mem::{offset_of, size_of};

use pupa_guest::tdx::mailbox::WakeupMailbox;

use super::smp::ApData;

core::arch::global_asm!(include_str!("tdx_ap.s"), options(att_syntax));

/// The wakeup vector's data block (`tdx_ap_data` in tdx_ap.s).
#[repr(C)]
pub struct TdxApData {
    /// The boot CPU's state, the entry, the stacks, the next index (EFER is not used).
    pub ap: ApData,
    /// The highest index an AP may take (the number of stacks); a later arrival parks.
    pub last_index: u32,
    pub _pad: u32,
}

const _: () = {
    assert!(size_of::<TdxApData>() == 64);
    assert!(offset_of!(TdxApData, last_index) == 56);
    assert!(offset_of!(ApData, next) == 48);
};

extern "C" {
    static mut tdx_ap_data: TdxApData;
    static tdx_ap_wakeup: u8;
    /// The parked APs' mailbox: the last of the AP pages at AP_PARK_BASE (guest/linker.ld).
    static __ap_mailbox: WakeupMailbox;
}

/// The AP mailbox. Only under TDX: there the page is private TD memory (BFV); on other VMs
/// it is ROM, and writing it would fault.
pub fn mailbox() -> &'static WakeupMailbox {
    // The mailbox is at 0xFFFFE000, out of reach of the code's 32-bit relocations (the code
    // runs in early RAM): its address is loaded as a 64-bit immediate.
    let addr: u64;
    // SAFETY: only the symbol's address is loaded, into a register; no memory is touched.
    unsafe {
        core::arch::asm!(
            "movabs {0}, offset {1}",
            out(reg) addr,
            sym __ap_mailbox,
            options(nomem, nostack, preserves_flags),
        );
    }
    // SAFETY: the linker script places `__ap_mailbox` 4 KiB aligned in the image, 4 KiB long
    // (its assertion); the type's fields are atomics (or never written), so shared references
    // from any CPU are sound. Under TDX the page is identity-mapped writable RAM.
    unsafe { &*(addr as *const WakeupMailbox) }
}

/// Fills the wakeup vector's data with this CPU's state, `entry` and `count` stacks of
/// `stack_size` bytes at `stacks`, and returns the vector's address (for `WakeupVector`).
///
/// # Safety
/// TDX only; call before any AP is woken with the vector and not while one runs it. The
/// stacks must be `count * stack_size` bytes nothing else uses; `entry` must never return.
pub unsafe fn prepare(
    entry: extern "C" fn(u64) -> !,
    stacks: u64,
    stack_size: u64,
    count: u32,
) -> u64 {
    let data = TdxApData {
        ap: ApData::this_cpu(entry, stacks, stack_size),
        last_index: count,
        _pad: 0,
    };
    // SAFETY: `tdx_ap_data` is 64 writable bytes in .data that only tdx_ap.s reads, and no
    // AP runs it yet (the caller's guarantee); the waker's Release store of the mailbox
    // command orders this write before any AP's reads.
    unsafe { (&raw mut tdx_ap_data).write_volatile(data) };
    &raw const tdx_ap_wakeup as u64
}
