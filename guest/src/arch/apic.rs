//! The boot CPU's local APIC, as thin wrappers: what idling needs (enable it, mask the legacy
//! LINT0 input, EOI, the timer) and the INIT / Start-Up IPIs that start the other processors
//! (`arch::smp`), in x2APIC mode (MSRs) when CPUID offers it, else in
//! xAPIC mode (MMIO at 0xFEE0_0000, through `arch::mmio`).
//!
//! Source: SDM Vol. 3A, the APIC chapter ("Advanced Programmable Interrupt Controller"): the
//! "Local APIC Register Address Map" table (xAPIC offsets), "x2APIC Register Address Space"
//! (MSR 0x800 + offset / 16), "Local Vector Table", "APIC Timer", "Spurious-Interrupt Vector
//! Register" and "Signaling Interrupt Servicing Completion" (EOI).
//!
//! Per platform:
//! - plain VM (KVM or TCG): native MSRs or MMIO;
//! - TDX: the TDX module virtualises the APIC in x2APIC mode only (IA32_APIC_BASE already has
//!   EXTD set); MSR accesses it does not virtualise raise #VE and go to the VMM through
//!   TDG.VP.VMCALL<Instruction.RDMSR/WRMSR> (`platform::tdx::handle_ve`);
//! - SEV-SNP: the hypervisor emulates the APIC; x2APIC MSR accesses raise #VC and become GHCB
//!   MSR exits (`platform::snp::handle_vc`); xAPIC MMIO would use the GHCB MMIO exits.

use core::sync::atomic::{AtomicU8, Ordering};

use super::cpu::{rdmsr, wrmsr};

/// IA32_APIC_BASE (SDM Vol. 4 Table 2-2).
const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_APIC_BASE.EN: APIC global enable.
const APIC_BASE_EN: u64 = 1 << 11;
/// IA32_APIC_BASE.EXTD: x2APIC mode.
const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_TSC_DEADLINE (SDM Vol. 4 Table 2-2).
const IA32_TSC_DEADLINE: u32 = 0x6E0;
/// x2APIC MSR of xAPIC register offset `off`: 0x800 + off / 16.
const X2APIC_MSR_BASE: u32 = 0x800;
/// The xAPIC register page (its architectural default; pupa never moves it).
pub const XAPIC_BASE: u64 = 0xFEE0_0000;

/// Register offsets (xAPIC MMIO offsets; the x2APIC MSR is derived from them).
mod reg {
    /// Local APIC ID.
    pub const ID: u32 = 0x20;
    /// End Of Interrupt.
    pub const EOI: u32 = 0xB0;
    /// Spurious-Interrupt Vector Register.
    pub const SVR: u32 = 0xF0;
    /// LVT Timer.
    pub const LVT_TIMER: u32 = 0x320;
    /// LVT LINT0 (on a PC: the 8259 PIC's INTR, as ExtINT).
    pub const LVT_LINT0: u32 = 0x350;
    /// Timer Initial Count.
    pub const TIMER_INITIAL: u32 = 0x380;
    /// Timer Current Count.
    pub const TIMER_CURRENT: u32 = 0x390;
    /// Timer Divide Configuration.
    pub const TIMER_DIVIDE: u32 = 0x3E0;
    /// Interrupt Command Register, low and high halves (one 64-bit MSR in x2APIC mode).
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
}

/// ICR bits (SDM Vol. 3A "Interrupt Command Register (ICR)"): delivery mode INIT (101b) and
/// Start-Up (110b), Level = Assert, destination shorthand "All Excluding Self" (11b), and the
/// xAPIC's Delivery Status (send pending).
const ICR_FIXED: u32 = 0b000 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
const ICR_SEND_PENDING: u32 = 1 << 12;

/// SVR bit 8: APIC software enable.
const SVR_APIC_ENABLE: u32 = 1 << 8;
/// LVT bit 16: masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT Timer bits 18:17 = 00b: one-shot.
const LVT_TIMER_ONESHOT: u32 = 0;
/// LVT Timer bits 18:17 = 10b: TSC-deadline.
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
/// Divide Configuration 1011b: divide by 1.
const DIVIDE_BY_1: u32 = 0b1011;

