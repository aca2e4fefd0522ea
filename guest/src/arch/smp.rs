//! Application-processor start-up on a plain VM (SDM Vol. 3A §9.4, "MP Initialization"): the
//! trampoline (`ap_trampoline.s`) is copied to [`AP_TRAMPOLINE`] with the BSP's control
//! registers, the Rust entry and the stacks in its data block, then the local APIC sends
//! INIT and two Startup IPIs to all processors but itself (§9.4.4.1 "Typical BSP
//! Initialization Sequence": INIT, 10 ms, SIPI, 200 µs, SIPI). Under SNP and TDX APs start
//! differently (SNP AP creation with guest-built VMSAs; the TDX AP mailbox): not here.

use core::mem::size_of;

use x86_64::registers::control::{Cr0, Cr3, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::registers::xcontrol::XCr0;

use super::apic;

core::arch::global_asm!(include_str!("ap_trampoline.s"), options(att_syntax));

extern "C" {
    static ap_trampoline: u8;
    static ap_trampoline_end: u8;
    static ap_data: u8;
}

/// Where the trampoline runs: a free page below 1 MiB on a plain VM (below the SNP pages at
/// 0xA000 and the TD HOB at 0x10000, which are not used on a plain VM either way).
pub const AP_TRAMPOLINE: u64 = 0x8000;
/// The Startup IPI's vector: the trampoline's page number.
const SIPI_VECTOR: u8 = (AP_TRAMPOLINE >> 12) as u8;

/// The trampoline's data block (`ap_data` in ap_trampoline.s).
#[repr(C)]
pub struct ApData {
    pub cr3: u32,
    pub cr4: u32,
    pub cr0: u32,
    pub efer: u32,
    pub xcr0: u64,
    pub entry: u64,
    pub stacks: u64,
    pub stack_size: u64,
    /// The next AP's index (1 first); each AP takes one with LOCK XADD.
    pub next: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<ApData>() == 56);

impl ApData {
    /// This CPU's CR3, CR4, CR0, EFER (LMA clear) and XCR0, with `entry`, the stacks and the
    /// first index (1): what an AP needs to run like this CPU. Also the TDX APs' entry
    /// (`arch::tdx_ap`).
    pub fn this_cpu(entry: extern "C" fn(u64) -> !, stacks: u64, stack_size: u64) -> Self {
        // LMA is set by the CPU when paging turns on; the trampoline writes EFER before that
        let efer = Efer::read_raw() & !EferFlags::LONG_MODE_ACTIVE.bits();
        let (pml4, cr3_flags) = Cr3::read_raw();
        let cr3 = pml4.start_address().as_u64() | u64::from(cr3_flags);
        ApData {
            cr3: cr3 as u32,
            cr4: Cr4::read_raw() as u32,
            cr0: Cr0::read_raw() as u32,
            efer: efer as u32,
            xcr0: xcr0(),
            entry: entry as usize as u64,
            stacks,
            stack_size,
            next: 1,
            _pad: 0,
        }
    }
}

/// XCR0, or 0 when CR4.OSXSAVE is clear (XGETBV would #UD; the APs then skip XSETBV).
fn xcr0() -> u64 {
    if Cr4::read().contains(Cr4Flags::OSXSAVE) {
        XCr0::read_raw()
    } else {
        0
    }
}

/// Copies the trampoline to [`AP_TRAMPOLINE`] with this CPU's state, `entry` (called with the
/// AP's index, 1 first, on its own stack) and `count` stacks of `stack_size` bytes at
/// `stacks`; then sends INIT-SIPI-SIPI to every other processor. `delay_us` waits.
///
/// # Safety
/// Plain VM only; the page at [`AP_TRAMPOLINE`] must be free RAM; `stacks` must hold
/// `count * stack_size` bytes nothing else uses; `entry` must never return; the APIC must be
/// enabled ([`apic::enable`]). Every processor the VMM has will run `entry`.
pub unsafe fn start_aps(
    entry: extern "C" fn(u64) -> !,
    stacks: u64,
    stack_size: u64,
    delay_us: &dyn Fn(u64),
) {
    // The symbols delimit the trampoline in the image; only their addresses are taken.
    let (start, end, data) = (
        &raw const ap_trampoline as usize,
        &raw const ap_trampoline_end as usize,
        &raw const ap_data as usize,
    );
    let len = end - start;
    // SAFETY: the caller guarantees the page is free RAM (identity-mapped below 4 GiB); the
    // trampoline is shorter than a page (checked by the assertion in ap_trampoline's use).
    unsafe {
        assert!(len <= 4096, "the AP trampoline must fit one page");
        core::ptr::copy_nonoverlapping(start as *const u8, AP_TRAMPOLINE as *mut u8, len);
        let d = (AP_TRAMPOLINE as usize + (data - start)) as *mut ApData;
        d.write_volatile(ApData::this_cpu(entry, stacks, stack_size));
    }
    apic::send_init_all_but_self();
    delay_us(10_000);
    for _ in 0..2 {
        apic::send_startup_all_but_self(SIPI_VECTOR);
        delay_us(200);
    }
}