/// How the APIC's registers are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MMIO at [`XAPIC_BASE`].
    XApic,
    /// MSRs 0x800..0x8FF.
    X2Apic,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::XApic => "xAPIC",
            Mode::X2Apic => "x2APIC",
        }
    }
}

/// The timer's operating mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Counts down from the initial count at the (divided) bus clock.
    OneShot,
    /// Fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

const MODE_OFF: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;
/// The mode [`enable`] set; [`eoi`] (from interrupt handlers) reads it.
static MODE: AtomicU8 = AtomicU8::new(MODE_OFF);

fn read(r: u32) -> u32 {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on (enable), so MSR 0x800 + r/16 exists; the registers read
        // here (ID, current count) have no read side effects.
        MODE_X2APIC => unsafe { rdmsr(X2APIC_MSR_BASE + (r >> 4)) as u32 },
        // SAFETY: the xAPIC page is mapped UC (enable); same registers.
        MODE_XAPIC => unsafe { super::mmio::read32(XAPIC_BASE + r as u64) },
        _ => 0,
    }
}

/// Sends one IPI through the ICR to `dest` (an APIC ID; ignored with a shorthand) and waits
/// until the xAPIC has sent it (x2APIC writes are sent at once). The destination is the
/// ICR's bits 63:32 in x2APIC mode, 63:56 in xAPIC mode.
fn send_ipi(dest: u32, low: u32) {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on; the callers send only INIT and Start-Up IPIs to the other
        // processors, which is what starting them needs, and fixed IPIs with a vector whose
        // handler only acknowledges it (VECTOR_WAKE).
        MODE_X2APIC => unsafe {
            wrmsr(
                X2APIC_MSR_BASE + (reg::ICR_LOW >> 4),
                u64::from(dest) << 32 | u64::from(low),
            )
        },
        MODE_XAPIC => {
            // SAFETY: as above, through the UC-mapped xAPIC page: high half first, the write
            // of the low half sends.
            unsafe {
                super::mmio::write32(XAPIC_BASE + reg::ICR_HIGH as u64, dest << 24);
                super::mmio::write32(XAPIC_BASE + reg::ICR_LOW as u64, low);
            }
            while read(reg::ICR_LOW) & ICR_SEND_PENDING != 0 {
                core::hint::spin_loop();
            }
        }
        _ => {}
    }
}

/// INIT to every processor but this one (they reset and wait for a Start-Up IPI).
pub fn send_init_all_but_self() {
    send_ipi(0, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
}

/// A Start-Up IPI to every processor but this one: they start in real mode at `vector << 12`.
pub fn send_startup_all_but_self(vector: u8) {
    send_ipi(
        0,
        ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | vector as u32,
    );
}

/// A fixed interrupt with `vector` to the processor with APIC ID `dest` (physical
/// destination mode): ends a TDX AP's TDG.VP.VMCALL<Instruction.HLT> (`platform::tdx_smp`).
pub fn send_fixed(dest: u32, vector: u8) {
    send_ipi(dest, ICR_ASSERT | vector as u32);
}

/// This processor's local APIC ID (x2APIC: all 32 bits), 0 before [`enable`].
pub fn id() -> u32 {
    match MODE.load(Ordering::Relaxed) {
        MODE_X2APIC => read(reg::ID),
        _ => read(reg::ID) >> 24,
    }
}

/// A fixed interrupt with `vector` to every processor but this one (SDM Vol. 3A §11.6.1,
/// "Interrupt Command Register": delivery mode Fixed, shorthand All Excluding Self).
pub fn send_fixed_all_but_self(vector: u8) {
    send_ipi(0, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_FIXED | vector as u32);
}

/// The mode [`enable`] set on the boot CPU (the APs enable theirs the same way), if any.
fn mode() -> Option<Mode> {
    match MODE.load(Ordering::Relaxed) {
        MODE_XAPIC => Some(Mode::XApic),
        MODE_X2APIC => Some(Mode::X2Apic),
        _ => None,
    }
}

/// Writes one of the registers this module names (the ICR only through [`send_ipi`]).
fn write(r: u32, v: u32) {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on; the callers below write only EOI, SVR, LVT entries with
        // vectors that have IDT handlers, and the timer registers.
        MODE_X2APIC => unsafe { wrmsr(X2APIC_MSR_BASE + (r >> 4), v as u64) },
        // SAFETY: as above, through the UC-mapped xAPIC page.
        MODE_XAPIC => unsafe { super::mmio::write32(XAPIC_BASE + r as u64, v) },
        _ => {}
    }
}

/// Switches the APIC on in `mode` (x2APIC only if CPUID.1:ECX[21] said so), with `spurious`
/// as the spurious-interrupt vector and LINT0 masked (the 8259's ExtINT path, which QEMU
/// leaves open on the boot CPU). Returns the local APIC ID. The boot CPU's call.
pub fn enable(mode: Mode, spurious: u8) -> u32 {
    if mode == Mode::XApic {
        super::paging::map_uncached(XAPIC_BASE, XAPIC_BASE + 0x1000);
    }
    MODE.store(
        match mode {
            Mode::XApic => MODE_XAPIC,
            Mode::X2Apic => MODE_X2APIC,
        },
        Ordering::Relaxed,
    );
    enable_this_cpu(spurious)
}

/// Switches this CPU's APIC on in the mode [`enable`] chose on the boot CPU (whose page
/// tables already map the xAPIC page): for the APs. Returns the local APIC ID (0 if the
/// boot CPU has no APIC on).
pub fn enable_this_cpu(spurious: u8) -> u32 {
    let Some(mode) = mode() else {
        return 0;
    };
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (the boot CPU checked CPUID);
    // the writes keep the base address and only move disabled → xAPIC → x2APIC, the legal
    // transitions ("x2APIC State Transitions"). Under TDX, EN and EXTD are already set and
    // nothing is written.
    unsafe {
        let mut base = rdmsr(IA32_APIC_BASE);
        if base & APIC_BASE_EN == 0 {
            base |= APIC_BASE_EN;
            wrmsr(IA32_APIC_BASE, base);
        }
        if mode == Mode::X2Apic && base & APIC_BASE_EXTD == 0 {
            wrmsr(IA32_APIC_BASE, base | APIC_BASE_EXTD);
        }
    }
    write(reg::LVT_LINT0, LVT_MASKED);
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::SVR, SVR_APIC_ENABLE | spurious as u32);
    id()
}

/// Signals the end of the interrupt being serviced. For interrupt handlers; a no-op before
/// [`enable`].
pub fn eoi() {
    write(reg::EOI, 0);
}

/// Programs the LVT timer entry: `timer` mode, delivering `vector`, `masked` or not. In
/// one-shot mode the counter runs at the bus clock divided by 1.
pub fn set_timer(timer: Timer, vector: u8, masked: bool) {
    let mode = match timer {
        Timer::OneShot => {
            write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
            LVT_TIMER_ONESHOT
        }
        Timer::TscDeadline => LVT_TIMER_TSC_DEADLINE,
    };
    write(
        reg::LVT_TIMER,
        mode | vector as u32 | if masked { LVT_MASKED } else { 0 },
    );
}

/// One-shot mode: (re)starts the count-down from `count` (0 stops the timer).
pub fn start_count(count: u32) {
    write(reg::TIMER_INITIAL, count);
}

/// One-shot mode: the current count.
pub fn current_count() -> u32 {
    read(reg::TIMER_CURRENT)
}

/// TSC-deadline mode: fire when the TSC reaches `tsc` (at once if it already has; 0 disarms).
pub fn set_tsc_deadline(tsc: u64) {
    if MODE.load(Ordering::Relaxed) != MODE_OFF {
        // SAFETY: writing IA32_TSC_DEADLINE only arms the timer. The caller chose TSC-deadline
        // mode because CPUID.1:ECX[24] is set; were the MSR missing anyway, the #GP would be
        // reported by the exception handler (arch::interrupts), not continue silently.
        unsafe { wrmsr(IA32_TSC_DEADLINE, tsc) };
    }
}
